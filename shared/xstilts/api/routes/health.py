"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (its database and broker do too)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import Engine, text

from xstilts.api.deps import EngineDep, ExecutorDep, SettingsDep
from xstilts.api.schemas import Health, Readiness
from xstilts.runtime.executors import ThreadExecutor

router = APIRouter(tags=["health"])

OK, NOT_USED = "ok", "not used"


def database_state(engine: Engine) -> str:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:  # report, do not raise: this is what the probe is for
        return f"failed: {type(e).__name__}: {e}"
    return OK


def broker_state(broker_url: str) -> str:
    try:
        import redis

        client = redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
    except Exception as e:
        return f"failed: {type(e).__name__}: {e}"
    return OK


@router.get("/healthz")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Readiness, "description": "a dependency is down"}})
def readyz(
    response: Response, engine: EngineDep, settings: SettingsDep, executor: ExecutorDep
) -> Readiness:
    uses_broker = settings.broker_url.startswith("redis://") and not isinstance(
        executor, ThreadExecutor
    )
    ready = Readiness(
        database=database_state(engine),
        broker=broker_state(settings.broker_url) if uses_broker else NOT_USED,
    )
    if {ready.database, ready.broker} - {OK, NOT_USED}:
        response.status_code = 503
    return ready
