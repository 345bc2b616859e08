"""Two stored experiments compared, through the comparison cache: computed once per pair of predict
stages and options, kept in the artifact store's ``comparisons/``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from xstilts.comparisons.compare import (
    CompareOptions,
    compare,
)
from xstilts.comparisons.model import Comparison
from xstilts.comparisons.sides import SideRef, load_items, side_ref
from xstilts.comparisons.verdict import verdict
from xstilts.files import write_atomic
from xstilts.runtime.artifacts import ArtifactStore

# Part of every cache key: bump it when the computation changes, so no stale result is served.
VERSION = 4  # 4: the unequal-seeds warning, non-English language count


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
    a, b = side_ref(sessions, baseline, owner), side_ref(sessions, candidate, owner)
    return compare_sides(store, a, b, options or CompareOptions(), recompute)


def compare_sides(
    store: ArtifactStore, a: SideRef, b: SideRef, options: CompareOptions, recompute: bool = False
) -> Comparison:
    """:func:`compare_experiments` of two sides already read from the database."""
    path = _cache_path(store, a, b, options)
    if not recompute and (cached := _read_cached(store, path)) is not None:
        return cached
    result = compare(load_items(a), load_items(b), options)
    write_atomic(path, result.model_dump_json())
    return result


def cached_comparison(
    store: ArtifactStore, a: SideRef, b: SideRef, options: CompareOptions
) -> Comparison | None:
    """The kept result of :func:`compare_sides`, or None: reads no predictions, computes nothing
    (the API answers it without waiting for a slot of heavy work)."""
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
