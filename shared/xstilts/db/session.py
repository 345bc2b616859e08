"""Engines and sessions: SQLite in embedded mode, Postgres in service mode, one code path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from xstilts.errors import XstiltsError


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
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class SchemaOutOfDateError(XstiltsError):
    """The database is not at the schema this code needs (services never migrate by themselves)."""


def ensure_schema(engine: Engine, upgrade_embedded: bool) -> None:
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
    at, want = current(url), head()
    if at != want:
        raise SchemaOutOfDateError(
            f"XSTILTS_DATABASE_URL: the database {engine.url.render_as_string()} is at schema "
            f"revision {at or '(none: empty database)'}, this code needs {want}; run "
            "'xstilts db upgrade' (the migrate job) first"
        )
