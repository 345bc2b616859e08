"""Submitting a study: every cell validated and planned before anything is stored, then the study
and all its cells stored in one transaction by the same core as an experiment
(:func:`xstilts.experiments.submit.submit`: quotas, idempotency key)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import Study
from xstilts.errors import XstiltsError
from xstilts.experiments.plan import PlannedStage
from xstilts.experiments.submit import Request, plan, submit
from xstilts.spec import ExperimentSpec, Loc, SpecError
from xstilts.studies.spec import StudySpec, expand, set_label


def plan_study(
    cells: list[tuple[list[str], str, ExperimentSpec]], settings: Settings
) -> list[list[PlannedStage]]:
    """Every cell's stages, in order; one :class:`SpecError` lists every bad cell, each error at
    ``cells.<row>/<target>.<field>``."""
    planned = []
    problems: list[tuple[Loc, str]] = []
    for tasks, target, spec in cells:
        try:
            planned.append(plan(spec, settings))
        except XstiltsError as e:
            where = ("cells", f"{set_label(tasks)}/{target}", *(e.field or "").split("."))
            problems.append((tuple(p for p in where if p != ""), e.reason))
    if problems:
        raise SpecError(problems)
    return planned


def study_request(study: StudySpec) -> Request:
    """The study as one submission: its cells validated (:class:`SpecError` naming each bad one)."""
    cells = expand(study)
    return Request(
        record=Study,
        name=study.name,
        body=study,
        specs=[spec for _, _, spec in cells],
        plan=lambda settings: plan_study(cells, settings),
    )


def submit_study(
    sessions: sessionmaker[Session], settings: Settings, study: StudySpec, owner: str | None
) -> tuple[str, list[str]]:
    """Validate and plan every cell, then store the study and all its cells in one transaction.
    Returns the study id and its experiments' ids (rows first); nothing runs yet."""
    submitted = submit(sessions, settings, study_request(study), owner)
    return submitted.id, submitted.experiment_ids
