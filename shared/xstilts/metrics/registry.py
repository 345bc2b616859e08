"""The metric registry: a task's ``metric`` names one entry here.

An entry says how one language's prediction rows become scores (primary first), which of them
summaries and comparisons use (the *primary* metric), which XTREME's evaluator reports
(``xstilts score``), and how the XTREME *task score* comes from the per-metric averages over
languages. Adding a metric is adding an entry: nothing outside this package compares metric names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xstilts.errors import UnknownNameError
from xstilts.metrics import mlqa, squad
from xstilts.metrics.accuracy import items_accuracy, score_accuracy
from xstilts.metrics.base import ItemScorer, ItemScores, PredictionRow, Score, Scorer
from xstilts.metrics.retrieval import items_bucc, score_bucc
from xstilts.metrics.seqeval import items_seqeval, score_seqeval, score_seqeval_and_token_accuracy

if TYPE_CHECKING:
    from xstilts.tasks.base import Task


@dataclass(frozen=True)
class MetricSpec:
    """One registry entry."""

    name: str
    # The per-language metric summaries, cross-language statistics and comparisons use.
    primary: str
    # One language's rows -> scores, ``primary`` first, with bootstrap intervals where defined.
    scorer: Scorer
    # The metrics XTREME's evaluator prints per language, in its order (``xstilts score``).
    reported: tuple[str, ...]
    # XTREME's task score is the mean of these metrics' averages over languages.
    task_score_of: tuple[str, ...]
    description: str
    # One language's rows -> items carrying ``primary`` and ``task_score_of`` (comparisons).
    items: ItemScorer

    def score(
        self, task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
    ) -> list[Score]:
        """Scores of one language's rows; the first is :attr:`primary`."""
        return self.scorer(task, lang, rows, bootstrap_samples)

    def item_scores(self, task: Task, lang: str, rows: Sequence[PredictionRow]) -> ItemScores:
        """One language's rows as items, each metric ``sum(num) / sum(den)`` over them."""
        return self.items(task, lang, rows)

    def task_score(self, averages: Mapping[str, float]) -> float:
        """XTREME's task score from each metric's average over languages (QA: the mean of F1
        and exact match; others: the primary metric)."""
        missing = [m for m in self.task_score_of if m not in averages]
        if missing:
            raise ValueError(
                f"metric {self.name}: the task score needs averages of {', '.join(missing)}; "
                f"got {', '.join(averages) or 'none'}"
            )
        return sum(averages[m] for m in self.task_score_of) / len(self.task_score_of)


_QA = ("f1", "exact_match")
_TAGGING = ("f1", "precision", "recall")  # XTREME's tagging evaluator, in its order

METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec(
            "accuracy",
            "accuracy",
            score_accuracy,
            ("accuracy",),
            ("accuracy",),
            "share of examples whose prediction is the label (classification, multiple choice, "
            "Tatoeba)",
            items_accuracy,
        ),
        MetricSpec(
            "seqeval_f1",
            "f1",
            score_seqeval,
            _TAGGING,
            ("f1",),
            "micro entity F1, precision and recall as seqeval 0.0.12 computes them, XTREME's "
            "evaluator (PAN-X)",
            items_seqeval,
        ),
        MetricSpec(
            "seqeval_f1_token_accuracy",
            "f1",
            score_seqeval_and_token_accuracy,
            _TAGGING,
            ("f1",),
            "seqeval 0.0.12's F1, precision and recall (XTREME's UDPOS score), and token_accuracy: "
            "the share of tokens tagged right, as POS and supertagging papers report (UDPOS, CCG)",
            items_seqeval,
        ),
        MetricSpec(
            "squad_f1",
            "f1",
            squad.score_squad,
            ("exact_match", "f1"),
            _QA,
            "SQuAD F1 and exact match (XQuAD, TyDiQA-GoldP, SQuAD v1.1/v2.0)",
            squad.items_squad,
        ),
        MetricSpec(
            "mlqa_f1",
            "f1",
            mlqa.score_mlqa,
            ("exact_match", "f1"),
            _QA,
            "SQuAD F1 and exact match with MLQA's per-language answer normalisation",
            mlqa.items_mlqa,
        ),
        MetricSpec(
            "bucc_f1",
            "f1",
            score_bucc,
            ("f1",),
            ("f1",),
            "F1 of mined sentence pairs (BUCC 2018), with precision, recall and the threshold",
            items_bucc,
        ),
    )
}


def get_metric(name: str, field: str = "metric") -> MetricSpec:
    """The registry entry ``name``; an unknown name is an error listing the valid ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownNameError(field, name, METRICS) from None


def primary_metric(metric_name: str) -> str:
    """The metric summaries use for a task whose ``metric`` is ``metric_name``."""
    return get_metric(metric_name).primary


def task_score(metric_name: str, averages: Mapping[str, float]) -> float:
    """XTREME's task score for a task whose ``metric`` is ``metric_name``, from each metric's
    average over languages (``{"f1": ..., "exact_match": ...}``)."""
    return get_metric(metric_name).task_score(averages)
