"""The HTTP server both launch paths share (xstilts.api.server): `xstilts serve` and the service's
`python -m services.api`, run as real processes or a real uvicorn server in a thread."""

from __future__ import annotations

import hashlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from xstilts.api.app import create_app
from xstilts.api.server import build_server, redact_api_keys
from xstilts.config import Settings, SettingsError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "0123456789abcdef0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a server process: this one's, less any XSTILTS_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XSTILTS_")}
    return {**env, "XSTILTS_HOME": str(home), "PYTHONPATH": str(REPO), **extra}


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the server did not answer /healthz within 60 s"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start_service(tmp_path: Path, key: str) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    """`python -m services.api` as deployed (in-process executor, SQLite under tmp_path)."""
    port = _free_port()
    digest = hashlib.sha256(key.encode()).hexdigest()
    env = _env(tmp_path / "home", XSTILTS_EXECUTOR="thread", XSTILTS_API_KEYS=f"alice:{digest}")
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(proc, url, err)
    return proc, url, out, err


def _start_serve(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`xstilts serve` (embedded mode: a key of its own, SQLite under tmp_path)."""
    port = _free_port()
    err = tmp_path / "stderr.log"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xstilts.cli", "serve", "--port", str(port)],
            env=_env(tmp_path / "home"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(proc, url, err)
    return proc, url, err


# --- the API key in URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logged", "shown"),
    [
        ("/experiments/x/report?api_key=SECRET", "/experiments/x/report?api_key=[redacted]"),
        ("/r?a=1&api_key=SECRET&b=2", "/r?a=1&api_key=[redacted]&b=2"),
        ("/r?api%5Fkey=SECRET", "/r?api%5Fkey=[redacted]"),  # the server decodes the name
        ("/r?API_KEY=SECRET#top", "/r?API_KEY=[redacted]#top"),
        ("/r?api_key=", "/r?api_key=[redacted]"),
        ("/r?my_api_key=kept&api_keys=kept", "/r?my_api_key=kept&api_keys=kept"),
        ("/experiments?limit=5", "/experiments?limit=5"),
    ],
)
def test_redact_api_keys(logged: str, shown: str) -> None:
    assert redact_api_keys(logged) == shown


def test_service_access_log_redacts_the_api_key_and_logs_sigterm(tmp_path: Path) -> None:
    key = "SECRET-key-0123456789"
    proc, url, out, err = _start_service(tmp_path, key)
    try:
        page = f"/experiments/{EXPERIMENT}/report"
        response = httpx.get(f"{url}{page}?lang=en&api_key={key}")
        assert response.status_code == 404  # the key was accepted: the experiment is unknown
        assert httpx.get(f"{url}/healthz?api%5Fkey={key}").status_code == 200
    finally:
        code = _stop(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM  # uvicorn re-raises the signal once it has shut down
    access, log = out.read_text(), err.read_text()
    assert f'"GET {page}?lang=en&api_key=[redacted] HTTP/1.1" 404' in access, access
    assert '"GET /healthz?api%5Fkey=[redacted] HTTP/1.1" 200' in access, access
    assert key not in access + log
    # start and stop at WARNING, the stop naming the signal
    warnings = [line for line in log.splitlines() if " WARNING xstilts.api.server: " in line]
    assert len(warnings) == 3, log
    assert warnings[0].endswith(f"xstilts API started on {url} (pid {proc.pid})")
    assert warnings[1].endswith(f"xstilts API stopping on SIGTERM (pid {proc.pid})")
    assert warnings[2].endswith(f"xstilts API stopped on SIGTERM (pid {proc.pid})")


def test_serve_logs_its_start_and_the_signal_that_stopped_it(tmp_path: Path) -> None:
    proc, url, err = _start_serve(tmp_path)
    code = _stop(proc, signal.SIGTERM)
    assert code == -signal.SIGTERM
    log = err.read_text()
    # serve runs uvicorn at WARNING: its own INFO lines (and the access log) are not written
    assert "Shutting down" not in log and "Application startup complete" not in log
    warnings = [line for line in log.splitlines() if " WARNING xstilts.api.server: " in line]
    assert [w.split(": ", 1)[1] for w in warnings] == [
        f"xstilts API started on {url} (pid {proc.pid})",
        f"xstilts API stopping on SIGTERM (pid {proc.pid})",
        f"xstilts API stopped on SIGTERM (pid {proc.pid})",
    ], log


def test_serve_dumps_tracebacks_on_a_fatal_signal(tmp_path: Path) -> None:
    proc, _, err = _start_serve(tmp_path)
    code = _stop(proc, signal.SIGABRT)  # what a crash in native code raises
    assert code == -signal.SIGABRT
    log = err.read_text()
    assert "Fatal Python error: Aborted" in log, log
    assert "Thread 0x" in log and 'File "' in log, log  # every thread's stack


@pytest.mark.parametrize("module", ["services.worker.main", "services.eval.main"])
def test_celery_entry_points_enable_faulthandler(module: str, tmp_path: Path) -> None:
    code = f"import faulthandler, {module}; print(faulthandler.is_enabled())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "True", done.stderr


# --- slow headers -----------------------------------------------------------------------------


HEADER_TIMEOUT_S = 2.0


@pytest.fixture()
def short_timeout_server(tmp_path: Path) -> Iterator[int]:
    """The real app on the shared server, a short header timeout, in a thread of this process;
    yields its port."""
    settings = Settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'xstilts.db'}",
        http_header_timeout_s=HEADER_TIMEOUT_S,
        http_keep_alive_s=30,  # longer than the test: any close seen is the header timeout's
    )
    port = _free_port()
    server = build_server(
        create_app(settings), settings, host="127.0.0.1", port=port, log_level="warning"
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(20)


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF or reset), without reading what it sent."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ConnectionError:
        return True


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body): unread bytes would hide a later EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return data


def _connect(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


def test_connections_that_never_finish_their_headers_are_closed(short_timeout_server: int) -> None:
    port = short_timeout_server
    socks: list[socket.socket] = []
    answered: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        # 50 partial requests: the request line and a header, never the blank line after them.
        socks += [
            _connect(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(50)
        ]
        socks += [_connect(port) for _ in range(10)]  # and 10 that send nothing at all
        # A finished request, then half of the next one on the same (kept-alive) connection.
        kept = _connect(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(kept).startswith(b"HTTP/1.1 200 ")
        kept.sendall(b"GET /healthz HTTP/1.1\r\n")
        # The same, the start of the second request sent with the first (held while it is answered).
        pipelined = _connect(
            port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n"
        )
        assert _response(pipelined).startswith(b"HTTP/1.1 200 ")
        socks += [kept, pipelined]
        assert time.monotonic() - t0 < HEADER_TIMEOUT_S / 2, "set-up too slow to test the timer"
        assert not any(_closed_by_peer(s) for s in socks), "closed before the header timeout"

        # A request sent slowly but completed within the timeout is answered.
        slow = _connect(port, b"GET /healthz HTTP/1.1\r\n")
        answered.append(slow)
        time.sleep(0.5)
        slow.sendall(b"Host: x\r\n\r\n")
        assert _response(slow).startswith(b"HTTP/1.1 200 ")
        # So is an ordinary client while the half-open connections are held.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        # Once its headers are in, a request is not bound by the header timeout: this one still
        # owes its body.
        body_pending = _connect(
            port,
            b"POST /experiments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n",
        )
        answered.append(body_pending)

        deadline = t0 + HEADER_TIMEOUT_S + 3.0
        while not all(_closed_by_peer(s) for s in socks):
            still = sum(not _closed_by_peer(s) for s in socks)
            assert time.monotonic() < deadline, f"{still} of {len(socks)} connections still open"
            time.sleep(0.05)
        assert time.monotonic() - t0 >= HEADER_TIMEOUT_S * 0.95  # none closed early
        assert not _closed_by_peer(slow)  # an answered connection is kept alive (30 s here)
        assert not _closed_by_peer(body_pending)
        body_pending.sendall(b"{}")
        assert _response(body_pending).startswith(b"HTTP/1.1 401 ")  # no key: 401, as ever
    finally:
        for s in socks + answered:
            s.close()


def _head(size: int, end: bytes = b"\r\n") -> bytes:
    """A GET whose request line and headers are ``size`` bytes long, blank line included."""
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 2 * len(end)) + end + end


@pytest.mark.parametrize(
    ("size", "pieces", "status"),
    [
        (16384, 1, b"200"),  # exactly the limit (16 KiB), in one read
        (16385, 1, b"431"),  # one byte over, in one read: h11 alone let 100 KB through
        (100_000, 1, b"431"),
        (30_000, 3, b"431"),  # over it in pieces
        (16384, 4, b"200"),
    ],
)
def test_request_heads_over_the_limit_get_431(
    short_timeout_server: int, size: int, pieces: int, status: bytes
) -> None:
    head = _head(size)
    assert len(head) == size
    with _connect(short_timeout_server) as sock:
        step = -(-size // pieces)
        for i in range(0, size, step):
            sock.sendall(head[i : i + step])
            time.sleep(0.05)  # separate reads on the server
        answer = _response(sock)
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    if status == b"431":
        assert answer.endswith(
            b"Request line and headers over 16384 bytes (XSTILTS_HTTP_MAX_HEADER_BYTES)."
        )


def test_a_body_and_a_kept_alive_request_do_not_count_towards_the_head(
    short_timeout_server: int,
) -> None:
    """Only the request line and headers are capped: a body sent with them, and the heads of
    later requests on the same connection, each start afresh. A bare LF ends a head too."""
    body = b"{" + b" " * 20_000 + b"}"
    post = (
        b"POST /experiments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with _connect(short_timeout_server, post) as sock:
        assert _response(sock).startswith(b"HTTP/1.1 401 ")  # read past the head: no key
        for _ in range(3):
            sock.sendall(_head(12_000))
            assert _response(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(_head(12_000, end=b"\n"))
        assert _response(sock).startswith(b"HTTP/1.1 200 ")


def test_pipelined_requests_are_capped_each_on_its_own(short_timeout_server: int) -> None:
    """A head pipelined behind another is parsed without a read of its own: it is capped all
    the same. A head whose blank line is split across two reads, then a long body, is not."""
    small = _head(100)
    with _connect(short_timeout_server, small + _head(100_000)) as sock:
        answers = b""
        while chunk := sock.recv(65536):  # both answers, then the server closes
            answers += chunk
    assert answers.startswith(b"HTTP/1.1 200 ")
    assert answers.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 431 " in answers
    body = b"{" + b" " * 20_000 + b"}"
    post = (
        b"POST /experiments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    with _connect(short_timeout_server, small + post[:-2]) as sock:
        assert _response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.1)
        sock.sendall(post[-2:] + body)
        assert _response(sock).startswith(b"HTTP/1.1 401 ")  # read whole: no key


def test_http_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSTILTS_HTTP_HEADER_TIMEOUT_S", "0")
    monkeypatch.setenv("XSTILTS_HTTP_MAX_HEADER_BYTES", "100")
    with pytest.raises(SettingsError) as e:
        Settings()
    assert dict(e.value.problems) == {
        "XSTILTS_HTTP_HEADER_TIMEOUT_S": "Input should be greater than 0 (got '0')",
        "XSTILTS_HTTP_MAX_HEADER_BYTES": "Input should be greater than or equal to 1024 (got '100')",
    }
    monkeypatch.setenv("XSTILTS_HTTP_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("XSTILTS_HTTP_MAX_HEADER_BYTES", "32768")
    settings = Settings()
    assert (settings.http_header_timeout_s, settings.http_max_header_bytes) == (2.5, 32768)
    assert (settings.http_keep_alive_s, settings.http_max_concurrency) == (5, 10_000)
