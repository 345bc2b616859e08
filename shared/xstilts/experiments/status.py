"""Where an experiment stands: its stages in order, each with progress and an estimated time left.

What ``GET /experiments/{id}`` returns and ``xstilts submit --wait`` prints; callable without the API.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from xstilts.db.models import Experiment, ExperimentStage, Stage, StageKind, Status, as_utc
from xstilts.errors import NotFoundError
from xstilts.experiments.results import StageView

TRAINING_KINDS = (StageKind.INTERMEDIATE.value, StageKind.TARGET.value)


class Progress(BaseModel):
    """Training stages count optimiser steps; prediction stages count examples."""

    step: int
    total: int
    examples_per_s: float | None
    eta_s: float | None


class StageState(StageView):
    error: str | None
    progress: Progress


class ExperimentBrief(BaseModel):
    id: str
    name: str
    status: str
    error: str | None
    created_at: datetime  # UTC, with its offset (SQLite hands it back naive)

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)


class ExperimentState(ExperimentBrief):
    stages: list[StageState]


def eta_seconds(stage: Stage) -> float | None:
    """Seconds left for a stage at its current rate: 0 once done, None when it is not running or
    has no rate yet. Training progress is in optimiser steps, the rate in examples per second."""
    if stage.status == Status.SUCCEEDED.value:
        return 0.0
    if stage.status != Status.RUNNING.value or not stage.examples_per_s or not stage.progress_total:
        return None
    remaining = max(stage.progress_total - stage.progress_step, 0)
    if stage.kind in TRAINING_KINDS:
        cfg = stage.params.get("training", {})
        per_step = cfg.get("batch_size", 1) * cfg.get("gradient_accumulation_steps", 1)
        return remaining * per_step / stage.examples_per_s
    return remaining / stage.examples_per_s  # prediction counts examples


def one_line(error: str | None) -> str | None:
    """What a stage's error shows outside the database: its first line (type and message); the
    traceback under it stays in the database and the worker's log."""
    return error.splitlines()[0] if error else error


def stage_state(link: ExperimentStage, stage: Stage) -> StageState:
    return StageState(
        role=link.role,
        seed=link.seed,
        kind=stage.kind,
        key=stage.key,
        status=stage.status,
        reused=link.reused,
        attempts=stage.attempts,
        error=one_line(stage.error),
        progress=Progress(
            step=stage.progress_step,
            total=stage.progress_total,
            examples_per_s=stage.examples_per_s,
            eta_s=eta_seconds(stage),
        ),
    )


def brief(exp: Experiment) -> ExperimentBrief:
    return ExperimentBrief(
        id=exp.id, name=exp.name, status=exp.status, error=exp.error, created_at=exp.created_at
    )


def experiment_state(session: Session, exp_id: str) -> ExperimentState:
    """The experiment and its stages in planned order; :class:`NotFoundError` when absent."""
    exp = session.get(Experiment, exp_id)
    if exp is None:
        raise NotFoundError(f"experiment {exp_id} not found")
    rows = session.execute(
        select(ExperimentStage, Stage)
        .join(Stage, Stage.id == ExperimentStage.stage_id)
        .where(ExperimentStage.experiment_id == exp.id)
        .order_by(ExperimentStage.position)
    ).all()
    return ExperimentState(
        **brief(exp).model_dump(), stages=[stage_state(link, st) for link, st in rows]
    )
