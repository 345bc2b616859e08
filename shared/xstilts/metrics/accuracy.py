"""Accuracy: share of rows whose prediction equals the label (XNLI, PAWS-X, multiple choice,
Tatoeba's nearest English sentence), with a bootstrap interval over examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from xstilts.metrics.base import ItemScores, PredictionRow, Score, unit_items
from xstilts.metrics.bootstrap import bootstrap_mean_ci

if TYPE_CHECKING:
    from xstilts.tasks.base import Task


def score_accuracy(
    task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
) -> list[Score]:
    """Accuracy of ``prediction`` against ``label`` over the labelled rows."""
    labelled, correct = _correct(rows)
    low, high = bootstrap_mean_ci(correct, bootstrap_samples)
    return [Score("accuracy", float(correct.mean()), len(labelled), low, high)]


def items_accuracy(task: Task, lang: str, rows: Sequence[PredictionRow]) -> ItemScores:
    """Each labelled example is an item: 1 if its prediction is right."""
    labelled, correct = _correct(rows)
    return unit_items([str(r["id"]) for r in labelled], {"accuracy": correct})


def _correct(rows: Sequence[PredictionRow]) -> tuple[list[PredictionRow], np.ndarray]:
    labelled = [r for r in rows if r["label"] is not None]
    if not labelled:
        raise ValueError("accuracy needs labelled rows; this split has no labels")
    return labelled, np.array([r["prediction"] == r["label"] for r in labelled], dtype=np.float64)
