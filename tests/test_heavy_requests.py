"""Report, study and comparison endpoints under attack: names that are formulas to matplotlib,
figures on failing paths, concurrent drawing, and many heavy comparisons at once.

One embedded server (SQLite, stages in a thread) runs a one-cell study (its baseline) and an
experiment of the same evaluation with another seed; every other experiment here reuses their
stages by key, so a new name costs no training."""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from matplotlib.figure import Figure
from xstilts.api.app import create_app
from xstilts.config import Settings
from xstilts.db.migrate import upgrade

from tests.conftest import tiny_spec
from tests.faults import ServerThread

KEY = "heavy-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
LANGS = ["en", "de", "ar", "fr", "ru", "zh"]


def _spec(model_dir: Path, name: str, seed: int) -> dict[str, Any]:
    training = {"learning_rate": 1e-3, "batch_size": 16, "max_train_examples": 32}
    return tiny_spec(
        model_dir,
        name=name,
        intermediate={"tasks": []},
        target={"task": "xnli", "training": {**training, "max_seq_length": 64}},
        evaluation={
            "languages": LANGS,
            "max_examples_per_language": 150,
            "max_seq_length": 64,
            "bootstrap_samples": 100,
        },
        seeds=[seed],
    )


def _wait(client: TestClient, path: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path, headers=AUTH).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


STUDY_ID: list[str] = []  # the fixture's study


@pytest.fixture(scope="module")
def home(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, data_dir: Path
) -> Iterator[Settings]:
    """A home whose database holds a succeeded study named ``$\\foo$`` (one cell, the baseline)
    and a succeeded experiment ``x$a$`` of the same evaluation (seed 2)."""
    root = tmp_path_factory.mktemp("heavy")
    settings = Settings(
        home=root,
        data_dir=data_dir,
        model_roots=(tiny_model_dir.parent,),
        api_keys={"t": hashlib.sha256(KEY.encode()).hexdigest()},
    )
    upgrade(settings.database_url)
    with TestClient(create_app(settings)) as client:
        cell = _spec(tiny_model_dir, "unused", 1)
        study = {
            "name": "$\\foo$",
            "model": cell["model"],
            "intermediate_sets": [[]],
            "targets": ["xnli"],
            "target_training": cell["target"]["training"],
            "evaluation": cell["evaluation"],
            "seeds": [1],
        }
        r = client.post("/studies", json=study, headers=AUTH)
        assert r.status_code == 201, r.text
        study_id = r.json()["id"]
        assert _wait(client, f"/studies/{study_id}")["status"] == "succeeded"
        STUDY_ID[:] = [study_id]
        r = client.post("/experiments", json=_spec(tiny_model_dir, "x$a$", 2), headers=AUTH)
        assert _wait(client, f"/experiments/{r.json()['id']}")["status"] == "succeeded"
    yield settings


def _ids(client: TestClient) -> dict[str, str]:
    """Experiment name -> id."""
    listed = client.get("/experiments?limit=100", headers=AUTH).json()
    return {e["name"]: e["id"] for e in listed["items"]}


def _named(client: TestClient, model_dir: Path, name: str, seed: int = 2) -> str:
    """A new experiment of ``name`` whose stages are all reused (no training)."""
    r = client.post("/experiments", json=_spec(model_dir, name, seed), headers=AUTH)
    assert r.status_code == 201, r.text
    exp_id: str = r.json()["id"]
    assert _wait(client, f"/experiments/{exp_id}", 60)["status"] == "succeeded"
    return exp_id


def _live_figures() -> int:
    gc.collect()
    return sum(isinstance(o, Figure) for o in gc.get_objects())


def test_names_with_formula_syntax_are_drawn_as_text(home: Settings, tiny_model_dir: Path) -> None:
    with TestClient(create_app(home)) as client:
        ids = _ids(client)
        deep = "$" + "{" * 98 + "x" + "}" * 98 + "$"  # a RecursionError to mathtext
        ids[deep] = _named(client, tiny_model_dir, deep)
        cell = ids["$\\foo$/baseline/xnli"]  # the study's name reaches its cell
        for name in ("$\\foo$/baseline/xnli", "x$a$", deep):
            r = client.get(f"/experiments/{ids[name]}/report", headers=AUTH)
            assert r.status_code == 200, (name, r.text[:300])
            assert r.headers["content-type"].startswith("text/html")
            # The name is in the page's title as text (HTML-escaped, nothing parsed away).
            assert f"<h1>{name.replace('&', '&amp;')}: xnli</h1>" in r.text
        r = client.get(f"/comparisons/report?baseline={cell}&candidate={ids['x$a$']}", headers=AUTH)
        assert r.status_code == 200, r.text[:300]
        assert "x$a$ vs $\\foo$/baseline/xnli" in r.text
        r = client.get(f"/studies/{STUDY_ID[0]}/report", headers=AUTH)
        assert r.status_code == 200 and "study $\\foo$" in r.text


def test_report_pages_carry_the_security_headers(home: Settings) -> None:
    with TestClient(create_app(home)) as client:
        r = client.get(f"/experiments/{_ids(client)['x$a$']}/report?api_key={KEY}")
        assert r.status_code == 200
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp


def test_failing_reports_leave_no_figure_behind(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(home), raise_server_exceptions=False) as client:
        exp_id = _ids(client)["x$a$"]
        assert client.get(f"/experiments/{exp_id}/report", headers=AUTH).status_code == 200
        before = _live_figures()

        def broken(*_: object, **__: object) -> None:
            raise RuntimeError("disk full")

        monkeypatch.setattr(Figure, "savefig", broken)
        codes = [
            client.get(f"/experiments/{exp_id}/report", headers=AUTH).status_code for _ in range(60)
        ]
        assert codes == [500] * 60  # the injected failure, each time past the figure's creation
        assert _live_figures() - before <= 2  # not one figure per failed request (60 if leaked)


def test_concurrent_reports_with_formula_names_all_succeed(home: Settings) -> None:
    settings = home.model_copy(update={"heavy_requests": 8})
    with ServerThread(create_app(settings)) as server, httpx.Client(timeout=60) as http:
        exp_id = _ids_over(http, server.url)["x$a$"]

        def one(_: int) -> int:
            return http.get(f"{server.url}/experiments/{exp_id}/report", headers=AUTH).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, range(48)))  # 6 rounds of 8 at once
        assert codes == [200] * 48


def _ids_over(http: httpx.Client, url: str) -> dict[str, str]:
    listed = http.get(f"{url}/experiments?limit=100", headers=AUTH).json()
    return {e["name"]: e["id"] for e in listed["items"]}


def _comparison(url: str, ids: dict[str, str], seed: int, samples: int = 100_000) -> str:
    base, cand = ids["$\\foo$/baseline/xnli"], ids["x$a$"]
    return f"{url}/comparisons?baseline={base}&candidate={cand}&samples={samples}&seed={seed}"


def _cache_files(settings: Settings) -> set[str]:
    folder = settings.artifacts_dir / "comparisons"
    return {p.name for p in folder.glob("*.json")} if folder.exists() else set()


def test_heavy_comparisons_are_bounded_and_health_stays_fast(home: Settings) -> None:
    settings = home.model_copy(update={"heavy_requests": 2})
    app = create_app(settings)
    with ServerThread(app) as server, httpx.Client(timeout=120) as http:
        ids = _ids_over(http, server.url)
        results: list[httpx.Response] = []
        health: list[float] = []
        asking = threading.Event()

        def ask(seed: int) -> None:
            asking.set()
            results.append(http.get(_comparison(server.url, ids, 1000 + seed), headers=AUTH))

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(ask, i) for i in range(16)]
            asking.wait()
            while not all(f.done() for f in futures):
                t0 = time.perf_counter()
                assert http.get(f"{server.url}/healthz").status_code == 200
                health.append(time.perf_counter() - t0)
                time.sleep(0.05)
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200] + [429] * 14, codes
        refused = next(r for r in results if r.status_code == 429)
        assert refused.headers["retry-after"] == "5" and "retry" in refused.json()["detail"]
        assert "database" not in refused.json()["detail"]
        assert len(health) >= 5
        assert sorted(health)[len(health) // 2] < 0.2, health  # the median
        assert app.state.heavy.running == 0
        # Asked again, a computed comparison comes from the cache without a slot.
        done = next(r for r in results if r.status_code == 200).json()
        again = http.get(_comparison(server.url, ids, done["seed"]), headers=AUTH)
        assert again.status_code == 200 and again.json()["cached"]


def test_a_request_that_gives_up_stops_its_computation(home: Settings) -> None:
    settings = home.model_copy(update={"heavy_requests": 1, "request_timeout_s": 0.3})
    app = create_app(settings)
    before = _cache_files(settings)
    with ServerThread(app) as server:
        ids = _ids_over(httpx.Client(), server.url)
        # The client leaves after 0.1 s: the computation stops and frees its slot, unwritten.
        with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.1) as impatient:
            impatient.get(_comparison(server.url, ids, 7), headers=AUTH)
        _until(lambda: app.state.heavy.running == 0, 5)
        # The deadline passes (0.3 s): 503, and the computation stops too.
        with httpx.Client(timeout=30) as http:
            t0 = time.monotonic()
            r = http.get(_comparison(server.url, ids, 8), headers=AUTH)
            assert r.status_code == 503 and time.monotonic() - t0 < 5
            _until(lambda: app.state.heavy.running == 0, 5)
            # The one slot is free again: the next heavy request is taken (and stopped), not
            # refused with 429.
            r = http.get(_comparison(server.url, ids, 9), headers=AUTH)
            assert r.status_code == 503, r.text
            _until(lambda: app.state.heavy.running == 0, 5)
    assert _cache_files(settings) == before  # nothing was computed to its end


def _until(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
