"""Task metrics: one registry entry per metric (:mod:`xstilts.metrics.registry`).

A task's ``metric`` names an entry; the entry scores one language's prediction rows (with bootstrap
intervals), names the primary metric and computes XTREME's task score. The evaluate stage and
``xstilts score`` both score through it. This package imports neither torch nor the formats.
"""

from xstilts.metrics.base import ItemScores, PredictionRow, Score, Scorer
from xstilts.metrics.registry import (
    METRICS,
    MetricSpec,
    get_metric,
    primary_metric,
    task_score,
)

__all__ = [
    "METRICS",
    "ItemScores",
    "MetricSpec",
    "PredictionRow",
    "Score",
    "Scorer",
    "get_metric",
    "primary_metric",
    "task_score",
]
