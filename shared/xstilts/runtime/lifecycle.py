"""A stage's life: claimed by one runner, kept alive by a lease, finished with its result.

``run_stage`` is the single entry point every executor calls. The database row says what to run
(its typed spec, see :mod:`xstilts.experiments.plan`); a runner (:mod:`xstilts.runtime.runners`)
does the work; the row is updated with the result. A stage claims itself with a conditional
update, so a second caller finds nothing to do. Nothing here imports torch: the API and the eval
worker import this module, and only runners that train or predict load it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from xstilts.db.models import Experiment, ExperimentStage, Stage, Status, utcnow
from xstilts.errors import (
    CancelledError,
    StageFailedError,
    StageOutOfMemoryError,
    StageRequeuedError,
    XstiltsError,
)
from xstilts.experiments.plan import StageSpec, parse_stage_spec
from xstilts.experiments.stage_results import StageResult
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.runtime.scheduler import MAX_ATTEMPTS, REDELIVER_AFTER_S

if TYPE_CHECKING:
    from xstilts.runtime.runners.cache import ModelCache

log = logging.getLogger(__name__)

# Said of a failure that another attempt would repeat (an error of ours that names its cause).
NOT_RETRIED = " (not retried: another attempt would fail the same way)"

# How long a running stage may go without a heartbeat before another runner may take it over.
DEFAULT_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class StageRef:
    """Which stage a runner works on (the row's identity, without a database session), and which
    claim of it: the runner's writes apply only while the row is still running that claim (its
    ``claimed_at``, unique per claim; the attempt number is not, since a new request resets it), so
    a runner whose lease lapsed (a stalled process, a database outage) and whose stage another
    runner took over records nothing (:func:`owned`) and publishes nothing
    (:meth:`StageContext.check_owned`)."""

    id: int
    key: str
    kind: str
    attempt: int = 0
    claimed_at: datetime | None = None


class StageReporter(Protocol):
    """What a stage tells the outside world while it runs (a progress bar, the database, ...)."""

    def progress(self, stage: StageRef, step: int, total: int, examples_per_s: float) -> None: ...


@dataclass(frozen=True)
class StageOutcome:
    """What a runner hands back: its output folder and its kind's result, stored with the stage."""

    output: Path
    result: StageResult

    @property
    def steps_run(self) -> int:  # optimiser steps this attempt took
        return self.result.steps_run


@dataclass
class StageContext:
    sessions: sessionmaker[Session]
    store: ArtifactStore
    models: ModelCache | None = None  # loaded models shared by a process's stages
    reporter: StageReporter | None = None
    should_stop: Callable[[], bool] | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # Data-parallel replicas per training stage (XSTILTS_PROCESSES_PER_STAGE): one per GPU.
    processes_per_stage: int = 1
    # Whether the stage has its device to itself (xstilts.runtime.gpu_budget): then running out of
    # memory fails it; beside other stages it is queued again to run alone.
    alone_on_device: bool = True
    # The claim the runner works under (set by run_stage): what check_owned checks.
    claimed: StageRef | None = None

    def check_owned(self, s: Session | None = None) -> None:
        """Raise :class:`CancelledError` when another runner has taken the stage over (this one's
        lease lapsed), else extend the lease. Runners call it before they publish anything (an
        output folder, metrics rows), in ``s``'s transaction when given, so that the check and
        the write commit together."""
        if self.claimed is None:
            return
        if s is not None:
            kept = hold(s, self.claimed, self.lease_seconds)
        else:
            with self.sessions.begin() as own:
                kept = hold(own, self.claimed, self.lease_seconds)
        if not kept:
            stage = self.claimed
            raise CancelledError(
                f"stage {stage.kind} {stage.key[:12]} was taken over by another runner after this "
                f"one's lease lapsed (attempt {stage.attempt}): nothing published"
            )

    def stop_if_asked(self, where: str) -> None:
        """Raise :class:`CancelledError` when the stage should stop (every experiment that wants
        it was cancelled, or this runner lost its lease); ``where`` says how far it got."""
        if self.should_stop is not None and self.should_stop():
            stage = self.claimed
            name = f"stage {stage.kind} {stage.key[:12]}" if stage is not None else "stage"
            raise CancelledError(f"{name} cancelled {where}")

    @property
    def heartbeat_seconds(self) -> float:
        # Several heartbeats fit in one lease, so a live stage never looks dead between two.
        return min(5.0, self.lease_seconds / 4)

    def stage_output(self, key: str) -> Path:
        """The output folder of a finished dependency."""
        with self.sessions() as s:
            dep = s.scalars(select(Stage).where(Stage.key == key)).one()
            if dep.status != Status.SUCCEEDED.value or not dep.output_uri:
                raise StageFailedError(
                    f"dependency {dep.kind} {key[:12]} has not succeeded ({dep.status})"
                )
            return Path(dep.output_uri)


def claimable(now: datetime | None = None) -> ColumnElement[bool]:
    """Which stages a runner may claim: pending or queued, or running with an expired lease and
    attempts left."""
    return or_(
        Stage.status.in_([Status.PENDING.value, Status.QUEUED.value]),
        and_(
            Stage.status == Status.RUNNING.value,
            Stage.lease_until < (now or utcnow()),
            Stage.attempts < MAX_ATTEMPTS,
        ),
    )


def owned(stage: StageRef) -> ColumnElement[bool]:
    """The row is still running the claim ``stage`` names (the fence of every runner write)."""
    return and_(
        Stage.id == stage.id,
        Stage.status == Status.RUNNING.value,
        Stage.started_at == stage.claimed_at,
    )


def hold(s: Session, stage: StageRef, lease_s: float) -> bool:
    """Extend the lease of the claim ``stage`` names, in ``s``'s transaction; False when the stage
    is no longer running that claim."""
    res = s.execute(
        update(Stage)
        .where(owned(stage))
        .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], res).rowcount == 1


def claim(sessions: sessionmaker[Session], stage_id: int, lease_s: float) -> StageRef | None:
    """Move a stage to running if it is pending/queued, or running with an expired lease and
    attempts left (the reconciler fails one whose runner was lost with none left).

    A conditional UPDATE: of two callers, exactly one gets the row, as the claim its writes are
    fenced by; the other gets None.
    """
    now = utcnow()
    with sessions.begin() as s:
        row = s.execute(
            update(Stage)
            .where(Stage.id == stage_id, claimable(now))
            .values(
                status=Status.RUNNING.value,
                attempts=Stage.attempts + 1,
                started_at=now,
                lease_until=now + timedelta(seconds=lease_s),
                error=None,
            )
            .returning(Stage.key, Stage.kind, Stage.attempts)
            .execution_options(synchronize_session=False)
        ).first()
        if row is not None:
            # The one change of experiment status a claim can cause, made here so that reads
            # never have to derive and write it: queued -> running.
            linked = select(ExperimentStage.experiment_id).where(
                ExperimentStage.stage_id == stage_id
            )
            s.execute(
                update(Experiment)
                .where(
                    Experiment.id.in_(linked),
                    Experiment.status == Status.QUEUED.value,
                    Experiment.cancel_requested.is_(False),
                )
                .values(status=Status.RUNNING.value)
                .execution_options(synchronize_session=False)
            )
    return None if row is None else StageRef(stage_id, row.key, row.kind, row.attempts, now)


def record_progress(
    sessions: sessionmaker[Session], stage: StageRef, step: int, total: int, rate: float
) -> None:
    """Store a running stage's progress (its lease is :class:`LeaseKeeper`'s job)."""
    with sessions.begin() as s:
        s.execute(
            update(Stage)
            .where(owned(stage))
            .values(progress_step=step, progress_total=total, examples_per_s=rate)
        )


class LeaseKeeper:
    """Extends a running stage's lease from a background thread while this process lives.

    Step-level heartbeats alone would let the lease lapse during anything long between two steps
    (saving a multi-GB checkpoint, loading a model, a long prediction batch), and the reconciler
    would then start a second runner. The lease ends with the process: a killed worker's stage is
    picked up once it expires.

    A beat that finds the row no longer running this attempt (the lease lapsed and the stage was
    queued again or taken over) sets :attr:`lost`: the runner stops at its next check, instead of
    training beside its successor into the same folders.
    """

    def __init__(
        self, sessions: sessionmaker[Session], stage: StageRef, lease_s: float, every_s: float
    ) -> None:
        self.sessions = sessions
        self.stage = stage
        self.lease_s = lease_s
        self.every_s = every_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{stage.id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                with self.sessions.begin() as s:
                    kept = hold(s, self.stage, self.lease_s)
            except Exception:  # a database hiccup must not kill the stage; the next beat retries
                log.warning("lease heartbeat for stage %d failed", self.stage.id, exc_info=True)
                continue
            if not kept:
                log.warning(
                    "stage %s %s lost its lease (attempt %d): another runner has it; stopping",
                    self.stage.kind,
                    self.stage.key[:12],
                    self.stage.attempt,
                )
                self.lost.set()
                return

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_stage(ctx: StageContext, stage_id: int) -> bool:
    """Run a stage if it can be claimed. Returns True if this call ran it."""
    stage = claim(ctx.sessions, stage_id, ctx.lease_seconds)
    if stage is None:
        return False
    with ctx.sessions() as s:
        params = s.scalars(select(Stage.params).where(Stage.id == stage_id)).one()
    keeper = LeaseKeeper(ctx.sessions, stage, ctx.lease_seconds, ctx.heartbeat_seconds)
    asked = ctx.should_stop
    ctx = replace(
        ctx,
        should_stop=lambda: keeper.lost.is_set() or (asked is not None and asked()),
        claimed=stage,
    )
    try:
        with keeper:
            from xstilts.runtime.runners import run_spec  # the runner of this kind, loaded lazily

            spec: StageSpec = parse_stage_spec(params)
            outcome = run_spec(ctx, stage, spec)
    except CancelledError as e:
        _finish(ctx, stage, Status.CANCELLED, error=str(e))
        raise
    except KeyboardInterrupt:
        # Ctrl-C: hand the stage back at once (its checkpoint stays) so a re-run resumes it.
        with ctx.sessions.begin() as s:
            s.execute(
                update(Stage)
                .where(owned(stage))
                .values(status=Status.PENDING.value, lease_until=None)
            )
        raise
    except Exception as e:
        if out_of_memory(e):
            _out_of_memory(ctx, stage, e)  # raises
        # Most of our own errors name a cause in the spec, the data or the model folder that
        # another attempt would meet again (a label outside the task's): failed at once. Anything
        # else (a network share, the hub, a driver) may pass: retried.
        final = isinstance(e, XstiltsError) and e.final
        log.exception("stage %s (%s) failed%s", stage.kind, stage.key[:12], NOT_RETRIED * final)
        detail = f"{type(e).__name__}: {e}{NOT_RETRIED * final}\n" + traceback.format_exc(limit=8)
        retry = _failed_attempt(ctx, stage, detail, retry=not final)
        raise StageFailedError(
            f"stage {stage.kind} {stage.key[:12]} failed: {type(e).__name__}: {e}"
            + NOT_RETRIED * final,
            retry=retry,
        ) from e
    return _finish(ctx, stage, Status.SUCCEEDED, outcome=outcome)


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is the accelerator running out of memory (torch's own error type; without
    torch loaded nothing could have allocated on a GPU)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(e, torch.cuda.OutOfMemoryError)


def _out_of_memory(ctx: StageContext, stage: StageRef, e: Exception) -> None:
    """Beside other stages: hand the stage back, queued to run alone, its attempt not counted
    (:class:`StageRequeuedError`); it keeps its checkpoint. Alone: fail it at once, since another
    attempt would run out of memory the same way (:class:`StageOutOfMemoryError`)."""
    name = f"stage {stage.kind} {stage.key[:12]}"
    if not ctx.alone_on_device:
        log.warning("%s ran out of GPU memory beside other stages: queued to run alone", name)
        with ctx.sessions.begin() as s:
            s.execute(
                update(Stage)
                .where(owned(stage))
                .values(
                    status=Status.QUEUED.value,
                    attempts=Stage.attempts - 1,
                    run_alone=True,
                    lease_until=utcnow() + timedelta(seconds=REDELIVER_AFTER_S),
                    error=f"ran out of GPU memory beside other stages; queued to run alone ({e})",
                )
            )
        raise StageRequeuedError(f"{name} ran out of GPU memory beside other stages") from e
    log.exception("%s ran out of GPU memory running alone", name)
    why = (
        f"ran out of GPU memory running alone on its GPU ({type(e).__name__}: {e}); another "
        "attempt would too: lower training.batch_size or max_seq_length (evaluation.batch_size "
        "for a predict stage), or use a GPU with more memory"
    )
    _finish(ctx, stage, Status.FAILED, error=why + "\n" + traceback.format_exc(limit=8))
    raise StageOutOfMemoryError(f"{name} failed: {why}") from e


def _failed_attempt(ctx: StageContext, stage: StageRef, error: str, *, retry: bool) -> bool:
    """Record a failed attempt with its error: queued again while attempts remain and ``retry``
    allows (True), else failed. One transaction, so nobody ever sees the stage failed, and its
    experiment with it, while it is still to be retried. A runner that no longer owns the stage
    records nothing (False: its successor decides)."""
    retry = retry and stage.attempt < MAX_ATTEMPTS
    now = utcnow()
    with ctx.sessions.begin() as s:
        res = s.execute(
            update(Stage)
            .where(owned(stage))
            .values(
                status=(Status.QUEUED if retry else Status.FAILED).value,
                finished_at=now,
                error=error,
                lease_until=now + timedelta(seconds=REDELIVER_AFTER_S)
                if retry
                else Stage.lease_until,
            )
        )
        recorded = cast(CursorResult[Any], res).rowcount == 1
    return retry and recorded


def _finish(
    ctx: StageContext,
    stage: StageRef,
    status: Status,
    outcome: StageOutcome | None = None,
    error: str | None = None,
) -> bool:
    """Store the attempt's end; False (nothing stored) when another runner has taken it over."""
    values: dict[str, Any] = {"status": status.value, "finished_at": utcnow(), "error": error}
    if outcome is not None:
        values |= {
            "output_uri": str(outcome.output),
            "result": outcome.result.model_dump(mode="json"),
            "steps_run": Stage.steps_run + outcome.steps_run,
        }
    with ctx.sessions.begin() as s:
        res = s.execute(update(Stage).where(owned(stage)).values(**values))
        stored = cast(CursorResult[Any], res).rowcount == 1
    if not stored:
        log.warning(
            "stage %s %s attempt %d ended %s after another runner took it over: not recorded",
            stage.kind,
            stage.key[:12],
            stage.attempt,
            status.value,
        )
    return stored


@dataclass
class ProgressRecorder:
    """The progress callback runners pass to training and prediction: stores step/total and
    examples/s in the database at most once per heartbeat, and tells the reporter every time.

    With ``stops`` it also ends the stage when it should stop (cancelled, or its lease lost) by
    raising :class:`CancelledError`: for prediction, which holds nothing worth saving. Training
    checks ``should_stop`` itself, after a step, so that data-parallel replicas stop together."""

    ctx: StageContext
    stage: StageRef
    stops: bool = False
    _last: float = field(default=0.0, init=False)

    def __call__(self, step: int, total: int, rate: float, loss: float = float("nan")) -> None:
        if self.stops and step < total:
            self.ctx.stop_if_asked(f"at {step}/{total}")
        now = time.monotonic()
        if now - self._last >= self.ctx.heartbeat_seconds or step == total:
            record_progress(self.ctx.sessions, self.stage, step, total, rate)
            self._last = now
        if self.ctx.reporter is not None:
            self.ctx.reporter.progress(self.stage, step, total, rate)
