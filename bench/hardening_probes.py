"""The probes of issue 20 (report, study and comparison endpoints tried as an attacker would)
against a real `xstilts serve`, optionally also against an earlier commit: one table, before and
after.

Each server runs in its own process and home (SQLite, stages in its thread), with a tiny random
XLM-R (2 layers, the real tokenizer), on all 15 XNLI languages (300 examples each). It first runs a
one-cell study named `$\\foo$` (its baseline cell) and an experiment `x$a$` of the same evaluation
(seed 2), then probes:

- reports whose names are formulas to matplotlib: a study's cell, 98 nested braces (RecursionError);
- the server's resident memory over 300 report requests for the study's cell;
- 120 reports of `x$a$` from 8 threads: how many 5xx;
- a body with a 5,000-digit integer on POST /experiments and /studies;
- a study whose override moves its baseline into the `qqp` row: POST, then GET, results, report
  and cancel of the stored study;
- 16 parallel comparisons with 100,000 resamples: their status codes and times, and /healthz's
  latency meanwhile.

    python bench/hardening_probes.py                     # this checkout
    python bench/hardening_probes.py --baseline 2cb281d  # and the code of an earlier commit
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from random_model import save_random_xlmr

REPO = Path(__file__).resolve().parents[1]
XNLI = ["en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur"]


def tiny_model(folder: Path) -> Path:
    from xstilts.config import Settings
    from xstilts.modeling.offline import prepare_offline_model

    return save_random_xlmr(folder / "tiny-xlmr", prepare_offline_model(Settings().cache_dir))


def cell_spec(model: Path, name: str, seed: int) -> dict[str, Any]:
    training = {"learning_rate": 1e-3, "batch_size": 16, "max_train_examples": 64,
                "max_seq_length": 64}  # fmt: skip
    return {
        "name": name,
        "model": {"source": f"local:{model}"},
        "intermediate": {"tasks": []},
        "target": {"task": "xnli", "training": training},
        "evaluation": {
            "languages": XNLI,
            "max_examples_per_language": 300,
            "max_seq_length": 64,
            "bootstrap_samples": 100,
        },  # fmt: skip
        "seeds": [seed],
    }


def study_spec(model: Path, name: str, **extra: Any) -> dict[str, Any]:
    cell = cell_spec(model, "unused", 1)
    return {
        "name": name,
        "model": cell["model"],
        "intermediate_sets": [[], ["qqp"]] if extra else [[]],
        "targets": ["xnli"],
        "target_training": cell["target"]["training"],
        "evaluation": cell["evaluation"],
        "seeds": [1],
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, tree: Path, home: Path, model_root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": str(tree / "shared"),
            "XSTILTS_HOME": str(home),
            "XSTILTS_MODEL_ROOTS": str(model_root),
        }
        home.mkdir(parents=True, exist_ok=True)
        self.log = open(home / "serve.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xstilts.cli", "serve", "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=tree,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, "serve did not start"
            time.sleep(0.3)
        self.auth = {"Authorization": f"Bearer {(home / 'api-key').read_text().strip()}"}
        self.home = home

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:  # a thread that never ends holds it: kill it
            print("the server did not stop within 30 s of SIGTERM: killed", file=sys.stderr)
            self.proc.kill()
            self.proc.wait(30)
        self.log.close()


def wait(http: httpx.Client, server: Server, path: str, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            body: dict[str, Any] = http.get(server.url + path, headers=server.auth).json()
        except httpx.TransportError:
            if server.proc.poll() is not None:
                log = (server.home / "serve.log").read_text(errors="replace")
                raise RuntimeError(f"the server died; its log ends:\n{log[-3000:]}") from None
            body = {}
        if body.get("status") in ("succeeded", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.5)


def call(http: httpx.Client, method: str, url: str, auth: dict[str, str]) -> int | str:
    """The status code, or the transport error's name (the connection reset, say)."""
    try:
        return http.request(method, url, headers=auth).status_code
    except httpx.TransportError as e:
        return type(e).__name__


def codes(responses: list[int | str]) -> str:
    return ", ".join(f"{n}x {c}" for c, n in sorted(Counter(map(str, responses)).items()))


def probe(tree: Path, model: Path, work: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    server = Server(tree, work / "home", model.parent)
    http = httpx.Client(timeout=120)
    try:
        r = http.post(
            f"{server.url}/studies", json=study_spec(model, "$\\foo$"), headers=server.auth
        )
        assert r.status_code == 201, r.text
        assert wait(http, server, f"/studies/{r.json()['id']}")["status"] == "succeeded"
        ids = {}
        for name, seed in (("x$a$", 2), ("$" + "{" * 98 + "x" + "}" * 98 + "$", 2)):
            r = http.post(f"{server.url}/experiments", json=cell_spec(model, name, seed),
                          headers=server.auth)  # fmt: skip
            ids[name] = r.json()["id"]
            assert wait(http, server, f"/experiments/{ids[name]}")["status"] == "succeeded"
        listed = http.get(f"{server.url}/experiments?limit=100", headers=server.auth).json()
        cell = next(e["id"] for e in listed["items"] if e["name"].startswith("$\\foo$/"))
        deep = next(n for n in ids if n.startswith("${"))

        def report(exp_id: str) -> int | str:
            try:
                return http.get(
                    f"{server.url}/experiments/{exp_id}/report", headers=server.auth
                ).status_code
            except httpx.TransportError as e:
                return type(e).__name__

        out["report of study `$\\foo$`'s cell"] = str(report(cell))
        out["report of a name of 98 nested braces"] = str(report(ids[deep]))

        def revive(probe: str) -> Server:
            """The server, or a new one on the same home if the probe killed it (noted)."""
            time.sleep(1)
            if server.proc.poll() is None:
                return server
            log = (work / "home" / "serve.log").read_text(errors="replace").strip()
            last = log.splitlines()[-1][:120] if log else ""
            out[probe] += f" (the server died, exit {server.proc.returncode}: {last})"
            print(f"{probe}: the server died; its log ends:\n{log[-2000:]}", file=sys.stderr)
            server.stop()
            return Server(tree, work / "home", model.parent)

        server = revive("report of a name of 98 nested braces")
        before = server.rss_mib()
        results = [report(cell) for _ in range(300)]
        probe_name = "300 reports of the cell: codes; server RSS growth"
        out[probe_name] = f"{codes(results)}; {server.rss_mib() - before:+.0f} MiB"
        server = revive(probe_name)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: report(ids["x$a$"]), range(120)))
        out["120 reports of `x$a$` at 8 threads: codes"] = codes(results)
        server = revive("120 reports of `x$a$` at 8 threads: codes")

        huge = "9" * 5000
        body = f'{{"name": "n", "target": {{"task": "xnli"}}, "seeds": [{huge}]}}'
        for path in ("/experiments", "/studies"):
            try:
                got: int | str = http.post(
                    server.url + path, content=body.encode(), headers=server.auth
                ).status_code
            except httpx.TransportError as e:
                got = type(e).__name__
            out[f"POST {path} with a 5,000-digit integer"] = str(got)
            server = revive(f"POST {path} with a 5,000-digit integer")

        poison = study_spec(
            model, "poison", overrides={"xnli": {"intermediate": {"tasks": ["qqp"]}}}
        )
        r = http.post(f"{server.url}/studies", json=poison, headers=server.auth)
        db = sqlite3.connect(work / "home" / "xstilts.db")
        stored = db.execute("SELECT id FROM studies WHERE name = 'poison'").fetchall()
        db.close()
        line = f"POST {r.status_code}; stored: {len(stored)}"
        if stored:
            sid = stored[0][0]
            after = [
                call(http, "GET", f"{server.url}/studies/{sid}{p}", server.auth)
                for p in ("", "/results", "/report")
            ]
            after.append(call(http, "POST", f"{server.url}/studies/{sid}/cancel", server.auth))
            line += f"; GET, results, report, cancel: {', '.join(map(str, after))}"
        out["study overriding intermediate.tasks"] = line
        server = revive("study overriding intermediate.tasks")

        base, cand = cell, ids["x$a$"]
        timings: list[tuple[int, float]] = []
        health: list[float] = []

        def compare(seed: int) -> None:
            t0 = time.monotonic()
            url = (f"{server.url}/comparisons?baseline={base}&candidate={cand}"
                   f"&samples=100000&seed={seed}")  # fmt: skip
            try:
                status = httpx.get(url, headers=server.auth, timeout=120).status_code
            except httpx.TransportError:
                status = 0
            timings.append((status, time.monotonic() - t0))

        threads = [threading.Thread(target=compare, args=(100 + i,)) for i in range(16)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            t0 = time.monotonic()
            if call(http, "GET", f"{server.url}/healthz", {}) == 200:
                health.append(time.monotonic() - t0)
            time.sleep(0.1)
        by_code: dict[int, list[float]] = {}
        for status, took in timings:
            by_code.setdefault(status, []).append(took)
        out["16 parallel comparisons (100,000 resamples)"] = "; ".join(
            f"{len(ts)}x {c} in {min(ts):.1f}-{max(ts):.1f} s" for c, ts in sorted(by_code.items())
        )
        out["/healthz meanwhile: median, max"] = (
            f"{1000 * statistics.median(health):.0f} ms, {1000 * max(health):.0f} ms"
        )
    finally:
        http.close()
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="git revision to probe as well (a temporary worktree)")
    args = parser.parse_args()
    columns: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="xstilts-probes-") as tmp:
        work = Path(tmp)
        model = tiny_model(work / "models")
        trees = [("this checkout", REPO)]
        if args.baseline:
            tree = work / "baseline-tree"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline],
                           cwd=REPO, check=True, capture_output=True)  # fmt: skip
            trees.insert(0, (args.baseline, tree))
        try:
            for label, tree in trees:
                print(f"probing {label} ...", file=sys.stderr, flush=True)
                columns[label] = probe(tree, model, work / label.replace(" ", "-"))
        finally:
            if args.baseline:
                subprocess.run(["git", "worktree", "remove", "--force", str(work / "baseline-tree")],
                               cwd=REPO, check=False)  # fmt: skip
    labels = list(columns)
    print("| probe | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for name in columns[labels[-1]]:
        print(f"| {name} | " + " | ".join(columns[lb].get(name, "-") for lb in labels) + " |")


if __name__ == "__main__":
    main()
