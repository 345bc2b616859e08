"""``/experiments``: submit (idempotent), list, status, metrics, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy.orm import Session, sessionmaker

from xstilts.api.deps import (
    CurrentOwner,
    ExecutorDep,
    OwnedExperimentId,
    SessionDep,
    SessionsDep,
    SettingsDep,
    SpecBody,
)
from xstilts.api.schemas import (
    ErrorDetail,
    ExperimentPage,
    ExperimentResults,
    ExperimentState,
    ExperimentStatus,
    ValidationErrors,
)
from xstilts.experiments.idempotency import submit_once
from xstilts.experiments.queries import list_experiments
from xstilts.experiments.results import experiment_results
from xstilts.experiments.status import experiment_state
from xstilts.runtime.orchestration import cancel, refresh_experiment, start

router = APIRouter(
    prefix="/experiments",
    tags=["experiments"],
    responses={
        401: {"model": ErrorDetail, "description": "missing or unknown API key"},
        404: {"model": ErrorDetail, "description": "no such experiment of this key's owner"},
    },
)

MAX_OFFSET = 2**31 - 1  # larger values overflow the database's integer (SQLite: 500 before)
_SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ExperimentSpec"}}
        },
        "description": "An experiment spec (the JSON form of an xstilts spec file).",
    }
}


@router.post(
    "",
    status_code=201,
    responses={
        200: {"model": ExperimentState, "description": "idempotent replay"},
        413: {"model": ErrorDetail, "description": "body over 1 MiB"},
        422: {
            "model": ValidationErrors,
            "description": "invalid spec, each error naming its field",
        },
    },
    openapi_extra=_SPEC_BODY,
)
def create_experiment(
    owner: CurrentOwner,  # first: a request without a valid key gets 401 whatever its body
    spec: SpecBody,
    response: Response,
    sessions: SessionsDep,
    settings: SettingsDep,
    executor: ExecutorDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ExperimentState:
    submitted = submit_once(sessions, settings, spec, owner, idempotency_key)
    if submitted.created:
        start(sessions, executor, submitted.experiment_id)  # after the commit
        response.headers["Location"] = f"/experiments/{submitted.experiment_id}"
    else:
        response.status_code = 200
    return _state(sessions, submitted.experiment_id)


@router.get("")
def list_owned(
    owner: CurrentOwner,
    session: SessionDep,
    status: ExperimentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ExperimentPage:
    return list_experiments(session, owner, status.value if status else None, limit, offset)


@router.get("/{exp_id}")
def get_experiment(exp_id: OwnedExperimentId, sessions: SessionsDep) -> ExperimentState:
    refresh_experiment(sessions, exp_id)
    return _state(sessions, exp_id)


@router.get("/{exp_id}/metrics")
def get_metrics(exp_id: OwnedExperimentId, sessions: SessionsDep) -> ExperimentResults:
    """Metrics so far (complete once ``experiment.status`` is ``succeeded``), summary, stages."""
    refresh_experiment(sessions, exp_id)
    return experiment_results(sessions, exp_id)


@router.post("/{exp_id}/cancel", status_code=202)
def cancel_experiment(exp_id: OwnedExperimentId, sessions: SessionsDep) -> ExperimentState:
    cancel(sessions, exp_id)
    return _state(sessions, exp_id)


def _state(sessions: sessionmaker[Session], exp_id: str) -> ExperimentState:
    with sessions() as s:
        return experiment_state(s, exp_id)
