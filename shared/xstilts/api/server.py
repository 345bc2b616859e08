"""The HTTP server both launch paths run: ``xstilts serve`` and the API service
(``python -m services.api``). One function, :func:`serve`, so the two cannot drift apart.

On top of uvicorn it adds what uvicorn leaves out:

- a header timeout: uvicorn closes idle keep-alive connections, but never one that connected and
  has not finished sending a request's headers (a slow-headers client can hold thousands open);
- a cap on the request line and headers (431 over it): h11's own limit bounds only the bytes it
  buffers between reads, so a head that arrives in one read passed at any size;
- ``?api_key=`` values (report pages) redacted in the access log, installed through the logging
  configuration uvicorn applies at start-up, so that configuration cannot drop it;
- start and stop logged at WARNING, naming the signal that stopped the server, so a server
  running at WARNING does not die without a trace.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import signal
import socket
from types import FrameType
from typing import Any
from urllib.parse import unquote_plus

import h11
import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from xstilts.config import Settings

logger = logging.getLogger(__name__)

# Where a request's line and headers end (h11 accepts a bare LF as well as CRLF).
_END_OF_HEAD = re.compile(rb"\n\r?\n")
# The query parameter a browser passes the API key in (xstilts.api.deps.page_owner).
API_KEY_PARAM = "api_key"
REDACTED = "[redacted]"
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s]+)=(?P<value>[^&;#\s]*)")


def redact_api_keys(text: str) -> str:
    """``text`` with the value of every ``api_key`` query parameter replaced by ``[redacted]``.
    Names are compared as the server decodes them, so ``api%5Fkey=`` is redacted too."""

    def replace(match: re.Match[str]) -> str:
        if unquote_plus(match["name"]).lower() != API_KEY_PARAM:
            return match[0]
        return f"{match['lead']}{match['name']}={REDACTED}"

    return _QUERY_PARAM.sub(replace, text) if "=" in text else text


class RedactApiKeys(logging.Filter):
    """Rewrites a record's message and string arguments with :func:`redact_api_keys`. uvicorn's
    access formatter unpacks the arguments, so their number and order are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_api_keys(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_api_keys(a) if isinstance(a, str) else a for a in record.args
            )
        return True


def log_config() -> dict[str, object]:  # logging.config.dictConfig
    """uvicorn's own logging configuration plus the access-log redaction. uvicorn applies it with
    ``dictConfig`` at start-up, which replaces the access logger's filters: a filter added to the
    logger beforehand would be dropped, one named in the configuration is installed."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_api_keys"] = {"()": RedactApiKeys}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_api_keys"]
    return config


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection which has not sent a complete request line
    and headers within ``header_timeout_s`` of connecting, or, on a kept-alive connection, of the
    first byte of its next request. (uvicorn's keep-alive timer covers the idle time between
    requests, and the first byte of the next one cancels it.)"""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        assert isinstance(config, ServerConfig), "HeaderTimeoutProtocol needs a ServerConfig"
        self.header_timeout_s = config.header_timeout_s
        self.header_timer: asyncio.TimerHandle | None = None
        self.max_head = config.max_header_bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._cancel_header_timer()
        elif self.header_timer is None:  # the first bytes of a kept-alive connection's next request
            self._await_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Bytes of the next request that came while this response was being sent were held back
        # (data_received saw a request still in progress): they start the clock now.
        if self.header_timer is None and self.conn.trailing_data[0]:
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        # Every request is parsed here: from a read (data_received) and, for a pipelined one
        # held while the previous was answered, from on_response_complete.
        if self.conn.their_state is h11.IDLE and not self._head_fits():
            self._head_too_large()
            return
        super().handle_events()

    def _head_fits(self) -> bool:
        """Whether the next request's line and headers, as h11 holds them, stay within
        ``max_head`` bytes. h11's own limit bounds only an incomplete head it buffers between
        reads: a whole head arriving in one read passed at any size. Bytes after the head (a
        body, a pipelined request) do not count."""
        buffered = self.conn.trailing_data[0]
        end = _END_OF_HEAD.search(buffered, 0, self.max_head + 4)
        return end.end() <= self.max_head if end is not None else len(buffered) <= self.max_head

    def _head_too_large(self) -> None:
        body = (
            f"Request line and headers over {self.max_head} bytes (XSTILTS_HTTP_MAX_HEADER_BYTES)."
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        logger.debug("closing the connection of %s: %s", self.client, body.decode())
        self._cancel_header_timer()
        self.transport.close()

    def _await_headers(self) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            logger.debug(
                "closing the connection of %s: its request headers took over %g s",
                self.client,
                self.header_timeout_s,
            )
            self.transport.close()


class ServerConfig(uvicorn.Config):
    """uvicorn's Config with the limits of :class:`~xstilts.config.Settings` and the header
    timeout protocol."""

    def __init__(self, app: Any, settings: Settings, **kwargs: Any) -> None:
        self.header_timeout_s = settings.http_header_timeout_s
        self.max_header_bytes = settings.http_max_header_bytes
        super().__init__(
            app,
            http=HeaderTimeoutProtocol,
            timeout_keep_alive=settings.http_keep_alive_s,
            limit_concurrency=settings.http_max_concurrency,
            # A backstop: the protocol refuses a head over the limit itself (431) before h11's
            # buffer, which also holds a pipelined request's bytes, could reach this.
            h11_max_incomplete_event_size=settings.http_max_header_bytes + 65536,
            log_config=log_config(),
            **kwargs,
        )


class Server(uvicorn.Server):
    """uvicorn's Server that logs at WARNING when it is up and when it stops, and why it stopped
    (uvicorn logs both at INFO, which a server run at WARNING drops)."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.stop_signal: str | None = None  # the first signal that asked it to stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: record only; logging here could interleave with a line being written.
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(sig).name
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            logger.warning("xstilts API started on %s (pid %d)", _address(self.config), os.getpid())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn re-raises a caught signal once serve() returns, killing the process before code
        # after run() would run: the stop is logged here, inside serve().
        reason = f"on {self.stop_signal}" if self.stop_signal else "without a signal"
        logger.warning("xstilts API stopping %s (pid %d)", reason, os.getpid())
        await super().shutdown(sockets)
        logger.warning("xstilts API stopped %s (pid %d)", reason, os.getpid())


def _address(config: uvicorn.Config) -> str:
    host = config.host if ":" not in config.host else f"[{config.host}]"
    return f"http://{host}:{config.port}"


def build_server(
    app: Any, settings: Settings, *, host: str, port: int, log_level: str = "info"
) -> Server:
    """The server :func:`serve` runs, not yet started (tests run it in a thread)."""
    return Server(ServerConfig(app, settings, host=host, port=port, log_level=log_level))


def serve(app: Any, settings: Settings, *, host: str, port: int, log_level: str = "info") -> None:
    """Run ``app`` until SIGTERM or SIGINT. ``log_level`` is uvicorn's: at ``warning`` and above
    there is no access log; start and stop are logged at WARNING either way."""
    server = build_server(app, settings, host=host, port=port, log_level=log_level)
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits when it cannot start (port taken), after its message
        logger.error(
            "xstilts API did not start on %s (exit status %s)", _address(server.config), e.code
        )
        raise
    except BaseException:
        logger.critical("xstilts API stopped by an error (pid %d)", os.getpid(), exc_info=True)
        raise
