"""Slow-headers clients against the API server: how many half-open connections stay open.

Each configuration serves the real app (embedded mode: SQLite in a temporary XSTILTS_HOME) in its
own process. This process then opens N connections that each send a request line and one header
and never the blank line that ends the headers, and counts, 1, 5 and 15 s after the last one
opened, how many the server still holds; at each check it also times one ordinary GET /healthz.

  uvicorn defaults   uvicorn.run(app, log_level="warning"): what `xstilts serve` ran before
  uvicorn limits     the same with uvicorn's own limits set tight: timeout_keep_alive 1 s,
                     limit_concurrency half the connections, h11_max_incomplete_event_size 1 KiB
                     (does any of them close a connection whose headers never end?)
  xstilts server     xstilts.api.server.serve: what `xstilts serve` and `python -m services.api`
                     run now (its settings from the environment; header timeout 10 s by default)

    python bench/slow_headers.py                        # 1,500 connections, all three
    python bench/slow_headers.py --connections 500 --only xstilts
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "uvicorn": "uvicorn defaults",
    "limits": "uvicorn limits",
    "xstilts": "xstilts server",
}
CHECKS_S = (1.0, 5.0, 15.0)
PARTIAL_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(config: str, port: int, home: Path, connections: int) -> None:
    """The server process of one configuration (this script run with --serve)."""
    import uvicorn
    from xstilts.api.app import create_app
    from xstilts.api.server import serve
    from xstilts.config import Settings

    settings = Settings(home=home, database_url=f"sqlite:///{home / 'xstilts.db'}")
    app = create_app(settings)
    if config == "xstilts":
        serve(app, settings, host="127.0.0.1", port=port, log_level="warning")
    elif config == "limits":
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_keep_alive=1,
            limit_concurrency=connections // 2,
            h11_max_incomplete_event_size=1024,
        )
    else:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _still_open(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the server has not closed (no EOF, no reset), reading nothing."""
    poller = select.poll()  # select() stops at descriptor 1023
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed = 0
    for fd, _ in poller.poll(0):
        try:
            closed += by_fd[fd].recv(1, socket.MSG_PEEK) == b""
        except ConnectionError:
            closed += 1
    return len(socks) - closed


def _healthz(url: str) -> str:
    t0 = time.perf_counter()
    try:
        code = httpx.get(f"{url}/healthz", timeout=5).status_code
    except httpx.TransportError as e:
        return type(e).__name__
    return f"{code} {1000 * (time.perf_counter() - t0):.0f} ms"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(config: str, connections: int, workdir: Path) -> list[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    home = workdir / config
    home.mkdir()
    log = workdir / f"{config}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                config,
                "--port",
                str(port),
                "--home",
                str(home),
                "--connections",
                str(connections),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 120
        while _healthz(url)[:3] != "200":
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{config}: the server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        rss_before = _rss_mib(proc.pid)
        refused = 0
        for _ in range(connections):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(PARTIAL_REQUEST)
                socks.append(sock)
            except OSError:
                refused += 1
        opened = time.monotonic()
        row = [CONFIGS[config], f"{len(socks)}" + (f" ({refused} failed)" if refused else "")]
        health = []
        for at in CHECKS_S:
            time.sleep(max(0.0, opened + at - time.monotonic()))
            row.append(str(_still_open(socks)))
            health.append(_healthz(url))
            if at == CHECKS_S[0]:
                rss = _rss_mib(proc.pid) - rss_before
        return [*row, *health, f"{rss:+.0f}"]
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1500)
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--serve", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Both ends hold one descriptor per connection: raise the soft limit (children inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if args.serve:
        _serve(args.serve, args.port, args.home, args.connections)
        return

    configs = [c for c in CONFIGS if not args.only or c in args.only]
    with tempfile.TemporaryDirectory(prefix="xstilts-slow-headers-") as tmp:
        rows = [_measure(config, args.connections, Path(tmp)) for config in configs]
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(
        f"{args.connections} slow-headers connections (request line and one header, never "
        f"finished) on loopback, {os.cpu_count()} cores, open-files limit {limit}"
    )
    checks = [f"open {t:g} s" for t in CHECKS_S]
    healths = [f"/healthz {t:g} s" for t in CHECKS_S]
    head = ["server", "opened", *checks, *healths, "RSS MiB"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print(
            "  ".join(
                str(c).ljust(w) if i < 2 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    print(
        "(open N s: connections the server still held N s after the last one opened; /healthz: "
        "one ordinary request at that moment; RSS: the server's growth with the connections open)"
    )


if __name__ == "__main__":
    main()
