"""A study's progress (counts by status and a page of its cells) and cancelling it."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.orm import Session, sessionmaker

from xstilts.db.models import Status
from xstilts.errors import ConflictError
from xstilts.studies.cells import grid_cells, grid_fields, owned_study, study_spec
from xstilts.studies.model import CellState, StudyState

_ORDER = (Status.RUNNING, Status.QUEUED, Status.PENDING, Status.FAILED, Status.CANCELLED)


def study_status(statuses: list[str]) -> str:
    """A study is running while any cell is live, succeeded when all did, else failed/cancelled."""
    for status in _ORDER:
        if status.value in statuses:
            return (
                Status.RUNNING.value if status in (Status.QUEUED, Status.PENDING) else status.value
            )
    return Status.SUCCEEDED.value


def study_state(
    sessions: sessionmaker[Session],
    study_id: str,
    owner: str | None,
    limit: int = 100,
    offset: int = 0,
) -> StudyState:
    """Progress over all cells (counts by status) and a page of the cells."""
    with sessions() as s:
        study = owned_study(s, study_id, owner)
        cells = grid_cells(s, study)
        spec = study_spec(study)
    statuses = [c.status for c in cells]
    page = [
        CellState(
            intermediate_tasks=c.arm,
            row=c.row,
            target=c.target,
            experiment_id=c.experiment_id,
            status=c.status,
        )
        for c in cells[offset : offset + limit]
    ]
    return StudyState.model_validate(
        {
            **grid_fields(study, spec),
            "status": study_status(statuses),
            "total_cells": len(cells),
            "counts": dict(Counter(statuses)),
            "limit": limit,
            "offset": offset,
            "cells": page,
        }
    )


def cancel_study(sessions: sessionmaker[Session], study_id: str, owner: str | None) -> None:
    """Cancel every cell that has not succeeded (a failed cell, to stop its stages that still
    run); succeeded cells, and failed ones with nothing left running, stay as they are."""
    from xstilts.runtime.scheduler import cancel

    with sessions() as s:
        study = owned_study(s, study_id, owner)
        live = [
            c.experiment_id
            for c in grid_cells(s, study)
            if c.status not in (Status.SUCCEEDED.value, Status.CANCELLED.value)
        ]
    for exp_id in live:
        try:
            cancel(sessions, exp_id)
        except ConflictError:
            pass  # it finished meanwhile: it stays as it is
