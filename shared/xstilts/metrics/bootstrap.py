"""Percentile bootstrap confidence intervals, over resampled items (examples, sentences).

A fixed seed makes every interval reproducible from the stored predictions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _bootstrap_interval(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over ``samples`` resamplings of ``n`` items.

    ``statistic`` maps a (k, n) matrix of resampled item indices to k values; the resamplings are
    drawn in chunks so memory stays bounded for large test sets. A fixed seed makes it reproducible.
    """
    rng = np.random.default_rng(seed)
    stats = np.empty(samples)
    for start in range(0, samples, 256):
        k = min(256, samples - start)
        stats[start : start + k] = statistic(rng.integers(0, n, size=(k, n)))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_mean_ci(
    values: np.ndarray, samples: int, confidence: float = 0.95, seed: int = 0
) -> tuple[float | None, float | None]:
    """Interval of the mean of per-item scores (correct or not, a question's F1); no samples or
    no items: no interval."""
    values = np.asarray(values, dtype=np.float64)
    if samples <= 0 or values.size == 0:
        return None, None
    return _bootstrap_interval(
        values.size, lambda idx: values[idx].mean(1), samples, confidence, seed
    )


def bootstrap_ratio_ci(
    numerator: np.ndarray,
    denominator: np.ndarray,
    samples: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Interval of sum(numerator) / sum(denominator) over resampled items.

    Micro F1 is 2*tp / (n_pred + n_gold); entities never cross sentences, so resampling sentences
    with their counts resamples the metric exactly.
    """
    num, den = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    if samples <= 0 or num.size == 0:
        return None, None

    def ratio(idx: np.ndarray) -> np.ndarray:
        d = den[idx].sum(1)
        return np.where(d > 0, num[idx].sum(1) / np.maximum(d, 1e-12), 0.0)

    return _bootstrap_interval(num.size, ratio, samples, confidence, seed)
