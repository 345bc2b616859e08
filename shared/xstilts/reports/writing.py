"""Which page an id gets (an experiment, a study, or ``A..B``), and writing a page's files."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from xstilts.comparisons import compare_experiments
from xstilts.reports.comparison_page import comparison_report
from xstilts.reports.experiment_page import experiment_report
from xstilts.reports.page import Report
from xstilts.reports.study_page import study_report
from xstilts.runtime.artifacts import ArtifactStore


def write_report(report: Report, out: Path) -> list[Path]:
    """The figures as ``<name>.png`` and ``<name>.svg`` and the page as ``index.html``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fig in report.figures:
        (out / f"{fig.name}.png").write_bytes(fig.png)
        (out / f"{fig.name}.svg").write_text(fig.svg, encoding="utf-8")
        written += [out / f"{fig.name}.png", out / f"{fig.name}.svg"]
    (out / "index.html").write_text(report.html(), encoding="utf-8")
    return [*written, out / "index.html"]


def report_for(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    what: str,
    owner: str | None,
) -> Report:
    """``what``: an experiment id, a study id, or ``A..B`` (baseline..candidate)."""
    from xstilts.db.models import Study

    if ".." in what:
        a, b = what.split("..", 1)
        return comparison_report(compare_experiments(sessions, store, a, b, owner))
    with sessions() as s:
        is_study = s.get(Study, what) is not None
    if is_study:
        return study_report(sessions, store, what, owner)
    return experiment_report(sessions, what, owner)
