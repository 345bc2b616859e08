"""At most once per idempotency key: what tells a retried request from a new one.

A client that retries a request (a lost response, a timeout) sends the same ``Idempotency-Key``
again and gets the experiment (or study) the first request created. The key is per owner and
per resource; reusing it with a different body is refused. The body is compared by a hash of its
validated form, so the same spec in another key order, or with defaults spelt out, is the same
request. :func:`xstilts.experiments.submit.submit` is the one caller.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from xstilts.db.models import Experiment, Study
from xstilts.errors import IdempotencyConflictError

# The row that answers for a request and keeps its key: the experiment, or the study.
Record = type[Experiment] | type[Study]


def request_hash(body: BaseModel) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def earlier_request(
    session: Session, record: Record, owner: str | None, key: str, digest: str
) -> str | None:
    """The id of the experiment or study an earlier request with this key stored (None: no such
    request); :class:`IdempotencyConflictError` if that request's body differs."""
    earlier = session.execute(
        select(record.id, record.request_hash).where(
            record.owner == owner, record.idempotency_key == key
        )
    ).first()
    if earlier is None:
        return None
    earlier_id, earlier_hash = earlier
    if earlier_hash != digest:
        noun = record.__name__.lower()
        raise IdempotencyConflictError(
            f"Idempotency-Key {key!r} was already used with a different request body "
            f"({noun} {earlier_id}); use a new key for a different {noun}"
        )
    return str(earlier_id)
