"""API latency under load from a second process on loopback (service mode), optionally side by
side with an earlier commit of the code in the same run.

Starts the API exactly as deployed (`uvicorn services.api.main:app`, Postgres, Celery executor over
Redis) in its own process, seeds one finished experiment (offline model, small caps, 15 XNLI
languages) through the library, then sends requests from a thread pool of this process. Nothing
consumes the queue, so POSTed experiments stay queued.

With `--baseline REF` a second API runs the code of git revision REF (a temporary worktree, its
own `xstilts` first on PYTHONPATH) against the same database, and the two are measured in
alternating rounds (baseline, current, baseline, ...) so that the machine's changing load falls on
both alike. The table gives, per endpoint and implementation, the median requests/s over rounds
with its range, and p50/p99 latency over all requests; then the ratio current/baseline per round
(median, range).

    python bench/api_latency.py --requests 400 --concurrency 8
    python bench/api_latency.py --baseline b668c36 --rounds 5 --requests 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
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


class Api:
    """One API process (code from ``root``) and a client for it."""

    def __init__(self, name: str, root: Path, env: dict[str, str], key: str) -> None:
        self.name = name
        port = _free_port()
        env = {**env, "PYTHONPATH": f"{root / 'shared'}{os.pathsep}{root}"}
        where = subprocess.run(
            [sys.executable, "-c", "import xstilts; print(xstilts.__file__)"],
            env=env, cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert where.startswith(str(root)), f"{name}: imports xstilts from {where}, not {root}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "services.api.main:app", "--port", str(port),
             "--log-level", "warning"],
            cwd=root, env=env,
        )  # fmt: skip
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=64),
            timeout=60,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.1)

    def timed(self, method: str, path: str, **kw) -> float:
        t = time.perf_counter()
        r = self.client.request(method, path, **kw)
        dt = time.perf_counter() - t
        assert r.status_code < 300, (self.name, r.status_code, r.text[:300])
        return dt

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _load(
    pool: ThreadPoolExecutor, n: int, call: Callable[[int], float]
) -> tuple[list[float], float]:
    t = time.perf_counter()
    times = list(pool.map(call, range(n)))
    return times, n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=400, help="GET requests a round (POSTs: 1/4)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per implementation")
    p.add_argument("--baseline", metavar="REF", help="also measure the code of this git revision")
    args = p.parse_args()
    # The seeded experiment reads the local data (as the tests do, ../shared/data by default).
    os.environ.setdefault("XSTILTS_DATA_DIR", str(REPO.parent / "shared" / "data"))

    from xstilts.config import Settings
    from xstilts.db.migrate import upgrade
    from xstilts.db.models import Experiment
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import parse_spec

    db = f"xstilts_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{db}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
    key = uuid.uuid4().hex
    env = {
        **os.environ,
        "XSTILTS_DATABASE_URL": url,
        "XSTILTS_BROKER_URL": REDIS,
        "XSTILTS_API_KEYS": f"bench:{hashlib.sha256(key.encode()).hexdigest()}",
        "XSTILTS_ARTIFACTS_DIR": f"/tmp/{db}",
    }
    apis: list[Api] = []
    worktree: Path | None = None
    try:
        upgrade(url)  # the migrate job
        settings = Settings(database_url=url, artifacts_dir=Path(f"/tmp/{db}"))
        ws = Workspace(settings)
        exp_id = ws.run(parse_spec(_spec("seed"))).experiment.id
        with ws.sessions.begin() as s:
            s.execute(update(Experiment).where(Experiment.id == exp_id).values(owner="bench"))
        if args.baseline:
            worktree = Path(tempfile.mkdtemp(prefix="xstilts-baseline-"))
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(worktree), args.baseline],
                cwd=REPO, check=True, capture_output=True,
            )  # fmt: skip
            migrations = "shared/xstilts/db/migrations/versions"
            assert sorted(os.listdir(worktree / migrations)) == sorted(
                os.listdir(REPO / migrations)
            ), "the baseline needs another schema; this bench shares one database"
            apis.append(Api(f"baseline {args.baseline}", worktree, env, key))
        apis.append(Api("current", REPO, env, key))
        for api in apis:  # warm-up: the first POST fingerprints the model and data files
            for _ in range(3):
                api.timed("POST", "/experiments", json=_spec(f"warm-{uuid.uuid4().hex[:6]}"))
                api.timed("GET", f"/experiments/{exp_id}/metrics")

        endpoints: list[tuple[str, int, Callable[[Api], Callable[[int], float]]]] = [
            ("GET /experiments/{id}/metrics", args.requests,
             lambda a: lambda _: a.timed("GET", f"/experiments/{exp_id}/metrics")),
            ("GET /experiments/{id}", args.requests,
             lambda a: lambda _: a.timed("GET", f"/experiments/{exp_id}")),
            ("POST /experiments (17 stages)", max(20, args.requests // 4),
             lambda a: lambda i: a.timed("POST", "/experiments", json=_spec(f"load-{i}"))),
        ]  # fmt: skip
        # results[endpoint][api] = (every latency, requests/s of each round)
        results: dict[str, dict[str, tuple[list[float], list[float]]]] = {
            e: {a.name: ([], []) for a in apis} for e, _, _ in endpoints
        }
        with ThreadPoolExecutor(args.concurrency) as pool:
            for _ in range(args.rounds):
                for name, n, call in endpoints:
                    for api in apis:  # alternate: baseline, current, baseline, current, ...
                        times, rate = _load(pool, n, call(api))
                        results[name][api.name][0].extend(times)
                        results[name][api.name][1].append(rate)

        print(
            f"API latency, uvicorn (1 process each) + Postgres, load from a second process, "
            f"{os.cpu_count()} cores, concurrency {args.concurrency}, {args.rounds} alternating "
            "rounds"
        )
        head = f"{'endpoint':<32}{'code':<22}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}"
        print(head + f"{'req/s median (range)':>26}")
        for name, by_api in results.items():
            for api_name, (times, rates) in by_api.items():
                q = statistics.quantiles(times, n=100)
                spread = f"{statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})"
                print(
                    f"{name:<32}{api_name:<22}{len(times):>6}{1000 * q[49]:>9.1f}"
                    f"{1000 * q[98]:>9.1f}{spread:>26}"
                )
            if len(apis) == 2:
                base, cur = (by_api[a.name][1] for a in apis)
                ratios = [c / b for b, c in zip(base, cur, strict=True)]
                print(
                    f"{'':<32}{'current/baseline':<22}{'':>24}"
                    f"{statistics.median(ratios):>12.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                )
    finally:
        for api in apis:
            api.close()
        if worktree is not None:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=False
            )
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
