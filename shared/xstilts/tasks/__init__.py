"""The task registry: ``get_task("xnli")``, ``all_tasks()``."""

from xstilts.tasks.base import HubSource, LocalFile, Split, SplitSource, Task, TaskFormat
from xstilts.tasks.registry import (
    REGISTRY,
    all_tasks,
    get_task,
    intermediate_task_names,
    target_task_names,
)

__all__ = [
    "REGISTRY",
    "HubSource",
    "LocalFile",
    "Split",
    "SplitSource",
    "Task",
    "TaskFormat",
    "all_tasks",
    "get_task",
    "intermediate_task_names",
    "target_task_names",
]
