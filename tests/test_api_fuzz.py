"""Schema-driven fuzzing of the API in process (schemathesis over ASGI): whatever a client sends to
the experiments, studies, comparisons, reports, tasks and health endpoints, the answer is never a
server error, and it conforms to the status codes and response schemas the OpenAPI document
declares; on SQLite and on Postgres.

The executor records deliveries and runs nothing, so a generated spec that happens to be valid is
planned and stored but never trained. Longer runs: `schemathesis run` against `xstilts serve`
(docs/architecture.md, "API").
"""

from __future__ import annotations

import hashlib

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from xstilts.api.app import create_app
from xstilts.db.migrate import upgrade
from xstilts.modeling.sources import resolve_model
from xstilts.spec import ModelConfig

from tests.service_fixtures import pg_url  # noqa: F401 (fixture)

KEY = "fuzz-key-789"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class RecordingExecutor:
    def __init__(self, *_: object) -> None:
        self.sent: list[tuple[int, str]] = []

    def send(self, stage_id: int, queue: str) -> None:
        self.sent.append((stage_id, queue))


OPERATIONS = [
    ("POST", "/experiments"),
    ("GET", "/experiments"),
    ("GET", "/experiments/{exp_id}"),
    ("GET", "/experiments/{exp_id}/metrics"),
    ("POST", "/experiments/{exp_id}/cancel"),
    ("GET", "/experiments/{exp_id}/report"),
    ("POST", "/studies"),
    ("GET", "/studies/{study_id}"),
    ("GET", "/studies/{study_id}/results"),
    ("POST", "/studies/{study_id}/cancel"),
    ("GET", "/studies/{study_id}/report"),
    ("GET", "/comparisons"),
    ("GET", "/comparisons/report"),
    ("GET", "/tasks"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]


@pytest.fixture(params=["sqlite", "postgres"])
def api_schema(request: pytest.FixtureRequest, settings):  # type: ignore[no-untyped-def]
    url = settings.database_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    cfg = settings.model_copy(
        update={
            "database_url": url,
            "api_keys": {"fuzz": hashlib.sha256(KEY.encode()).hexdigest()},
            "broker_url": "memory://",  # /readyz: no broker to be down
        }
    )
    upgrade(cfg.database_url)  # the migrate job: a service never migrates on start
    # A fresh machine's first plan hashes the default model's 470 MB (remembered on disk after
    # that), which a slow disk can stretch past the client's 10 s timeout: the fuzz is about the
    # answers, so the hashing happens here rather than in whichever generated case comes first.
    resolve_model(ModelConfig(), cfg.model_roots, cfg.cache_dir)
    app = create_app(cfg, executor_factory=RecordingExecutor)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_operation_is_fuzzed(api_schema) -> None:  # type: ignore[no-untyped-def]
    found = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


# Schemathesis's own pytest loader (`from_fixture`) reads a private pytest attribute that pytest 9
# removed; driving Hypothesis with the operation's strategy is the same test, one per operation.
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_server_errors(api_schema, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    operation = api_schema[path][method]

    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @hypothesis_settings(
        max_examples=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    check()
