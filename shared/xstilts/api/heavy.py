"""Heavy requests (comparisons, report pages, study results) run a few at a time.

A comparison with 100,000 resamples holds a CPU for seconds. Run as many as clients ask for, they
share the CPUs and the interpreter's lock with everything else the server does: each takes ever
longer, the health check slows, and every client waits until its deadline. So the server keeps
``XSTILTS_HEAVY_REQUESTS`` slots: a heavy request takes one or is answered 429 at once with
``Retry-After``. A slot is given back when the computation ends, not when its request does, so
work nobody waits for still counts; and it ends soon: when its client disconnects or its deadline
passes, the computation is told to stop (:mod:`xstilts.interrupts`) at its next chunk.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio.to_thread
from fastapi import Depends, HTTPException, Request

from xstilts import interrupts

T = TypeVar("T")
log = logging.getLogger(__name__)
POLL_S = 0.25  # how often a waiting request looks for its client's disconnection


class HeavyWork:
    """At most ``slots`` heavy computations at a time in this process."""

    def __init__(self, slots: int, deadline_s: float, retry_after_s: int = 5) -> None:
        self.slots = slots
        self.deadline_s = deadline_s  # the request's (XSTILTS_REQUEST_TIMEOUT_S)
        self.retry_after_s = retry_after_s
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.running = 0  # computations holding a slot now (for tests and logs)

    async def run(self, request: Request, what: str, compute: Callable[[], T]) -> T:
        """``compute()`` in a worker thread if a slot is free now; 429 otherwise. Stopped when the
        client disconnects or the request's deadline passes (503)."""
        if not self._free.acquire(blocking=False):
            raise HTTPException(
                429,
                f"{self.slots} heavy requests (comparisons, reports, study results) are being "
                f"computed; retry in {self.retry_after_s} s",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        stop = threading.Event()
        started = time.monotonic()

        def work() -> T:
            with self._lock:
                self.running += 1
            try:
                with interrupts.stoppable(stop):
                    return compute()
            finally:
                with self._lock:
                    self.running -= 1
                self._free.release()

        task = asyncio.ensure_future(anyio.to_thread.run_sync(work, abandon_on_cancel=True))
        # Its outcome is read below, or nobody's once the request has gone: never an unread error.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=POLL_S)
                if task.done():
                    break
                took = time.monotonic() - started
                if await request.is_disconnected():
                    stop.set()
                    log.warning("%s: the client left after %.1f s; stopped", what, took)
                    raise HTTPException(499, "the client closed the request")
                if took > self.deadline_s:
                    stop.set()
                    log.warning("%s: not done within %g s; stopped", what, self.deadline_s)
                    raise HTTPException(
                        503,
                        f"not computed within {self.deadline_s:g} s; retry later",
                        headers={"Retry-After": str(self.retry_after_s)},
                    )
            return task.result()
        except asyncio.CancelledError:
            stop.set()
            raise
        except interrupts.Abandoned:
            raise HTTPException(499, "the client closed the request") from None


async def get_heavy(request: Request) -> HeavyWork:
    heavy: HeavyWork = request.app.state.heavy
    return heavy


HeavyDep = Annotated[HeavyWork, Depends(get_heavy)]
