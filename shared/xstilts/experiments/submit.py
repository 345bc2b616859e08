"""Submitting an experiment: plan its stages and store them (shared by key) in one transaction.

What runs them is the runtime's business (:mod:`xstilts.runtime.orchestration`): the API and
``xstilts run`` both call :func:`submit_experiment`, then start the experiment after the commit.
"""

from __future__ import annotations

import logging

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import Experiment, ExperimentStage, Stage, Status, utcnow
from xstilts.errors import XstiltsError
from xstilts.experiments.plan import PlannedStage, plan_experiment, resolve_data_source
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


def submit_experiment(
    sessions: sessionmaker[Session],
    spec: ExperimentSpec,
    planned: list[PlannedStage],
    owner: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> str:
    """Store the experiment and its stages (reusing stages that exist) in one transaction."""
    with sessions.begin() as s:
        return store_experiment(s, spec, planned, owner, idempotency_key, request_hash)


def store_experiment(
    s: Session,
    spec: ExperimentSpec,
    planned: list[PlannedStage],
    owner: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    study_id: str | None = None,
) -> str:
    """:func:`submit_experiment` inside the caller's transaction (a study stores all its cells in
    one)."""
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
    # A new request retries what failed or was cancelled before.
    retry = [sid for sid, status in stages.values() if status in RETRIED]
    for begin in range(0, len(retry), BATCH):
        s.execute(
            update(Stage)
            .where(Stage.id.in_(retry[begin : begin + BATCH]), Stage.status.in_(RETRIED))
            .values(status=Status.PENDING.value)
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
