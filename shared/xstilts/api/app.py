"""The REST API: small handlers over the library (submit, start, refresh, cancel, results).

``create_app(settings)`` builds the database, the artifact store and an executor: a
:class:`~xstilts.runtime.executors.ThreadExecutor` in embedded mode, or whatever ``executor_factory``
returns (the service passes a Celery executor). OpenAPI docs are served at ``/docs``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import (
    Experiment,
    ExperimentStage,
    Stage,
    StageKind,
    Status,
)
from xstilts.errors import XstiltsError
from xstilts.experiments.results import experiment_results
from xstilts.experiments.submit import plan, submit_experiment
from xstilts.runtime.executors import ThreadExecutor
from xstilts.runtime.orchestration import Executor, cancel, refresh_experiment, start
from xstilts.runtime.workspace import Workspace
from xstilts.spec import ExperimentSpec, SpecError, parse_spec

MAX_BODY_BYTES = 1 << 20
ExecutorFactory = Callable[[Workspace], Executor]
_NAMED_FIELD = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): (.*)$", re.S)


# --------------------------------------------------------------------------- response models


class ExperimentStatus(str, Enum):
    """The statuses an experiment can be listed by."""

    QUEUED = Status.QUEUED.value
    RUNNING = Status.RUNNING.value
    SUCCEEDED = Status.SUCCEEDED.value
    FAILED = Status.FAILED.value
    CANCELLED = Status.CANCELLED.value


class ProgressOut(BaseModel):
    step: int
    total: int
    examples_per_s: float | None
    eta_s: float | None


class StageOut(BaseModel):
    role: str
    seed: int
    kind: str
    key: str
    status: str
    reused: bool
    attempts: int
    error: str | None
    progress: ProgressOut


class ExperimentBrief(BaseModel):
    id: str
    name: str
    status: str
    error: str | None
    created_at: datetime


class ExperimentOut(ExperimentBrief):
    stages: list[StageOut]


class ExperimentList(BaseModel):
    items: list[ExperimentBrief]
    total: int
    limit: int
    offset: int


class ExperimentRef(BaseModel):
    id: str
    name: str
    status: str
    error: str | None


class MetricOut(BaseModel):
    task: str
    language: str
    metric: str
    value: float
    n: int
    seed: int
    ci_low: float | None
    ci_high: float | None


class ResultsOut(BaseModel):
    experiment: ExperimentRef
    metrics: list[MetricOut]
    summary: dict[str, Any]
    stages: list[dict[str, Any]]


class TaskOut(BaseModel):
    name: str
    format: str
    metric: str
    primary_metric: str
    labels: list[str]
    languages: list[str]
    splits: list[str]
    target: bool
    train_task: str | None
    combines: list[str]
    version: int
    description: str


# --------------------------------------------------------------------------- dependencies


def get_sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


def get_session(request: Request) -> Iterator[Session]:
    with get_sessions(request)() as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def current_owner(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The name of the API key in ``Authorization: Bearer <key>``; 401 when missing or unknown."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing API key (Authorization: Bearer <key>)")
    digest = hashlib.sha256(credentials.credentials.encode()).hexdigest()
    owner = None
    for name, expected in settings.api_keys.items():  # compare every key: timing says nothing
        if hmac.compare_digest(digest, expected.strip().lower()):
            owner = name
    if owner is None:
        raise _unauthorized("invalid API key")
    return owner


async def read_body(request: Request) -> bytes:
    """The raw request body, refused with 413 past :data:`MAX_BODY_BYTES` (header or actual)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


SessionDep = Annotated[Session, Depends(get_session)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
CurrentOwner = Annotated[str, Depends(current_owner)]
RawBody = Annotated[bytes, Depends(read_body)]


# --------------------------------------------------------------------------- helpers


def _field_errors(errors: list[tuple[str, str]]) -> HTTPException:
    return HTTPException(422, [{"loc": field.split("."), "msg": msg} for field, msg in errors])


def _owned(session: Session, exp_id: str, owner: str) -> Experiment:
    """The caller's experiment; another owner's is as absent as a nonexistent one (404)."""
    exp = session.get(Experiment, exp_id)
    if exp is None or exp.owner != owner:
        raise HTTPException(404, f"experiment {exp_id} not found")
    return exp


def _eta(stage: Stage) -> float | None:
    if stage.status == Status.SUCCEEDED.value:
        return 0.0
    if stage.status != Status.RUNNING.value or not stage.examples_per_s or not stage.progress_total:
        return None
    remaining = max(stage.progress_total - stage.progress_step, 0)
    if stage.kind in (StageKind.INTERMEDIATE.value, StageKind.TARGET.value):
        cfg = stage.params.get("training", {})
        per_step = cfg.get("batch_size", 1) * cfg.get("gradient_accumulation_steps", 1)
        return remaining * per_step / stage.examples_per_s
    return remaining / stage.examples_per_s  # prediction counts examples


def _experiment_out(session: Session, exp: Experiment) -> ExperimentOut:
    rows = session.execute(
        select(ExperimentStage, Stage)
        .join(Stage, Stage.id == ExperimentStage.stage_id)
        .where(ExperimentStage.experiment_id == exp.id)
        .order_by(ExperimentStage.position)
    ).all()
    stages = [
        StageOut(
            role=link.role,
            seed=link.seed,
            kind=st.kind,
            key=st.key,
            status=st.status,
            reused=link.reused,
            attempts=st.attempts,
            error=st.error,
            progress=ProgressOut(
                step=st.progress_step,
                total=st.progress_total,
                examples_per_s=st.examples_per_s,
                eta_s=_eta(st),
            ),
        )
        for link, st in rows
    ]
    return ExperimentOut(
        id=exp.id,
        name=exp.name,
        status=exp.status,
        error=exp.error,
        created_at=exp.created_at,
        stages=stages,
    )


def _load(sessions: sessionmaker[Session], exp_id: str) -> ExperimentOut:
    with sessions() as s:
        exp = s.get(Experiment, exp_id)
        assert exp is not None
        return _experiment_out(s, exp)


def _request_hash(spec: ExperimentSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _by_idempotency_key(session: Session, owner: str, key: str) -> Experiment | None:
    return session.scalars(
        select(Experiment).where(Experiment.owner == owner, Experiment.idempotency_key == key)
    ).first()


def _replay(exp: Experiment, request_hash: str, key: str) -> None:
    if exp.request_hash != request_hash:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": f"Idempotency-Key {key!r} was already used with a different request "
                    f"body (experiment {exp.id}); use a new key for a different experiment",
                }
            ],
        )


def task_rows() -> list[dict[str, Any]]:
    """The rows of ``xstilts tasks --json``."""
    from xstilts.tasks import all_tasks

    return [t.describe() for t in all_tasks()]


# --------------------------------------------------------------------------- the app


def _document_spec_schema(app: FastAPI) -> None:
    """The body is read raw (to enforce the size limit before parsing), so FastAPI cannot derive
    its schema; add ExperimentSpec and its parts to the OpenAPI components by hand."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            spec = ExperimentSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(spec.pop("$defs", {}))
            components["ExperimentSpec"] = spec
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings, executor_factory: ExecutorFactory | None = None) -> FastAPI:
    # Embedded mode (stages in a thread of this process) owns its SQLite file and may upgrade it;
    # the service's database is migrated by its migrate job only.
    ws = Workspace(settings, upgrade_embedded=executor_factory is None)
    engine, sessions, store = ws.engine, ws.sessions, ws.store
    executor: Executor = executor_factory(ws) if executor_factory else ThreadExecutor(ws)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if isinstance(executor, ThreadExecutor):
            executor.stop(timeout=5.0)
        engine.dispose()

    app = FastAPI(
        title="xstilts",
        summary="English intermediate-task training, zero-shot cross-lingual evaluation",
        lifespan=lifespan,
    )
    _document_spec_schema(app)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.store = store
    app.state.executor = executor

    @app.post(
        "/experiments",
        status_code=201,
        response_model=ExperimentOut,
        responses={200: {"model": ExperimentOut, "description": "idempotent replay"}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ExperimentSpec"}}
                },
                "description": "An experiment spec (the JSON form of an xstilts spec file).",
            }
        },
    )
    def create_experiment(
        response: Response,
        owner: CurrentOwner,
        sessions: SessionsDep,
        settings: SettingsDep,
        executor: ExecutorDep,
        body: RawBody,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> ExperimentOut:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _field_errors([("(spec)", f"request body is not valid JSON: {e}")]) from None
        if not isinstance(data, dict):
            raise _field_errors([("(spec)", f"spec must be an object, got {type(data).__name__}")])
        try:
            spec = parse_spec(data)
        except SpecError as e:
            raise _field_errors(e.errors) from None
        request_hash = _request_hash(spec)
        if idempotency_key is not None:
            with sessions() as s:
                existing = _by_idempotency_key(s, owner, idempotency_key)
            if existing is not None:
                _replay(existing, request_hash, idempotency_key)
                response.status_code = 200
                return _load(sessions, existing.id)
        try:
            planned = plan(spec, settings)
        except XstiltsError as e:
            named = _NAMED_FIELD.match(str(e))
            raise _field_errors([(named[1], named[2]) if named else ("(spec)", str(e))]) from None
        try:
            exp_id = submit_experiment(
                sessions,
                spec,
                planned,
                owner=owner,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
        except IntegrityError:  # a concurrent request with the same key won the race
            with sessions() as s:
                existing = _by_idempotency_key(s, owner, idempotency_key or "")
            if existing is None:
                raise
            _replay(existing, request_hash, idempotency_key or "")
            response.status_code = 200
            return _load(sessions, existing.id)
        start(sessions, executor, exp_id)  # after the commit: runners only see committed rows
        response.headers["Location"] = f"/experiments/{exp_id}"
        return _load(sessions, exp_id)

    @app.get("/experiments", response_model=ExperimentList)
    def list_experiments(
        owner: CurrentOwner,
        session: SessionDep,
        status: ExperimentStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> ExperimentList:
        where = [Experiment.owner == owner]
        if status is not None:
            where.append(Experiment.status == status.value)
        total = session.scalar(select(func.count()).select_from(Experiment).where(*where)) or 0
        rows = session.scalars(
            select(Experiment)
            .where(*where)
            .order_by(Experiment.created_at.desc(), Experiment.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        items = [
            ExperimentBrief(
                id=e.id, name=e.name, status=e.status, error=e.error, created_at=e.created_at
            )
            for e in rows
        ]
        return ExperimentList(items=items, total=total, limit=limit, offset=offset)

    @app.get("/experiments/{exp_id}", response_model=ExperimentOut)
    def get_experiment(exp_id: str, owner: CurrentOwner, sessions: SessionsDep) -> ExperimentOut:
        with sessions() as s:
            _owned(s, exp_id, owner)
        refresh_experiment(sessions, exp_id)
        return _load(sessions, exp_id)

    @app.get("/experiments/{exp_id}/metrics", response_model=ResultsOut)
    def get_metrics(exp_id: str, owner: CurrentOwner, sessions: SessionsDep) -> dict[str, Any]:
        """Metrics so far (complete once ``experiment.status`` is ``succeeded``), summary, stages."""
        with sessions() as s:
            _owned(s, exp_id, owner)
        refresh_experiment(sessions, exp_id)
        return experiment_results(sessions, exp_id)

    @app.post("/experiments/{exp_id}/cancel", status_code=202, response_model=ExperimentOut)
    def cancel_experiment(exp_id: str, owner: CurrentOwner, sessions: SessionsDep) -> ExperimentOut:
        with sessions() as s:
            _owned(s, exp_id, owner)
        cancel(sessions, exp_id)
        return _load(sessions, exp_id)

    @app.get("/tasks", response_model=list[TaskOut])
    def list_tasks(_: CurrentOwner) -> list[dict[str, Any]]:
        return task_rows()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "a dependency is down"}})
    def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with request.app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as e:  # report, do not raise: this is what the probe is for
            checks["database"] = f"failed: {type(e).__name__}: {e}"
        uses_broker = settings.broker_url.startswith("redis://") and not isinstance(
            request.app.state.executor, ThreadExecutor
        )
        if uses_broker:
            try:
                import redis

                client = redis.Redis.from_url(
                    settings.broker_url, socket_connect_timeout=2, socket_timeout=2
                )
                client.ping()
                checks["broker"] = "ok"
            except Exception as e:
                checks["broker"] = f"failed: {type(e).__name__}: {e}"
        else:
            checks["broker"] = "not used"
        ok = all(v in ("ok", "not used") for v in checks.values())
        return JSONResponse(checks, status_code=200 if ok else 503)

    return app
