"""A study's results: the paper-style matrix, each cell compared with the baseline row's cell of
the same target."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from xstilts import interrupts
from xstilts.comparisons import CompareOptions, compare_experiments
from xstilts.comparisons.model import StatisticChange
from xstilts.db.models import Status
from xstilts.experiments.results import ExperimentResults, experiment_results
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.studies.cells import grid_cells, grid_fields, owned_study, study_spec
from xstilts.studies.model import CellResult, StudyResults
from xstilts.studies.spec import set_label

MISSING = "missing"  # a grid position no stored cell holds (only in studies stored before the
# grid's fields were protected from overrides)


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
    return study_page_results(sessions, store, study_id, owner, options, (limit, offset))[0]


def study_page_results(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    study_id: str,
    owner: str | None,
    options: CompareOptions | None,
    page: tuple[int, int],
) -> tuple[StudyResults, dict[str, ExperimentResults]]:
    """:func:`study_results` of a page of rows (``limit``, ``offset``), and the results of each
    succeeded cell on it by experiment id (the study page draws them: each is read once)."""
    limit, offset = page
    with sessions() as s:
        study = owned_study(s, study_id, owner)
        cells: dict[tuple[str, str], tuple[str, str]] = {}
        for c in grid_cells(s, study):
            cells.setdefault((c.row, c.target), (c.experiment_id, c.status))
        spec = study_spec(study)
    rows = [set_label(t) for t in spec.intermediate_sets]
    matrix: list[list[CellResult]] = []
    cell_results: dict[str, ExperimentResults] = {}
    for row in rows[offset : offset + limit]:
        line = []
        for target in spec.targets:
            interrupts.check()  # a request that gave up stops between cells
            exp_id, status = cells.get((row, target), ("", MISSING))
            base_id, base_status = cells.get(("baseline", target), ("", MISSING))
            cell = CellResult(row=row, target=target, experiment_id=exp_id, status=status)
            if status == Status.SUCCEEDED.value:
                cell_results[exp_id] = experiment_results(sessions, exp_id)
                summary = cell_results[exp_id].summary
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
    results = StudyResults.model_validate(
        {
            **grid_fields(study, spec),
            "total_rows": len(rows),
            "limit": limit,
            "offset": offset,
            "cells": matrix,
        }
    )
    return results, cell_results
