"""The service under attack and under faults: sources that are paths, data folders outside the
roots, what errors reveal, inputs that used to give 500, caps on work, a finished experiment
cancelled, a database that refuses or hangs, and Redis down while a spec is submitted.

Real Postgres (through a TCP proxy that refuses or hangs on demand), a real Redis of the test's own
that is stopped and started, the real app; executors deliver to a recorder, Celery or a thread."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from xstilts.api.app import create_app
from xstilts.api.deps import _JSON_TOKENS, json_too_deep
from xstilts.config import Settings
from xstilts.db.migrate import upgrade
from xstilts.db.models import Experiment, ExperimentStage, Stage
from xstilts.db.session import make_engine
from xstilts.errors import XstiltsError
from xstilts.experiments.plan import resolve_data_source
from xstilts.modeling.sources import resolve_model
from xstilts.spec import ModelConfig, SpecError, is_hub_id, parse_spec

from tests.conftest import REPO, broken_mnli_folder, tiny_spec
from tests.faults import ServerThread, TcpProxy, own_redis, pg_proxy, through  # noqa: F401
from tests.service_fixtures import pg_url  # noqa: F401 (fixture)

KEY = "hardening-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}


class RecordingExecutor:
    def __init__(self, *_: object) -> None:
        self.sent: list[tuple[int, str]] = []

    def send(self, stage_id: int, queue: str) -> None:
        self.sent.append((stage_id, queue))


def _keyed(settings: Settings, **update: object) -> Settings:
    keys = {"t": hashlib.sha256(KEY.encode()).hexdigest()}
    return settings.model_copy(update={"api_keys": keys, **update})


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, settings) -> Settings:  # type: ignore[no-untyped-def]
    url = settings.database_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    upgrade(url)
    return _keyed(settings, database_url=url)


@pytest.fixture()
def client(backend: Settings):  # type: ignore[no-untyped-def]
    with TestClient(create_app(backend, executor_factory=RecordingExecutor)) as c:
        yield c


def _spec(model_dir: Path, **overrides: object) -> dict:
    return tiny_spec(model_dir, intermediate={"tasks": []}, **overrides)


def _refused(r: httpx.Response, loc: list[str | int]) -> str:
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == loc and err["type"], err
    return str(err["msg"])


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("FacebookAI/xlm-roberta-large", True),
        ("xlm-roberta-base", True),  # legacy ids have no owner
        ("intfloat/multilingual-e5-small", True),
        ("a.b_c-d/e.f", True),
        ("/etc", False),
        ("../../etc", False),
        ("~/models", False),
        ("./x", False),
        ("owner/name/extra", False),
        ("owner/../name", False),
        ("owner/na--me", False),
        ("-owner/name", False),
        ("owner/name.", False),
        ("C:\\models", False),
        ("x" * 97, False),
        ("", False),
    ],
)
def test_hub_ids_are_ids_never_paths(value: str, ok: bool) -> None:
    assert is_hub_id(value) is ok
    spec = {"target": {"task": "xnli"}, "model": {"source": f"hf:{value}", "revision": "v1.0"}}
    if ok:
        assert parse_spec(spec).model.source == f"hf:{value}"
        return
    with pytest.raises(SpecError) as e:
        parse_spec(spec)
    assert e.value.errors[0][0] == "model.source" and "hub repository id" in e.value.errors[0][1]
    # The resolver refuses it too, whatever built the config.
    with pytest.raises(XstiltsError, match="not a hub repository id"):
        config = ModelConfig.model_construct(source=f"hf:{value}", revision="main")
        resolve_model(config, (), Path("/nonexistent"))


def test_a_hub_id_that_is_also_a_local_folder_is_never_loaded_from_it(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transformers tries a name as a folder first, relative to the working directory: a hub id
    "models/private" would load a folder of that name instead of the repository."""
    from xstilts.modeling.classifier import checkpoint_lm_head, load_encoder, load_tokenizer
    from xstilts.modeling.sources import loadable
    from xstilts.training.memory import model_size

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "private").symlink_to(tiny_model_dir)  # a real model, outside roots
    monkeypatch.chdir(tmp_path)
    config = ModelConfig.model_construct(source="hf:models/private", revision="main")
    resolved = resolve_model(config, (), Path("/nonexistent"))  # an id: resolving reads nothing
    assert resolved.name_or_path == "models/private"
    for load in (load_encoder, load_tokenizer, checkpoint_lm_head, model_size):
        with pytest.raises(XstiltsError, match="also a path in the worker's working directory"):
            load(resolved.name_or_path, "main")
    assert loadable("models/other") == "models/other"  # no such path: the hub's to answer
    assert loadable(str(tiny_model_dir)) == str(tiny_model_dir)  # a resolved folder
    assert load_tokenizer(str(tiny_model_dir)).pad_token_id == 1
    with pytest.raises(XstiltsError, match="not a hub repository id"):
        loadable("../models/private")


@pytest.mark.parametrize("revision", ["../main", "main\x00", "a b", "-x", "refs//heads"])
def test_revisions_are_git_refs(revision: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_spec(
            {"target": {"task": "xnli"}, "model": {"source": "hf:a/b", "revision": revision}}
        )
    assert e.value.errors[0][0] == "model.revision"


def test_data_path_must_lie_under_a_data_root(settings, data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "mine").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")  # inside by name, outside once resolved
    outside = tmp_path / "outside"
    outside.mkdir()
    roots = (root,)

    def resolve(path: str | None) -> Path | None:
        spec = parse_spec({"target": {"task": "xnli"}, "data": {"path": path}})
        return resolve_data_source(spec, data_dir, roots).path

    assert resolve(str(root / "mine")) == root / "mine"
    assert resolve("mine") == root / "mine"  # relative: under the root
    assert resolve(None) == data_dir  # no path: the data folder, which needs no root
    for bad in ("/etc", "escape", str(root / "escape"), "../outside", str(outside), "~",
                "/proc/self/cwd", "/" + "a" * 300, "a/" * 400):  # fmt: skip
        with pytest.raises(XstiltsError) as e:
            resolve(bad)
        assert e.value.field == "data.path"
        # The refusal names what was given, never what it resolved to or where the roots are.
        rest = e.value.reason.replace(repr(bad), "")
        assert str(root) not in rest and "/etc" not in rest and str(Path.home()) not in rest

    # Without data roots, the data folder is the only root.
    spec = parse_spec({"target": {"task": "xnli"}, "data": {"path": str(data_dir / "xnli")}})
    assert resolve_data_source(spec, data_dir).path == data_dir / "xnli"
    with pytest.raises(XstiltsError, match="no data roots are configured"):
        resolve_data_source(
            parse_spec({"target": {"task": "xnli"}, "data": {"path": "/tmp"}}), None
        )


def test_refusals_reveal_no_server_folder(
    client: TestClient, backend: Settings, tiny_model_dir: Path
) -> None:
    spec = _spec(tiny_model_dir)
    server = [str(p) for p, _ in backend.server_paths()]

    r = client.post("/experiments", json={**spec, "model": {"source": "local:/etc"}}, headers=AUTH)
    msg = _refused(r, ["model", "source"])
    assert "XSTILTS_MODEL_ROOTS" in msg and not any(p in msg for p in server)

    r = client.post("/experiments", json={**spec, "data": {"path": "/etc"}}, headers=AUTH)
    msg = _refused(r, ["data", "path"])
    assert "'/etc'" in msg and not any(p in msg for p in server)

    # A folder under a root that lacks the task's files: the message names the root's variable.
    empty = backend.data_roots[-1] / f"empty-{os.getpid()}"
    empty.mkdir(exist_ok=True)
    r = client.post("/experiments", json={**spec, "data": {"path": str(empty)}}, headers=AUTH)
    assert r.status_code == 422
    msg = r.json()["detail"][0]["msg"]
    assert "$XSTILTS_DATA_ROOTS/" in msg and "mnli" in msg and not any(p in msg for p in server)

    ready = client.get("/readyz").json()  # unauthenticated: status words only
    assert set(ready.values()) <= {"ok", "not used", "unavailable"}


def test_local_home_folders_reveal_no_account(
    client: TestClient, backend: Settings, tiny_model_dir: Path
) -> None:
    """'~user' is never expanded: an account that exists (root) and one that does not get the
    same status, field and message (the source as given aside); nor is the server's own '~'."""
    refusals = []
    for given in ("~root/x", "~nosuchuser12345/x", "~/x", "~"):
        source = f"local:{given}"
        body = {**_spec(tiny_model_dir), "model": {"source": source}}
        msg = _refused(client.post("/experiments", json=body, headers=AUTH), ["model", "source"])
        refusals.append(msg.replace(repr(source), "<source>"))
        with pytest.raises(XstiltsError) as e:  # the resolver, as `xstilts validate` meets it
            resolve_model(ModelConfig(source=source), backend.model_roots, backend.cache_dir)
        assert e.value.field == "model.source"
        assert e.value.reason.replace(repr(source), "<source>") == refusals[0]
    assert refusals == [refusals[0]] * 4, refusals
    assert "'~' is not expanded" in refusals[0] and "XSTILTS_MODEL_ROOTS" in refusals[0]
    assert str(Path.home()) not in refusals[0] and "/root" not in refusals[0]


def test_failed_stage_error_is_one_line_for_clients(
    settings, tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    folder = broken_mnli_folder(tmp_path, data_dir, label="?")
    spec = _spec(tiny_model_dir, evaluation={"languages": ["en"]}, data={"path": str(folder)})
    with TestClient(create_app(_keyed(settings))) as client:  # embedded: a thread runs stages
        exp_id = client.post("/experiments", json=spec, headers=AUTH).json()["id"]
        deadline = time.monotonic() + 120
        while (state := client.get(f"/experiments/{exp_id}", headers=AUTH).json())[
            "status"
        ] not in (
            "failed",
            "succeeded",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert state["status"] == "failed"
        target = next(s for s in state["stages"] if s["kind"] == "target_train")
        for error in (target["error"], state["error"]):
            assert "\n" not in error and "Traceback" not in error and str(REPO) not in error
            assert "label '?' is not one of" in error and str(tmp_path) not in error
        metrics = client.get(f"/experiments/{exp_id}/metrics", headers=AUTH).json()
        assert "\n" not in metrics["experiment"]["error"]

        # The database keeps the traceback for operators.
        engine = make_engine(settings.database_url)
        with engine.connect() as conn:
            stored = conn.scalar(select(Stage.error).where(Stage.kind == "target_train"))
        engine.dispose()
        assert stored is not None and "Traceback" in stored and str(REPO) in stored

        # A failed experiment stays failed: cancelling it is a conflict.
        r = client.post(f"/experiments/{exp_id}/cancel", headers=AUTH)
        assert r.status_code == 409 and "failed" in r.json()["detail"]
        assert client.get(f"/experiments/{exp_id}", headers=AUTH).json()["status"] == "failed"


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "new" / "x.db"
        make_engine(f"sqlite:///{db}").dispose()
    finally:
        os.umask(old)
    assert db.stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------- no 500 on input


def test_inputs_that_once_gave_500_get_422(client: TestClient, tiny_model_dir: Path) -> None:
    spec = _spec(tiny_model_dir)
    training = spec["target"]["training"]

    def post(body: object, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.post("/experiments", content=content, headers={**AUTH, **headers})

    msg = _refused(post({**spec, "evaluation": {"languages": ["en", "de", "de"]}}),
                   ["evaluation", "languages"])  # fmt: skip
    assert "de" in msg and "more than once" in msg
    _refused(post(spec, **{"Idempotency-Key": ""}), ["header", "idempotency-key"])
    msg = _refused(post({**spec, "seeds": list(range(65))}), ["seeds"])
    assert "at most 64" in msg and "XSTILTS_MAX_SEEDS" in msg
    _refused(post({**spec, "seeds": list(range(1025))}), ["seeds"])  # the schema's ceiling
    msg = _refused(post(b"[" * 100_000 + b"]" * 100_000), ["(spec)"])
    assert "deeper than 32" in msg
    for number in (b"1e309", b"Infinity", b"NaN", b"-Infinity"):
        body = json.dumps({**spec, "target": {"task": "xnli", "training": {"max_grad_norm": 0}}})
        body = body.replace('"max_grad_norm": 0', '"max_grad_norm": ' + number.decode())
        _refused(post(body.encode()), ["target", "training", "max_grad_norm"])
    _refused(post({**spec, "name": "a\x00b"}), ["name"])
    _refused(post({**spec, "data": {"path": "/" + "a" * 300}}), ["data", "path"])
    _refused(post({**spec, "data": {"path": "a\x00b"}}), ["data", "path"])
    for field, value, bound in (
        ("max_steps", 10**12, "10000000"),
        ("max_steps", 10**30, "10000000"),
        ("max_train_examples", 10**12, "100000000"),
        ("checkpoint_every_steps", 10**9, "10000000"),
        ("batch_size", 10**6, "4096"),
        ("max_seq_length", 10**6, "4096"),
        ("epochs", 1e9, "1000"),
    ):
        body = {**spec, "target": {"task": "xnli", "training": {**training, field: value}}}
        assert bound in _refused(post(body), ["target", "training", field]), field
    for path in ("/experiments/%00", "/experiments/a%00b/metrics"):
        assert client.get(path, headers=AUTH).status_code == 422
    assert client.post("/experiments/%00/cancel", headers=AUTH).status_code == 422
    r = client.get("/experiments", params={"offset": 2**64}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "offset"]
    assert client.get("/experiments", headers=AUTH).json()["total"] == 0  # nothing half-stored


ADVERSARIAL_BODIES = [
    b'"' + b'\\"' * 4000,  # escaped quotes, never closed: every quote once started a failing scan
    b'"' + b'\\"' * 4000 + b"\\",  # ... ending in a lone backslash
    b'"' + b"\\\n" * 4000,  # escaped newlines (outside the pattern's "." without DOTALL)
    b'{"a": "' + b"[" * 4000,  # brackets inside an unterminated string
]


@pytest.mark.parametrize(
    "body", ADVERSARIAL_BODIES, ids=["quotes", "backslash", "newlines", "open"]
)
def test_the_depth_scan_never_restarts_inside_a_string(body: bytes) -> None:
    """A string token, once started at a quote, always matches (to its closing quote or the end of
    the body), so the scan over a 1 MiB body is linear; a token that could fail would be retried
    from every quote inside it (quadratic: a 1 MiB body of escaped quotes took about an hour)."""
    quotes = [i for i, c in enumerate(body) if c == ord('"')]
    assert quotes and all(_JSON_TOKENS.match(body, i) for i in quotes)
    assert not json_too_deep(body)  # inside a string: no nesting at all


def test_the_depth_scan_counts_brackets_outside_strings_only() -> None:
    assert json_too_deep(b"[" * 33) and not json_too_deep(b"[" * 32 + b"]" * 32)
    assert not json_too_deep(b'{"a": "' + b"[" * 40 + b'"}')
    # A key with an escaped quote, then with an escaped backslash before its closing quote: read
    # wrongly, the string would swallow the brackets after it.
    assert json_too_deep(b'{"a\\"": ' + b"[" * 33 + b"]" * 33 + b"}")
    assert json_too_deep(b'{"a\\\\": ' + b"[" * 33 + b"]" * 33 + b"}")


def test_a_megabyte_of_escaped_quotes_is_refused_as_json(
    client: TestClient, tiny_model_dir: Path
) -> None:
    r = client.post("/experiments", content=b'"' + b'\\"' * 500_000, headers=AUTH)
    assert r.status_code == 422 and "not valid JSON" in r.text


def test_seed_and_stage_caps_are_configurable_and_inserts_are_batched(
    backend: Settings, tiny_model_dir: Path
) -> None:
    # 400 seeds x 17 stages (train, a prediction per XNLI language, evaluate): 6,800 stage rows,
    # more bind parameters than one multi-row INSERT may carry on SQLite (32,766), and the
    # experiment's links and status updates as well; batched, all of it stores.
    spec = _spec(
        tiny_model_dir, evaluation={"max_examples_per_language": 10}, seeds=list(range(400))
    )
    roomy = backend.model_copy(update={"max_seeds": 400, "max_stages": 7000})
    with TestClient(create_app(roomy, executor_factory=RecordingExecutor)) as c:
        r = c.post("/experiments", json=spec, headers=AUTH)
        assert r.status_code == 201, r.text
        stages = r.json()["stages"]
        assert len({s["seed"] for s in stages}) == 400
        per_seed = len(stages) // 400
        assert len(stages) == 400 * per_seed == 400 * 17

    tight = backend.model_copy(update={"max_seeds": 400, "max_stages": 10 * per_seed - 1})
    with TestClient(create_app(tight, executor_factory=RecordingExecutor)) as c:
        r = c.post("/experiments", json={**spec, "seeds": list(range(10))}, headers=AUTH)
        msg = _refused(r, ["seeds"])
        assert f"plans {10 * per_seed} stages" in msg and "XSTILTS_MAX_STAGES" in msg


def test_openapi_describes_what_the_api_returns(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path not in ("/healthz", "/readyz"):
                assert "401" in codes, (method, path)
            if "{exp_id}" in path:
                assert {"404", "422", "503"} <= codes, (method, path)
    assert "409" in paths["/experiments/{exp_id}/cancel"]["post"]["responses"]
    assert {"413", "422"} <= set(paths["/experiments"]["post"]["responses"])
    field_error = schema["components"]["schemas"]["FieldError"]
    assert set(field_error["required"]) == {"type", "loc", "msg"}
    target = schema["components"]["schemas"]["TargetConfig"]["properties"]["task"]
    assert "xnli" in target["enum"] and "udpos" in target["enum"]
    languages = schema["components"]["schemas"]["EvaluationConfig"]["properties"]["languages"]
    assert "de" in json.dumps(languages) and "enum" in json.dumps(languages)


# --------------------------------------------------------------------------- faults


def test_database_down_gives_503_then_recovers_at_once(
    pg_url: str,  # noqa: F811
    pg_proxy: TcpProxy,  # noqa: F811
    settings,
) -> None:
    upgrade(pg_url)
    url = through(pg_proxy, pg_url)
    pg_proxy.stop()  # down before the API starts: it starts anyway
    app = create_app(_keyed(settings, database_url=url), executor_factory=RecordingExecutor)
    with TestClient(app) as c:
        for method, path in (
            ("GET", "/experiments"),
            ("GET", "/experiments/" + "0" * 32),
            ("GET", "/experiments/" + "0" * 32 + "/metrics"),
            ("POST", "/experiments/" + "0" * 32 + "/cancel"),
        ):
            r = c.request(method, path, headers=AUTH)
            assert r.status_code == 503 and r.headers["Retry-After"], (method, path, r.text)
            assert r.json() == {"detail": "the database is unavailable; retry shortly"}
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["database"] == "unavailable"

        pg_proxy.start()
        t0 = time.monotonic()
        assert c.get("/experiments", headers=AUTH).status_code == 200
        print(f"recovered {time.monotonic() - t0:.3f} s after the database came back")
        assert c.get("/readyz").status_code == 200

        pg_proxy.stop()  # down while pooled connections exist
        assert c.get("/experiments", headers=AUTH).status_code == 503
        pg_proxy.start()
        assert c.get("/experiments", headers=AUTH).status_code == 200


def test_hung_database_times_out_and_liveness_still_answers(
    pg_url: str,  # noqa: F811
    pg_proxy: TcpProxy,  # noqa: F811
    settings,
) -> None:
    upgrade(pg_url)
    cfg = _keyed(settings, database_url=through(pg_proxy, pg_url), request_timeout_s=2.0)
    with ServerThread(create_app(cfg, executor_factory=RecordingExecutor)) as server:
        assert httpx.get(f"{server.url}/experiments", headers=AUTH).status_code == 200
        pg_proxy.pause()
        results: dict[str, tuple[int, float]] = {}

        def timed(name: str, path: str, **kw: object) -> None:
            t0 = time.monotonic()
            r = httpx.get(f"{server.url}{path}", timeout=30, **kw)  # type: ignore[arg-type]
            results[name] = (r.status_code, time.monotonic() - t0)

        threads = [
            threading.Thread(
                target=timed, args=(f"list{i}", "/experiments"), kwargs={"headers": AUTH}
            )
            for i in range(4)
        ]
        threads.append(threading.Thread(target=timed, args=("ready", "/readyz")))
        for t in threads:
            t.start()
        time.sleep(0.5)  # the requests above now wait on the database
        t0 = time.monotonic()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - t0 < 1.0
        for t in threads:
            t.join(30)
        print("while the database hung:", results)
        for i in range(4):
            code, took = results[f"list{i}"]
            assert code == 503 and 1.9 < took < 6, results
        code, took = results["ready"]
        assert code == 503 and took < 6, results

        pg_proxy.resume()
        deadline = time.monotonic() + 15
        while httpx.get(f"{server.url}/experiments", headers=AUTH).status_code != 200:
            assert time.monotonic() < deadline, "no recovery after the database answered again"
            time.sleep(0.1)


def test_redis_down_at_submit_keeps_the_experiment_and_the_reconciler_delivers_it(
    own_redis,  # noqa: F811
    settings,
    tiny_model_dir: Path,
) -> None:
    import redis
    from xstilts.runtime.celery_app import CeleryExecutor, make_celery
    from xstilts.runtime.scheduler import GPU_QUEUE, reconcile

    cfg = _keyed(settings, broker_url=own_redis.url)
    upgrade(cfg.database_url)  # the migrate job: a service never migrates on start
    celery = make_celery(cfg)
    executor = CeleryExecutor(celery)
    app = create_app(cfg, executor_factory=lambda _ws: executor)
    own_redis.stop()
    with TestClient(app) as c:
        t0 = time.monotonic()
        r = c.post("/experiments", json=_spec(tiny_model_dir), headers=AUTH)
        took = time.monotonic() - t0
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "queued" and took < 10
        print(f"POST with Redis down answered 201 in {took:.2f} s")
        exp_id = r.json()["id"]
        sessions = app.state.sessions
        with sessions() as s:
            queued = s.scalars(select(Stage).where(Stage.status == "queued")).all()
        assert len(queued) == 1  # the target stage; the rest wait on it

        own_redis.start()
        assert reconcile(sessions, executor) == [queued[0].id]
        broker = redis.Redis.from_url(own_redis.url)
        assert broker.llen(GPU_QUEUE) == 1  # delivered once
        assert reconcile(sessions, executor) == []  # and not again while it waits
        assert broker.llen(GPU_QUEUE) == 1
        assert c.get(f"/experiments/{exp_id}", headers=AUTH).json()["status"] == "queued"
    celery.close()


def test_reconciler_resends_only_what_the_broker_lost(
    own_redis,  # noqa: F811
    settings,
    tiny_model_dir: Path,
) -> None:
    """A backlog: four stages queued behind a long run (no worker takes them here). Past the
    re-delivery time the reconciler asks Redis, finds every message still waiting and sends
    nothing; once one message is lost it re-sends that one, exactly once."""
    import redis
    from sqlalchemy import update
    from xstilts.runtime.celery_app import CeleryExecutor, make_celery
    from xstilts.runtime.scheduler import GPU_QUEUE, reconcile

    cfg = _keyed(settings, broker_url=own_redis.url)
    upgrade(cfg.database_url)
    celery = make_celery(cfg)
    executor = CeleryExecutor(celery)
    app = create_app(cfg, executor_factory=lambda _ws: executor)
    broker = redis.Redis.from_url(own_redis.url)
    with TestClient(app) as c:
        for seed in range(4):
            spec = _spec(tiny_model_dir, seeds=[seed])
            assert c.post("/experiments", json=spec, headers=AUTH).status_code == 201
    sessions = app.state.sessions

    def age_leases() -> None:  # as if the re-delivery time had passed
        with sessions.begin() as s:
            s.execute(
                update(Stage)
                .where(Stage.status == "queued")
                .values(lease_until=Stage.created_at)  # long past
            )

    assert broker.llen(GPU_QUEUE) == 4
    assert executor.in_flight() is not None and len(executor.in_flight() or ()) == 4
    deliveries = 4
    for _ in range(3):
        age_leases()
        sent = reconcile(sessions, executor)
        deliveries += len(sent)
        assert sent == []
    assert broker.llen(GPU_QUEUE) == 4

    lost = broker.rpop(GPU_QUEUE)  # the oldest message is lost
    assert lost is not None
    age_leases()
    sent = reconcile(sessions, executor)
    deliveries += len(sent)
    assert len(sent) == 1 and broker.llen(GPU_QUEUE) == 4
    print(f"reconciler with a backlog of 4: {deliveries} deliveries for 4 stage runs")

    # A broker that cannot be asked: the reconciler falls back to re-sending what is due.
    own_redis.stop()
    assert executor.in_flight() is None
    own_redis.start()
    celery.close()


def test_status_moves_when_stages_do_not_when_read(
    client: TestClient, tiny_model_dir: Path
) -> None:
    """Reads derive nothing: a claim moves the experiment to running, in the claim's transaction."""
    from xstilts.runtime.lifecycle import claim

    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    ids = [
        client.post("/experiments", json=_spec(tiny_model_dir, seeds=[seed]), headers=AUTH).json()
        for seed in (1, 2)
    ]
    assert [e["status"] for e in ids] == ["queued", "queued"]
    client.post(f"/experiments/{ids[1]['id']}/cancel", headers=AUTH)
    for exp in ids:
        target = next(s for s in exp["stages"] if s["kind"] == "target_train")
        with sessions() as s:
            stage_id = s.scalars(select(Stage.id).where(Stage.key == target["key"])).one()
        assert (claim(sessions, stage_id, 60) is not None) is (
            exp is ids[0]
        )  # a cancelled one's never starts
    first = client.get(f"/experiments/{ids[0]['id']}", headers=AUTH).json()
    assert first["status"] == "running"
    assert client.get(f"/experiments/{ids[1]['id']}", headers=AUTH).json()["status"] == "cancelled"


# --------------------------------------------------------------------------- round two


def test_integers_past_the_digit_limit_get_422(client: TestClient, tiny_model_dir: Path) -> None:
    huge = "9" * 5000  # Python refuses to convert more than 4,300 digits: a plain ValueError
    spec = json.dumps(_spec(tiny_model_dir)).replace('"seeds": [1]', f'"seeds": [{huge}]')
    for path in ("/experiments", "/studies"):
        r = client.post(path, content=spec.encode(), headers=AUTH)
        msg = _refused(r, ["(spec)"])
        assert "not valid JSON" in msg and "more than 4300 digits" in msg, msg
    assert client.get("/experiments", headers=AUTH).json()["total"] == 0


def _study(model_dir: Path, **overrides: object) -> dict:
    cell = _spec(model_dir)
    study = {
        "name": "grid",
        "model": cell["model"],
        "intermediate_sets": [[], ["qqp"]],
        "targets": ["xnli"],
        "target_training": cell["target"]["training"],
        "evaluation": cell["evaluation"],
        "seeds": [1],
    }
    return {**study, **overrides}


@pytest.mark.parametrize(
    ("override", "loc"),
    [
        ({"intermediate": {"tasks": ["qqp"]}}, ["intermediate", "tasks"]),
        ({"target": {"task": "pawsx"}}, ["target", "task"]),
        ({"seeds": [1, 2]}, ["seeds"]),
        ({"name": "other"}, ["name"]),
    ],
)
def test_study_overrides_may_not_move_a_cell_out_of_the_grid(
    client: TestClient, tiny_model_dir: Path, override: dict, loc: list[str]
) -> None:
    body = _study(tiny_model_dir, overrides={"xnli": override})
    msg = _refused(client.post("/studies", json=body, headers=AUTH), ["overrides", "xnli", *loc])
    assert "grid" in msg and "intermediate_sets" in msg
    assert client.get("/experiments", headers=AUTH).json()["total"] == 0  # nothing stored
    # Other fields of the cells may still be overridden.
    ok = _study(tiny_model_dir, overrides={"xnli": {"target": {"training": {"epochs": 2}}}})
    assert client.post("/studies", json=ok, headers=AUTH).status_code == 201


def test_a_study_stored_with_a_cell_off_the_grid_can_be_read_and_cancelled(
    client: TestClient, backend: Settings, tiny_model_dir: Path
) -> None:
    from sqlalchemy.orm import sessionmaker
    from xstilts.db.models import Experiment, Study

    r = client.post("/studies", json=_study(tiny_model_dir), headers=AUTH)
    assert r.status_code == 201, r.text
    study_id = r.json()["id"]
    # As an override of intermediate.tasks left it before it was refused: the baseline cell
    # trains qqp, and the study's spec still holds the override.
    engine = make_engine(backend.database_url)
    with sessionmaker(engine).begin() as s:
        study = s.get(Study, study_id)
        assert study is not None
        study.spec = {**study.spec, "overrides": {"xnli": {"intermediate": {"tasks": ["qqp"]}}}}
        for cell in s.scalars(select(Experiment).where(Experiment.study_id == study_id)):
            cell.spec = {
                **cell.spec,
                "intermediate": {**cell.spec["intermediate"], "tasks": ["qqp"]},
            }
    engine.dispose()
    r = client.get(f"/studies/{study_id}", headers=AUTH)
    assert r.status_code == 200 and r.json()["total_cells"] == 2, r.text
    r = client.get(f"/studies/{study_id}/results", headers=AUTH)
    assert r.status_code == 200, r.text
    statuses = [c["status"] for line in r.json()["cells"] for c in line]
    assert statuses == ["missing", "queued"], statuses  # no cell holds the baseline any more
    assert client.get(f"/studies/{study_id}/report", headers=AUTH).status_code == 200
    r = client.post(f"/studies/{study_id}/cancel", headers=AUTH)
    assert r.status_code == 202 and r.json()["counts"] == {"cancelled": 2}, r.text


# --------------------------------------------------------------------------- quotas per key


def test_stage_quota_refuses_a_huge_study_before_planning(
    client: TestClient, tiny_model_dir: Path
) -> None:
    rows = [[], ["qqp"], ["snli"], ["mnli"], ["qqp", "snli"], ["qqp", "mnli"], ["snli", "mnli"]]
    rows.append(["qqp", "snli", "mnli"])
    body = _study(
        tiny_model_dir,
        intermediate_sets=rows,
        targets=["xnli", "pawsx", "xquad", "mlqa", "tatoeba"],
        seeds=list(range(45)),
    )
    body["evaluation"] = {"max_examples_per_language": 10}  # every language of each target
    t0 = time.monotonic()
    msg = _refused(client.post("/studies", json=body, headers=AUTH), ["seeds"])
    took = time.monotonic() - t0
    # Per seed, a row without an intermediate task plans train + languages + evaluate per target:
    # xnli 1+15+1, pawsx 1+7+1, xquad 1+11+1, mlqa 1+7+1, tatoeba 36+1 (no training) = 85; a row
    # with one adds its intermediate stage per target: 90.
    assert f"plans {(85 + 7 * 90) * 45} stages" in msg and "XSTILTS_QUOTA_STAGES" in msg, msg
    assert took < 5, took  # planning them all took 27 s
    assert client.get("/experiments", headers=AUTH).json()["total"] == 0


def test_disk_and_live_experiment_quotas(backend: Settings, tiny_model_dir: Path) -> None:
    weights = sum(
        p.stat().st_size for p in tiny_model_dir.iterdir() if p.suffix in (".safetensors", ".bin")
    )
    assert weights > 0
    three_seeds = _spec(tiny_model_dir, seeds=[1, 2, 3])  # three target stages, no intermediate
    settings = backend.model_copy(
        update={"quota_disk_gib": 2.5 * weights / 2**30, "quota_live_experiments": 2}
    )
    with TestClient(create_app(settings, executor_factory=RecordingExecutor)) as c:
        msg = _refused(c.post("/experiments", json=three_seeds, headers=AUTH), ["seeds"])
        assert "3 training stages" in msg and "XSTILTS_QUOTA_DISK_GIB" in msg, msg
        assert f"{3 * weights / 2**30:.1f} GiB" in msg
        for seed in (1, 2):  # two stages' worth each: under the disk quota
            r = c.post("/experiments", json=_spec(tiny_model_dir, seeds=[seed]), headers=AUTH)
            assert r.status_code == 201, r.text
        r = c.post("/experiments", json=_spec(tiny_model_dir, seeds=[3]), headers=AUTH)
        assert r.status_code == 429 and r.headers["Retry-After"] == "60", r.text
        assert "XSTILTS_QUOTA_LIVE_EXPERIMENTS" in r.json()["detail"]
        assert c.get("/experiments", headers=AUTH).json()["total"] == 2


def test_requests_sent_together_cannot_all_pass_the_live_quota(
    backend: Settings, tiny_model_dir: Path
) -> None:
    """Four requests of one key, each past the quota check before any is stored (they meet at a
    barrier while planning): with room for two, two are stored and two refused, not all four."""
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    from xstilts.db.session import session_factory
    from xstilts.experiments.quotas import QuotaExceededError
    from xstilts.experiments.submit import experiment_request, submit

    settings = backend.model_copy(update={"quota_live_experiments": 2})
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    together = threading.Barrier(4)

    def one(seed: int) -> str:
        request = experiment_request(parse_spec(_spec(tiny_model_dir, seeds=[seed])))
        planned = request.plan

        def plan(st: Settings) -> Any:
            together.wait(timeout=60)  # all four have passed check_quota
            return planned(st)

        try:
            submit(sessions, settings, dataclasses.replace(request, plan=plan), "alice")
            return "stored"
        except QuotaExceededError as e:
            assert "XSTILTS_QUOTA_LIVE_EXPERIMENTS" in str(e)
            return "refused"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(one, (1, 2, 3, 4)))
    assert outcomes == ["refused", "refused", "stored", "stored"]
    with sessions() as s:
        assert len(s.scalars(select(Experiment.id)).all()) == 2
        linked = set(s.scalars(select(ExperimentStage.stage_id)).all())
        assert set(s.scalars(select(Stage.id)).all()) == linked  # a refusal stores no stage
    engine.dispose()


@pytest.mark.parametrize(
    ("intermediate", "target", "seeds"),
    [
        ([], "xnli", [1]),
        (["qqp", "snli"], "xnli", [1, 2]),
        (["qqp"], "tatoeba", [3]),
        ([], "panx", [1]),
    ],
)
def test_the_stage_estimate_is_the_plan(
    settings: Settings, tiny_model_dir: Path, intermediate: list[str], target: str, seeds: list[int]
) -> None:
    from xstilts.experiments.quotas import stage_count
    from xstilts.experiments.submit import plan

    data = tiny_spec(tiny_model_dir, intermediate={"tasks": intermediate}, seeds=seeds)
    data["target"] = {"task": target}
    data["evaluation"] = {"max_examples_per_language": 10}
    if target != "xnli":  # some of their languages have no local file
        data["evaluation"]["languages"] = ["de", "ar"]
    spec = parse_spec(data)
    assert stage_count(spec) == len(plan(spec, settings))


def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path: Path) -> None:
    """Results, exports and reports written atomically were 0600 (mkstemp's mode) whatever the
    umask: unreadable in a shared lab folder. They now get what the umask gives a plain write."""
    import subprocess
    import sys

    script = (
        "import os, sys; os.umask(0o027)\n"
        "from xstilts.files import write_atomic\n"
        "write_atomic(__import__('pathlib').Path(sys.argv[1]), 'x')\n"
    )
    out = tmp_path / "r.json"
    subprocess.run([sys.executable, "-c", script, str(out)], check=True)
    assert out.read_text() == "x" and out.stat().st_mode & 0o777 == 0o640
