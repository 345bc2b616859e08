"""Studies: the paper's grid as one object. A study's cells are experiments submitted together (in
one transaction) whose identical stages are shared by key, so each intermediate model trains
once per seed whatever the number of targets. Its results are the paper-style matrix: rows the
intermediate task sets, columns the targets, each cell compared with the baseline row."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xstilts import interrupts
from xstilts.comparisons import CompareOptions, compare_experiments
from xstilts.comparisons.model import StatisticChange
from xstilts.comparisons.sides import AnyOwner
from xstilts.config import Settings
from xstilts.db.models import Experiment, Status, Study
from xstilts.errors import ConflictError, NotFoundError, XstiltsError
from xstilts.experiments.plan import PlannedStage
from xstilts.experiments.quotas import check_quota
from xstilts.experiments.results import experiment_results
from xstilts.experiments.submit import plan, store_experiment
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.spec import STORED, ExperimentSpec, SpecError
from xstilts.studies.model import (
    CellResult,
    CellState,
    StudyResults,
    StudyState,
)
from xstilts.studies.spec import StudySpec, expand, parse_study, set_label

__all__ = [
    "StudySpec",
    "expand",
    "cancel_study",
    "parse_study",
    "study_results",
    "study_state",
    "submit_study",
]

FINISHED = (Status.SUCCEEDED.value, Status.FAILED.value)
MISSING = "missing"  # a grid position no stored cell holds (only in studies stored before the
# grid's fields were protected from overrides)
_ORDER = (Status.RUNNING, Status.QUEUED, Status.PENDING, Status.FAILED, Status.CANCELLED)


def plan_study(
    cells: list[tuple[list[str], str, ExperimentSpec]], settings: Settings
) -> list[tuple[list[str], str, ExperimentSpec, list[PlannedStage]]]:
    """Every cell's stages; one :class:`SpecError` lists every bad cell."""
    planned = []
    problems = []
    total = 0
    for tasks, target, spec in cells:
        try:
            stages = plan(spec, settings)
        except XstiltsError as e:
            where = ("cells", f"{set_label(tasks)}/{target}")
            problems.append(((*where, *(e.field or "").split(".")), e.reason))
            continue
        total += len(stages)
        planned.append((tasks, target, spec, stages))
    if problems:
        raise SpecError([(tuple(p for p in loc if p != ""), msg) for loc, msg in problems])
    return planned


def submit_study(
    sessions: sessionmaker[Session], settings: Settings, study: StudySpec, owner: str | None
) -> tuple[str, list[str]]:
    """Validate and plan every cell, then store the study and all its cells in one transaction.
    Returns the study id and its experiments' ids (rows first); nothing runs yet."""
    cells = expand(study)
    check_quota(sessions, settings, [spec for _, _, spec in cells], owner)  # before planning
    planned = plan_study(cells, settings)
    with sessions.begin() as s:
        row = Study(name=study.name, spec=study.model_dump(mode="json"), owner=owner)
        s.add(row)
        s.flush()
        ids = [
            store_experiment(s, spec, stages, owner=owner, study_id=row.id)
            for _, _, spec, stages in planned
        ]
        return row.id, ids


def _owned(s: Session, study_id: str, owner: str | None) -> Study:
    study = s.get(Study, study_id)
    if study is None or (not isinstance(owner, AnyOwner) and study.owner != owner):
        raise NotFoundError(f"study {study_id} not found")
    return study


def _arm(cell: Experiment) -> list[str]:
    """A cell's row items (:attr:`IntermediateConfig.arm`: ``mnli@translated``, ``mlm``)."""
    return ExperimentSpec.model_validate(cell.spec, context=STORED).intermediate.arm


def _coordinates(cell: Experiment) -> tuple[str, str]:
    """A cell's (row label, target), read from its spec."""
    return set_label(_arm(cell)), cell.spec["target"]["task"]


def _cells(s: Session, study: Study) -> list[Experiment]:
    """The study's cells in the grid's order: rows (intermediate sets) first, then targets. A cell
    outside the grid (stored before overrides of grid fields were refused) sorts last, so the
    study can still be read and cancelled."""
    spec = StudySpec.model_validate(study.spec, context=STORED)
    rows = {label: i for i, label in enumerate(set_label(t) for t in spec.intermediate_sets)}
    columns = {target: j for j, target in enumerate(spec.targets)}
    cells = s.scalars(select(Experiment).where(Experiment.study_id == study.id)).all()

    def order(cell: Experiment) -> tuple[int, int, str]:
        row, target = _coordinates(cell)
        return rows.get(row, len(rows)), columns.get(target, len(columns)), cell.id

    return sorted(cells, key=order)


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
        study = _owned(s, study_id, owner)
        cells = _cells(s, study)
        spec = StudySpec.model_validate(study.spec, context=STORED)
    statuses = [c.status for c in cells]
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    page = [
        CellState(
            intermediate_tasks=_arm(c),
            row=set_label(_arm(c)),
            target=c.spec["target"]["task"],
            experiment_id=c.id,
            status=status,
        )
        for c, status in list(zip(cells, statuses, strict=True))[offset : offset + limit]
    ]
    return StudyState(
        id=study.id,
        name=study.name,
        status=study_status(statuses),
        rows=[set_label(t) for t in spec.intermediate_sets],
        targets=spec.targets,
        seeds=spec.seeds,
        total_cells=len(cells),
        counts=counts,
        limit=limit,
        offset=offset,
        cells=page,
    )


def cancel_study(sessions: sessionmaker[Session], study_id: str, owner: str | None) -> None:
    """Cancel every cell that has not finished; finished cells stay as they are."""
    from xstilts.runtime.orchestration import cancel

    with sessions() as s:
        study = _owned(s, study_id, owner)
        live = [c.id for c in _cells(s, study) if c.status not in FINISHED]
    for exp_id in live:
        try:
            cancel(sessions, exp_id)
        except ConflictError:
            pass  # it finished meanwhile: it stays as it is


def study_results(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    study_id: str,
    owner: str | None,
    options: CompareOptions | None = None,
    limit: int = 100,
    offset: int = 0,
) -> StudyResults:
    """The matrix: for a page of rows (intermediate sets), every target's cell with its XTREME
    task score and, once it and its baseline cell have succeeded, the change of the task score
    and of the non-English standard deviation over the baseline, with intervals and p-values."""
    with sessions() as s:
        study = _owned(s, study_id, owner)
        cells: dict[tuple[str, str], tuple[str, str]] = {}
        for c in _cells(s, study):
            cells.setdefault(_coordinates(c), (c.id, c.status))
        spec = StudySpec.model_validate(study.spec, context=STORED)
    rows = [set_label(t) for t in spec.intermediate_sets]
    matrix: list[list[CellResult]] = []
    for row in rows[offset : offset + limit]:
        line = []
        for target in spec.targets:
            interrupts.check()  # a request that gave up stops between cells
            exp_id, status = cells.get((row, target), ("", MISSING))
            base_id, base_status = cells.get(("baseline", target), ("", MISSING))
            cell = CellResult(row=row, target=target, experiment_id=exp_id, status=status)
            if status == Status.SUCCEEDED.value:
                summary = experiment_results(sessions, exp_id).summary
                if summary is not None:
                    cell.xtreme_score = summary.xtreme_score
                    cell.non_english_std = summary.non_english_std
                    cell.per_seed_non_english_std = [
                        v.non_english_std for v in summary.per_seed.values()
                    ]
            if row != "baseline" and status == base_status == Status.SUCCEEDED.value:
                comparison = compare_experiments(sessions, store, base_id, exp_id, owner, options)
                stats: dict[str, StatisticChange] = {c.statistic: c for c in comparison.statistics}
                cell.score_change = stats.get("xtreme_score")
                cell.non_english_std_change = stats.get("non_english_std")
                cell.warnings = comparison.warnings
            line.append(cell)
        matrix.append(line)
    return StudyResults(
        id=study.id,
        name=study.name,
        rows=rows,
        targets=spec.targets,
        seeds=spec.seeds,
        total_rows=len(rows),
        limit=limit,
        offset=offset,
        cells=matrix,
    )
