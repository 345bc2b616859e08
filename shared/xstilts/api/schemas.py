"""What the API's clients send and get back, split by use.

Responses reuse the library's own models, so a field is defined once: experiment status
(:mod:`xstilts.experiments.status`), pages (:mod:`xstilts.experiments.queries`) and results
(:mod:`xstilts.experiments.results`). The request body of ``POST /experiments`` is
:class:`~xstilts.spec.ExperimentSpec`, documented by hand (the body is read raw, see ``app.py``).
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel

from xstilts.db.models import Status
from xstilts.experiments.queries import ExperimentPage
from xstilts.experiments.results import (
    CrossLanguageStats,
    ExperimentRef,
    ExperimentResults,
    MetricRow,
    SeedSpread,
    StageRow,
    Summary,
)
from xstilts.experiments.status import ExperimentBrief, ExperimentState, Progress, StageState

__all__ = [
    "CrossLanguageStats",
    "ErrorDetail",
    "ExperimentBrief",
    "ExperimentPage",
    "ExperimentRef",
    "ExperimentResults",
    "ExperimentState",
    "ExperimentStatus",
    "FieldError",
    "Health",
    "MetricRow",
    "Progress",
    "Readiness",
    "SeedSpread",
    "StageRow",
    "StageState",
    "Summary",
    "TaskOut",
    "ValidationErrors",
]


# --------------------------------------------------------------------------- requests


class ExperimentStatus(str, Enum):
    """The statuses an experiment can be listed by (``GET /experiments?status=``)."""

    QUEUED = Status.QUEUED.value
    RUNNING = Status.RUNNING.value
    SUCCEEDED = Status.SUCCEEDED.value
    FAILED = Status.FAILED.value
    CANCELLED = Status.CANCELLED.value


# --------------------------------------------------------------------------- responses


class TaskOut(BaseModel):
    name: str
    format: str
    metric: str
    primary_metric: str
    labels: list[str]
    languages: list[str]
    splits: list[str]
    target: bool
    train_task: str | None
    combines: list[str]
    version: int
    description: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    """Each dependency: ``ok``, ``not used`` or ``unavailable`` (503 unless all are usable)."""

    database: str
    broker: str


class FieldError(BaseModel):
    type: str  # pydantic's error type, or "value_error" for xstilts' own checks
    loc: list[str | int]  # the field path, as pydantic's loc; ["(spec)"] for the whole body
    msg: str


class ValidationErrors(BaseModel):
    """422: every problem with the request, each naming its field."""

    detail: list[FieldError]


class ErrorDetail(BaseModel):
    """401, 404, 409, 413, 503: what was wrong, in words."""

    detail: str
