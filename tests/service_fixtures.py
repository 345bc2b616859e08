"""Real Postgres, Redis and Celery worker processes for the service tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get(
    "XSTILTS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("XSTILTS_TEST_REDIS", "redis://127.0.0.1:6379")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh Postgres database per test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"xstilts_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # pragma: no cover - environment problem, not a test result
        pytest.fail(f"Postgres at {PG_ADMIN_URL} is not reachable ({e}); scripts/test.sh starts it")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as c:
        c.execute(
            text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        )
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture()
def broker_url() -> Iterator[str]:
    """A Redis database of its own (flushed before and after) as the Celery broker."""
    import redis

    db = 8 + (os.getpid() % 7)
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


class Workers:
    """Starts and stops `celery worker` processes exactly as deployed (services/*/main.py)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        queue: str,
        module: str = "services.worker.main",
        concurrency: int | None = 1,
    ) -> subprocess.Popen[bytes]:
        """``concurrency`` None: the app's own, as deployed (``XSTILTS_STAGES_PER_GPU``)."""
        log = (self.log_dir / f"{name}.log").open("ab")
        pool = [] if concurrency is None else ["--concurrency", str(concurrency)]
        cmd = [
            sys.executable, "-m", "celery", "-A", module, "worker", "-Q", queue, *pool,
            "--prefetch-multiplier", "1", "-O", "fair",
            "--loglevel", "INFO", "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
