"""A small HTTP client of the xstilts API: submit a spec, follow its progress, fetch its metrics.

Responses are parsed into the same models the API declares (:class:`ExperimentState`,
:class:`ExperimentResults`), so a field the server renamed fails here, loudly, not in a caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from xstilts.errors import StageFailedError, XstiltsError
from xstilts.experiments.results import ExperimentResults
from xstilts.experiments.status import ExperimentState, StageState

FINAL = ("succeeded", "failed", "cancelled")


class Client:
    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a server that cannot be reached is an error a user can act on."""
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            reason = str(e) or type(e).__name__
            raise XstiltsError(
                f"cannot reach the xstilts API at {self.base_url} ({reason}); start one with "
                "'xstilts serve --port 8000' or pass the URL of a running one with --url",
                field="url",
            ) from None

    def _check(self, response: httpx.Response) -> bytes:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            if isinstance(detail, list):  # validation errors: one line per field
                detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
            raise XstiltsError(f"HTTP {response.status_code}: {detail}")
        return response.content

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> ExperimentState:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self._send("POST", "/experiments", json=spec, headers=headers)
        return ExperimentState.model_validate_json(self._check(response))

    def experiment(self, exp_id: str) -> ExperimentState:
        return ExperimentState.model_validate_json(
            self._check(self._send("GET", f"/experiments/{exp_id}"))
        )

    def metrics(self, exp_id: str) -> ExperimentResults:
        response = self._send("GET", f"/experiments/{exp_id}/metrics")
        return ExperimentResults.model_validate_json(self._check(response))

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
