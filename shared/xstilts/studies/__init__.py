"""Studies: the paper's grid as one object. A study's cells are experiments submitted together (in
one transaction) whose identical stages are shared by key, so each intermediate model trains
once per seed whatever the number of targets. Its results are the paper-style matrix: rows the
intermediate task sets, columns the targets, each cell compared with the baseline row.

``spec`` (the grid and its expansion), ``submission`` (plan and store), ``cells`` (the stored
cells in the grid's order), ``state`` (progress, cancel), ``results`` (the matrix), ``model``
(what the endpoints return)."""

from __future__ import annotations

from xstilts.studies.results import MISSING, study_results
from xstilts.studies.spec import StudySpec, expand, parse_study
from xstilts.studies.state import cancel_study, study_state, study_status
from xstilts.studies.submission import plan_study, study_request, submit_study

__all__ = [
    "MISSING",
    "StudySpec",
    "cancel_study",
    "expand",
    "parse_study",
    "plan_study",
    "study_request",
    "study_results",
    "study_state",
    "study_status",
    "submit_study",
]
