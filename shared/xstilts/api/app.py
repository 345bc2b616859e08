"""The REST API app: routers, error mapping, start-up and shut-down. OpenAPI docs at ``/docs``.

``create_app(settings)`` builds the database, the artifact store and an executor: a
:class:`~xstilts.runtime.executors.ThreadExecutor` in embedded mode, or whatever ``executor_factory``
returns (the service passes a Celery executor). Handlers live in :mod:`xstilts.api.routes`, their
dependencies in :mod:`xstilts.api.deps`, request and response models in :mod:`xstilts.api.schemas`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xstilts.api.deps import FinishedResults, redact
from xstilts.api.heavy import HeavyWork
from xstilts.api.routes import comparisons, experiments, health, reports, studies, tasks
from xstilts.config import Settings
from xstilts.errors import ConflictError, IdempotencyConflictError, NotFoundError, XstiltsError
from xstilts.experiments.quotas import QuotaExceededError
from xstilts.jsontypes import JSONObject
from xstilts.runtime.executors import ThreadExecutor
from xstilts.runtime.scheduler import Executor
from xstilts.runtime.workspace import Workspace
from xstilts.spec import ExperimentSpec, SpecError
from xstilts.studies.spec import StudySpec

ExecutorFactory = Callable[[Workspace], Executor]


# --------------------------------------------------------------------------- errors -> HTTP

RETRY_AFTER_S = 5
WRITE_FACTOR = 3  # a POST may take this many times XSTILTS_REQUEST_TIMEOUT_S
log = logging.getLogger(__name__)


def _unprocessable(request: Request, errors: list[tuple[list[str | int], str]]) -> JSONResponse:
    settings: Settings = request.app.state.settings
    detail = [
        {"type": "value_error", "loc": loc, "msg": redact(msg, settings)} for loc, msg in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _install_error_handlers(app: FastAPI) -> None:
    """Library errors to HTTP: each 422 entry's ``loc`` is the field the error itself names
    (pydantic's loc for a spec, ``XstiltsError.field`` for the planner), never parsed from text."""

    @app.exception_handler(SpecError)
    async def spec_error(request: Request, e: SpecError) -> JSONResponse:
        return _unprocessable(request, [(list(loc) or ["(spec)"], msg) for loc, msg in e.locs])

    @app.exception_handler(IdempotencyConflictError)
    async def idempotency_conflict(request: Request, e: IdempotencyConflictError) -> JSONResponse:
        return _unprocessable(request, [(["header", "Idempotency-Key"], str(e))])

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, e: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=404)

    @app.exception_handler(ConflictError)
    async def conflict(_: Request, e: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=409)

    @app.exception_handler(QuotaExceededError)
    async def quota_exceeded(request: Request, e: QuotaExceededError) -> JSONResponse:
        return JSONResponse(
            {"detail": redact(e.reason, request.app.state.settings)},
            status_code=429,
            headers={"Retry-After": str(60)},
        )

    @app.exception_handler(XstiltsError)
    async def user_error(request: Request, e: XstiltsError) -> JSONResponse:
        loc: list[str | int] = list(e.field.split(".")) if e.field else ["(spec)"]
        return _unprocessable(request, [(loc, e.reason)])

    async def database_unavailable(_: Request, e: Exception) -> JSONResponse:
        # Refused, hung past its timeout, or out of pooled connections: the client may retry.
        log.warning("database unavailable: %s: %s", type(e).__name__, e)
        return JSONResponse(
            {"detail": "the database is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    for error in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(error, database_unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        if e.status_code == 405:
            # Starlette names only the first route that matched the path; a path served by one
            # route per method (GET and POST /experiments) must list them all (RFC 9110, Allow).
            allowed = _methods_for(app, request.url.path)
            e = StarletteHTTPException(405, e.detail, headers={"Allow": ", ".join(allowed)})
        return await http_exception_handler(request, e)


class Deadline:
    """503 for a request unanswered after ``seconds`` (a write: three times that, since a large
    submission takes a while): a database that hangs (a paused server never answers, and no
    client-side socket timeout can tell) must not hang its clients. The handler is not cancelled
    (a sync handler's thread cannot be interrupted, and cancelling its session mid-call breaks
    it): it finishes unseen, its response dropped, so a POST answered 503 this way may still be
    stored: retry it with the same ``Idempotency-Key``. Heavy work stops itself at the same
    deadline (:mod:`xstilts.api.heavy`).

    Plain ASGI rather than ``@app.middleware("http")``: that wrapper hides the client's
    disconnection from the handler, which heavy work watches for."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        limit = self.seconds if method in ("GET", "HEAD") else WRITE_FACTOR * self.seconds
        started = late = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if late:  # answered 503 already: the handler's own answer goes nowhere
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, guarded))
        done, _ = await asyncio.wait({handler}, timeout=limit)
        if done:
            handler.result()  # its errors are the error handlers' to answer
            return
        late = True
        handler.add_done_callback(_log_late_failure)
        log.warning("%s %s: no answer within %g s", method, scope["path"], limit)
        if started:  # too late for a status: the client sees the connection end
            return
        response = JSONResponse(
            {"detail": f"no answer within {limit:g} s; retry shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
        await response(scope, receive, send)


def _log_late_failure(handler: asyncio.Future[None]) -> None:
    if not handler.cancelled() and (error := handler.exception()) is not None:
        log.warning("a request answered 503 then failed: %s: %s", type(error).__name__, error)


def _methods_for(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at ``path`` (routers included with a prefix too)."""
    return [
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({"type": "http", "path": path, "method": method, "root_path": ""})[0]
            is Match.FULL
            for route in app.router.routes
        )
    ]


def _document_spec_schema(app: FastAPI) -> None:
    """The body is read raw (to enforce the size limit before parsing), so FastAPI cannot derive
    its schema; add ExperimentSpec, StudySpec and their parts to the OpenAPI components by hand."""

    def openapi() -> JSONObject:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (ExperimentSpec, StudySpec):
                spec = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(spec.pop("$defs", {}))
                components[model.__name__] = spec
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings, executor_factory: ExecutorFactory | None = None) -> FastAPI:
    # Embedded mode (stages in a thread of this process) owns its SQLite file and may upgrade it;
    # the service's database is migrated by its migrate job only.
    # The service starts while its database is down (503 until it answers); embedded mode needs
    # its file at once.
    ws = Workspace(
        settings,
        upgrade_embedded=executor_factory is None,
        tolerate_unavailable=executor_factory is not None,
    )
    executor: Executor = executor_factory(ws) if executor_factory else ThreadExecutor(ws)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if isinstance(executor, ThreadExecutor):
            executor.stop(timeout=5.0)
        ws.close()

    app = FastAPI(
        title="xstilts",
        summary="English intermediate-task training, zero-shot cross-lingual evaluation",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = ws.engine
    app.state.sessions = ws.sessions
    app.state.executor = executor
    app.state.finished_results = FinishedResults()
    app.state.heavy = HeavyWork(settings.heavy_requests, settings.request_timeout_s, RETRY_AFTER_S)
    _install_error_handlers(app)
    app.add_middleware(Deadline, seconds=settings.request_timeout_s)
    _document_spec_schema(app)
    for module in (reports, experiments, studies, comparisons, tasks, health):
        app.include_router(module.router)
    return app
