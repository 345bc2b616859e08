"""Stopping a computation nobody waits for any more.

A request's heavy computation (a comparison's bootstrap, a study's matrix) runs in a worker
thread, which cannot be interrupted from outside. The API gives it an event instead, set when the
client disconnects or the request's deadline passes; the computation calls :func:`check` between
chunks of its work and stops there with :class:`Abandoned`. Outside such a request (the CLI, a
worker) there is no event and :func:`check` does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_stop: ContextVar[threading.Event | None] = ContextVar("xstilts_stop", default=None)


class Abandoned(Exception):
    """The computation was stopped: the request that started it has given up."""


def check() -> None:
    """Raise :class:`Abandoned` once the current computation's event is set."""
    event = _stop.get()
    if event is not None and event.is_set():
        raise Abandoned


@contextmanager
def stoppable(event: threading.Event) -> Iterator[None]:
    """Run the block as a computation that ``event`` stops (at its next :func:`check`)."""
    token = _stop.set(event)
    try:
        yield
    finally:
        _stop.reset(token)
