"""The GPU's utilisation while a benchmark runs, sampled with nvidia-smi (nothing without a GPU)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess


class Utilisation:
    """nvidia-smi's GPU utilisation every 200 ms while a run goes on (nothing without a GPU)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "200", "-i", os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip

    def stop(self) -> float | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        samples = [float(x) for x in out.split() if x.strip().replace(".", "").isdigit()]
        return statistics.median(samples) if samples else None
