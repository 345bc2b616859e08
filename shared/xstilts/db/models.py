"""Database models: experiments, stages (shared between experiments by content key), metrics.

SQLite in embedded mode, Postgres in service mode; the same models serve both.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from xstilts.jsontypes import JSONObject


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """A stored time with its UTC offset (SQLite hands times back naive)."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {JSONObject: JSON, datetime: DateTime(timezone=True)}


class Status(str, Enum):
    PENDING = "pending"  # planned, waiting for its dependencies
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StageKind(str, Enum):
    INTERMEDIATE = "intermediate_train"
    TARGET = "target_train"
    PREDICT = "predict"
    EVALUATE = "evaluate"


class Study(Base):
    """A grid of experiments (intermediate task sets x targets) submitted as one: its cells are
    experiments whose ``study_id`` is this study's, sharing stages by key like any experiments."""

    __tablename__ = "studies"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_studies_owner_idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[JSONObject]
    owner: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    # As an experiment's: a retried POST /studies with the same key gets this study back.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[JSONObject]
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING.value, index=True)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # The API key (its name) that created the experiment; None in embedded/CLI use.
    owner: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The study this experiment is a cell of (None: submitted on its own).
    study_id: Mapped[str | None] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), default=None, index=True
    )

    links: Mapped[list[ExperimentStage]] = relationship(
        back_populates="experiment", order_by="ExperimentStage.position"
    )


class Stage(Base):
    __tablename__ = "stages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    identity: Mapped[JSONObject]  # what the key hashes
    params: Mapped[JSONObject]  # what running it needs (paths, dependency keys, ...)
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING.value, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    steps_run: Mapped[int] = mapped_column(Integer, default=0)  # optimiser steps, all attempts
    # Ran out of GPU memory beside other stages: from then on it runs with its GPU to itself
    # (xstilts.runtime.gpu_budget), and running out of memory again fails it.
    run_alone: Mapped[bool] = mapped_column(default=False, server_default=false())
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    examples_per_s: Mapped[float | None] = mapped_column(Float, default=None)
    output_uri: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[JSONObject | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    # A running stage holds a lease that its heartbeat extends; an expired lease means its worker
    # died, and the stage may be claimed again (resuming from its last checkpoint).
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class ExperimentStage(Base):
    __tablename__ = "experiment_stages"
    # One link per seed: a seed-independent stage (retrieval on the bare model) serves every seed.
    __table_args__ = (
        UniqueConstraint(
            "experiment_id",
            "stage_id",
            "seed",
            name="uq_experiment_stages_experiment_id_stage_id_seed",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id"))
    position: Mapped[int] = mapped_column(Integer)  # topological order within the experiment
    role: Mapped[str] = mapped_column(String(64))  # e.g. "target", "predict:de"
    seed: Mapped[int] = mapped_column(Integer)
    # Whether the stage had already succeeded (for another experiment or run) when it was linked.
    reused: Mapped[bool] = mapped_column(default=False)

    experiment: Mapped[Experiment] = relationship(back_populates="links")
    stage: Mapped[Stage] = relationship()


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("stage_id", "task", "language", "metric", "seed"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    ci_low: Mapped[float | None] = mapped_column(Float, default=None)
    ci_high: Mapped[float | None] = mapped_column(Float, default=None)
