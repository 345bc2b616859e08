"""``/experiments``: submit (idempotent), list, status, metrics, cancel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from xstilts.api.deps import (
    CurrentOwner,
    FinishedResults,
    OwnedExperimentId,
    SessionDep,
    SessionsDep,
    SettingsDep,
    SpecBody,
    SubmitterDep,
    redact,
)
from xstilts.api.responses import LIVE_QUOTA, TOO_LARGE, UNAUTHORIZED, UNAVAILABLE, not_found
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
from xstilts.experiments.queries import list_experiments
from xstilts.experiments.results import experiment_results
from xstilts.experiments.status import experiment_state, one_line
from xstilts.experiments.submit import experiment_request
from xstilts.jsontypes import JSONObject
from xstilts.runtime.scheduler import cancel

router = APIRouter(
    prefix="/experiments",
    tags=["experiments"],
    responses={**UNAUTHORIZED, **UNAVAILABLE},
)
NOT_FOUND = not_found("experiment")

MAX_OFFSET = 2**31 - 1  # larger values overflow the database's integer (SQLite: 500 before)
_SPEC_BODY: JSONObject = {
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
        **TOO_LARGE,
        422: {
            "model": ValidationErrors,
            "description": "invalid spec, each error naming its field, or past a quota of "
            "the request (XSTILTS_QUOTA_STAGES, XSTILTS_QUOTA_DISK_GIB)",
        },
        **LIVE_QUOTA,
    },
    openapi_extra=_SPEC_BODY,
)
def create_experiment(
    owner: CurrentOwner,  # first: a request without a valid key gets 401 whatever its body
    spec: SpecBody,
    submitter: SubmitterDep,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> ExperimentState:
    exp_id = submitter.submit(experiment_request(spec), "/experiments")
    return _state(sessions, settings, exp_id)


@router.get("")
def list_owned(
    owner: CurrentOwner,
    session: SessionDep,
    status: ExperimentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ExperimentPage:
    return list_experiments(session, owner, status.value if status else None, limit, offset)


@dataclass(frozen=True)
class _Read:
    """A read of one experiment the caller owns, answered from the cache of finished ones."""

    request: Request
    exp_id: str
    owner: str
    sessions: sessionmaker[Session]
    settings: Settings

    async def answer(
        self, view: str, compute: Callable[[], ExperimentState | ExperimentResults]
    ) -> Response:
        return await _finished_or(self.request, self.exp_id, self.owner, view, compute)


def _read(
    exp_id: OwnedExperimentId,
    owner: CurrentOwner,
    sessions: SessionsDep,
    settings: SettingsDep,
    request: Request,
) -> _Read:
    return _Read(request, exp_id, owner, sessions, settings)


ReadDep = Annotated[_Read, Depends(_read)]


@router.get("/{exp_id}", responses=NOT_FOUND, response_model=ExperimentState)
async def get_experiment(read: ReadDep) -> Response:
    """Status and stages. A read writes nothing: the status is derived when a stage starts or ends."""
    return await read.answer("state", lambda: _state(read.sessions, read.settings, read.exp_id))


@router.get("/{exp_id}/metrics", responses=NOT_FOUND, response_model=ExperimentResults)
async def get_metrics(read: ReadDep) -> Response:
    """Metrics so far (complete once ``experiment.status`` is ``succeeded``), summary, stages."""

    def compute() -> ExperimentResults:
        results = experiment_results(read.sessions, read.exp_id)
        ref = results.experiment
        public = ref.model_copy(update={"error": _public(ref.error, read.settings)})
        return results.model_copy(update={"experiment": public})

    return await read.answer("metrics", compute)


async def _finished_or(
    request: Request,
    exp_id: str,
    owner: str,
    view: str,
    compute: Callable[[], ExperimentState | ExperimentResults],
) -> Response:
    """The cached body of a succeeded experiment's ``view``; otherwise ``compute`` it (in a
    worker thread: it reads the database), and cache it if the experiment has succeeded."""
    finished: FinishedResults = request.app.state.finished_results
    if (body := finished.get(exp_id, view)) is None:
        model = await run_in_threadpool(compute)
        status = model.status if isinstance(model, ExperimentState) else model.experiment.status
        body = model.model_dump_json().encode()
        if status == Status.SUCCEEDED.value:  # final: nothing about it changes any more
            finished.put(exp_id, owner, view, body)
    return Response(body, media_type="application/json")


@router.post(
    "/{exp_id}/cancel",
    status_code=202,
    responses={
        **NOT_FOUND,
        409: {
            "model": ErrorDetail,
            "description": "the experiment already succeeded, or failed with nothing of it still "
            "running; it stays as it is",
        },
    },
)
def cancel_experiment(
    exp_id: OwnedExperimentId, sessions: SessionsDep, settings: SettingsDep
) -> ExperimentState:
    """Cancel a queued or running experiment (again: no change), or a failed one whose other
    stages still run, to stop them. A succeeded one, or a failed one with nothing left running,
    gets 409."""
    cancel(sessions, exp_id)
    return _state(sessions, settings, exp_id)


def _public(error: str | None, settings: Settings) -> str | None:
    """An error as a client sees it: one line, no server folders (the traceback is in the log)."""
    line = one_line(error)
    return redact(line, settings) if line else line


def _state(sessions: sessionmaker[Session], settings: Settings, exp_id: str) -> ExperimentState:
    with sessions() as s:
        state = experiment_state(s, exp_id)
    stages = [st.model_copy(update={"error": _public(st.error, settings)}) for st in state.stages]
    return state.model_copy(update={"error": _public(state.error, settings), "stages": stages})
