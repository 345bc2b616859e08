"""POST /studies at most once per Idempotency-Key, exactly as POST /experiments: the same key and
body replay the study (200, nothing new stored or started), another body is refused (422), keys
are per owner and per resource. On SQLite and on Postgres (the ``api_settings`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from xstilts.api.app import create_app
from xstilts.db.models import Experiment, Study
from xstilts.experiments import submit as submit_module
from xstilts.experiments.submit import submit
from xstilts.runtime.workspace import Workspace
from xstilts.studies import parse_study, study_request

from tests.service_fixtures import pg_url  # noqa: F401 (fixture)
from tests.test_api import A, B, RecordingExecutor, api_settings  # noqa: F401 (fixture)
from tests.test_studies import study_data


@pytest.fixture()
def client(api_settings) -> Iterator[TestClient]:  # noqa: F811
    with TestClient(create_app(api_settings, executor_factory=RecordingExecutor)) as c:
        yield c


def _stored(url: str) -> tuple[int, int]:
    """(studies, experiments) in the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            studies = conn.scalar(select(func.count()).select_from(Study))
            experiments = conn.scalar(select(func.count()).select_from(Experiment))
    finally:
        engine.dispose()
    return studies or 0, experiments or 0


def test_the_same_key_and_body_replays_the_study(
    client: TestClient,
    api_settings,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    data = study_data(tiny_model_dir, [[], ["qqp"]], ["xnli"])
    headers = {**A, "Idempotency-Key": "s1"}
    first = client.post("/studies", json=data, headers=headers)
    assert first.status_code == 201, first.text
    study_id = first.json()["id"]
    assert first.headers["Location"] == f"/studies/{study_id}"
    sent = len(client.app.state.executor.sent)  # type: ignore[attr-defined]
    assert sent > 0

    # The same body in another key order (the hash is over the validated study) replays.
    again = client.post("/studies", json=dict(reversed(list(data.items()))), headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == study_id
    assert again.json()["total_cells"] == 2
    assert "Location" not in again.headers
    assert len(client.app.state.executor.sent) == sent  # type: ignore[attr-defined]
    assert _stored(api_settings.database_url) == (1, 2)


def test_the_same_key_with_another_body_is_refused(
    client: TestClient,
    api_settings,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    data = study_data(tiny_model_dir, [[]], ["xnli"])
    headers = {**A, "Idempotency-Key": "s1"}
    first = client.post("/studies", json=data, headers=headers)
    assert first.status_code == 201, first.text

    changed = client.post("/studies", json={**data, "name": "other"}, headers=headers)
    assert changed.status_code == 422
    (error,) = changed.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert error["msg"] == (
        f"Idempotency-Key 's1' was already used with a different request body "
        f"(study {first.json()['id']}); use a new key for a different study"
    )
    assert _stored(api_settings.database_url) == (1, 1)

    # An empty key is refused as on POST /experiments, naming the header.
    empty = client.post("/studies", json=data, headers={**A, "Idempotency-Key": ""})
    assert empty.status_code == 422
    assert empty.json()["detail"][0]["loc"] == ["header", "idempotency-key"]


def test_without_a_key_each_post_is_a_new_study(
    client: TestClient,
    api_settings,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    data = study_data(tiny_model_dir, [[]], ["xnli"])
    first = client.post("/studies", json=data, headers=A)
    second = client.post("/studies", json=data, headers=A)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert _stored(api_settings.database_url) == (2, 2)


def test_keys_are_per_owner_and_per_resource(
    client: TestClient,
    api_settings,  # noqa: F811
    tiny_model_dir: Path,
) -> None:
    data = study_data(tiny_model_dir, [[]], ["xnli"])
    alice = client.post("/studies", json=data, headers={**A, "Idempotency-Key": "k"})
    bob = client.post("/studies", json=data, headers={**B, "Idempotency-Key": "k"})
    assert (alice.status_code, bob.status_code) == (201, 201)
    assert alice.json()["id"] != bob.json()["id"]
    assert client.get(f"/studies/{alice.json()['id']}", headers=B).status_code == 404

    # The study's key does not name an experiment: the same key on POST /experiments is new.
    spec = {
        "name": "one",
        "model": data["model"],
        "target": {"task": "xnli", "training": data["target_training"]},
        "evaluation": data["evaluation"],
        "seeds": [1],
    }
    exp = client.post("/experiments", json=spec, headers={**A, "Idempotency-Key": "k"})
    assert exp.status_code == 201, exp.text
    assert _stored(api_settings.database_url) == (2, 3)


def test_a_concurrent_request_with_the_same_key_gets_the_winners_study(
    api_settings,  # noqa: F811
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both requests look before either stores; the database's unique (owner, key) refuses the
    second, which then answers with the first one's study."""
    ws = Workspace(api_settings)
    request = study_request(parse_study(study_data(tiny_model_dir, [[]], ["xnli"])))
    won = submit(ws.sessions, ws.settings, request, "alice", "race")
    assert won.created

    looked = []
    earlier_request = submit_module.earlier_request

    def late(*args: object) -> str | None:
        looked.append(args)
        return None if len(looked) == 1 else earlier_request(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(submit_module, "earlier_request", late)
    lost = submit(ws.sessions, ws.settings, request, "alice", "race")
    assert (lost.id, lost.created, lost.experiment_ids) == (won.id, False, [])
    assert len(looked) == 2
    assert _stored(api_settings.database_url) == (1, 1)
    ws.close()
