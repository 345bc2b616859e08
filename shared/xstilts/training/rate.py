"""Rates for progress lines and time-left estimates that hold from the first one shown."""

from __future__ import annotations

import time
from collections import deque


class RecentRate:
    """Units per second over the last ``window`` updates, counted from the end of the first one.

    The first step of a run pays for warm-up (memory allocation, kernel selection, page faults):
    a cumulative rate that includes it made the first time-left estimate several times too long.
    Until two updates exist there is no rate (0.0, which callers show as none yet)."""

    def __init__(self, window: int = 20) -> None:
        self._marks: deque[tuple[float, float]] = deque(maxlen=window + 1)

    def update(self, count: float) -> float:
        """Record the running total ``count``; returns the recent rate, 0.0 while unknown."""
        self._marks.append((time.perf_counter(), count))
        if len(self._marks) < 2:
            return 0.0
        (t_a, n_a), (t_b, n_b) = self._marks[0], self._marks[-1]
        return (n_b - n_a) / max(t_b - t_a, 1e-9)
