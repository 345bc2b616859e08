"""Alembic migrations build exactly the schema of the models, on SQLite and on Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from xstilts.db.migrate import current, upgrade
from xstilts.db.models import Base

from tests.service_fixtures import pg_url  # noqa: F401 (fixture)


def _diff(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert {"experiments", "stages", "experiment_stages", "metrics", "studies"} <= tables
    return diff


def test_sqlite_migration_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'x.db'}"
    upgrade(url)
    assert current(url) == "0005"
    assert _diff(url) == []
    upgrade(url)  # idempotent
    assert current(url) == "0005"


def test_postgres_migration_matches_models(pg_url: str) -> None:  # noqa: F811
    upgrade(pg_url)
    assert current(pg_url) == "0005"
    assert _diff(pg_url) == []


def _insert_link(conn, seed: int) -> None:
    conn.execute(
        text(
            "INSERT INTO experiment_stages (experiment_id, stage_id, position, role, seed, reused) "
            "VALUES ('e1', 1, 0, 'predict:de', :seed, false)"
        ),
        {"seed": seed},
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0002_keeps_links_and_allows_one_stage_per_seed(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'x.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    upgrade(url, "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO experiments (id, name, spec, status, cancel_requested, created_at,"
                " updated_at) VALUES ('e1', 'n', '{}', 'pending', false, CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO stages (id, key, kind, status, identity, params, attempts, steps_run,"
                " progress_step, progress_total, created_at) VALUES (1, 'k', 'predict',"
                " 'pending', '{}', '{}', 0, 0, 0, 0, CURRENT_TIMESTAMP)"
            )
        )
        _insert_link(conn, 1)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert_link(conn, 2)  # 0001: one link per stage and experiment
    upgrade(url)
    with engine.begin() as conn:
        _insert_link(conn, 2)  # 0002: the same stage for a second seed
        assert conn.execute(text("SELECT seed FROM experiment_stages ORDER BY seed")).all() == [
            (1,),
            (2,),
        ]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert_link(conn, 2)
    engine.dispose()


def test_services_never_migrate_only_embedded_sqlite_does(
    pg_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    from xstilts.config import Settings
    from xstilts.db.session import SchemaOutOfDateError
    from xstilts.runtime.workspace import Workspace

    service = Settings(home=tmp_path, database_url=pg_url)
    # A service process (API with Celery, worker) refuses an un-migrated database, naming the fix.
    with pytest.raises(SchemaOutOfDateError, match=r"XSTILTS_DATABASE_URL: .*xstilts db upgrade"):
        Workspace(service, upgrade_embedded=False)
    # Even when allowed to upgrade embedded files, a Postgres database is not touched.
    with pytest.raises(SchemaOutOfDateError, match="none: empty database"):
        Workspace(service, upgrade_embedded=True)
    assert current(pg_url) is None
    upgrade(pg_url)  # what `xstilts db upgrade` / the migrate job does
    Workspace(service, upgrade_embedded=False).close()

    # The embedded SQLite file is created and brought to the latest revision by its owner.
    embedded = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'e' / 'x.db'}")
    Workspace(embedded).close()
    assert current(embedded.database_url) == current(pg_url) is not None
