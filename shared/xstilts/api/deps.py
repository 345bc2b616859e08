"""Dependencies of the route handlers, as ``Annotated`` aliases: a handler takes ``session:
SessionDep``, ``owner: CurrentOwner``, ``spec: SpecBody`` and stays a few lines long."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.experiments.queries import owned_experiment
from xstilts.experiments.submit import Request as SubmitRequest
from xstilts.experiments.submit import submit
from xstilts.jsontypes import JSONObject
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.runtime.scheduler import Executor, start
from xstilts.spec import (
    MAX_SPEC_DEPTH,
    DuplicateKeyError,
    ExperimentSpec,
    SpecError,
    decode_json,
    parse_spec,
)

MAX_BODY_BYTES = 1 << 20
# A spec nests about five levels deep; a body nested far deeper is refused before it is parsed
# (Python's JSON parser recurses, and 100,000 brackets would exhaust its stack).
MAX_JSON_DEPTH = MAX_SPEC_DEPTH
# A string token ends at its closing quote or, unterminated, at the end of the body (a lone
# backslash last included): it can never fail once started, so the scan is linear. A string that
# could fail (no closing quote) would be retried from every quote inside it, a scan quadratic in
# the body: a 1 MiB body of escaped quotes took about an hour.
_JSON_TOKENS = re.compile(rb'"(?:\\.|[^"\\])*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
# Experiment ids as the database issues them (uuid4 hex).
EXPERIMENT_ID = r"^[0-9a-f]{32}$"


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when brackets outside strings nest deeper than ``limit``."""
    depth = 0
    for token in _JSON_TOKENS.finditer(body):
        opener = token.group()[:1]
        if opener in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif opener in (b"]", b"}"):
            depth -= 1
    return False


def redact(message: str, settings: Settings) -> str:
    """``message`` with every configured server folder replaced by the variable that names it
    (``/srv/data/xnli`` -> ``$XSTILTS_DATA_DIR/xnli``): a client learns nothing of the file system."""
    for path, var in settings.server_paths():
        message = message.replace(str(path), f"${var}")
    return message


class FinishedResults:
    """Response bodies about succeeded experiments, which never change again, and their owners:
    a poll of a finished experiment touches neither the database nor a worker thread (least
    recently used experiments dropped past ``size``)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[str, dict[str, bytes]]] = OrderedDict()
        self._lock = threading.Lock()

    def owner_of(self, exp_id: str) -> str | None:
        with self._lock:
            entry = self._entries.get(exp_id)
            return entry[0] if entry else None

    def get(self, exp_id: str, view: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(exp_id)
            if entry is None:
                return None
            self._entries.move_to_end(exp_id)
            return entry[1].get(view)

    def put(self, exp_id: str, owner: str, view: str, body: bytes) -> None:
        with self._lock:
            _, views = self._entries.setdefault(exp_id, (owner, {}))
            views[view] = body
            self._entries.move_to_end(exp_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_sessions(request: Request) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


def get_session(
    sessions: Annotated[sessionmaker[Session], Depends(get_sessions)],
) -> Iterator[Session]:
    with sessions() as session:
        yield session


async def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


async def get_store(settings: Annotated[Settings, Depends(get_settings)]) -> ArtifactStore:
    return ArtifactStore(settings.artifacts_dir)


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def current_owner(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The name of the API key in ``Authorization: Bearer <key>``; 401 when missing or unknown."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing API key (Authorization: Bearer <key>)")
    return _owner_of(credentials.credentials, settings)


async def page_owner(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[
        str | None,
        Query(
            max_length=512,
            description="the API key, for a browser that cannot send the Authorization header "
            "(it may be kept in browser history and access logs: prefer the header)",
        ),
    ] = None,
) -> str:
    """:func:`current_owner`, or the key in ``?api_key=`` (report pages opened in a browser)."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return _owner_of(credentials.credentials, settings)
    if api_key:
        return _owner_of(api_key, settings)
    raise _unauthorized("missing API key (Authorization: Bearer <key>, or ?api_key=<key>)")


def _owner_of(key: str, settings: Settings) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
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


def spec_body(body: Annotated[bytes, Depends(read_body)]) -> ExperimentSpec:
    """The body as a validated spec; :class:`SpecError` (422, one entry per field) otherwise."""
    return parse_spec(json_object(body))


def json_object(body: bytes) -> JSONObject:
    """The body as a JSON object; :class:`SpecError` (422) when it is not one."""
    if json_too_deep(body):
        raise SpecError([((), f"request body nests deeper than {MAX_JSON_DEPTH} levels")])
    try:
        data = decode_json(body, unique_keys=True)  # as spec files: which value was meant?
    except DuplicateKeyError as e:
        raise SpecError([((), f"request body: {e}")]) from None
    except ValueError as e:
        raise SpecError([((), f"request body is not valid JSON: {e}")]) from None
    if not isinstance(data, dict):
        raise SpecError([((), f"spec must be an object, got {type(data).__name__}")])
    return data


async def owned_experiment_id(
    request: Request,
    exp_id: Annotated[str, Path(pattern=EXPERIMENT_ID, description="an experiment id (32 hex)")],
    owner: Annotated[str, Depends(current_owner)],
    sessions: Annotated[sessionmaker[Session], Depends(get_sessions)],
) -> str:
    """The path's experiment id once it is the caller's (404 otherwise, as for no experiment)."""
    finished: FinishedResults = request.app.state.finished_results
    if finished.owner_of(exp_id) == owner:
        return exp_id

    def lookup() -> str:
        with sessions() as s:
            return owned_experiment(s, exp_id, owner).id

    return await run_in_threadpool(lookup)


# A retried POST /experiments or POST /studies with the same key gets what the first one stored.
IdempotencyKey = Annotated[
    str | None, Header(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
]


class Submitter:
    """``POST /experiments`` and ``POST /studies``: submit at most once per ``Idempotency-Key``,
    start what was stored (after the commit) and answer 201 with ``Location``, or 200 for a
    replay of an earlier request (already started)."""

    def __init__(
        self,
        owner: Annotated[str, Depends(current_owner)],
        sessions: Annotated[sessionmaker[Session], Depends(get_sessions)],
        settings: Annotated[Settings, Depends(get_settings)],
        executor: Annotated[Executor, Depends(get_executor)],
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> None:
        self.owner = owner
        self.sessions = sessions
        self.settings = settings
        self.executor = executor
        self.response = response
        self.idempotency_key = idempotency_key

    def submit(self, request: SubmitRequest, location: str) -> str:
        """The id of the experiment or study stored; ``location``: its collection's path."""
        submitted = submit(self.sessions, self.settings, request, self.owner, self.idempotency_key)
        if submitted.created:
            for exp_id in submitted.experiment_ids:
                start(self.sessions, self.executor, exp_id)  # after the commit
            self.response.headers["Location"] = f"{location}/{submitted.id}"
        else:
            self.response.status_code = 200
        return submitted.id


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
SessionDep = Annotated[Session, Depends(get_session)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
SubmitterDep = Annotated[Submitter, Depends()]
CurrentOwner = Annotated[str, Depends(current_owner)]
RawBody = Annotated[bytes, Depends(read_body)]
SpecBody = Annotated[ExperimentSpec, Depends(spec_body)]
OwnedExperimentId = Annotated[str, Depends(owned_experiment_id)]
PageOwner = Annotated[str, Depends(page_owner)]
