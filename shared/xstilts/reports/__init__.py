"""Reports: figures (PNG and SVG) and one self-contained HTML page about an experiment, a
comparison of two, or a study. ``xstilts report`` writes them to a folder; the API serves the
page at ``/experiments/{id}/report``, ``/comparisons/report`` and ``/studies/{id}/report``."""

from __future__ import annotations

from xstilts.reports.comparison_page import comparison_report
from xstilts.reports.experiment_page import experiment_report
from xstilts.reports.page import Report
from xstilts.reports.study_page import study_report
from xstilts.reports.writing import report_for, write_report

__all__ = [
    "Report",
    "comparison_report",
    "experiment_report",
    "report_for",
    "study_report",
    "write_report",
]
