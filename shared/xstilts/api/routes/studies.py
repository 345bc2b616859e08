"""``/studies``: the paper's grid as one object: submit, progress, the result matrix, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from xstilts.api.deps import (
    CurrentOwner,
    SessionsDep,
    StoreDep,
    SubmitterDep,
    json_object,
    read_body,
)
from xstilts.api.heavy import HeavyDep
from xstilts.api.responses import HEAVY, LIVE_QUOTA, TOO_LARGE, UNAUTHORIZED, UNAVAILABLE, not_found
from xstilts.api.schemas import ValidationErrors
from xstilts.studies import (
    StudySpec,
    cancel_study,
    parse_study,
    study_request,
    study_results,
    study_state,
)
from xstilts.studies.model import StudyResults, StudyState

router = APIRouter(
    prefix="/studies",
    tags=["studies"],
    responses={**UNAUTHORIZED, **UNAVAILABLE},
)
NOT_FOUND = not_found("study")
StudyId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="a study id (32 hex)")]
Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


def study_body(body: Annotated[bytes, Depends(read_body)]) -> StudySpec:
    return parse_study(json_object(body))


@router.post(
    "",
    status_code=201,
    response_model=StudyState,
    responses={
        200: {"model": StudyState, "description": "idempotent replay"},
        **TOO_LARGE,
        422: {
            "model": ValidationErrors,
            "description": "invalid study: each error names its field, or its cell "
            "(cells.<row>/<target>.<field>), or a quota of the request it is past, or an "
            "Idempotency-Key already used with another body; nothing is stored",
        },
        **LIVE_QUOTA,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StudySpec"}}},
        }
    },
)
def create_study(
    owner: CurrentOwner,  # first: a request without a valid key gets 401 whatever its body
    study: Annotated[StudySpec, Depends(study_body)],
    submitter: SubmitterDep,
    sessions: SessionsDep,
) -> StudyState:
    """Validate every cell, store the study and its cells (experiments sharing stages by key:
    an intermediate model trains once per seed for all targets) and start them. With an
    ``Idempotency-Key``, a retry gets the study the first request stored (200)."""
    study_id = submitter.submit(study_request(study), "/studies")
    return study_state(sessions, study_id, owner)


@router.get("/{study_id}", responses=NOT_FOUND)
def get_study(
    study_id: StudyId,
    owner: CurrentOwner,
    sessions: SessionsDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> StudyState:
    """Progress over all cells (counts by status) and a page of the cells."""
    return study_state(sessions, study_id, owner, limit, offset)


@router.get("/{study_id}/results", responses={**NOT_FOUND, **HEAVY})
async def get_study_results(
    request: Request,
    study_id: StudyId,
    owner: CurrentOwner,
    sessions: SessionsDep,
    store: StoreDep,
    heavy: HeavyDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> StudyResults:
    """The matrix for a page of rows: each cell's XTREME task score and, once it and its
    baseline have succeeded, the change in task score and in non-English standard deviation over
    the baseline, each with a paired interval and a p-value (as ``GET /comparisons``)."""
    return await heavy.run(
        request,
        "study results",
        lambda: study_results(sessions, store, study_id, owner, None, limit, offset),
    )


@router.post("/{study_id}/cancel", status_code=202, responses=NOT_FOUND)
def cancel(study_id: StudyId, owner: CurrentOwner, sessions: SessionsDep) -> StudyState:
    """Cancel every cell that has not finished (stages another live experiment needs go on)."""
    cancel_study(sessions, study_id, owner)
    return study_state(sessions, study_id, owner)
