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
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        if len(self.requests) <= self.resets:
            # linger 0: close() sends RST, so the client sees a reset connection
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
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


class ScriptedServer(FlakyServer):
    """Answers each request with the next of ``answers`` (status, headers, body); the last one
    for every request after them."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__(resets=0)
        self.answers = answers

    def _answer(self, conn: socket.socket) -> None:
        status, headers, body = self.answers[min(len(self.requests), len(self.answers)) - 1]
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{head}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


def test_a_get_answered_busy_asks_again_when_told_and_a_post_does_not(
    retry_log: pytest.LogCaptureFixture,
) -> None:
    busy = (429, {"Retry-After": "0"}, b'{"detail": "heavy requests at their limit"}')
    late = (503, {}, b'{"detail": "past its deadline"}')
    ok = (200, {}, EXPERIMENT.model_dump_json().encode())
    with ScriptedServer([busy, late, ok]) as server:
        client = Client(server.url, "key", first_wait_s=0.01)
        assert client.experiment(EXPERIMENT.id) == EXPERIMENT
    assert len(server.requests) == 3
    assert [r.getMessage().split(": ", 1)[1] for r in retry_log.records] == [
        "HTTP 429; retry 1 of 4 in 0 s",  # as Retry-After said
        "HTTP 503; retry 2 of 4 in 0.02 s",  # none said: the doubling wait
    ]
    with ScriptedServer([busy, ok]) as server:  # a POST without a key: may have been stored
        client = Client(server.url, "key", first_wait_s=0.01)
        with pytest.raises(XstiltsError, match="HTTP 429: heavy requests at their limit"):
            client.cancel(EXPERIMENT.id)
    assert len(server.requests) == 1
    with ScriptedServer([busy]) as server:  # busy every time: the attempts end it, said
        client = Client(server.url, "key", attempts=2, first_wait_s=0.01)
        with pytest.raises(XstiltsError, match="HTTP 429"):
            client.experiment(EXPERIMENT.id)
    assert len(server.requests) == 2


def test_a_study_matrix_is_fetched_page_by_page_and_joined() -> None:
    from xstilts.studies.model import CellResult, StudyResults

    rows = [f"row{i}" for i in range(45)]

    def page(offset: int) -> tuple[int, dict[str, str], bytes]:
        cells = [
            [CellResult(row=r, target="xnli", experiment_id="e" * 32, status="succeeded")]
            for r in rows[offset : offset + 20]
        ]
        body = StudyResults(
            id="f" * 32, name="big", rows=rows, targets=["xnli"], seeds=[1], total_rows=45,
            limit=20, offset=offset, cells=cells,
        )  # fmt: skip
        return 200, {}, body.model_dump_json().encode()

    with ScriptedServer([page(0), page(20), page(40)]) as server:
        whole = Client(server.url, "key").study_results("f" * 32)
    asked = [r.split(b" ", 2)[1].decode() for r in server.requests]
    assert asked == [f"/studies/{'f' * 32}/results?limit=20&offset={o}" for o in (0, 20, 40)]
    assert [row[0].row for row in whole.cells] == rows
    assert (whole.offset, whole.limit, whole.total_rows) == (0, 45, 45)
