"""Task metrics per language, with a bootstrap confidence interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MetricValue:
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the label (in [0, 1])."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(
            f"predictions {predictions.shape} and labels {labels.shape} differ in shape"
        )
    if labels.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(predictions == labels))


def bootstrap_accuracy_ci(
    predictions: np.ndarray,
    labels: np.ndarray,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy over resampled examples (fixed seed: reproducible)."""
    correct = (np.asarray(predictions) == np.asarray(labels)).astype(np.float64)
    rng = np.random.default_rng(seed)
    n = correct.size
    means = np.empty(samples)
    for start in range(0, samples, 256):  # chunks bound memory for large test sets
        k = min(256, samples - start)
        means[start : start + k] = correct[rng.integers(0, n, size=(k, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def score_accuracy(
    predictions: np.ndarray, labels: np.ndarray, bootstrap_samples: int = 1000
) -> MetricValue:
    value = accuracy(predictions, labels)
    if bootstrap_samples <= 0:
        return MetricValue(value, int(np.asarray(labels).size))
    low, high = bootstrap_accuracy_ci(predictions, labels, bootstrap_samples)
    return MetricValue(value, int(np.asarray(labels).size), low, high)


METRICS = {"accuracy": score_accuracy}
