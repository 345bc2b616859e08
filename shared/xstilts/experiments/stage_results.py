"""What each stage kind hands back: stored with its stage (``stages.result``), and for training in
its output folder (``train_result.json``), then read back by the experiment's results; and the
files each kind leaves in its output folder (a predict stage's ``predictions.json``).

Typed, so that a renamed or missing field fails where a runner writes it rather than silently where
the results read it. A record written by another version of xstilts is read in the ``STORED``
context, which drops the fields this version does not know instead of refusing the record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from xstilts.db.models import StageKind
from xstilts.metrics.base import PredictionRow
from xstilts.spec import STORED

# What each stage kind leaves in its output folder (besides a model's encoder/ and heads.pt).
TRAIN_RESULT_FILE = "train_result.json"
PREDICTIONS_FILE = "predictions.json"
METRICS_FILE = "metrics.json"


class PredictionsFile(TypedDict):
    """A predict stage's ``predictions.json``: one language's rows, in its format's row type."""

    task: str
    language: str
    split: str
    rows: list[PredictionRow]


def read_predictions(folder: Path) -> PredictionsFile:
    """The predictions a predict stage left in ``folder`` (OSError, ValueError: unreadable)."""
    data: PredictionsFile = json.loads((folder / PREDICTIONS_FILE).read_text(encoding="utf-8"))
    return data


class _StageResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps_run: int = 0  # optimiser steps this attempt took

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context == STORED and isinstance(data, dict):
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data


class CheckpointSelection(BaseModel):
    """Which checkpoint a target stage kept (``select: best_english_dev``): the step, its score on
    the training task's English dev split, and every evaluation as ``(step, score)``."""

    metric: str
    selected_step: int
    selected_score: float
    total_steps: int
    history: list[tuple[int, float]]


class TrainStageResult(_StageResult):
    """A training stage's result: the loop's :class:`~xstilts.training.loop.TrainResult` field for
    field, plus how the stage sampled its streams and where its MLM head came from."""

    total_steps: int
    resumed_from_step: int
    examples_per_s: float
    final_loss: float
    num_examples: int
    # Mean training loss and number of micro-batches per stream over this attempt's steps, and
    # per stream its mean loss over the first and the last tenth of its micro-batches.
    task_losses: dict[str, float] = {}
    task_batches: dict[str, int] = {}
    task_loss_start_end: dict[str, tuple[float, float]] = {}
    # Mean loss over the first and the last tenth of the steps: one that did not fall says the
    # model learnt nothing (too few steps, learning rate).
    loss_start: float | None = None
    loss_end: float | None = None
    selection: CheckpointSelection | None = None  # None: the stage keeps its last model
    model_tflops: float | None = None
    device: str = "cpu"
    mfu: float | None = None
    sampling_probabilities: dict[str, float] | None = None  # multi-stream stages only
    mlm_head: Literal["checkpoint", "new"] | None = None  # MLM stages only


class PredictStageResult(_StageResult):
    n: int  # prediction rows written


class CrossLanguageStats(BaseModel):
    """:func:`~xstilts.experiments.statistics.cross_language_summary` of one metric over languages
    (the spread statistics are over the non-English languages)."""

    num_languages: int
    mean: float
    english: float | None
    non_english_mean: float | None
    transfer_gap: float | None
    non_english_variance_population: float | None
    non_english_variance_sample: float | None
    non_english_std: float | None
    non_english_range: float | None
    non_english_cv: float | None
    worst_language: str | None
    worst_value: float | None


class EvaluateStageResult(_StageResult):
    summary: CrossLanguageStats  # of the task's primary metric over this seed's languages
    one_class: list[str] = []  # languages whose every prediction is the same


StageResult = TrainStageResult | PredictStageResult | EvaluateStageResult

_BY_KIND: dict[str, type[StageResult]] = {
    StageKind.INTERMEDIATE.value: TrainStageResult,
    StageKind.TARGET.value: TrainStageResult,
    StageKind.PREDICT.value: PredictStageResult,
    StageKind.EVALUATE.value: EvaluateStageResult,
}


def stored_result(kind: str, data: object) -> StageResult | None:
    """A stage's stored result as its kind's type; None before the stage finished."""
    if not data:
        return None
    return _BY_KIND[kind].model_validate(data, context=STORED)
