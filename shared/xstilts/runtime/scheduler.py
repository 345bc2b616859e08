"""What happens between stages: which become runnable, when an experiment is done, cancellation,
and the reconciler that recovers lost messages and dead workers.

The database is the source of truth; an executor (Celery, or a thread in embedded mode) is only the
doorbell that makes some runner call :func:`xstilts.runtime.lifecycle.run_stage` for a stage id.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Row, Select, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from xstilts.db.models import Experiment, ExperimentStage, Stage, StageKind, Status, utcnow
from xstilts.errors import ConflictError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# A queued stage not claimed within this time is delivered again (its message may have been lost).
REDELIVER_AFTER_S = 120.0
BATCH = 500  # ids per IN (...) list
GPU_QUEUE = "gpu"
EVAL_QUEUE = "eval"
ACTIVE = (Status.PENDING.value, Status.QUEUED.value, Status.RUNNING.value)


def queue_for(kind: str) -> str:
    """Training and prediction need the accelerator; turning predictions into metrics does not."""
    return EVAL_QUEUE if kind == StageKind.EVALUATE.value else GPU_QUEUE


class Executor(Protocol):
    """Delivers stage ids to runners. Only ever called after the commit that made them runnable."""

    def send(self, stage_id: int, queue: str) -> None: ...


def _in_flight(executor: Executor) -> set[int] | None:
    """What the executor can say it still holds a message for (None: it cannot say)."""
    ask = getattr(executor, "in_flight", None)
    result: set[int] | None = ask() if callable(ask) else None
    return result


def _wanted(s: Session, stage_id: int) -> bool:
    """A stage is wanted (it runs on) while some experiment that links it was not cancelled."""
    return (
        s.scalar(
            select(ExperimentStage.id)
            .join(Experiment, Experiment.id == ExperimentStage.experiment_id)
            .where(ExperimentStage.stage_id == stage_id, Experiment.cancel_requested.is_(False))
            .limit(1)
        )
        is not None
    )


def mark_runnable(sessions: sessionmaker[Session], exp_id: str) -> list[tuple[int, str]]:
    """Move the experiment's pending stages whose dependencies succeeded to queued (committed).

    A failed experiment starts no new stage, as a cancelled one: its stages already queued or
    running finish (a resubmission reuses their results) unless it is cancelled, but what they
    would unblock stays pending, unless another live experiment wants it too.

    Returns ``(stage id, queue)`` for each stage this call queued; the caller sends them.
    """
    out: list[tuple[int, str]] = []
    with sessions.begin() as s:
        pending = s.scalars(
            select(Stage)
            .join(ExperimentStage, ExperimentStage.stage_id == Stage.id)
            .where(ExperimentStage.experiment_id == exp_id, Stage.status == Status.PENDING.value)
        ).all()
        if not pending:
            return out
        dep_keys = {k for st in pending for k in st.params.get("deps", [])}
        done = set(
            s.scalars(
                select(Stage.key).where(
                    Stage.key.in_(dep_keys), Stage.status == Status.SUCCEEDED.value
                )
            ).all()
        )
        # Stages linked to at least one experiment that is neither cancelled nor failed.
        wanted = set(
            s.scalars(
                select(ExperimentStage.stage_id)
                .join(Experiment, Experiment.id == ExperimentStage.experiment_id)
                .where(
                    ExperimentStage.stage_id.in_([st.id for st in pending]),
                    Experiment.cancel_requested.is_(False),
                    Experiment.status != Status.FAILED.value,
                )
            ).all()
        )
        ready = [
            st
            for st in pending
            if st.id in wanted and all(k in done for k in st.params.get("deps", []))
        ]
        kinds = {st.id: st.kind for st in ready}
        ids = list(kinds)
        for begin in range(0, len(ids), BATCH):
            # One conditional UPDATE per batch: only this call's winners come back. No session
            # synchronisation: evaluating the WHERE against every loaded stage is quadratic.
            queued = s.scalars(
                update(Stage)
                .where(
                    Stage.id.in_(ids[begin : begin + BATCH]), Stage.status == Status.PENDING.value
                )
                .values(
                    status=Status.QUEUED.value,
                    lease_until=utcnow() + timedelta(seconds=REDELIVER_AFTER_S),
                )
                .returning(Stage.id)
                .execution_options(synchronize_session=False)
            ).all()
            out += [(sid, queue_for(kinds[sid])) for sid in sorted(queued)]
    return out


def _stages_in(sessions: sessionmaker[Session], exp_id: str, statuses: list[str]) -> list[Row]:
    """``(id, kind)`` of the experiment's stages in one of ``statuses``, each once, by id."""
    with sessions() as s:
        rows = s.execute(
            select(Stage.id, Stage.kind)
            .join(ExperimentStage, ExperimentStage.stage_id == Stage.id)
            .where(ExperimentStage.experiment_id == exp_id, Stage.status.in_(statuses))
            .order_by(Stage.id)
            .distinct()
        ).all()
    return list(rows)


def queued_stages(sessions: sessionmaker[Session], exp_id: str) -> list[tuple[int, str]]:
    """``(stage id, queue)`` of the experiment's stages that are queued (delivered or not)."""
    rows = _stages_in(sessions, exp_id, [Status.QUEUED.value])
    return [(sid, queue_for(kind)) for sid, kind in rows]


def experiments_of(sessions: sessionmaker[Session], stage_id: int) -> list[str]:
    with sessions() as s:
        return list(
            s.scalars(
                select(ExperimentStage.experiment_id).where(ExperimentStage.stage_id == stage_id)
            ).all()
        )


def refresh_experiment(sessions: sessionmaker[Session], exp_id: str) -> str:
    """Derive the experiment's status from its stages and store it; returns the status.

    In this order: succeeded when every stage did (also when a cancel came as the last one ended:
    the results are all there); failed when a stage failed for good (also if cancelled since: the
    failure says more); cancelled when asked; else running or queued. The error is kept only while
    the experiment is failed.

    Read first, without a lock: most calls (every reconciler pass, for every active experiment)
    change nothing, and write nothing. A change is derived again with the experiment's row locked
    (the first statement a write: a row lock on Postgres, the write lock on SQLite), so two
    refreshes take turns and the later one reads the stages the earlier one read, or newer: a
    verdict derived from a stage still running is never stored over one derived after it ended.
    """
    with sessions() as s:
        exp = s.get(Experiment, exp_id)
        if exp is None:
            return Status.FAILED.value
        derived = _derive(s, exp)
        if derived == (exp.status, exp.error):
            return exp.status
    with sessions.begin() as s:
        s.execute(
            update(Experiment)
            .where(Experiment.id == exp_id)
            .values(status=Experiment.status, updated_at=Experiment.updated_at)
            .execution_options(synchronize_session=False)
        )
        exp = s.get(Experiment, exp_id)
        assert exp is not None  # experiments are never deleted
        exp.status, exp.error = _derive(s, exp)
        return exp.status


def _derive(s: Session, exp: Experiment) -> tuple[str, str | None]:
    """The experiment's status and error as its stages say (see :func:`refresh_experiment`)."""
    statuses = s.scalars(
        select(Stage.status)
        .join(ExperimentStage, ExperimentStage.stage_id == Stage.id)
        .where(ExperimentStage.experiment_id == exp.id)
    ).all()
    if statuses and all(st == Status.SUCCEEDED.value for st in statuses):
        return Status.SUCCEEDED.value, None
    if Status.FAILED.value in statuses:
        failed = s.scalars(
            select(Stage)
            .join(ExperimentStage, ExperimentStage.stage_id == Stage.id)
            .where(ExperimentStage.experiment_id == exp.id, Stage.status == Status.FAILED.value)
            .limit(1)
        ).first()
        first_line = next(iter((failed.error or "").splitlines()), "") if failed else ""
        return Status.FAILED.value, f"stage {failed.kind} failed: {first_line}" if failed else None
    if exp.cancel_requested:
        return Status.CANCELLED.value, None
    if Status.RUNNING.value in statuses or Status.SUCCEEDED.value in statuses:
        return Status.RUNNING.value, None
    return Status.QUEUED.value, None


def send_or_defer(
    sessions: sessionmaker[Session], executor: Executor, stages: list[tuple[int, str]]
) -> None:
    """Send queued stages. A broker that cannot take a message now (Redis down) loses nothing: the
    stage stays queued in the database, marked due, and the reconciler's next pass delivers it
    once the broker is back."""
    for sid, queue in stages:
        try:
            executor.send(sid, queue)
        except Exception as e:  # the broker's own errors: kombu, redis, socket
            log.warning(
                "stage %s stays queued for the reconciler: the broker refused it (%s: %s)",
                sid,
                type(e).__name__,
                e,
            )
            with sessions.begin() as s:
                s.execute(
                    update(Stage)
                    .where(Stage.id == sid, Stage.status == Status.QUEUED.value)
                    .values(lease_until=utcnow())
                )


def advance(sessions: sessionmaker[Session], executor: Executor, stage_id: int) -> None:
    """After a stage ended: queue what became runnable in every experiment that links it."""
    for exp_id in experiments_of(sessions, stage_id):
        send_or_defer(sessions, executor, mark_runnable(sessions, exp_id))
        refresh_experiment(sessions, exp_id)


def start(sessions: sessionmaker[Session], executor: Executor, exp_id: str) -> None:
    """Kick off a freshly submitted (committed) experiment; a broker that is down delays its
    stages (:func:`send_or_defer`) but the experiment is accepted."""
    send_or_defer(sessions, executor, mark_runnable(sessions, exp_id))
    refresh_experiment(sessions, exp_id)


def _still_running(sessions: sessionmaker[Session], exp_id: str) -> bool:
    """Whether some stage of the experiment is queued or running."""
    return bool(_stages_in(sessions, exp_id, [Status.QUEUED.value, Status.RUNNING.value]))


def cancel(sessions: sessionmaker[Session], exp_id: str) -> None:
    """Flag the experiment; stages no other live experiment needs stop (running ones at the next
    training step, via :func:`stage_unwanted`) or never start. A succeeded experiment stays as it
    is, and so does a failed one with nothing left running (:class:`ConflictError`); a failed one
    whose other stages still run can be cancelled, to stop them; cancelling a cancelled one again
    changes nothing. A cancel that races the last stage's end leaves the experiment succeeded (and
    says so, as a conflict)."""
    status = refresh_experiment(sessions, exp_id)
    if status == Status.SUCCEEDED.value or (
        status == Status.FAILED.value and not _still_running(sessions, exp_id)
    ):
        raise ConflictError(
            f"the experiment has {status}"
            + ("" if status == Status.SUCCEEDED.value else " and nothing of it is still running")
            + "; only a queued or running experiment can be cancelled"
        )
    with sessions.begin() as s:
        s.execute(update(Experiment).where(Experiment.id == exp_id).values(cancel_requested=True))
    with sessions.begin() as s:
        stage_ids = s.scalars(
            select(ExperimentStage.stage_id).where(ExperimentStage.experiment_id == exp_id)
        ).all()
        for sid in stage_ids:
            if not _wanted(s, sid):
                s.execute(
                    update(Stage)
                    .where(
                        Stage.id == sid,
                        Stage.status.in_([Status.PENDING.value, Status.QUEUED.value]),
                    )
                    .values(status=Status.CANCELLED.value, finished_at=utcnow())
                )
    if refresh_experiment(sessions, exp_id) == Status.SUCCEEDED.value:
        raise ConflictError(
            "the experiment has succeeded; only a queued or running experiment can be cancelled"
        )


def stage_unwanted(sessions: sessionmaker[Session], stage_id: int) -> bool:
    """True when every experiment that needs this stage was cancelled (the training loop stops)."""
    with sessions() as s:
        return not _wanted(s, stage_id)


def reconcile(
    sessions: sessionmaker[Session], executor: Executor, experiment_id: str | None = None
) -> list[int]:
    """Repair what a lost message, a dead process or a race left behind, and return the stage ids
    it delivered. ``experiment_id`` limits it to the stages of one experiment. In order:

    - a running stage whose lease expired lost its runner: it is queued again and delivered, or
      failed when that was its last attempt (a stage that kills its worker, say by exhausting
      host memory, must not do so for ever);
    - a queued stage not claimed in time whose message the executor's broker does not hold (as far
      as it can tell) is delivered again;
    - a cancelled stage that a live experiment links (a cancel that raced a new request for it) is
      made pending again;
    - every live experiment's runnable stages are queued and sent, and every active experiment's
      status derived again (a process that died between a stage's end and that refresh).

    Safe to run any time and from several places: claiming is a conditional update, so a duplicate
    delivery finds nothing to do.
    """
    now = utcnow()
    stale = select(Stage.id, Stage.kind, Stage.status).where(
        or_(Stage.status == Status.RUNNING.value, Stage.status == Status.QUEUED.value),
        Stage.lease_until < now,
    )
    active_query = select(Experiment.id).where(Experiment.status.in_(ACTIVE))
    if experiment_id is not None:
        stale = stale.join(ExperimentStage, ExperimentStage.stage_id == Stage.id).where(
            ExperimentStage.experiment_id == experiment_id
        )
        active_query = active_query.where(Experiment.id == experiment_id)
    live_query = active_query.where(Experiment.cancel_requested.is_(False))
    with sessions.begin() as s:
        rows = list(dict.fromkeys((sid, kind, st) for sid, kind, st in s.execute(stale).all()))
        lost = [sid for sid, _, st in rows if st == Status.RUNNING.value]
        given_up = _fail_lost_too_often(s, lost, now)
        rows = [row for row in rows if row[0] not in given_up]
        # The next check of the same stage waits a full period. Still conditional on the lease:
        # a runner whose heartbeat came in the meantime keeps its stage.
        for sid, _, _ in rows:
            s.execute(
                update(Stage)
                .where(Stage.id == sid, Stage.status.in_(_DELIVERED), Stage.lease_until < now)
                .values(
                    status=Status.QUEUED.value,
                    lease_until=now + timedelta(seconds=REDELIVER_AFTER_S),
                )
            )
        _revive_wanted(s, live_query)
        live = s.scalars(live_query).all()
        active = s.scalars(active_query).all()
    # A queued stage whose message is still waiting (behind a long run, say) is not lost: sending
    # it again would only lengthen the queue that GPU workers are scaled on. A running stage whose
    # lease expired lost its worker, whatever the broker holds.
    held = _in_flight(executor) if any(st == Status.QUEUED.value for _, _, st in rows) else None
    due = [
        (sid, queue_for(kind))
        for sid, kind, status in rows
        if not (status == Status.QUEUED.value and held is not None and sid in held)
    ]
    for exp_id in live:
        due += mark_runnable(sessions, exp_id)
    send_or_defer(sessions, executor, due)
    for exp_id in dict.fromkeys([*experiments_of_stages(sessions, given_up), *active]):
        refresh_experiment(sessions, exp_id)
    if due:
        log.info("reconciler re-delivered stages %s", [sid for sid, _ in due])
    return [sid for sid, _ in due]


_DELIVERED = (Status.QUEUED.value, Status.RUNNING.value)


def _fail_lost_too_often(s: Session, lost: list[int], now: datetime) -> list[int]:
    """Fail the running stages among ``lost`` (lease expired) whose lost runner ran their last
    attempt (:data:`MAX_ATTEMPTS`); returns their ids."""
    if not lost:
        return []
    return list(
        s.scalars(
            update(Stage)
            .where(
                Stage.id.in_(lost),
                Stage.status == Status.RUNNING.value,
                Stage.lease_until < now,
                Stage.attempts >= MAX_ATTEMPTS,
            )
            .values(
                status=Status.FAILED.value,
                finished_at=now,
                error=(
                    f"the runner of its last attempt ({MAX_ATTEMPTS} of {MAX_ATTEMPTS}) was lost "
                    "(the process died or stopped renewing its lease: killed, out of host memory, "
                    "or crashed); not tried again: see the worker's log"
                ),
            )
            .returning(Stage.id)
            .execution_options(synchronize_session=False)
        ).all()
    )


def _revive_wanted(s: Session, live_query: Select[Any]) -> None:
    """Cancelled stages that a live experiment links become pending again. A cancel decides which
    stages nobody wants in one statement and cancels them in another; a request that reused a stage
    in between, or linked it while its runner was stopping, would otherwise wait for ever."""
    wanted = select(ExperimentStage.stage_id).where(ExperimentStage.experiment_id.in_(live_query))
    revived = s.scalars(
        update(Stage)
        .where(Stage.status == Status.CANCELLED.value, Stage.id.in_(wanted))
        .values(status=Status.PENDING.value, attempts=0)
        .returning(Stage.id)
        .execution_options(synchronize_session=False)
    ).all()
    if revived:
        log.warning(
            "stages %s were cancelled but a live experiment wants them: pending again", revived
        )


def experiments_of_stages(sessions: sessionmaker[Session], stage_ids: list[int]) -> list[str]:
    if not stage_ids:
        return []
    with sessions() as s:
        return list(
            s.scalars(
                select(ExperimentStage.experiment_id)
                .where(ExperimentStage.stage_id.in_(stage_ids))
                .distinct()
            ).all()
        )
