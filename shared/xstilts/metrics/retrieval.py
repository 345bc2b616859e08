"""BUCC 2018: precision, recall and F1 of mined (source id, target id) sentence pairs.

Tatoeba is scored by :mod:`xstilts.metrics.accuracy` (the nearest English sentence is right or not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from xstilts.metrics.base import ItemScores, MinedPairRow, PredictionRow, Score, rows_of

if TYPE_CHECKING:
    from xstilts.tasks.base import Task


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


def score_bucc(
    task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
) -> list[Score]:
    """F1, precision, recall and the tuned threshold, from rows with ``id`` = ``"src<TAB>tgt"``,
    ``prediction`` (mined or not) and ``label`` (gold or not). No interval: pairs are not
    independent items (one sentence's pair competes with another's in mining)."""
    pairs = rows_of(rows, MinedPairRow)
    predicted = [_pair(r["id"]) for r in pairs if r["prediction"]]
    gold = [_pair(r["id"]) for r in pairs if r["label"]]
    m = bucc_f1(predicted, gold)
    n = len(gold)
    scores = [
        Score("f1", m["f1"], n),
        Score("precision", m["precision"], n),
        Score("recall", m["recall"], n),
    ]
    threshold = float(pairs[0].get("threshold") or "inf") if pairs else float("inf")
    if math.isfinite(threshold):  # infinite: no candidate was a gold pair, nothing is mined
        scores.append(Score("threshold", threshold, n))
    return scores


def items_bucc(task: Task, lang: str, rows: Sequence[PredictionRow]) -> ItemScores:
    """Each source sentence is an item: its correct, mined and gold pairs give F1 as 2 correct
    over (mined + gold), as :func:`bucc_f1` does over all pairs. The threshold stays as tuned, so
    an interval from these covers the evaluation sample, not the threshold's own noise."""
    index: dict[str, int] = {}
    correct: list[int] = []
    counted: list[int] = []  # mined + gold
    for r in rows:
        source = _pair(r["id"])[0]
        i = index.setdefault(source, len(index))
        if i == len(correct):
            correct.append(0)
            counted.append(0)
        mined, gold = bool(r["prediction"]), bool(r["label"])
        correct[i] += mined and gold
        counted[i] += mined + gold
    return ItemScores(
        tuple(index),
        {"f1": 2 * np.array(correct, dtype=np.float64)},
        {"f1": np.array(counted, dtype=np.float64)},
    )


def _pair(row_id: str) -> tuple[str, str]:
    source, target = row_id.split("\t")
    return source, target
