"""Multi-task sampling: how often each task's batch is drawn, and which task each micro-batch
comes from (a pure function of the seed and the position, so a resumed run replays it)."""

from __future__ import annotations

import numpy as np

SAMPLING_STRATEGIES = ("proportional", "temperature", "uniform")


def sampling_probabilities(
    sizes: dict[str, int],
    strategy: str = "proportional",
    temperature: float = 2.0,
    size_cap: int | None = None,
) -> dict[str, float]:
    """How often each task's batch is drawn in multi-task training.

    Sizes are first capped at ``size_cap`` (so one huge task cannot drown the others), then
    ``proportional`` uses them as they are, ``temperature`` raises them to ``1 / temperature``
    (T=1 is proportional, larger T tends to uniform), and ``uniform`` ignores them.
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"sampling strategy {strategy!r}: valid: {', '.join(SAMPLING_STRATEGIES)}")
    capped = {t: float(min(n, size_cap) if size_cap else n) for t, n in sizes.items()}
    if strategy == "uniform":
        weights = {t: 1.0 for t in capped}
    elif strategy == "temperature":
        weights = {t: n ** (1.0 / temperature) for t, n in capped.items()}
    else:
        weights = capped
    total = sum(weights.values())
    return {t: w / total for t, w in weights.items()}


class TaskSchedule:
    """Which task each micro-batch comes from: a pure function of (seed, micro-batch index), so a
    resumed run makes the same choices and can count how far each task's batch stream had got."""

    def __init__(self, tasks: list[str], probabilities: dict[str, float], seed: int) -> None:
        self.tasks = tasks
        self.p = np.array([probabilities[t] for t in tasks])
        self.seed = seed

    def task_at(self, k: int) -> int:
        if len(self.tasks) == 1:
            return 0
        return int(np.random.default_rng([self.seed, 7919, k]).choice(len(self.tasks), p=self.p))
