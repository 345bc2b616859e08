"""A training run's losses, kept on the device until a log line or the result reads them."""

from __future__ import annotations

import torch


class LossBook:
    """Training losses kept on the device: per step (the mean over its micro-batches) and per task
    (sum and count), in float64, read back only when asked. Reading one (``.item()``) waits for the
    GPU to finish, and once per micro-batch that kept it idle between steps. The sums run in the
    order the values come: the same numbers as Python floats would give."""

    def __init__(
        self, tasks: int, steps: int, device: torch.device, micro_per_step: int = 1
    ) -> None:
        self.sums = torch.zeros(tasks, dtype=torch.float64, device=device)
        self.batches = [0] * tasks
        self.steps = torch.zeros(steps, dtype=torch.float64, device=device)
        self.current = torch.zeros((), dtype=torch.float64, device=device)
        self.done = 0
        # Every micro-batch's loss and task, for each task's own start and end.
        self.micro = torch.zeros(steps * micro_per_step, dtype=torch.float64, device=device)
        self.micro_task: list[int] = []

    def add(self, task: int, loss: torch.Tensor, accumulation: int) -> None:
        value = loss.to(torch.float64)
        self.current += value / accumulation
        self.sums[task] += value
        self.batches[task] += 1
        if len(self.micro_task) < self.micro.numel():
            self.micro[len(self.micro_task)] = value
            self.micro_task.append(task)

    def add_value(self, task: int, value: float, accumulation: int) -> None:
        self.add(
            task, torch.tensor(value, dtype=torch.float64, device=self.sums.device), accumulation
        )

    def end_step(self, index: int) -> None:
        self.steps[index] = self.current
        self.current.zero_()
        self.done = index + 1

    def step_loss(self, index: int) -> float:
        return float(self.steps[index].item())

    def step_losses(self) -> list[float]:
        return [float(v) for v in self.steps[: self.done].tolist()]

    def task_means(self) -> dict[int, float]:
        sums = self.sums.tolist()
        return {i: sums[i] / n for i, n in enumerate(self.batches) if n}

    def task_start_end(self) -> dict[int, tuple[float, float]]:
        """Per task, its mean loss over the first and the last tenth of its micro-batches."""
        values = self.micro[: len(self.micro_task)].tolist()
        return {
            task: first_and_last_tenth(
                [v for v, t in zip(values, self.micro_task, strict=True) if t == task]
            )
            for task in sorted(set(self.micro_task))
        }


def first_and_last_tenth(values: list[float]) -> tuple[float, float]:
    """The means of the first and the last tenth of ``values`` (at least one value each)."""
    window = max(1, len(values) // 10)
    return sum(values[:window]) / window, sum(values[-window:]) / window
