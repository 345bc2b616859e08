"""Looking experiments up for their owner: one experiment, or a page of them, newest first; an id
completed from the prefix a table shows."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xstilts.db.models import Experiment, Study
from xstilts.errors import NotFoundError, XstiltsError
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


# Tables print ids cut to 8 or 12 characters; a prefix at least this long may stand for the id.
MIN_PREFIX = 6
ID_LENGTH = 32
SHOWN = 5  # ids an ambiguous prefix's error lists


def complete_id(session: Session, ref: str) -> str:
    """The experiment or study id that ``ref`` begins (the 8 characters ``compare`` prints, say),
    among every record of the database: the CLI's view of its own workspace. ``ref`` itself when
    it is a whole id or begins none, so the caller's own lookup says it is not found. A prefix
    that begins several ids is refused, naming them."""
    if not MIN_PREFIX <= len(ref) < ID_LENGTH or not all(c in "0123456789abcdef" for c in ref):
        return ref
    found: list[str] = []
    for model in (Experiment, Study):
        found += session.scalars(
            select(model.id)
            .where(model.id.startswith(ref, autoescape=True))
            .order_by(model.id)
            .limit(SHOWN + 1)
        ).all()
    if len(found) > 1:
        raise XstiltsError(
            f"{ref!r} begins more than one id ({', '.join(found[:SHOWN])}"
            f"{', ...' if len(found) > SHOWN else ''}); give more of it",
            field="id",
        )
    return found[0] if found else ref
