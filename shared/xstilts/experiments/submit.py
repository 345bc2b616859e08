"""An experiment end to end: plan its stages, store them, run what is not done, gather results.

``submit_experiment`` is what the API will call (store, then enqueue); ``run_experiment`` is the
in-process executor; both end in :func:`xstilts.runtime.lifecycle.run_stage`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import (
    Experiment,
    ExperimentStage,
    Stage,
    Status,
    init_db,
    make_engine,
    session_factory,
    utcnow,
)
from xstilts.errors import StageFailedError
from xstilts.experiments.plan import PlannedStage, plan_experiment, resolve_data_source
from xstilts.modeling.sources import resolve_model
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.runtime.lifecycle import LEASE_SECONDS, StageContext, StageReporter, run_stage
from xstilts.spec import ExperimentSpec

log = logging.getLogger(__name__)


def plan(spec: ExperimentSpec, settings: Settings) -> list[PlannedStage]:
    model = resolve_model(spec.model, settings.model_roots, settings.cache_dir)
    data = resolve_data_source(spec, settings.data_dir)
    return plan_experiment(spec, model, data)


def _insert_stages_if_new(session: Session, planned: list[PlannedStage]) -> None:
    """One INSERT ... ON CONFLICT (key) DO NOTHING: concurrent planners share one row per key."""
    rows = {
        p.key: {
            "key": p.key,
            "kind": p.kind.value,
            "identity": p.identity,
            "params": p.params,
            "status": Status.PENDING.value,
            "created_at": utcnow(),
        }
        for p in planned
    }
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(Stage).values(list(rows.values())).on_conflict_do_nothing(index_elements=["key"])
    )


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
        exp = Experiment(
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            status=Status.QUEUED.value,
            owner=owner,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        s.add(exp)
        _insert_stages_if_new(s, planned)
        stages = {
            st.key: st
            for st in s.scalars(select(Stage).where(Stage.key.in_([p.key for p in planned])))
        }
        for position, p in enumerate(planned):
            stage = stages[p.key]
            if stage.status in (Status.FAILED.value, Status.CANCELLED.value):
                stage.status = Status.PENDING.value  # a new request retries what failed before
            s.add(
                ExperimentStage(
                    experiment_id=exp.id,
                    stage_id=stage.id,
                    position=position,
                    role=p.role,
                    seed=p.seed,
                    reused=stage.status == Status.SUCCEEDED.value,
                )
            )
        s.flush()
        return exp.id


def _set_experiment_status(
    sessions: sessionmaker[Session], exp_id: str, status: Status, error: str | None = None
) -> None:
    with sessions.begin() as s:
        s.execute(
            update(Experiment)
            .where(Experiment.id == exp_id)
            .values(status=status.value, error=error)
        )


def run_experiment(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    exp_id: str,
    reporter: StageReporter | None = None,
    on_stage: Callable[[ExperimentStage, Stage, bool], None] | None = None,
) -> None:
    """The in-process executor: run the experiment's stages in order, skipping finished ones."""
    ctx = StageContext(sessions, store, reporter)
    with sessions() as s:
        links = s.scalars(
            select(ExperimentStage)
            .where(ExperimentStage.experiment_id == exp_id)
            .order_by(ExperimentStage.position)
        ).all()
        pairs = [(link, s.get(Stage, link.stage_id)) for link in links]
    _set_experiment_status(sessions, exp_id, Status.RUNNING)
    try:
        for link, stage in pairs:
            assert stage is not None
            with sessions() as s:
                current = s.get(Stage, stage.id)
                done = current is not None and current.status == Status.SUCCEEDED.value
            if on_stage is not None:
                on_stage(link, stage, done)
            if not done and not run_stage(ctx, stage.id):
                raise StageFailedError(
                    f"stage {stage.kind} {stage.key[:12]} is running in another process; if that "
                    f"process died, run again once its lease expires (at most {LEASE_SECONDS:.0f} s)"
                )
    except BaseException as e:
        error = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        _set_experiment_status(sessions, exp_id, Status.FAILED, error=error)
        raise
    _set_experiment_status(sessions, exp_id, Status.SUCCEEDED)


class Workspace:
    """The database and artifact store of one installation (embedded mode: SQLite + a folder)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        init_db(self.engine)
        self.sessions = session_factory(self.engine)
        self.store = ArtifactStore(settings.artifacts_dir)

    def run(
        self,
        spec: ExperimentSpec,
        reporter: StageReporter | None = None,
        on_stage: Callable[[ExperimentStage, Stage, bool], None] | None = None,
    ) -> dict[str, Any]:
        exp_id = submit_experiment(self.sessions, spec, plan(spec, self.settings))
        run_experiment(self.sessions, self.store, exp_id, reporter, on_stage)
        from xstilts.experiments.results import experiment_results

        return experiment_results(self.sessions, exp_id)
