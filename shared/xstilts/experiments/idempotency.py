"""Submitting an experiment at most once per idempotency key.

A client that retries a request (a lost response, a timeout) sends the same ``Idempotency-Key``
again and gets the experiment the first request created. The key is per owner; reusing it with a
different spec is refused. The spec is compared by a hash of its validated form, so the same spec
in another key order, or with defaults spelt out, is the same request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import Experiment
from xstilts.errors import IdempotencyConflictError
from xstilts.experiments.quotas import check_quota
from xstilts.experiments.submit import plan, submit_experiment
from xstilts.spec import ExperimentSpec


@dataclass(frozen=True)
class Submission:
    experiment_id: str
    created: bool  # False: an earlier request with the same key created it (a replay)


def request_hash(spec: ExperimentSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _earlier_submission(
    session: Session, owner: str | None, key: str, digest: str
) -> Submission | None:
    """The experiment an earlier request with this key created; refused if its spec differs."""
    exp = session.scalars(
        select(Experiment).where(Experiment.owner == owner, Experiment.idempotency_key == key)
    ).first()
    if exp is None:
        return None
    if exp.request_hash != digest:
        raise IdempotencyConflictError(
            f"Idempotency-Key {key!r} was already used with a different request body "
            f"(experiment {exp.id}); use a new key for a different experiment"
        )
    return Submission(exp.id, created=False)


def submit_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    spec: ExperimentSpec,
    owner: str | None,
    idempotency_key: str | None,
) -> Submission:
    """Plan and store the experiment, or return the one this key already created.

    Raises :class:`IdempotencyConflictError` for a key reused with another spec, and the planner's
    :class:`~xstilts.errors.XstiltsError` (with its ``field``) for a spec that cannot be planned.
    Starting the stored experiment is the caller's job, after this returns (after the commit).
    """
    digest = request_hash(spec)
    if idempotency_key is not None:
        with sessions() as s:
            earlier = _earlier_submission(s, owner, idempotency_key, digest)
        if earlier is not None:
            return earlier  # before planning: a replay costs no model or data fingerprinting
    check_quota(sessions, settings, [spec], owner)
    planned = plan(spec, settings)
    try:
        exp_id = submit_experiment(
            sessions,
            spec,
            planned,
            owner=owner,
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
    except IntegrityError:  # a concurrent request with the same key won the race
        if idempotency_key is None:
            raise
        with sessions() as s:
            earlier = _earlier_submission(s, owner, idempotency_key, digest)
        if earlier is None:
            raise
        return earlier
    return Submission(exp_id, created=True)
