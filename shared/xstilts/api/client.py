"""A small HTTP client of the xstilts API: submit a spec, follow its progress, fetch its metrics.

Responses are parsed into the same models the API declares (:class:`ExperimentState`,
:class:`ExperimentResults`), so a field the server renamed fails here, loudly, not in a caller.

A request that is safe to repeat (a GET; a POST with an ``Idempotency-Key``, which the server
answers with the experiment the first attempt stored) is retried after a transport error (refused,
reset, timed out) with exponential backoff, so one dropped connection does not end ``--wait``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from xstilts.errors import NotFoundError, StageFailedError, XstiltsError
from xstilts.experiments.results import ExperimentResults
from xstilts.experiments.status import ExperimentState, StageState
from xstilts.jsontypes import JSONObject
from xstilts.studies.model import StudyResults, StudyState

logger = logging.getLogger(__name__)

Reply = TypeVar("Reply", bound=BaseModel)

FINAL = ("succeeded", "failed", "cancelled")
# A request safe to repeat is sent up to ATTEMPTS times; the wait before the first retry doubles
# after each one, up to MAX_WAIT_S (defaults: 0.5, 1, 2, 4 s; 7.5 s in all).
ATTEMPTS = 5
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 8.0
STUDY_PAGE = 20  # rows of a study's matrix per request (the API's default)


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = 30.0,
        attempts: int = ATTEMPTS,
        first_wait_s: float = FIRST_WAIT_S,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be 1 or more (1: no retries); got {attempts}")
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError) as e:
            raise XstiltsError(f"not a URL: {base_url!r} ({e})", field="url") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise XstiltsError(
                f"not an http(s) URL with a host: {base_url!r}; e.g. http://127.0.0.1:8000",
                field="url",
            )
        _header_value(api_key, "api key")
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def _send(
        self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """A request, retried after a transport error if it is a GET or ``idempotent``; a server
        that cannot be reached is an error a user can act on."""
        attempts = self.attempts if method == "GET" or idempotent else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as e:
                reason = str(e) or type(e).__name__
                if attempt < attempts:
                    wait = min(self.first_wait_s * 2 ** (attempt - 1), self.max_wait_s)
                    logger.warning(
                        "%s %s%s: %s; retry %d of %d in %g s",
                        method, self.base_url, path, reason, attempt, attempts - 1, wait,
                    )  # fmt: skip
                    time.sleep(wait)
                    continue
                tried = f"; {attempts} attempts" if attempts > 1 else ""
                raise XstiltsError(
                    f"cannot reach the xstilts API at {self.base_url} ({reason}{tried}); start one "
                    "with 'xstilts serve --port 8000' or pass the URL of a running one with --url",
                    field="url",
                ) from None
            # Busy (429: its heavy computations all taken) or past its deadline (503): a GET
            # asks again when the server says to, within the same bounded attempts.
            if response.status_code in (429, 503) and method == "GET" and attempt < attempts:
                wait = _retry_after(response, min(self.first_wait_s * 2 ** (attempt - 1), 30.0))
                logger.warning(
                    "%s %s%s: HTTP %d; retry %d of %d in %g s",
                    method, self.base_url, path, response.status_code, attempt, attempts - 1, wait,
                )  # fmt: skip
                time.sleep(wait)
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _check(self, response: httpx.Response) -> bytes:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            detail = body.get("detail", body) if isinstance(body, dict) else body
            if isinstance(detail, list) and all(
                isinstance(d, dict) and {"loc", "msg"} <= d.keys() for d in detail
            ):  # validation errors: one line per field
                detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
            if response.status_code == 404:
                raise NotFoundError(f"HTTP 404: {detail}")
            raise XstiltsError(f"HTTP {response.status_code}: {detail}")
        return response.content

    def _parse(self, model: type[Reply], response: httpx.Response) -> Reply:
        """The answer as ``model``; an answer of another shape is a server that is not (this
        version of) the xstilts API, said as such."""
        content = self._check(response)
        try:
            return model.model_validate_json(content)
        except ValidationError as e:
            raise XstiltsError(
                f"{self.base_url} did not answer as the xstilts API does (HTTP "
                f"{response.status_code}, {response.headers.get('content-type', 'no type')}): "
                f"{e.error_count()} problem(s) reading it as {model.__name__}; is --url the API?",
                field="url",
            ) from None

    def submit(self, spec: JSONObject, idempotency_key: str | None = None) -> ExperimentState:
        return self._post_spec(ExperimentState, "/experiments", spec, idempotency_key)

    def submit_study(self, study: JSONObject, idempotency_key: str | None = None) -> StudyState:
        return self._post_spec(StudyState, "/studies", study, idempotency_key)

    def _post_spec(
        self, model: type[Reply], path: str, body: JSONObject, idempotency_key: str | None
    ) -> Reply:
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = _header_value(idempotency_key, "idempotency key")
        # With a key a repeated POST is answered with what the first one stored.
        response = self._send(
            "POST", path, idempotent=bool(idempotency_key), json=body, headers=headers
        )
        return self._parse(model, response)

    def experiment(self, exp_id: str) -> ExperimentState:
        return self._parse(ExperimentState, self._send("GET", f"/experiments/{exp_id}"))

    def metrics(self, exp_id: str) -> ExperimentResults:
        return self._parse(ExperimentResults, self._send("GET", f"/experiments/{exp_id}/metrics"))

    def cancel(self, exp_id: str) -> ExperimentState:
        return self._parse(ExperimentState, self._send("POST", f"/experiments/{exp_id}/cancel"))

    def study(self, study_id: str) -> StudyState:
        """The study's progress (counts by status; the first page of its cells)."""
        return self._parse(StudyState, self._send("GET", f"/studies/{study_id}"))

    def study_results(self, study_id: str) -> StudyResults:
        """The whole matrix: every page of rows, joined."""
        pages: list[StudyResults] = []
        offset = 0
        while not pages or offset < pages[-1].total_rows:
            path = f"/studies/{study_id}/results?limit={STUDY_PAGE}&offset={offset}"
            pages.append(self._parse(StudyResults, self._send("GET", path)))
            if not pages[-1].cells:  # rows gone meanwhile: nothing more to ask for
                break
            offset += len(pages[-1].cells)
        whole = pages[0].model_copy(
            update={"limit": pages[0].total_rows, "cells": [r for p in pages for r in p.cells]}
        )
        return whole

    def cancel_study(self, study_id: str) -> StudyState:
        return self._parse(StudyState, self._send("POST", f"/studies/{study_id}/cancel"))

    def wait(
        self,
        exp_id: str,
        on_update: Callable[[ExperimentState], None] | None = None,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
    ) -> ExperimentResults:
        """Poll until the experiment ends; returns its results (raises if it failed)."""
        t0 = time.monotonic()
        while True:
            exp = self.experiment(exp_id)
            if on_update is not None:
                on_update(exp)
            if exp.status in FINAL:
                break
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise XstiltsError(
                    f"experiment {exp_id} still {exp.status} after {timeout_s:.0f} s"
                )
            time.sleep(poll_s)
        if exp.status != "succeeded":
            raise StageFailedError(f"experiment {exp_id} {exp.status}: {exp.error}")
        return self.metrics(exp_id)


def _retry_after(response: httpx.Response, default_s: float) -> float:
    """The seconds a 429 or 503 says to wait (``Retry-After``), at most a minute; else the
    default."""
    try:
        return min(max(float(response.headers["Retry-After"]), 0.0), 60.0)
    except (KeyError, ValueError):
        return default_s


def _header_value(value: str, what: str) -> str:
    """A value sent in an HTTP header: visible ASCII characters only (HTTP carries nothing else
    faithfully), else an error naming it."""
    if not value or not all("!" <= c <= "~" for c in value):
        raise XstiltsError(
            f"the {what} must be printable ASCII without spaces (it travels in an HTTP header)",
            field=what.replace(" ", "_"),
        )
    return value


def running_stage(exp: ExperimentState) -> StageState | None:
    """The stage that is running now (None when none is)."""
    return next((st for st in exp.stages if st.status == "running"), None)


def progress_line(exp: ExperimentState) -> str | None:
    """One line about the stage that is running now (None when none is)."""
    st = running_stage(exp)
    if st is None:
        return None
    p = st.progress
    done = f"{p.step}/{p.total}" if p.total else "starting"
    parts = [f"[seed {st.seed}] {st.role:<14} {done}"]
    if p.examples_per_s:
        parts.append(f"{p.examples_per_s:.1f} ex/s")
    if p.eta_s is not None:
        parts.append(f"ETA {p.eta_s:.0f} s")
    return "  ".join(parts)
