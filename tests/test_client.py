"""The HTTP client's retries (xstilts.api.client), against a real server on a socket that resets
its first connections before answering, as a restarting API or a proxy dropping a connection
does."""

from __future__ import annotations

import logging
import re
import socket
import struct
import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from xstilts.api.client import Client
from xstilts.errors import XstiltsError
from xstilts.experiments.status import ExperimentState

EXPERIMENT = ExperimentState(
    id="0123456789abcdef0123456789abcdef",
    name="retried",
    status="succeeded",
    error=None,
    created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    stages=[],
)


class FlakyServer:
    """Reads each request whole; resets the first ``resets`` connections (RST, no answer), then
    answers every request with :data:`EXPERIMENT` as JSON."""

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.requests: list[bytes] = []  # every request received, whole, in order
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # accept() wakes up to see `stop`
        self.stop = threading.Event()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FlakyServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                self.requests.append(_read_request(conn))
                if len(self.requests) <= self.resets:
                    # linger 0: close() sends RST, so the client sees a reset connection
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                body = EXPERIMENT.model_dump_json().encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    while length and len(body) < int(length.group(1)):
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture()
def retry_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="xstilts.api.client"):
        yield caplog


def test_a_get_is_retried_after_reset_connections(retry_log: pytest.LogCaptureFixture) -> None:
    with FlakyServer(resets=3) as server:
        client = Client(server.url, "key", first_wait_s=0.01, max_wait_s=0.02)
        assert client.experiment(EXPERIMENT.id) == EXPERIMENT
    assert len(server.requests) == 4
    assert all(r.startswith(f"GET /experiments/{EXPERIMENT.id} ".encode()) for r in server.requests)
    # one WARNING per retry; the wait doubles, up to its cap
    retries = [r.getMessage() for r in retry_log.records]
    assert [m.split("; ", 1)[1] for m in retries] == [
        "retry 1 of 4 in 0.01 s",
        "retry 2 of 4 in 0.02 s",
        "retry 3 of 4 in 0.02 s",
    ]
    assert retries[0].startswith(f"GET {server.url}/experiments/{EXPERIMENT.id}: ")


def test_a_get_gives_up_after_the_last_attempt(retry_log: pytest.LogCaptureFixture) -> None:
    with FlakyServer(resets=10) as server:
        client = Client(server.url, "key", attempts=3, first_wait_s=0.01)
        with pytest.raises(XstiltsError) as e:
            client.metrics(EXPERIMENT.id)
    assert len(server.requests) == 3
    assert len(retry_log.records) == 2
    assert e.value.field == "url"
    assert str(e.value).startswith(f"url: cannot reach the xstilts API at {server.url} (")
    assert "; 3 attempts); start one with 'xstilts serve --port 8000'" in str(e.value)


def test_a_post_without_idempotency_key_is_not_retried(
    retry_log: pytest.LogCaptureFixture,
) -> None:
    with FlakyServer(resets=1) as server:
        client = Client(server.url, "key", first_wait_s=0.01)
        with pytest.raises(XstiltsError, match="cannot reach the xstilts API"):
            client.submit({"name": "x"})
    assert len(server.requests) == 1  # it may have been stored: sending it again could duplicate
    assert server.requests[0].startswith(b"POST /experiments ")
    assert "attempts" not in retry_log.text and not retry_log.records


def test_a_post_with_idempotency_key_is_retried(retry_log: pytest.LogCaptureFixture) -> None:
    with FlakyServer(resets=1) as server:
        client = Client(server.url, "key", first_wait_s=0.01)
        assert client.submit({"name": "x"}, idempotency_key="k-1") == EXPERIMENT
    assert len(server.requests) == 2
    # the same request twice: the server answers the second with what the first stored
    assert server.requests[0] == server.requests[1]
    assert b"\r\nidempotency-key: k-1\r\n" in server.requests[0].lower()
    assert server.requests[0].endswith(b'{"name":"x"}')
    assert len(retry_log.records) == 1


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts must be 1 or more"):
        Client("http://127.0.0.1:1", "key", attempts=0)
