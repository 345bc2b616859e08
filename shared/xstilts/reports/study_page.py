"""The study page: the grid's matrix (task score and non-English std, each with its change over
the baseline row), its heatmap, and the spread of every row per target."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from xstilts.comparisons.cache import CompareOptions
from xstilts.experiments.results import ExperimentResults
from xstilts.reports import figures
from xstilts.reports.page import Report, Table, fmt_change, fmt_interval, fmt_p, fmt_pts
from xstilts.reports.spread import per_seed_non_english, spread_figure, spread_table
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.studies.model import StudyResults
from xstilts.studies.results import study_page_results


def study_report(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    study_id: str,
    owner: str | None,
    options: CompareOptions | None = None,
) -> Report:
    r, cell_results = study_page_results(sessions, store, study_id, owner, options, (10_000, 0))
    return _study_page(r, cell_results)


def _study_page(r: StudyResults, cell_results: dict[str, ExperimentResults]) -> Report:
    figs = [figures.grid_heatmap(r)]
    spread_tables = []
    for j, target in enumerate(r.targets):
        groups = []
        for row, line in zip(r.rows, r.cells, strict=True):
            cell = line[j]
            if (result := cell_results.get(cell.experiment_id)) is not None:
                groups.append((row, per_seed_non_english(result)))
        if groups:
            title = f"{target}: non-English scores per row and seed"
            figs.append(spread_figure(groups, title, f"spread_{target}"))
            spread_tables.append(spread_table(f"{title} (points)", groups))
    rows: list[list[str]] = []
    bold: set[int] = set()
    for line in r.cells:
        for cell in line:
            sc, sd = cell.score_change, cell.non_english_std_change
            if (sc and sc.significant) or (sd and sd.significant):
                bold.add(len(rows))
            rows.append(
                [
                    cell.row,
                    cell.target,
                    cell.status,
                    fmt_pts(cell.xtreme_score),
                    fmt_change(sc.difference) if sc else "–",
                    fmt_interval(sc.ci_low, sc.ci_high) if sc else "–",
                    fmt_p(sc.p_value) if sc else "–",
                    fmt_pts(cell.non_english_std, 2),
                    fmt_change(sd.difference) if sd else "–",
                    fmt_interval(sd.ci_low, sd.ci_high) if sd else "–",
                    fmt_p(sd.p_value) if sd else "–",
                ]
            )
    table = Table(
        "the matrix (points; changes over the baseline row of the same target)",
        ["row", "target", "status", "task score", "change", "95% interval", "p",
         "non-English std", "change", "95% interval", "p"],
        rows,
        bold,
        "Bold: the task score or the std changed significantly (p < 0.05).",
    )  # fmt: skip
    # The comparisons' warnings, and each cell's own (a loss that did not fall, a new LM head),
    # named by its row.
    warnings = sorted({w for line in r.cells for cell in line for w in cell.warnings})
    for row, line in zip(r.rows, r.cells, strict=True):
        for cell in line:
            if (result := cell_results.get(cell.experiment_id)) is not None:
                warnings += [f"{row}/{cell.target}: {w}" for w in result.warnings]
    meta = [
        f"study {r.id}: {len(r.rows)} intermediate task sets x {len(r.targets)} targets, "
        f"seeds {r.seeds}"
    ]
    return Report(f"study {r.name}", meta, figs, [table, *spread_tables], warnings)
