"""The records every metric works on: prediction rows in, :class:`Score` out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
