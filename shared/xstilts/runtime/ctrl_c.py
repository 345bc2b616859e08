"""Ctrl-C that cannot be lost while ``xstilts run`` waits for its stages.

Python turns SIGINT into :class:`KeyboardInterrupt` in the main thread only when it next runs its
signal handlers; a native library that polls for Ctrl-C itself (``PyOS_InterruptOccurred``)
clears the pending signal without that ever happening. A run interrupted just as a stage was
taken over from a killed earlier run went on to the end, its Ctrl-C gone. The C-level handler
also writes each signal's number to the wakeup file descriptor before anything can clear it, so
the waiting loop reads that too and raises the interrupt itself.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def ctrl_c_latch() -> Iterator[Callable[[], bool]]:
    """A check that is True once SIGINT has arrived since the block began. Where it cannot watch
    (not the main thread, or a wakeup descriptor that someone else, an event loop, already set)
    the check is always False and Python's own handling is all there is."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    reader, writer = socket.socketpair()
    try:
        reader.setblocking(False)
        writer.setblocking(False)
        earlier = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        if earlier != -1:  # someone else's: theirs, untouched
            signal.set_wakeup_fd(earlier)
            yield lambda: False
            return
        seen = [False]

        def interrupted() -> bool:
            with contextlib.suppress(BlockingIOError):
                while data := reader.recv(64):
                    seen[0] = seen[0] or int(signal.SIGINT) in data
            return seen[0]

        try:
            yield interrupted
        finally:
            signal.set_wakeup_fd(-1)
    finally:
        reader.close()
        writer.close()
