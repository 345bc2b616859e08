"""Prediction: a trained head's per-row outputs over a split, through the inference loop
(:mod:`xstilts.training.inference`: length-sorted, dynamically padded batches), returned in the
original row order."""

from __future__ import annotations

from typing import Any

from xstilts.formats import get_trained_format
from xstilts.formats.base import Features
from xstilts.modeling.classifier import MultiHeadClassifier
from xstilts.training.inference import CPU_MAX_TOKENS, GPU_MAX_TOKENS, infer
from xstilts.training.loop import ProgressFn

# The token caps are the inference loop's; named here too, where memory estimates look for them.
__all__ = ["CPU_MAX_TOKENS", "GPU_MAX_TOKENS", "predict"]


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
    fmt = get_trained_format(features.format)
    return infer(
        model,
        features.lengths,
        batch_size,
        lambda index: fmt.collate(features, index, pad_id),
        lambda batch: model(batch, task),
        fmt.outputs,
        progress,
    )
