"""Executors deliver stage ids to runners; every runner ends in :func:`execute_stage`.

- Celery (service mode): :class:`xstilts.runtime.celery_app.CeleryExecutor` sends a message per
  stage to the worker queues.
- :class:`ThreadExecutor` (embedded mode: ``xstilts serve`` and ``xstilts run``): one background
  thread works through the delivered stage ids in order. Not Celery's eager mode: the caller that
  enqueues returns at once, and the stage runs exactly as a worker would run it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from xstilts.db.models import Stage
from xstilts.errors import (
    CancelledError,
    StageFailedError,
    StageOutOfMemoryError,
    StageRequeuedError,
)
from xstilts.runtime.gpu_budget import admit_stage
from xstilts.runtime.heap import return_freed_memory
from xstilts.runtime.lifecycle import StageContext, StageReporter, run_stage
from xstilts.runtime.scheduler import (
    GPU_QUEUE,
    Executor,
    advance,
    queue_for,
    reconcile,
    stage_unwanted,
)

if TYPE_CHECKING:
    from xstilts.runtime.workspace import Workspace

log = logging.getLogger(__name__)

CANCEL_CHECK_EVERY_S = 1.0


def _cancel_check(sessions: sessionmaker[Session], stage_id: int) -> Callable[[], bool]:
    last = [0.0]

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last[0] < CANCEL_CHECK_EVERY_S:
            return False
        last[0] = now
        return stage_unwanted(sessions, stage_id)

    return should_stop


def execute_stage(
    ws: Workspace, executor: Executor, stage_id: int, reporter: StageReporter | None = None
) -> None:
    """Run one delivered stage once its GPU has room for it (:mod:`.gpu_budget`; a stage whose
    turn does not come goes back to the queue unclaimed), send it again if it is to be retried or
    was queued to run alone, then queue what became runnable."""
    ticket = admit_stage(ws.sessions, ws.settings, stage_id)
    if not ticket.admitted:
        executor.send(stage_id, GPU_QUEUE)
        return
    ctx = StageContext(
        ws.sessions,
        ws.store,
        ws.models,
        reporter,
        should_stop=_cancel_check(ws.sessions, stage_id),
        lease_seconds=ws.lease_seconds,
        processes_per_stage=ws.settings.processes_per_stage,
        alone_on_device=ticket.alone,
    )
    again = False
    try:
        run_stage(ctx, stage_id)
    except CancelledError:
        log.info("stage %d cancelled", stage_id)
    except StageRequeuedError as e:
        log.warning("%s: queued again to run alone", e)
        again = True
    except StageOutOfMemoryError as e:
        log.warning("%s", e)  # final: alone on its GPU, another attempt would end the same way
    except StageFailedError as e:
        log.warning("%s%s", e, "; queued for another attempt" if e.retry else "")
        again = e.retry
    finally:
        ticket.release()  # before the stage is sent again: a neighbour may take it at once
    if again:
        with ws.sessions() as s:
            stage = s.get(Stage, stage_id)
            kind = stage.kind if stage else ""
        executor.send(stage_id, queue_for(kind))
    advance(ws.sessions, executor, stage_id)
    # Once the stage's outcome is recorded (a trim takes a moment: a failed stage must be queued
    # again before anyone sees it failed), the next stage starts from less.
    return_freed_memory()


class ThreadExecutor:
    """Embedded mode: a daemon thread runs delivered stages one at a time, in delivery order, and
    a second one reconciles (re-delivers stages a dead process left behind).

    ``experiment_id`` limits reconciling to one experiment (``xstilts run`` follows only its own).
    """

    def __init__(
        self,
        ws: Workspace,
        reporter: StageReporter | None = None,
        reconcile_every_s: float | None = 30.0,
        experiment_id: str | None = None,
    ) -> None:
        self.ws = ws
        self.reporter = reporter
        self.experiment_id = experiment_id
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="xstilts-executor", daemon=True)
        self._thread.start()
        if reconcile_every_s is not None:
            # Stages a previous process left queued or running are picked up again.
            threading.Thread(
                target=self._reconcile_loop,
                args=(reconcile_every_s,),
                name="xstilts-reconciler",
                daemon=True,
            ).start()

    def _reconcile_loop(self, every_s: float) -> None:
        while not self._stopping.is_set():
            try:
                reconcile(self.ws.sessions, self, self.experiment_id)
            except Exception:
                log.exception("executor: reconcile")
            self._stopping.wait(every_s)

    def send(self, stage_id: int, queue: str) -> None:
        self._queue.put(stage_id)

    def in_flight(self) -> set[int]:
        """Stage ids delivered and not yet started (the reconciler does not send them again)."""
        with self._queue.mutex:
            return {sid for sid in self._queue.queue if sid is not None}

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking stages and wait up to ``timeout`` for the one running; whether it ended."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            stage_id = self._queue.get()
            try:
                if stage_id is None or self._stopping.is_set():
                    return
                execute_stage(self.ws, self, stage_id, self.reporter)
            except Exception:  # keep serving: the stage's own error is stored with it
                log.exception("executor: stage %s", stage_id)
            finally:
                self._queue.task_done()
