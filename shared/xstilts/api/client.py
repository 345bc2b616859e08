"""A small HTTP client of the xstilts API: submit a spec, follow its progress, fetch its metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from xstilts.errors import StageFailedError, XstiltsError

FINAL = ("succeeded", "failed", "cancelled")


class Client:
    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            if isinstance(detail, list):  # validation errors: one line per field
                detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
            raise XstiltsError(f"HTTP {response.status_code}: {detail}")
        return response.json()

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._check(self.http.post("/experiments", json=spec, headers=headers))  # type: ignore[no-any-return]

    def experiment(self, exp_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/experiments/{exp_id}"))  # type: ignore[no-any-return]

    def metrics(self, exp_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/experiments/{exp_id}/metrics"))  # type: ignore[no-any-return]

    def wait(
        self,
        exp_id: str,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the experiment ends; returns its metrics JSON (raises if it failed)."""
        t0 = time.monotonic()
        while True:
            exp = self.experiment(exp_id)
            if on_update is not None:
                on_update(exp)
            if exp["status"] in FINAL:
                break
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise XstiltsError(
                    f"experiment {exp_id} still {exp['status']} after {timeout_s:.0f} s"
                )
            time.sleep(poll_s)
        if exp["status"] != "succeeded":
            raise StageFailedError(f"experiment {exp_id} {exp['status']}: {exp.get('error')}")
        return self.metrics(exp_id)


def progress_line(exp: dict[str, Any]) -> str | None:
    """One line about the stage that is running now (None when none is)."""
    for st in exp["stages"]:
        if st["status"] == "running":
            p = st.get("progress") or {}
            step, total = p.get("step") or 0, p.get("total") or 0
            rate = p.get("examples_per_s")
            eta = p.get("eta_s")
            done = f"{step}/{total}" if total else "starting"
            parts = [f"[seed {st['seed']}] {st['role']:<14} {done}"]
            if rate:
                parts.append(f"{rate:.1f} ex/s")
            if eta is not None:
                parts.append(f"ETA {eta:.0f} s")
            return "  ".join(parts)
    return None
