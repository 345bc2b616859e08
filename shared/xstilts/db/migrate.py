"""Database migrations (Alembic), the same on Postgres and SQLite."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Any constant: every process that migrates takes the same Postgres advisory lock, so services that
# start together (API replicas, workers) migrate one after the other instead of racing.
_MIGRATION_LOCK = 7_421_100


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (creating the tables on a new database)."""
    if url.startswith("sqlite:///"):
        from xstilts.db.session import create_private_file

        create_private_file(Path(url.removeprefix("sqlite:///")))
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def current(database: str | Engine) -> str | None:
    """The revision a database (a URL, or an engine whose timeouts to keep) is at."""
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(database, poolclass=NullPool) if isinstance(database, str) else database
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if isinstance(database, str):
            engine.dispose()


def head() -> str:
    """The newest revision the code ships."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert rev is not None
    return rev
