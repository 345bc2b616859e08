"""The composition root: one installation's database, artifact store and model cache, built once
per process from :class:`~xstilts.config.Settings`.

The CLI, the embedded server, the API service and the Celery workers all build one
:class:`Workspace` and hand it to the same pieces (planner, scheduler, executors), so there is
one set-up path. ``Workspace.run`` runs an experiment in this process exactly as ``xstilts serve``
does: submit, then a :class:`~xstilts.runtime.executors.ThreadExecutor` works through the stages
(retries, cancellation, the same status rules), while the caller waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import Experiment, Status
from xstilts.db.session import ensure_schema, make_engine, session_factory
from xstilts.errors import LeftRunningError, StageFailedError
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.runtime.lifecycle import StageReporter
from xstilts.runtime.runners.cache import ModelCache
from xstilts.spec import ExperimentSpec

if TYPE_CHECKING:
    from xstilts.experiments.results import ExperimentResults
    from xstilts.runtime.executors import ThreadExecutor

log = logging.getLogger(__name__)

FINAL = (Status.SUCCEEDED.value, Status.FAILED.value, Status.CANCELLED.value)
# After Ctrl-C, how long the running stage gets to notice the cancellation and stop cleanly.
CANCEL_GRACE_S = 15.0


class Workspace:
    """Database sessions, artifact store and loaded models of one installation.

    ``upgrade_embedded``: an embedded SQLite database is created or upgraded on start (the CLI and
    ``xstilts serve`` own theirs); any other database must already be at the latest migration
    (``xstilts db upgrade``), so service processes never race to migrate a shared database.
    """

    def __init__(
        self, settings: Settings, upgrade_embedded: bool = True, tolerate_unavailable: bool = False
    ) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        ensure_schema(self.engine, upgrade_embedded, tolerate_unavailable)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.store = ArtifactStore(settings.artifacts_dir)
        self.models = ModelCache()

    @property
    def lease_seconds(self) -> float:
        return self.settings.lease_seconds

    def close(self) -> None:
        self.engine.dispose()

    def submit(self, spec: ExperimentSpec, owner: str | None = None) -> str:
        """Plan and store the experiment (stages shared by key) as ``POST /experiments`` does,
        quotas included; nothing runs yet."""
        from xstilts.experiments.submit import experiment_request, submit

        return submit(self.sessions, self.settings, experiment_request(spec), owner).id

    def results(self, exp_id: str) -> ExperimentResults:
        from xstilts.experiments.results import experiment_results

        return experiment_results(self.sessions, exp_id)

    def status(self, exp_id: str) -> tuple[str, str | None]:
        with self.sessions() as s:
            exp = s.get(Experiment, exp_id)
            if exp is None:
                raise KeyError(exp_id)
            return exp.status, exp.error

    def run(self, spec: ExperimentSpec, reporter: StageReporter | None = None) -> ExperimentResults:
        """Submit ``spec``, run it to the end in this process (:meth:`follow`), return its results.
        Finished stages are reused."""
        exp_id = self.submit(spec)
        self.follow(exp_id, reporter)
        return self.results(exp_id)

    def _interrupted(self, exp_id: str, executor: ThreadExecutor) -> NoReturn:
        """Ctrl-C: cancel the experiment and give the running stage :data:`CANCEL_GRACE_S` to
        stop at its next step or batch, then raise KeyboardInterrupt. Raise
        :class:`LeftRunningError` instead when its thread is still running then, or when a second
        Ctrl-C cut the wait short: the process must end without shutting Python down around a
        thread inside torch (that aborts, exit 134)."""
        from xstilts.runtime.scheduler import cancel

        log.warning("interrupted: cancelling experiment %s", exp_id)
        try:
            cancel(self.sessions, exp_id)
            stopped = executor.stop(timeout=CANCEL_GRACE_S)
        except KeyboardInterrupt:
            stopped = False
        if not stopped:
            log.warning(
                "the running stage did not stop within %.0f s of the cancel: leaving it; the same "
                "command resumes it from its checkpoint once its lease lapses",
                CANCEL_GRACE_S,
            )
            raise LeftRunningError from None
        raise KeyboardInterrupt

    def _say_held(self, exp_id: str) -> None:
        """Say which of the experiment's stages an earlier run still holds (killed, its lease not
        yet lapsed): this run takes them over when the lease lapses, and until then waits."""
        from sqlalchemy import select

        from xstilts.db.models import ExperimentStage, Stage, as_utc, utcnow

        with self.sessions() as s:
            held = s.execute(
                select(Stage.kind, Stage.key, Stage.lease_until)
                .join(ExperimentStage, ExperimentStage.stage_id == Stage.id)
                .where(
                    ExperimentStage.experiment_id == exp_id,
                    Stage.status == Status.RUNNING.value,
                    Stage.lease_until > utcnow(),
                )
            ).all()
        for kind, key, until in held:
            if until is None:  # not with lease_until > now; for the type checker
                continue
            left = max(0.0, (as_utc(until) - utcnow()).total_seconds())
            log.warning(
                "stage %s %s is held by a run that has not ended (killed, or still running "
                "elsewhere): if its lease lapses, in %.0f s, this run takes the stage over and "
                "resumes it from its checkpoint; until then it waits",
                kind,
                key[:12],
                left,
            )

    def follow(
        self,
        exp_id: str,
        reporter: StageReporter | None = None,
        on_poll: Callable[[str], None] | None = None,
        poll_s: float = 0.2,
    ) -> None:
        """Run a submitted experiment's stages in a background thread until it ends, calling
        ``on_poll(exp_id)`` every ``poll_s`` seconds meanwhile.

        Raises :class:`StageFailedError` when a stage failed after its retries. Ctrl-C cancels the
        experiment (a running training stage stops at its next step, keeping its checkpoint) and
        re-raises; running the same spec again resumes.
        """
        from xstilts.runtime.executors import ThreadExecutor
        from xstilts.runtime.scheduler import queued_stages, start

        executor = ThreadExecutor(
            self,
            reporter=reporter,
            # Picks up this experiment's stages that a killed earlier run left running, once
            # their lease expires.
            reconcile_every_s=min(30.0, self.lease_seconds),
            experiment_id=exp_id,
        )
        try:
            # Stages another experiment's run queued for this one (a study's cells share their
            # intermediate stage: when it ends, every cell's target becomes runnable and is sent
            # to the executor at hand, which stops with its own experiment): delivered here, not
            # when the reconciler finds them (minutes). A stage delivered twice is claimed once.
            self._say_held(exp_id)  # before anything of this run's can hold a stage
            earlier = queued_stages(self.sessions, exp_id)
            start(self.sessions, executor, exp_id)
            for stage_id, queue in earlier:
                executor.send(stage_id, queue)
            status, error = self.status(exp_id)
            while status not in FINAL:
                if on_poll is not None:
                    on_poll(exp_id)
                time.sleep(poll_s)
                status, error = self.status(exp_id)
            if on_poll is not None:
                on_poll(exp_id)
        except KeyboardInterrupt:
            self._interrupted(exp_id, executor)  # raises
        executor.stop(timeout=CANCEL_GRACE_S)
        if status == Status.FAILED.value:
            raise StageFailedError(error or f"experiment {exp_id} failed")
        if status == Status.CANCELLED.value:
            raise StageFailedError(f"experiment {exp_id} was cancelled")
