"""Prediction: a trained head's per-row outputs over a split, in length-sorted, dynamically padded
batches, returned in the original row order."""

from __future__ import annotations

from typing import Any

import torch

from xstilts.formats import get_trained_format
from xstilts.formats.base import Features
from xstilts.modeling.classifier import MultiHeadClassifier
from xstilts.training.batching import sorted_batches, to_device
from xstilts.training.loop import ProgressFn, pick_device
from xstilts.training.rate import RecentRate

# Padded tokens per prediction batch. On a CPU, 2,048 tokens already keep the matrix products
# efficient, and smaller batches of long rows pad less (on XNLI, 100 rows a language: 80% of the
# computed tokens are real, against 65% with 64-row batches); a GPU wants larger batches.
CPU_MAX_TOKENS, GPU_MAX_TOKENS = 2048, 65536


def predict_max_tokens(device: torch.device) -> int:
    return GPU_MAX_TOKENS if device.type == "cuda" else CPU_MAX_TOKENS


@torch.inference_mode()
def predict(
    model: MultiHeadClassifier,
    task: str,
    features: Features,
    batch_size: int,
    pad_id: int,
    progress: ProgressFn | None = None,
) -> list[Any]:
    """The format's per-row outputs (label ids, tags, span logits) in the original row order;
    batches sorted by length and padded per batch."""
    device = pick_device()
    model.to(device).eval()
    fmt = get_trained_format(features.format)
    out: list[Any] = [None] * len(features)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    batches = sorted_batches(features.lengths, batch_size, predict_max_tokens(device))
    # Cost grows with padded tokens, and batches run longest first, so the rate that predicts the
    # time left is in tokens: the progress callback gets the rows per second the remaining
    # batches should run at (rows left over seconds left), not the rate of the long ones so far.
    cost = [len(index) * int(features.lengths[index].max()) for index in batches]
    total_tokens = tokens_left = sum(cost)
    done, recent = 0, RecentRate()
    for index, tokens in zip(batches, cost, strict=True):
        batch = to_device(fmt.collate(features, index, pad_id), device)
        with autocast:
            logits = model(batch, task)
        for i, row in zip(index.tolist(), fmt.outputs(logits, batch), strict=True):
            out[i] = row
        done += len(index)
        tokens_left -= tokens
        token_rate = recent.update(total_tokens - tokens_left)
        if progress is not None:  # rows done / total; doubles as the stage's heartbeat
            rows_left = len(features) - done
            left = (rows_left, tokens_left) if rows_left else (len(features), total_tokens)
            rate = left[0] * token_rate / left[1]  # at the end: the stage's mean rows/s
            progress(done, len(features), rate, float("nan"))
    return out
