"""Comparisons of two experiments: is a change per language, in the mean or in the spread across
languages real? Paired intervals and tests from the stored per-example predictions
(:mod:`.compare`), computed once per pair and options and kept in the artifact store."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from xstilts.comparisons.compare import (
    CompareOptions,
    IncomparableError,
    compare,
)
from xstilts.comparisons.model import STATISTICS, Comparison
from xstilts.comparisons.sides import ANY_OWNER, SideRef, load_items, side_ref
from xstilts.comparisons.verdict import verdict
from xstilts.runtime.artifacts import ArtifactStore

# Part of every cache key: bump it when the computation changes, so no stale result is served.
VERSION = 3

__all__ = [
    "ANY_OWNER",
    "STATISTICS",
    "CompareOptions",
    "Comparison",
    "IncomparableError",
    "compare",
    "cached_comparison",
    "compare_experiments",
]


def compare_experiments(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    baseline: str,
    candidate: str,
    owner: str | None,
    options: CompareOptions | None = None,
    recompute: bool = False,
) -> Comparison:
    """Candidate against baseline (both succeeded, ``owner``'s; :data:`ANY_OWNER` for the CLI).

    The result is kept under the artifact store's ``comparisons/``, keyed by both experiments'
    predict stages (content keys: the same key, the same predictions) and the options; a later
    call returns it (``cached`` true) unless ``recompute``.
    """
    options = options or CompareOptions()
    a, b = side_ref(sessions, baseline, owner), side_ref(sessions, candidate, owner)
    path = _cache_path(store, a, b, options)
    if not recompute and (cached := _read_cached(store, path)) is not None:
        return cached
    result = compare(load_items(a), load_items(b), options)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(result.model_dump_json())
    os.replace(tmp, path)
    return result


def cached_comparison(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    baseline: str,
    candidate: str,
    owner: str | None,
    options: CompareOptions | None = None,
) -> Comparison | None:
    """The kept result of :func:`compare_experiments`, or None: reads no predictions, computes
    nothing (the API answers it without waiting for a slot of heavy work)."""
    options = options or CompareOptions()
    a, b = side_ref(sessions, baseline, owner), side_ref(sessions, candidate, owner)
    return _read_cached(store, _cache_path(store, a, b, options))


def _cache_path(store: ArtifactStore, a: SideRef, b: SideRef, options: CompareOptions) -> Path:
    return store.root / "comparisons" / f"{cache_key(a, b, options)}.json"


def _read_cached(store: ArtifactStore, path: Path) -> Comparison | None:
    if not path.exists():
        return None
    cached = Comparison.model_validate_json(path.read_bytes())
    store.mark_used(path)  # `xstilts gc` drops the least recently used first
    cached.cached = True
    cached.verdict = verdict(cached)  # words are read off the numbers, never stale
    return cached


def cache_key(a: SideRef, b: SideRef, options: CompareOptions) -> str:
    identity = {
        "version": VERSION,
        "sides": [
            [side.id, [[p.seed, p.language, p.key] for p in side.predicts]] for side in (a, b)
        ],
        "options": [options.samples, options.confidence, options.alpha, options.seed],
    }
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]
