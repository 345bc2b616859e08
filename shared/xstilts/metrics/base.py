"""The records every metric works on: prediction rows in, :class:`Score` out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from xstilts.tasks.base import Task

# What a predict stage stores per example, and what ``xstilts score`` rebuilds from XTREME's
# submission files: {"id", "prediction", "label"} (plus format-specific extras such as QA's
# question). ``label`` is None for an unlabelled example.
PredictionRow = dict[str, Any]


@dataclass(frozen=True)
class Score:
    """One metric of one language: ``value`` in [0, 1], with n and an optional bootstrap CI."""

    metric: str
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None


# A metric's scorer: the task (for its options and error messages), the language (MLQA normalises
# answers per language), the rows of that language and the bootstrap resamplings (0: no interval).
Scorer = Callable[["Task", str, Sequence[PredictionRow], int], list[Score]]


@dataclass(frozen=True)
class ItemScores:
    """One language's metrics taken apart into items (an example, a question, a sentence): each
    metric is ``sum(num) / sum(den)`` over the items, so resampling items resamples the metric
    exactly. Accuracy and QA scores have ``den`` 1 per item; entity F1 is ``2 tp / (n_pred +
    n_gold)`` per sentence. Comparisons resample these."""

    ids: tuple[str, ...]
    num: dict[str, np.ndarray]
    den: dict[str, np.ndarray]

    def value(self, metric: str) -> float:
        den = float(self.den[metric].sum())
        return float(self.num[metric].sum()) / den if den else 0.0


def unit_items(ids: Sequence[str], values: dict[str, np.ndarray]) -> ItemScores:
    """Items whose metrics are plain means (each item weighs one)."""
    ones = np.ones(len(ids))
    return ItemScores(tuple(ids), values, {m: ones for m in values})


# A metric's items: one language's rows -> the items of its comparable metrics (the primary one and
# those XTREME's task score averages).
ItemScorer = Callable[["Task", str, Sequence[PredictionRow]], ItemScores]
