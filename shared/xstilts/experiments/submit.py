"""Submitting: plan a request's experiments and store them (stages shared by key) in one
transaction, at most once per idempotency key. One core for every entry point: an experiment
(``POST /experiments``, ``xstilts run``) and a study's cells (``POST /studies``, ``xstilts study``)
both go through :func:`submit`.

What runs them is the runtime's business (:mod:`xstilts.runtime.scheduler`): the caller starts
the stored experiments after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import Experiment, ExperimentStage, Stage, Status, Study, utcnow
from xstilts.errors import XstiltsError
from xstilts.experiments.idempotency import Record, earlier_request, request_hash
from xstilts.experiments.plan import PlannedStage, plan_experiment, resolve_data_source
from xstilts.experiments.quotas import check_live_stored, check_quota, take_turn
from xstilts.modeling.sources import resolve_model
from xstilts.spec import ExperimentSpec

log = logging.getLogger(__name__)

BATCH = 200  # rows per INSERT and keys per IN (...): far below every database's parameter limit
RETRIED = (Status.FAILED.value, Status.CANCELLED.value)


def plan(spec: ExperimentSpec, settings: Settings) -> list[PlannedStage]:
    if len(spec.seeds) > settings.max_seeds:
        raise XstiltsError(
            f"{len(spec.seeds)} seeds; this server runs at most {settings.max_seeds} per experiment "
            "(XSTILTS_MAX_SEEDS)",
            field="seeds",
        )
    model = resolve_model(spec.model, settings.model_roots, settings.cache_dir)
    data = resolve_data_source(spec, settings.data_dir, settings.allowed_data_roots)
    planned = plan_experiment(spec, model, data)
    if len(planned) > settings.max_stages:
        raise XstiltsError(
            f"the experiment plans {len(planned)} stages; this server plans at most "
            f"{settings.max_stages} per experiment (XSTILTS_MAX_STAGES): use fewer seeds",
            field="seeds",
        )
    return planned


def _insert_stages_if_new(session: Session, planned: list[PlannedStage]) -> None:
    """One INSERT ... ON CONFLICT (key) DO NOTHING: concurrent planners share one row per key."""
    rows = {
        p.key: {
            "key": p.key,
            "kind": p.kind.value,
            "identity": p.identity(),
            "params": p.params(),
            "status": Status.PENDING.value,
            "created_at": utcnow(),
        }
        for p in planned
    }
    dialect = session.get_bind().dialect.name
    dialect_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # executemany: compiled once, sent in batches that respect the database's parameter limit.
    statement = dialect_insert(Stage).on_conflict_do_nothing(index_elements=["key"])
    session.connection().execute(statement, list(rows.values()))


@dataclass(frozen=True)
class Request:
    """One submission as the core sees it: the experiments it stores, how to plan them, and the
    row that answers for it and keeps its idempotency key (the experiment itself, or the study
    whose cells they are)."""

    record: Record
    name: str
    body: BaseModel  # the validated request: its hash tells a retry from a new request
    specs: list[ExperimentSpec]
    # Each spec's stages, in order; an error names the field (a study's: the cell and the field).
    plan: Callable[[Settings], list[list[PlannedStage]]]


@dataclass(frozen=True)
class Submission:
    id: str  # the experiment's, or the study's
    # The experiments this call stored, to start after the commit (a study's cells rows first);
    # none for a replay, whose first request started them.
    experiment_ids: list[str]
    created: bool  # False: an earlier request with the same key stored it (a replay)


def experiment_request(spec: ExperimentSpec) -> Request:
    return Request(
        record=Experiment,
        name=spec.name,
        body=spec,
        specs=[spec],
        plan=lambda settings: [plan(spec, settings)],
    )


def submit(
    sessions: sessionmaker[Session],
    settings: Settings,
    request: Request,
    owner: str | None,
    idempotency_key: str | None = None,
) -> Submission:
    """Check the quotas, plan and store the request in one transaction, or return what an earlier
    request with this ``idempotency_key`` stored (checked first: a replay plans nothing).

    Raises :class:`~xstilts.errors.IdempotencyConflictError` for a key reused with another body,
    the quotas' errors, and the planner's :class:`~xstilts.errors.XstiltsError` (with its
    ``field``). Starting the stored experiments is the caller's job, after this returns.
    """
    digest = request_hash(request.body)
    if idempotency_key is not None:
        with sessions() as s:
            earlier = earlier_request(s, request.record, owner, idempotency_key, digest)
        if earlier is not None:
            return Submission(earlier, [], created=False)
    check_quota(sessions, settings, request.specs, owner)  # cheap: before planning
    planned = request.plan(settings)
    try:
        with sessions.begin() as s:
            take_turn(s, owner)
            stored = _store(s, request, planned, owner, idempotency_key, digest)
            check_live_stored(s, settings, owner, len(stored.experiment_ids))
            return stored
    except IntegrityError:  # a concurrent request with the same key won the race
        if idempotency_key is None:
            raise
        with sessions() as s:
            earlier = earlier_request(s, request.record, owner, idempotency_key, digest)
        if earlier is None:
            raise
        return Submission(earlier, [], created=False)


def _store(
    s: Session,
    request: Request,
    planned: list[list[PlannedStage]],
    owner: str | None,
    idempotency_key: str | None,
    digest: str,
) -> Submission:
    if request.record is Experiment:
        ((spec,), (stages,)) = request.specs, planned
        exp_id = store_experiment(s, spec, stages, owner, idempotency_key, digest)
        return Submission(exp_id, [exp_id], created=True)
    study = Study(
        name=request.name,
        spec=request.body.model_dump(mode="json"),
        owner=owner,
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    s.add(study)
    s.flush()  # the study's id
    ids = [
        store_experiment(s, spec, stages, owner=owner, study_id=study.id)
        for spec, stages in zip(request.specs, planned, strict=True)
    ]
    return Submission(study.id, ids, created=True)


def submit_experiment(
    sessions: sessionmaker[Session],
    spec: ExperimentSpec,
    planned: list[PlannedStage],
    owner: str | None = None,
) -> str:
    """Store an experiment planned by the caller in its own transaction, with no quota or key
    (tests and tools that plan it themselves; every entry point goes through :func:`submit`)."""
    with sessions.begin() as s:
        return store_experiment(s, spec, planned, owner)


def store_experiment(
    s: Session,
    spec: ExperimentSpec,
    planned: list[PlannedStage],
    owner: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    study_id: str | None = None,
) -> str:
    """The experiment and its stages (reusing stages that exist) inside the caller's transaction
    (a study stores all its cells in one)."""
    exp = Experiment(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=Status.QUEUED.value,
        owner=owner,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        study_id=study_id,
    )
    s.add(exp)
    _insert_stages_if_new(s, planned)
    s.flush()  # the experiment's id
    keys = list(dict.fromkeys(p.key for p in planned))
    rows = [
        row
        for begin in range(0, len(keys), BATCH)
        for row in s.execute(
            select(Stage.id, Stage.key, Stage.status).where(
                Stage.key.in_(keys[begin : begin + BATCH])
            )
        )
    ]
    stages = {key: (sid, status) for sid, key, status in rows}
    # A new request retries what failed or was cancelled before, with every attempt again.
    retry = [sid for sid, status in stages.values() if status in RETRIED]
    for begin in range(0, len(retry), BATCH):
        s.execute(
            update(Stage)
            .where(Stage.id.in_(retry[begin : begin + BATCH]), Stage.status.in_(RETRIED))
            .values(status=Status.PENDING.value, attempts=0)
            .execution_options(synchronize_session=False)
        )
    links = [
        {
            "experiment_id": exp.id,
            "stage_id": stages[p.key][0],
            "position": position,
            "role": p.role,
            "seed": p.seed,
            "reused": stages[p.key][1] == Status.SUCCEEDED.value,
        }
        for position, p in enumerate(planned)
    ]
    for begin in range(0, len(links), BATCH):
        s.execute(insert(ExperimentStage), links[begin : begin + BATCH])
    s.flush()
    return exp.id
