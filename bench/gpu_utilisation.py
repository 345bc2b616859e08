"""The GPU's utilisation while a benchmark runs, sampled with nvidia-smi (nothing without a GPU).

nvidia-smi's utilisation is the share of the last sample period in which a kernel ran: "busy". A
run's own window (its timed steps, not its imports, model load and warm-up) is picked out by the
samples' timestamps: ``stop(window=(start, end))`` with ``time.time()`` values.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
from datetime import datetime


def _sample(line: str) -> tuple[float, float] | None:
    """(epoch seconds, percent) from a line "2026/12/07 01:23:45.678, 97"; None for anything else."""
    stamp, _, value = line.rpartition(",")
    try:
        when = datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
        return when, float(value)
    except ValueError:
        return None


def busy_share(lines: list[str], window: tuple[float, float] | None = None) -> float | None:
    """The median utilisation of the samples taken inside ``window`` (all of them without one)."""
    samples = [s for s in map(_sample, lines) if s is not None]
    if window is not None:
        samples = [s for s in samples if window[0] <= s[0] <= window[1]]
    return statistics.median(v for _, v in samples) if samples else None


class Utilisation:
    """nvidia-smi's GPU utilisation every 200 ms while a run goes on (nothing without a GPU)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu",
                 "--format=csv,noheader,nounits", "-lms", "200",
                 "-i", os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip

    def stop(self, window: tuple[float, float] | None = None) -> float | None:
        """The median busy percent over ``window`` (epoch seconds), or over the whole sampling."""
        if self.proc is None:
            return None
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return busy_share(out.splitlines(), window)
