"""API latency under a short load from a second process on loopback (service mode).

Starts the API exactly as deployed (`uvicorn services.api.main:app`, Postgres, Celery executor over
Redis) in its own process, seeds one finished experiment (offline model, small caps, 15 XNLI
languages) through the library, then this process sends requests from a thread pool and prints
p50/p90/p99 latency per endpoint. Nothing consumes the queue, so POSTed experiments stay queued.

    python bench/api_latency.py --requests 400 --concurrency 8
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text, update

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("XSTILTS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("XSTILTS_TEST_REDIS", "redis://127.0.0.1:6379") + "/14"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spec(name: str) -> dict:
    training = {"batch_size": 32, "max_train_examples": 64, "max_seq_length": 64}
    return {
        "name": name,
        "model": {"pooling": "mean"},
        "target": {"task": "xnli", "training": training},
        "evaluation": {"max_examples_per_language": 40, "bootstrap_samples": 200},
        "seeds": [1],
    }


def _timed(client: httpx.Client, method: str, path: str, **kw) -> float:
    t = time.perf_counter()
    r = client.request(method, path, **kw)
    dt = time.perf_counter() - t
    assert r.status_code < 300, (r.status_code, r.text[:300])
    return dt


def _row(name: str, times: list[float], wall: float, conc: int) -> str:
    q = statistics.quantiles(times, n=100)
    return (
        f"{name:<34}{len(times):>6}{conc:>6}{1000 * q[49]:>9.1f}{1000 * q[89]:>9.1f}"
        f"{1000 * q[98]:>9.1f}{len(times) / wall:>9.0f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=400, help="GET requests (POSTs: a quarter)")
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()

    from xstilts.config import Settings
    from xstilts.db.models import Experiment
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import parse_spec

    db = f"xstilts_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{db}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
    key = uuid.uuid4().hex
    port = _free_port()
    env = {
        **os.environ,
        "XSTILTS_DATABASE_URL": url,
        "XSTILTS_BROKER_URL": REDIS,
        "XSTILTS_API_KEYS": f"bench:{hashlib.sha256(key.encode()).hexdigest()}",
        "XSTILTS_ARTIFACTS_DIR": f"/tmp/{db}",
    }
    server = None
    try:
        settings = Settings(database_url=url, artifacts_dir=Path(f"/tmp/{db}"))
        ws = Workspace(settings)
        seeded = ws.run(parse_spec(_spec("seed")))
        exp_id = seeded.experiment.id
        with ws.sessions.begin() as s:
            s.execute(update(Experiment).where(Experiment.id == exp_id).values(owner="bench"))
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "services.api.main:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
        )
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        )
        for _ in range(200):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for _ in range(5):  # warm-up: first POST fingerprints the model and data files
            _timed(client, "POST", "/experiments", json=_spec(f"warm-{uuid.uuid4().hex[:6]}"))
            _timed(client, "GET", f"/experiments/{exp_id}/metrics")

        rows = []
        with ThreadPoolExecutor(args.concurrency) as pool:
            t = time.perf_counter()
            times = list(
                pool.map(
                    lambda _: _timed(client, "GET", f"/experiments/{exp_id}/metrics"),
                    range(args.requests),
                )
            )
            rows.append(
                _row(
                    "GET /experiments/{id}/metrics",
                    times,
                    time.perf_counter() - t,
                    args.concurrency,
                )
            )
            t = time.perf_counter()
            times = list(
                pool.map(
                    lambda _: _timed(client, "GET", f"/experiments/{exp_id}"), range(args.requests)
                )
            )
            rows.append(
                _row("GET /experiments/{id}", times, time.perf_counter() - t, args.concurrency)
            )
            n_post = max(20, args.requests // 4)
            t = time.perf_counter()
            times = list(
                pool.map(
                    lambda i: _timed(client, "POST", "/experiments", json=_spec(f"load-{i}")),
                    range(n_post),
                )
            )
            rows.append(
                _row(
                    "POST /experiments (17 stages)",
                    times,
                    time.perf_counter() - t,
                    args.concurrency,
                )
            )
        print(
            f"API latency, uvicorn (1 process) + Postgres, load from a second process, {os.cpu_count()} cores"
        )
        print(
            f"{'endpoint':<34}{'n':>6}{'conc':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'req/s':>9}"
        )
        print("\n".join(rows))
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        import redis

        redis.Redis.from_url(REDIS).flushdb()
        with admin.connect() as c:
            c.execute(
                text(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
                )
            )
            c.execute(text(f'DROP DATABASE IF EXISTS "{db}"'))


if __name__ == "__main__":
    main()
