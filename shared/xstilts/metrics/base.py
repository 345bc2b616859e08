"""The records every metric works on: prediction rows in, :class:`Score` out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict, TypeVar, cast

import numpy as np

if TYPE_CHECKING:
    from xstilts.tasks.base import Task

# What a predict stage stores per example, and what ``xstilts score`` rebuilds from XTREME's
# submission files: one row type per format family, each with "id", "prediction" and "label".


class LabelRow(TypedDict):
    """Classification (pairs, multiple choice): the predicted and the gold label's name."""

    id: str
    prediction: str
    label: str | None  # None: unlabelled


class TagRow(TypedDict):
    """Tagging: a tag per word."""

    id: str
    words: NotRequired[list[str]]  # the predict stage keeps them; submission files have none
    prediction: list[str]
    label: list[str] | None  # None: unlabelled, or a word without a tag


class AnswerRow(TypedDict):
    """Extractive QA: the answer text (None: no answer) and the gold answers' texts."""

    id: str
    question: NotRequired[str]
    prediction: str | None
    label: list[str]  # empty: unanswerable (SQuAD v2) or unlabelled
    answer_starts: NotRequired[list[int]]


class NearestRow(TypedDict):
    """Sentence retrieval (Tatoeba): the index of the nearest English sentence, and the gold one."""

    id: str
    prediction: int
    label: int | None


class MinedPairRow(TypedDict):
    """Bitext mining (BUCC): a candidate pair ``source<TAB>target``, mined or not, gold or not."""

    id: str
    prediction: bool
    label: bool
    score: NotRequired[float | None]  # the pair's mining score; None: not mined
    threshold: NotRequired[float | None]  # the tuned threshold (the same on every row)


PredictionRow = LabelRow | TagRow | AnswerRow | NearestRow | MinedPairRow
RowT = TypeVar("RowT", LabelRow, TagRow, AnswerRow, NearestRow, MinedPairRow)


def rows_of(rows: Sequence[PredictionRow], _family: Callable[..., RowT]) -> Sequence[RowT]:
    """``rows`` as the row type of one format family. The registry pairs a metric with its task's
    format, so a metric is only handed rows of its family; the type says which fields it reads.
    (A cast: each format's tests score its real rows.)"""
    return cast("Sequence[RowT]", rows)


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
