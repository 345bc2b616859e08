"""Inference: a model's per-row outputs in length-sorted, dynamically padded batches, returned in
the original row order.

The one loop that prediction (a trained head's outputs, :mod:`xstilts.training.predict`) and
retrieval (sentence vectors, :mod:`xstilts.formats.retrieval_search`) run a model through: the
device, eval mode, bf16 autocast on CUDA, batches longest first under a token cap, progress. It
imports no format, so that a format can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from xstilts.modeling.batch import Batch
from xstilts.training.batching import Prefetched, sorted_batches, to_device
from xstilts.training.hardware import pick_device
from xstilts.training.rate import RecentRate

if TYPE_CHECKING:
    from xstilts.training.loop import ProgressFn

Row = TypeVar("Row")
Output = TypeVar("Output")

# Padded tokens per inference batch. On a CPU, 2,048 tokens already keep the matrix products
# efficient, and smaller batches of long rows pad less (on XNLI, 100 rows a language: 80% of the
# computed tokens are real, against 65% with 64-row batches); a GPU wants larger batches.
CPU_MAX_TOKENS, GPU_MAX_TOKENS = 2048, 65536


def max_tokens(device: torch.device) -> int:
    return GPU_MAX_TOKENS if device.type == "cuda" else CPU_MAX_TOKENS


@torch.inference_mode()
def infer(
    model: nn.Module,
    lengths: np.ndarray,
    batch_size: int,
    collate: Callable[[np.ndarray], Batch],
    run: Callable[[Batch], Output],
    rows: Callable[[Output, Batch], Iterable[Row]],
    progress: ProgressFn | None = None,
) -> list[Row]:
    """Row ``i``'s output, for each of the ``len(lengths)`` rows, in the original row order.

    Rows are batched longest first (at most ``batch_size`` rows and :func:`max_tokens` padded
    tokens a batch); ``collate(index)`` pads the rows ``index`` to a batch, which goes to the
    device, ``run(batch)`` computes on it under bf16 autocast on CUDA, and ``rows(output, batch)``
    reads one output per row back to the host. Reading waits for the device, so a batch's
    outputs are read only once the next batch is queued, and batches are collated and copied a
    few ahead in a thread: on a GPU, the device never waits for the host between batches. The
    model runs on CUDA when it is available, in eval mode (no dropout); its previous training mode
    is restored afterwards. ``progress(done, total, rows/s, nan)`` follows each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = pick_device()
    was_training = model.training
    model.to(device).eval()
    total = len(lengths)
    out: list[Any] = [None] * total
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    batches = sorted_batches(lengths, batch_size, max_tokens(device))
    # Cost grows with padded tokens, and batches run longest first, so the rate that predicts the
    # time left is in tokens: the progress callback gets the rows per second the remaining
    # batches should run at (rows left over seconds left), not the rate of the long ones so far.
    cost = [len(index) * int(lengths[index].max()) for index in batches]
    total_tokens = tokens_left = sum(cost)
    done, recent = 0, RecentRate()

    def read(index: np.ndarray, tokens: int, output: Output, batch: Batch) -> None:
        nonlocal done, tokens_left
        for i, row in zip(index.tolist(), rows(output, batch), strict=True):
            out[i] = row
        done += len(index)
        tokens_left -= tokens
        token_rate = recent.update(total_tokens - tokens_left)
        if progress is not None:  # rows done / total; doubles as the stage's heartbeat
            rows_left = total - done
            left = (rows_left, tokens_left) if rows_left else (total, total_tokens)
            rate = left[0] * token_rate / left[1]  # at the end: the mean rows/s
            progress(done, total, rate, float("nan"))

    ready = Prefetched(
        (
            (index, tokens, to_device(collate(index), device))
            for index, tokens in zip(batches, cost, strict=True)
        ),
        depth=2,
    )
    pending: tuple[np.ndarray, int, Output, Batch] | None = None
    try:
        with ready:
            for index, tokens, batch in ready:
                with autocast:
                    output = run(batch)  # queued on the device
                if pending is not None:
                    read(*pending)  # waits for the previous batch only
                pending = (index, tokens, output, batch)
            if pending is not None:
                read(*pending)
    finally:
        model.train(was_training)
    return out
