"""How fast a training run goes: examples, model FLOPs and the share of the device's peak."""

from __future__ import annotations

import time

import numpy as np
import torch

from xstilts.training.hardware import StepFlops, device_peak
from xstilts.training.rate import RecentRate


class Meter:
    """Examples and model FLOPs since the run (re)started, for log lines, progress and the result
    (the FLOPs of the rows' own lengths: :class:`StepFlops`)."""

    def __init__(self, device: torch.device, encoder: torch.nn.Module) -> None:
        self.device_name, self.peak = device_peak(device)
        self._step_flops = StepFlops(encoder)
        self.seen, self.flops = 0, 0.0
        self._t0 = time.perf_counter()
        self._end: float | None = None
        self._recent = RecentRate()

    def count(self, lengths: np.ndarray) -> None:
        """One micro-batch of rows of these lengths (all replicas' rows)."""
        self.seen += len(lengths)
        self.flops += self._step_flops(lengths)

    def elapsed(self) -> float:
        return (self._end or time.perf_counter()) - self._t0

    def stop(self) -> None:
        """The run's training ends here: what comes after (restoring the selected model) is not
        training time."""
        self._end = time.perf_counter()

    def recent_rate(self) -> float:
        """Examples/s over the last steps (call once per step): what progress shows."""
        return self._recent.update(self.seen)

    def examples_per_s(self) -> float:
        elapsed = self.elapsed()
        return self.seen / elapsed if elapsed > 0 else 0.0

    def tflops(self) -> float | None:
        """Model TFLOP/s so far; None before any."""
        elapsed = self.elapsed()
        return self.flops / elapsed / 1e12 if elapsed > 0 and self.flops else None

    def mfu(self) -> float | None:
        """Model FLOPs utilisation: the share of the device's dense bf16 peak (None: no peak known)."""
        elapsed = self.elapsed()
        return self.flops / elapsed / self.peak if self.peak and elapsed > 0 else None

    def line(self) -> str:
        """ "12.3 examples/s, 0.45 model TFLOP/s[ = 6.5% of <device>'s bf16 peak]"."""
        elapsed = max(self.elapsed(), 1e-9)
        flops_per_s = self.flops / elapsed
        text = f"{self.seen / elapsed:.1f} examples/s, {flops_per_s / 1e12:.2f} model TFLOP/s"
        if self.peak:
            text += f" = {100 * flops_per_s / self.peak:.1f}% of {self.device_name}'s bf16 peak"
        return text
