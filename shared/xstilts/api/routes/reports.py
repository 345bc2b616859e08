"""Report pages: one self-contained HTML page (figures inline, tables of the numbers) about an
experiment, a comparison or a study. A browser can pass the key as ``?api_key=``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse

from xstilts.api.deps import PageOwner, SessionsDep, SettingsDep
from xstilts.api.routes.comparisons import ExperimentParam
from xstilts.reports import Report, comparison_report, experiment_report, study_report
from xstilts.runtime.artifacts import ArtifactStore


def _json(description: str, schema: str = "ErrorDetail") -> dict[str, Any]:
    """An error response of an HTML route: its body is JSON (a ``model`` would be documented
    under the route's text/html)."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


router = APIRouter(
    tags=["reports"],
    responses={
        401: _json("missing or unknown API key"),
        503: _json("the database is unavailable (Retry-After)"),
    },
)
HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "the report page"}
}
Id = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="an id (32 hex)")]
# The page carries no script and loads nothing: forbid both, whatever a name in it says.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _page(report: Report) -> HTMLResponse:
    return HTMLResponse(report.html(), headers={"Content-Security-Policy": CSP})


@router.get(
    "/experiments/{exp_id}/report",
    response_class=HTMLResponse,
    responses={
        **HTML,
        404: _json("no such experiment"),
        422: _json("a bad id", "ValidationErrors"),
    },
)
def get_experiment_report(exp_id: Id, owner: PageOwner, sessions: SessionsDep) -> HTMLResponse:
    """The experiment's per-language scores with intervals and its spread across languages."""
    return _page(experiment_report(sessions, exp_id, owner))


@router.get(
    "/comparisons/report",
    response_class=HTMLResponse,
    responses={
        **HTML,
        404: _json("no such experiment of this key's owner"),
        409: _json("an experiment has not succeeded (yet)"),
        422: _json(
            "a bad parameter, or the two experiments were not evaluated alike",
            "ValidationErrors",
        ),
    },
)
def get_comparison_report(
    baseline: ExperimentParam,
    candidate: ExperimentParam,
    owner: PageOwner,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """``GET /comparisons`` as a page: scores and changes per language, the spread, the tables."""
    store = ArtifactStore(settings.artifacts_dir)
    return _page(comparison_report(sessions, store, baseline, candidate, owner))


@router.get(
    "/studies/{study_id}/report",
    response_class=HTMLResponse,
    responses={**HTML, 404: _json("no such study"), 422: _json("a bad id", "ValidationErrors")},
)
def get_study_report(
    study_id: Id, owner: PageOwner, sessions: SessionsDep, settings: SettingsDep
) -> HTMLResponse:
    """The result matrix as heatmaps of changes (hatched: not significant), each target's spread
    per row and seed, and the table behind them."""
    store = ArtifactStore(settings.artifacts_dir)
    return _page(study_report(sessions, store, study_id, owner))
