"""Paired resampling of two experiments' item scores: bootstrap and permutation draws.

Both sides' scores sit on one *item index* of N items with C columns (one per metric and
language): ``num[s, i, c]`` and ``den[s, i, c]`` of seed ``s``, item ``i``, column ``c``, with
zeros where a column has no such item, so a column's metric is ``sum(num) / sum(den)`` over the
items it has. A *stratum* is a set of items resampled together:

- **joint**: one stratum of every item. Where the languages' evaluation sets are translations of
  each other, an item is one example in every language, so a draw takes it in all languages at
  once and keeps the correlation between them;
- **within**: one stratum per language (an item belongs to one language only).

A bootstrap replicate draws each stratum's items with replacement (the same draw for both sides:
paired) and, with several seeds, first draws each side's seeds with replacement (hierarchical).
A permutation replicate swaps the two sides' scores of each item with probability 1/2.
Everything is computed as counts times scores (one matrix product per chunk of replicates), so
a replicate's value is exactly the metric of the resampled items; ``tests/test_comparisons.py``
checks that against a loop over the drawn items.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

CHUNK = 128  # replicates per matrix product: bounds memory at CHUNK x N counts


@dataclass(frozen=True)
class ScoreCube:
    """One side's scores: ``num`` and ``den`` of shape (seeds, items, columns)."""

    num: np.ndarray
    den: np.ndarray

    @property
    def seeds(self) -> int:
        return int(self.num.shape[0])

    def observed(self) -> np.ndarray:
        """Each column's metric averaged over seeds: shape (columns,)."""
        return np.nanmean(_ratio(self.num.sum(1), self.den.sum(1)), axis=0)

    def per_seed(self) -> np.ndarray:
        """Each seed's metric of each column: shape (seeds, columns)."""
        return _ratio(self.num.sum(1), self.den.sum(1))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def draw_items(
    rng: np.random.Generator, strata: Sequence[np.ndarray], replicates: int
) -> list[np.ndarray]:
    """For each stratum, a (replicates, size) array of the item indices drawn with replacement."""
    return [s[rng.integers(0, s.size, size=(replicates, s.size))] for s in strata]


def item_counts(drawn: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """How often each item was drawn in each replicate: shape (replicates, n_items)."""
    replicates = drawn[0].shape[0]
    counts = np.zeros(replicates * n_items)
    offsets = (np.arange(replicates) * n_items)[:, None]
    for d in drawn:
        counts += np.bincount((d + offsets).ravel(), minlength=replicates * n_items)
    return counts.reshape(replicates, n_items)


def seed_weights(rng: np.random.Generator, seeds: int, replicates: int) -> np.ndarray:
    """Seeds drawn with replacement, as each seed's share of the draw: (replicates, seeds)."""
    if seeds == 1:
        return np.ones((replicates, 1))
    drawn = rng.integers(0, seeds, size=(replicates, seeds))
    return np.stack([(drawn == s).mean(1) for s in range(seeds)], axis=1)


def resampled_values(counts: np.ndarray, cube: ScoreCube, weights: np.ndarray) -> np.ndarray:
    """Each replicate's column metrics: the seeds' metrics of the counted items, weighted by the
    seed draw. Shape (replicates, columns)."""
    s, n, c = cube.num.shape
    num = (counts @ cube.num.transpose(1, 0, 2).reshape(n, s * c)).reshape(-1, s, c)
    den = (counts @ cube.den.transpose(1, 0, 2).reshape(n, s * c)).reshape(-1, s, c)
    per_seed = _ratio(num, den)
    missing = np.isnan(per_seed)
    values = np.einsum("bs,bsc->bc", weights, np.where(missing, 0.0, per_seed))
    # A column that a drawn seed has no item of (an empty draw of a sparse language) has no value.
    values[np.einsum("bs,bsc->bc", weights, missing.astype(np.float64)) > 0] = np.nan
    return values


def bootstrap(
    a: ScoreCube,
    b: ScoreCube,
    strata: Sequence[np.ndarray],
    replicates: int,
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Paired (hierarchical with seeds) bootstrap replicates of both sides' column metrics, in
    chunks: (replicates_in_chunk, columns) for A and for B. The same seed gives the same draws."""
    rng = np.random.default_rng(seed)
    n_items = a.num.shape[1]
    for start in range(0, replicates, CHUNK):
        k = min(CHUNK, replicates - start)
        wa = seed_weights(rng, a.seeds, k)
        wb = seed_weights(rng, b.seeds, k)
        counts = item_counts(draw_items(rng, strata, k), n_items)
        yield resampled_values(counts, a, wa), resampled_values(counts, b, wb)


def permutation(
    a: ScoreCube, b: ScoreCube, replicates: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Replicates of both sides' column metrics with each item's A and B scores swapped with
    probability 1/2 (one seed a side). An item spans every column it has, so where items are
    joint across languages a swap moves the item in every language at once."""
    if a.seeds != 1 or b.seeds != 1:
        raise ValueError("a permutation test pairs one seed a side")
    rng = np.random.default_rng(seed)
    na, da, nb, db = a.num[0], a.den[0], b.num[0], b.den[0]
    for start in range(0, replicates, CHUNK):
        k = min(CHUNK, replicates - start)
        swap = rng.integers(0, 2, size=(k, na.shape[0])).astype(np.float64)
        keep = 1.0 - swap
        yield (
            _ratio(keep @ na + swap @ nb, keep @ da + swap @ db),
            _ratio(keep @ nb + swap @ na, keep @ db + swap @ da),
        )
