"""Alembic migrations build exactly the schema of the models, on SQLite and on Postgres."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from xstilts.db import Base
from xstilts.migrate import current, upgrade

from tests.service_fixtures import pg_url  # noqa: F401 (fixture)


def _diff(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert {"experiments", "stages", "experiment_stages", "metrics"} <= tables
    return diff


def test_sqlite_migration_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'x.db'}"
    upgrade(url)
    assert current(url) == "0001"
    assert _diff(url) == []
    upgrade(url)  # idempotent
    assert current(url) == "0001"


def test_postgres_migration_matches_models(pg_url: str) -> None:  # noqa: F811
    upgrade(pg_url)
    assert current(pg_url) == "0001"
    assert _diff(pg_url) == []
