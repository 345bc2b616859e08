"""``/experiments``: submit (idempotent), list, status, metrics, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from sqlalchemy.orm import Session, sessionmaker

from xstilts.api.deps import (
    CurrentOwner,
    ExecutorDep,
    FinishedResults,
    OwnedExperimentId,
    SessionDep,
    SessionsDep,
    SettingsDep,
    SpecBody,
    redact,
)
from xstilts.api.schemas import (
    ErrorDetail,
    ExperimentPage,
    ExperimentResults,
    ExperimentState,
    ExperimentStatus,
    ValidationErrors,
)
from xstilts.config import Settings
from xstilts.db.models import Status
from xstilts.experiments.idempotency import submit_once
from xstilts.experiments.queries import list_experiments
from xstilts.experiments.results import experiment_results
from xstilts.experiments.status import experiment_state
from xstilts.runtime.orchestration import cancel, start

router = APIRouter(
    prefix="/experiments",
    tags=["experiments"],
    responses={
        401: {"model": ErrorDetail, "description": "missing or unknown API key"},
        503: {"model": ErrorDetail, "description": "the database is unavailable (Retry-After)"},
    },
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "no such experiment of this key's owner"}
}

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
    idempotency_key: Annotated[
        str | None, Header(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    ] = None,
) -> ExperimentState:
    submitted = submit_once(sessions, settings, spec, owner, idempotency_key)
    if submitted.created:
        start(sessions, executor, submitted.experiment_id)  # after the commit
        response.headers["Location"] = f"/experiments/{submitted.experiment_id}"
    else:
        response.status_code = 200
    return _state(sessions, settings, submitted.experiment_id)


@router.get("")
def list_owned(
    owner: CurrentOwner,
    session: SessionDep,
    status: ExperimentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ExperimentPage:
    return list_experiments(session, owner, status.value if status else None, limit, offset)


@router.get("/{exp_id}", responses=NOT_FOUND)
def get_experiment(
    exp_id: OwnedExperimentId, sessions: SessionsDep, settings: SettingsDep
) -> ExperimentState:
    # A read writes nothing: the status is derived whenever a stage starts or ends.
    return _state(sessions, settings, exp_id)


@router.get("/{exp_id}/metrics", responses=NOT_FOUND, response_model=ExperimentResults)
def get_metrics(
    exp_id: OwnedExperimentId, sessions: SessionsDep, settings: SettingsDep, request: Request
) -> Any:
    """Metrics so far (complete once ``experiment.status`` is ``succeeded``), summary, stages."""
    cache: FinishedResults = request.app.state.finished_results
    if (body := cache.get(exp_id)) is not None:
        return Response(body, media_type="application/json")
    results = experiment_results(sessions, exp_id)
    ref = results.experiment
    results = results.model_copy(
        update={"experiment": ref.model_copy(update={"error": _public(ref.error, settings)})}
    )
    if ref.status == Status.SUCCEEDED.value:  # final: nothing about it changes any more
        body = results.model_dump_json().encode()
        cache.put(exp_id, body)
        return Response(body, media_type="application/json")
    return results


@router.post(
    "/{exp_id}/cancel",
    status_code=202,
    responses={
        **NOT_FOUND,
        409: {
            "model": ErrorDetail,
            "description": "the experiment already succeeded or failed; it stays as it is",
        },
    },
)
def cancel_experiment(
    exp_id: OwnedExperimentId, sessions: SessionsDep, settings: SettingsDep
) -> ExperimentState:
    """Cancel a queued or running experiment (again: no change). A finished one gets 409."""
    cancel(sessions, exp_id)
    return _state(sessions, settings, exp_id)


def _public(error: str | None, settings: Settings) -> str | None:
    """An error as a client sees it: one line, no server folders (the traceback is in the log)."""
    return redact(error.splitlines()[0], settings) if error else error


def _state(sessions: sessionmaker[Session], settings: Settings, exp_id: str) -> ExperimentState:
    with sessions() as s:
        state = experiment_state(s, exp_id)
    stages = [st.model_copy(update={"error": _public(st.error, settings)}) for st in state.stages]
    return state.model_copy(update={"error": _public(state.error, settings), "stages": stages})
