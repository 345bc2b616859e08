"""Retrieval metrics: BUCC F1 over mined (source id, target id) pairs, Tatoeba top-1 accuracy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def bucc_f1(
    predicted: Iterable[tuple[str, str]], gold: Iterable[tuple[str, str]]
) -> dict[str, float]:
    """Precision, recall and F1 (in [0, 1]) of predicted sentence pairs against the gold pairs."""
    pred, ref = set(predicted), set(gold)
    if not ref:
        raise ValueError("no gold pairs")
    correct = len(pred & ref)
    precision = correct / len(pred) if pred else 0.0
    recall = correct / len(ref)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def tatoeba_accuracy(
    predicted_index: Sequence[int], gold_index: Sequence[int] | None = None
) -> float:
    """Share of sentences whose nearest English neighbour is their translation.

    Tatoeba files are line-aligned, so by default sentence i's translation is English line i.
    """
    gold = list(range(len(predicted_index))) if gold_index is None else list(gold_index)
    if len(gold) != len(predicted_index) or not gold:
        raise ValueError("predictions and gold indices must be non-empty and of equal length")
    return sum(int(p == g) for p, g in zip(predicted_index, gold, strict=True)) / len(gold)
