"""Prediction: a trained head's per-row outputs over a split, in length-sorted, dynamically padded
batches, returned in the original row order."""

from __future__ import annotations

import time
from typing import Any

import torch

from xstilts.formats import get_trained_format
from xstilts.formats.base import Features
from xstilts.modeling.classifier import MultiHeadClassifier
from xstilts.training.batching import sorted_batches
from xstilts.training.loop import ProgressFn, pick_device, to_device


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
    done, t0 = 0, time.perf_counter()
    for index in sorted_batches(features.lengths, batch_size):
        batch = to_device(fmt.collate(features, index, pad_id), device)
        with autocast:
            logits = model(batch, task)
        for i, row in zip(index.tolist(), fmt.outputs(logits, batch), strict=True):
            out[i] = row
        done += len(index)
        if progress is not None:  # rows done / total; doubles as the stage's heartbeat
            progress(done, len(features), done / max(time.perf_counter() - t0, 1e-9), float("nan"))
    return out
