"""What a training step costs in FLOPs, and what the device could do: model-FLOPs utilisation (MFU)
for progress lines, training results and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# Dense bf16 tensor-core peaks in TFLOP/s (no sparsity), from the vendors' data sheets. Matched
# by substring of torch.cuda.get_device_name(), first match wins: specific names come first.
GPU_BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H800", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.1),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
)


def gpu_peak_flops(name: str) -> float | None:
    """The device's dense bf16 peak in FLOP/s, None for a device this table does not know."""
    for key, tflops in GPU_BF16_PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def device_peak(device: torch.device) -> tuple[str, float | None]:
    """(device name, dense bf16 peak FLOP/s or None): CUDA devices from the table; a CPU has no
    fixed peak (``bench/train_throughput.py`` measures its fp32 matmul peak instead)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, gpu_peak_flops(name)


class StepFlops:
    """Training FLOPs of an encoder per batch: 6 x its non-embedding parameters per token (forward
    2, backward 4), plus attention's scores and weighted values, 4 x layers x hidden x L^2 per
    sequence of L tokens in the forward, times 3 with the backward. Embedding lookups are free;
    heads are negligible. Counted on the rows' own lengths (useful tokens), not the padding."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        config = getattr(encoder, "config", None)
        embeddings = sum(p.numel() for n, p in encoder.named_parameters() if "embeddings" in n)
        self.dense = sum(p.numel() for p in encoder.parameters()) - embeddings
        self.layers = int(getattr(config, "num_hidden_layers", 0))
        self.hidden = int(getattr(config, "hidden_size", 0))

    def __call__(self, lengths: Sequence[int] | np.ndarray) -> float:
        tokens = sum(int(n) for n in lengths)
        attention = 3 * 4 * self.layers * self.hidden * sum(int(n) ** 2 for n in lengths)
        return 6.0 * self.dense * tokens + attention


def pick_device() -> torch.device:
    """Where a process trains and predicts: the GPU where there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
