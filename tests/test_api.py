"""The REST API over the library: auth and ownership, submission (idempotent), validation errors,
listing, cancellation, and one real experiment run by the embedded ThreadExecutor.

Every test runs twice: on SQLite (embedded mode) and on a fresh Postgres database (the service)."""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from xstilts.api.app import create_app
from xstilts.db.migrate import upgrade
from xstilts.experiments.results import ExperimentResults
from xstilts.runtime.executors import ThreadExecutor
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import tiny_spec
from tests.service_fixtures import pg_url  # noqa: F401 (fixture)

ALICE, BOB = "alice-key-123", "bob-key-456"
A = {"Authorization": f"Bearer {ALICE}"}
B = {"Authorization": f"Bearer {BOB}"}


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class RecordingExecutor:
    """Delivers nothing: for tests that only need what the API stores."""

    def __init__(self, *_: object) -> None:
        self.sent: list[tuple[int, str]] = []

    def send(self, stage_id: int, queue: str) -> None:
        self.sent.append((stage_id, queue))


@pytest.fixture(params=["sqlite", "postgres"])
def api_settings(request: pytest.FixtureRequest, settings):
    url = settings.database_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    upgrade(url)  # the migrate job: a service with its own executor never migrates on start
    return settings.model_copy(
        update={"database_url": url, "api_keys": {"alice": _sha(ALICE), "bob": _sha(BOB)}}
    )


@pytest.fixture()
def client(api_settings) -> Iterator[TestClient]:
    """An app whose executor records deliveries and runs nothing."""
    with TestClient(create_app(api_settings, executor_factory=RecordingExecutor)) as c:
        yield c


def small_spec(model_dir: Path, name: str = "api") -> dict:
    training = {
        "learning_rate": 1e-3,
        "batch_size": 16,
        "max_train_examples": 32,
        "max_seq_length": 64,
        "warmup_ratio": 0.1,
        "checkpoint_every_steps": 5,
    }
    return tiny_spec(
        model_dir,
        name=name,
        intermediate={"tasks": [], "training": training},
        target={"task": "xnli", "training": training},
        evaluation={
            "languages": ["en", "de"],
            "max_examples_per_language": 20,
            "max_seq_length": 64,
            "bootstrap_samples": 100,
        },
    )


def _wait(client: TestClient, exp_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/experiments/{exp_id}", headers=A).json()
        if body["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_auth_and_ownership(client: TestClient, tiny_model_dir: Path) -> None:
    assert client.get("/experiments").status_code == 401
    r = client.get("/experiments", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/tasks").status_code == 401
    # The key is checked before the body: no key and an invalid spec is still 401, not 422.
    r = client.post("/experiments", json={"target": {"task": ""}})
    assert r.status_code == 401
    assert r.json() == {"detail": "missing API key (Authorization: Bearer <key>)"}

    created = client.post("/experiments", json=small_spec(tiny_model_dir), headers=A)
    assert created.status_code == 201
    exp_id = created.json()["id"]
    assert client.get(f"/experiments/{exp_id}", headers=A).status_code == 200
    for method, path in (
        ("GET", f"/experiments/{exp_id}"),
        ("GET", f"/experiments/{exp_id}/metrics"),
        ("POST", f"/experiments/{exp_id}/cancel"),
        ("GET", "/experiments/" + "0" * 32),
    ):
        assert client.request(method, path, headers=B).status_code == 404, (method, path)
    # An id that is not of the issued form (uuid4 hex) never reaches the database.
    for bad in ("doesnotexist", "%00", "a%00b", "0" * 33, "0" * 31 + "G"):
        r = client.get(f"/experiments/{bad}/metrics", headers=A)
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["loc"] == ["path", "exp_id"]
    assert client.get("/experiments", headers=B).json()["total"] == 0


def test_submit_runs_for_real_and_matches_the_library(
    api_settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = small_spec(tiny_model_dir)
    app = create_app(api_settings)
    assert isinstance(app.state.executor, ThreadExecutor)
    with TestClient(app) as client:
        r = client.post("/experiments", json=spec, headers=A)
        assert r.status_code == 201, r.text
        exp_id = r.json()["id"]
        assert r.headers["Location"] == f"/experiments/{exp_id}"
        assert [s["role"] for s in r.json()["stages"]] == [
            "target",
            "predict:en",
            "predict:de",
            "evaluate",
        ]

        body = _wait(client, exp_id)
        assert body["status"] == "succeeded", body
        for st in body["stages"]:
            assert st["status"] == "succeeded" and st["attempts"] == 1
            assert st["progress"]["step"] == st["progress"]["total"]
            assert st["progress"]["eta_s"] == 0.0

        r = client.get(f"/experiments/{exp_id}/metrics", headers=A)
        assert r.status_code == 200
        res = r.json()
        assert res["experiment"] == {
            "id": exp_id,
            "name": "api",
            "status": "succeeded",
            "error": None,
        }
        assert [m["language"] for m in res["metrics"]] == ["en", "de"]
        assert {m["metric"] for m in res["metrics"]} == {"accuracy"}
        assert res["summary"]["task"] == "xnli" and res["summary"]["metric"] == "accuracy"
        assert res["summary"]["languages"] == ["en", "de"] and res["summary"]["seeds"] == [1]
        assert res["summary"]["worst_language"] == "de"
        assert list(res["summary"]["per_seed"]) == ["1"] and res["summary"]["across_seeds"] == {}
        assert [(s["role"], s["status"], s["reused"]) for s in res["stages"]] == [
            ("target", "succeeded", False),
            ("predict:en", "succeeded", False),
            ("predict:de", "succeeded", False),
            ("evaluate", "succeeded", False),
        ]
        assert res["stages"][0]["steps_run"] > 0

        # Reads write nothing, and a succeeded experiment's results are served from memory.
        with _statements(app.state.engine) as seen:
            again = client.get(f"/experiments/{exp_id}/metrics", headers=A)
            state = client.get(f"/experiments/{exp_id}", headers=A)
            listed = client.get("/experiments", headers=A)
        assert again.json() == res and state.json()["status"] == "succeeded"
        assert listed.json()["items"][0]["status"] == "succeeded"
        assert not [q for q in seen if q.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
        with _statements(app.state.engine) as cached:
            assert client.get(f"/experiments/{exp_id}/metrics", headers=A).json() == res
            assert client.get(f"/experiments/{exp_id}", headers=A).json() == state.json()
            # Another key still may not see it (404), even from the cache.
            assert client.get(f"/experiments/{exp_id}/metrics", headers=B).status_code == 404
        assert len(cached) == 1, cached  # only B's ownership check reached the database

    other = api_settings.model_copy(
        update={
            "home": tmp_path / "direct",
            "artifacts_dir": tmp_path / "direct" / "artifacts",
            "database_url": f"sqlite:///{tmp_path / 'direct' / 'xstilts.db'}",
        }
    )
    direct = Workspace(other).run(parse_spec(spec))
    served = ExperimentResults.model_validate(res)
    assert served.metrics == direct.metrics  # exact: same seed, same data, same stages
    assert served.summary == direct.summary
    assert res["summary"] == direct.model_dump(mode="json")["summary"]


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs inside the block for requests: not the embedded
    executor's own (its reconciler's pass every 30 s may fall inside the block)."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not threading.current_thread().name.startswith("xstilts-"):
            seen.append(statement.strip())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_idempotency_key(client: TestClient, tiny_model_dir: Path) -> None:
    spec = small_spec(tiny_model_dir)
    headers = {**A, "Idempotency-Key": "k1"}
    first = client.post("/experiments", json=spec, headers=headers)
    assert first.status_code == 201
    # The same body in another key order (the hash is over the validated spec) replays.
    reordered = dict(reversed(list(spec.items())))
    again = client.post("/experiments", json=reordered, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert "Location" not in again.headers

    changed = client.post("/experiments", json={**spec, "name": "other"}, headers=headers)
    assert changed.status_code == 422
    assert "different request body" in changed.json()["detail"][0]["msg"]

    # Keys are per owner: Bob's "k1" is a new experiment.
    bob = client.post("/experiments", json=spec, headers={**B, "Idempotency-Key": "k1"})
    assert bob.status_code == 201 and bob.json()["id"] != first.json()["id"]
    assert client.get("/experiments", headers=A).json()["total"] == 1


def test_validation_errors_name_fields(client: TestClient, tiny_model_dir: Path) -> None:
    spec = small_spec(tiny_model_dir)

    bad_task = copy.deepcopy(spec)
    bad_task["target"]["task"] = "nope"
    r = client.post("/experiments", json=bad_task, headers=A)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["target", "task"] and "xnli" in err["msg"]

    bad_lang = copy.deepcopy(spec)
    bad_lang["evaluation"]["languages"] = ["en", "klingon"]
    r = client.post("/experiments", json=bad_lang, headers=A)
    assert r.status_code == 422
    assert [e["loc"][:2] for e in r.json()["detail"]] == [["evaluation", "languages"]]
    assert "klingon" in r.json()["detail"][0]["msg"] and "de" in r.json()["detail"][0]["msg"]

    r = client.post("/experiments", json={**spec, "colour": "blue"}, headers=A)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["colour"]

    r = client.post("/experiments", content=b"{not json", headers=A)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["(spec)"] and "not valid JSON" in err["msg"]

    # A key given twice is refused, as in a spec file (the last value used to win in silence).
    twice = json.dumps(spec)[:-1] + ', "seeds": [7]}'
    r = client.post("/experiments", content=twice.encode(), headers=A)
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {
            "type": "value_error",
            "loc": ["(spec)"],
            "msg": "request body: key 'seeds' is given twice in one mapping",
        }
    ]

    r = client.post("/experiments", json=[spec], headers=A)
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"type": "value_error", "loc": ["(spec)"], "msg": "spec must be an object, got list"}
    ]

    # The loc is pydantic's own: list positions stay integers, cross-field checks name their field.
    r = client.post("/experiments", json={**spec, "seeds": [1, -1]}, headers=A)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["seeds", 1] and "greater than or equal to 0" in err["msg"]

    r = client.post("/experiments", json={**spec, "seeds": [3, 3]}, headers=A)
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"type": "value_error", "loc": ["seeds"], "msg": "a seed is listed twice"}
    ]

    hub = {"source": "hf:FacebookAI/xlm-roberta-large"}
    r = client.post("/experiments", json={**spec, "model": hub}, headers=A)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["model", "revision"] and err["msg"].startswith("a hub model needs")

    bad_train = copy.deepcopy(spec)
    bad_train["target"]["train_task"] = "qqp"
    r = client.post("/experiments", json=bad_train, headers=A)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["target", "train_task"] and "mnli" in err["msg"]

    stride = copy.deepcopy(spec)
    stride["target"]["training"] = {**stride["target"]["training"], "doc_stride": 60}
    r = client.post("/experiments", json=stride, headers=A)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["target", "training", "doc_stride"]
    assert err["msg"] == "60 must be below max_seq_length - max_query_length - 4 = -4"

    # Planning errors (a model outside the allowed roots) also name their field.
    r = client.post(
        "/experiments", json={**spec, "model": {"source": "local:/definitely/elsewhere"}}, headers=A
    )
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["model", "source"]
    assert err["msg"].startswith("'local:/definitely/elsewhere' is not under an allowed model root")

    r = client.post(
        "/experiments", json={**spec, "data": {"path": "/definitely/absent"}}, headers=A
    )
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["data", "path"] and err["type"] == "value_error"
    assert err["msg"].startswith("'/definitely/absent' is not a folder under the configured data")
    assert client.get("/experiments", headers=A).json()["total"] == 0


def test_body_too_large(client: TestClient, tiny_model_dir: Path) -> None:
    big = {**small_spec(tiny_model_dir), "name": "x" * (1 << 20)}
    assert client.post("/experiments", json=big, headers=A).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is counted as it arrives
        for _ in range(20):
            yield b" " * 65536

    assert client.post("/experiments", content=chunks(), headers=A).status_code == 413


def test_list_pagination_and_cancel(client: TestClient, tiny_model_dir: Path) -> None:
    ids = []
    for i in range(3):
        r = client.post("/experiments", json=small_spec(tiny_model_dir, f"e{i}"), headers=A)
        assert r.status_code == 201
        ids.append(r.json()["id"])
    # Identical stages: planned once, shared by all three (only the first queued them).
    assert len({s["key"] for s in r.json()["stages"]}) == 4

    page = client.get("/experiments?limit=2", headers=A).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [e["id"] for e in page["items"]] == ids[::-1][:2]
    rest = client.get("/experiments?limit=2&offset=2", headers=A).json()
    assert [e["id"] for e in rest["items"]] == ids[:1]

    assert client.get("/experiments?limit=101", headers=A).status_code == 422
    r = client.get(f"/experiments?offset={2**63}", headers=A)  # found by schemathesis: was a 500
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "offset"]
    r = client.get("/experiments?status=bogus", headers=A)
    assert r.status_code == 422 and "cancelled" in json.dumps(r.json())

    r = client.post(f"/experiments/{ids[0]}/cancel", headers=A)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    cancelled = client.get("/experiments?status=cancelled", headers=A).json()
    assert cancelled["total"] == 1 and cancelled["items"][0]["id"] == ids[0]
    queued = client.get("/experiments?status=queued", headers=A).json()
    assert queued["total"] == 2


def test_tasks_and_probes(client: TestClient) -> None:
    tasks = client.get("/tasks", headers=A).json()
    xnli = next(t for t in tasks if t["name"] == "xnli")
    assert xnli["target"] is True and "de" in xnli["languages"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("broker", "code", "state"),
    [("memory://", 200, "not used"), ("redis://127.0.0.1:1/0", 503, "unavailable")],
)
def test_readyz(api_settings, broker: str, code: int, state: str) -> None:
    # model_copy skips validation: memory:// is no deployment broker, but readyz must say "not used"
    cfg = api_settings.model_copy(update={"broker_url": broker})
    with TestClient(create_app(cfg, executor_factory=RecordingExecutor)) as c:
        r = c.get("/readyz")
    assert r.status_code == code and r.json()["database"] == "ok"
    assert r.json()["broker"] == state  # status words only: the reason goes to the log


def test_openapi_documents_the_spec_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/experiments"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ExperimentSpec"}
    spec = schema["components"]["schemas"]["ExperimentSpec"]
    assert "target" in spec["required"] and "evaluation" in spec["properties"]
    training = schema["components"]["schemas"]["TrainingConfig"]["properties"]
    assert training["batch_size"]["minimum"] == 1


def test_status_and_metrics_before_any_stage_ran(client: TestClient, tiny_model_dir: Path) -> None:
    r = client.post("/experiments", json=small_spec(tiny_model_dir), headers=A)
    assert r.status_code == 201
    exp = r.json()
    assert exp["name"] == "api" and exp["status"] == "queued" and exp["error"] is None
    target = exp["stages"][0]
    assert target["role"] == "target" and target["seed"] == 1 and target["kind"] == "target_train"
    assert target["status"] == "queued" and target["reused"] is False and target["attempts"] == 0
    assert target["progress"] == {"step": 0, "total": 0, "examples_per_s": None, "eta_s": None}

    r = client.get(f"/experiments/{exp['id']}", headers=A)
    assert r.status_code == 200
    assert r.json() == exp

    r = client.get(f"/experiments/{exp['id']}/metrics", headers=A)
    assert r.status_code == 200
    res = r.json()
    assert res["experiment"] == {"id": exp["id"], "name": "api", "status": "queued", "error": None}
    assert res["metrics"] == []
    assert res["summary"] is None  # no metric yet (was {} before results were typed)
    assert [s["key"] for s in res["stages"]] == [s["key"] for s in exp["stages"]]
    assert res["stages"][0] == {
        "role": "target",
        "seed": 1,
        "kind": "target_train",
        "key": target["key"],
        "status": "queued",
        "reused": False,
        "steps_run": 0,
        "attempts": 0,
        "selection": None,  # a target with select: best_english_dev fills it in when done
    }

    r = client.get("/experiments/" + "f" * 32 + "/metrics", headers=A)
    assert r.status_code == 404
    assert r.json() == {"detail": "experiment ffffffffffffffffffffffffffffffff not found"}


def test_openapi_documents_the_result_fields(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    components = schema["components"]["schemas"]
    ok = schema["paths"]["/experiments/{exp_id}/metrics"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExperimentResults"
    }
    results = components["ExperimentResults"]["properties"]
    assert set(results) == {"experiment", "metrics", "summary", "stages", "warnings"}
    summary = components["Summary"]["properties"]
    for field in ("mean", "transfer_gap", "non_english_cv", "worst_language", "per_seed"):
        assert field in summary
    assert summary["xtreme_score"]["type"] == "number"
    assert set(components["MetricRow"]["properties"]) == {
        "task", "language", "metric", "value", "n", "seed", "ci_low", "ci_high"
    }  # fmt: skip
    assert "steps_run" in components["StageRow"]["properties"]
    assert "eta_s" in components["Progress"]["properties"]

    def free_form(node: object) -> bool:  # a dict[str, Any]: an object of anything
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("additionalProperties") is True:
                return True
            if (
                node.get("type") == "object"
                and "properties" not in node
                and not any(k in node for k in ("additionalProperties", "$ref"))
            ):
                return True
            return any(free_form(v) for v in node.values())
        if isinstance(node, list):
            return any(free_form(v) for v in node)
        return False

    responses = [
        name
        for name in ("ExperimentResults", "Summary", "ExperimentState", "ExperimentPage", "TaskOut")
        if free_form(components[name])
    ]
    assert responses == []


def test_method_not_allowed_lists_every_method_of_the_path(client: TestClient) -> None:
    # GET and POST /experiments are two routes; the 405 must name both (schemathesis ST205).
    r = client.put("/experiments", headers=A)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    r = client.delete("/healthz")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
