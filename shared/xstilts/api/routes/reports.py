"""Report pages: one self-contained HTML page (figures inline, tables of the numbers) about an
experiment, a comparison or a study. A browser can pass the key as ``?api_key=``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from xstilts.api.deps import PageOwner, SessionsDep, StoreDep
from xstilts.api.heavy import HeavyDep, HeavyWork
from xstilts.api.responses import (
    HEAVY_TEXT,
    UNAUTHORIZED_TEXT,
    UNAVAILABLE_TEXT,
    Responses,
    json_error,
)
from xstilts.api.routes.comparisons import ExperimentParam
from xstilts.comparisons import compare_experiments
from xstilts.reports import Report, comparison_report, experiment_report, study_report

router = APIRouter(
    tags=["reports"],
    responses={
        401: json_error(UNAUTHORIZED_TEXT),
        429: json_error(HEAVY_TEXT),
        503: json_error(UNAVAILABLE_TEXT),
    },
)
HTML: Responses = {200: {"content": {"text/html": {}}, "description": "the report page"}}


def _page_about(what: str) -> Responses:
    """The responses of the page about one ``what``, named by its id in the path."""
    return {
        **HTML,
        404: json_error(f"no such {what}"),
        422: json_error("a bad id", "ValidationErrors"),
    }


Id = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="an id (32 hex)")]
# The page carries no script and loads nothing: forbid both, whatever a name in it says; and no
# other site may frame it. Its URL may hold the key (?api_key=): send it to no other site
# (Referrer-Policy), keep no copy (Cache-Control), and never sniff the type.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


async def _page(
    request: Request, heavy: HeavyWork, what: str, build: Callable[[], Report]
) -> HTMLResponse:
    """The report ``build`` makes, drawn in a slot of heavy work, as a page."""
    html = await heavy.run(request, what, lambda: build().html())
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get(
    "/experiments/{exp_id}/report",
    response_class=HTMLResponse,
    responses=_page_about("experiment"),
)
async def get_experiment_report(
    request: Request, exp_id: Id, owner: PageOwner, sessions: SessionsDep, heavy: HeavyDep
) -> HTMLResponse:
    """The experiment's per-language scores with intervals and its spread across languages."""
    return await _page(
        request, heavy, "experiment report", lambda: experiment_report(sessions, exp_id, owner)
    )


@router.get(
    "/comparisons/report",
    response_class=HTMLResponse,
    responses={
        **HTML,
        404: json_error("no such experiment of this key's owner"),
        409: json_error("an experiment has not succeeded (yet)"),
        422: json_error(
            "a bad parameter, or the two experiments were not evaluated alike",
            "ValidationErrors",
        ),
    },
)
async def get_comparison_report(
    request: Request,
    baseline: ExperimentParam,
    candidate: ExperimentParam,
    owner: PageOwner,
    sessions: SessionsDep,
    store: StoreDep,
    heavy: HeavyDep,
) -> HTMLResponse:
    """``GET /comparisons`` as a page: scores and changes per language, the spread, the tables."""
    return await _page(
        request,
        heavy,
        "comparison report",
        lambda: comparison_report(compare_experiments(sessions, store, baseline, candidate, owner)),
    )


@router.get(
    "/studies/{study_id}/report",
    response_class=HTMLResponse,
    responses=_page_about("study"),
)
async def get_study_report(
    request: Request,
    study_id: Id,
    owner: PageOwner,
    sessions: SessionsDep,
    store: StoreDep,
    heavy: HeavyDep,
) -> HTMLResponse:
    """The result matrix as heatmaps of changes (hatched: not significant), each target's spread
    per row and seed, and the table behind them."""
    return await _page(
        request, heavy, "study report", lambda: study_report(sessions, store, study_id, owner)
    )
