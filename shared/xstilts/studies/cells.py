"""A study's stored cells: the owner check, each cell's spec read back as a spec (so a renamed
field fails here, loudly), and the grid's order."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from xstilts.comparisons.sides import AnyOwner
from xstilts.db.models import Experiment, Study
from xstilts.errors import NotFoundError
from xstilts.spec import STORED, ExperimentSpec
from xstilts.studies.spec import StudySpec, set_label


@dataclass(frozen=True)
class StoredCell:
    experiment_id: str
    status: str
    spec: ExperimentSpec

    @property
    def arm(self) -> list[str]:
        """The row's items (:attr:`IntermediateConfig.arm`: ``mnli@translated``, ``mlm``)."""
        return self.spec.intermediate.arm

    @property
    def row(self) -> str:
        return set_label(self.arm)

    @property
    def target(self) -> str:
        return self.spec.target.task


def owned_study(s: Session, study_id: str, owner: str | None) -> Study:
    study = s.get(Study, study_id)
    if study is None or (not isinstance(owner, AnyOwner) and study.owner != owner):
        raise NotFoundError(f"study {study_id} not found")
    return study


def study_spec(study: Study) -> StudySpec:
    """The stored study's spec (a check added since it was stored does not make it unreadable)."""
    return StudySpec.model_validate(study.spec, context=STORED)


def grid_fields(study: Study, spec: StudySpec) -> dict[str, object]:
    """What the study's state and its results both say of the grid: id, name, rows, targets,
    seeds."""
    rows = [set_label(t) for t in spec.intermediate_sets]
    return {"id": study.id, "name": study.name, "rows": rows, "targets": spec.targets,
            "seeds": spec.seeds}  # fmt: skip


def grid_cells(s: Session, study: Study) -> list[StoredCell]:
    """The study's cells in the grid's order: rows (intermediate sets) first, then targets. A cell
    outside the grid (stored before overrides of grid fields were refused) sorts last, so the
    study can still be read and cancelled."""
    spec = study_spec(study)
    rows = {label: i for i, label in enumerate(set_label(t) for t in spec.intermediate_sets)}
    columns = {target: j for j, target in enumerate(spec.targets)}
    experiments = s.scalars(select(Experiment).where(Experiment.study_id == study.id)).all()
    cells = [
        StoredCell(e.id, e.status, ExperimentSpec.model_validate(e.spec, context=STORED))
        for e in experiments
    ]

    def order(cell: StoredCell) -> tuple[int, int, str]:
        return (
            rows.get(cell.row, len(rows)),
            columns.get(cell.target, len(columns)),
            cell.experiment_id,
        )

    return sorted(cells, key=order)
