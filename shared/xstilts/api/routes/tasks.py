"""``/tasks``: the task registry (what ``xstilts tasks --json`` prints)."""

from __future__ import annotations

from fastapi import APIRouter

from xstilts.api.deps import CurrentOwner
from xstilts.api.responses import UNAUTHORIZED
from xstilts.api.schemas import TaskOut
from xstilts.tasks import all_tasks

router = APIRouter(
    prefix="/tasks",
    tags=["tasks"],
    responses=UNAUTHORIZED,
)


@router.get("")
def list_tasks(_: CurrentOwner) -> list[TaskOut]:
    return [TaskOut.model_validate(t.describe()) for t in all_tasks()]
