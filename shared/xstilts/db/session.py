"""Engines and sessions: SQLite in embedded mode, Postgres in service mode, one code path."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from xstilts.errors import XstiltsError

log = logging.getLogger(__name__)

# A database that refuses or hangs must not hang a request: connecting gives up after
# CONNECT_TIMEOUT_S, a statement after STATEMENT_TIMEOUT_MS, waiting for a pooled connection after
# POOL_TIMEOUT_S; the API then answers 503 (xstilts.api.app).
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 30_000
POOL_TIMEOUT_S = 10


def create_private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only (an SQLite database holds every spec and result)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (status polls) do not block the writer
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str) -> Engine:
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            create_private_file(Path(path))  # SQLite gives its -wal and -shm files the same mode
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_timeout=POOL_TIMEOUT_S,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_S,
                "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            },
        )
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class SchemaOutOfDateError(XstiltsError):
    """The database is not at the schema this code needs (services never migrate by themselves)."""


def ensure_schema(
    engine: Engine, upgrade_embedded: bool, tolerate_unavailable: bool = False
) -> None:
    """Check that the database is at the latest migration.

    Migrations are applied by ``xstilts db upgrade`` (the deployment's migrate job) only: two
    service replicas starting together must not race to change a shared database. The one
    exception is an embedded SQLite file, which the process that owns it (``xstilts run``,
    ``xstilts serve``) may create and upgrade on start when ``upgrade_embedded`` is set.
    """
    from xstilts.db.migrate import current, head, upgrade

    url = engine.url.render_as_string(hide_password=False)
    if upgrade_embedded and is_sqlite(url):
        upgrade(url)
        return
    try:
        at, want = current(engine), head()
    except OperationalError as e:
        if not tolerate_unavailable:
            raise
        # The API starts anyway and answers 503 until the database is back (it never migrates).
        log.warning("database unavailable at start-up (%s); serving 503 until it answers", e.orig)
        return
    if at != want:
        raise SchemaOutOfDateError(
            f"XSTILTS_DATABASE_URL: the database {engine.url.render_as_string()} is at schema "
            f"revision {at or '(none: empty database)'}, this code needs {want}; run "
            "'xstilts db upgrade' (the migrate job) first"
        )
