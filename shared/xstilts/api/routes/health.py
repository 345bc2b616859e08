"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (its database and broker do too).

Both are unauthenticated, so they say status words only; why a dependency failed goes to the log.
``/healthz`` runs on the event loop and touches nothing, so it answers even while the database
hangs and every request thread waits on it. ``/readyz`` gives each check :data:`PROBE_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import APIRouter, Response
from sqlalchemy import Engine, text

from xstilts.api.deps import EngineDep, ExecutorDep, SettingsDep
from xstilts.api.schemas import Health, Readiness
from xstilts.runtime.executors import ThreadExecutor

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

OK, NOT_USED, UNAVAILABLE = "ok", "not used", "unavailable"
PROBE_TIMEOUT_S = 3.0


def database_ok(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def broker_ok(broker_url: str) -> None:
    import redis

    client = redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


async def probe(name: str, check: Callable[[], None]) -> str:
    """``ok``, or ``unavailable`` when ``check`` raises or takes longer than the timeout (its
    thread is left to finish: a hung connection cannot be interrupted, only abandoned)."""
    try:
        await asyncio.wait_for(asyncio.to_thread(check), PROBE_TIMEOUT_S)
    except TimeoutError:
        log.warning("readiness: %s did not answer within %.0f s", name, PROBE_TIMEOUT_S)
        return UNAVAILABLE
    except Exception as e:  # report, do not raise: this is what the probe is for
        log.warning("readiness: %s failed: %s: %s", name, type(e).__name__, e)
        return UNAVAILABLE
    return OK


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Readiness, "description": "a dependency is down"}})
async def readyz(
    response: Response, engine: EngineDep, settings: SettingsDep, executor: ExecutorDep
) -> Readiness:
    uses_broker = settings.broker_url.startswith("redis://") and not isinstance(
        executor, ThreadExecutor
    )
    ready = Readiness(
        database=await probe("database", lambda: database_ok(engine)),
        broker=(
            await probe("broker", lambda: broker_ok(settings.broker_url))
            if uses_broker
            else NOT_USED
        ),
    )
    if UNAVAILABLE in (ready.database, ready.broker):
        response.status_code = 503
    return ready
