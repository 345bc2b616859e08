"""Looking experiments up for their owner: one experiment, or a page of them, newest first."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xstilts.db.models import Experiment
from xstilts.errors import NotFoundError
from xstilts.experiments.status import ExperimentBrief, brief


class ExperimentPage(BaseModel):
    items: list[ExperimentBrief]
    total: int  # matching experiments on all pages
    limit: int
    offset: int


def owned_experiment(session: Session, exp_id: str, owner: str | None) -> Experiment:
    """The owner's experiment; another owner's is as absent as a nonexistent one."""
    exp = session.get(Experiment, exp_id)
    if exp is None or exp.owner != owner:
        raise NotFoundError(f"experiment {exp_id} not found")
    return exp


def list_experiments(
    session: Session, owner: str | None, status: str | None, limit: int, offset: int
) -> ExperimentPage:
    """The owner's experiments (with ``status`` only, when given), newest first."""
    where = [Experiment.owner == owner]
    if status is not None:
        where.append(Experiment.status == status)
    total = session.scalar(select(func.count()).select_from(Experiment).where(*where)) or 0
    rows = session.scalars(
        select(Experiment)
        .where(*where)
        .order_by(Experiment.created_at.desc(), Experiment.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return ExperimentPage(items=[brief(e) for e in rows], total=total, limit=limit, offset=offset)
