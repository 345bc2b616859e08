"""Metrics and cross-language statistics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from xstilts.experiments.statistics import across_seeds, cross_language_summary
from xstilts.metrics import accuracy, bootstrap_accuracy_ci, score_accuracy


def test_accuracy_hand_computed() -> None:
    assert accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    assert accuracy(np.array([1]), np.array([0])) == 0.0


def test_accuracy_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        accuracy(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.array([]), np.array([]))


def test_bootstrap_interval_contains_value_and_narrows_with_n() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 2000)
    preds = np.where(rng.random(2000) < 0.7, labels, (labels + 1) % 3)
    low, high = bootstrap_accuracy_ci(preds, labels, samples=500)
    acc = accuracy(preds, labels)
    assert low < acc < high
    # Binomial standard error at n=2000, p~0.7 is ~0.0102: a 95% interval is ~0.04 wide.
    assert 0.03 < high - low < 0.05
    small_low, small_high = bootstrap_accuracy_ci(preds[:200], labels[:200], samples=500)
    assert small_high - small_low > 2 * (high - low)
    # Same inputs, same interval: results are reproducible.
    assert (low, high) == bootstrap_accuracy_ci(preds, labels, samples=500)


def test_score_accuracy_without_bootstrap() -> None:
    m = score_accuracy(np.array([1, 1, 0]), np.array([1, 0, 0]), bootstrap_samples=0)
    assert m.value == pytest.approx(2 / 3) and m.n == 3 and m.ci_low is None


def test_cross_language_summary_hand_computed() -> None:
    # non-English values 0.6, 0.7, 0.8: mean 0.7, deviations -0.1, 0, 0.1, squares sum 0.02
    s = cross_language_summary({"en": 0.9, "de": 0.8, "fr": 0.7, "sw": 0.6})
    assert s["num_languages"] == 4
    assert s["mean"] == pytest.approx(0.75)
    assert s["english"] == 0.9
    assert s["non_english_mean"] == pytest.approx(0.7)
    assert s["transfer_gap"] == pytest.approx(0.2)
    assert s["non_english_variance_population"] == pytest.approx(0.02 / 3)
    assert s["non_english_variance_sample"] == pytest.approx(0.01)
    assert s["non_english_std"] == pytest.approx(0.1)
    assert s["non_english_range"] == pytest.approx(0.2)
    assert s["non_english_cv"] == pytest.approx(0.1 / 0.7)
    assert (s["worst_language"], s["worst_value"]) == ("sw", 0.6)


def test_summary_with_too_few_languages_says_none() -> None:
    s = cross_language_summary({"en": 0.9, "de": 0.5})
    assert s["non_english_variance_population"] == 0.0
    assert s["non_english_variance_sample"] is None and s["non_english_std"] is None
    assert s["transfer_gap"] == pytest.approx(0.4)
    only_en = cross_language_summary({"en": 0.8})
    assert only_en["non_english_mean"] is None and only_en["worst_language"] is None
    no_en = cross_language_summary({"de": 0.5, "fr": 0.7})
    assert no_en["english"] is None and no_en["transfer_gap"] is None
    assert no_en["mean"] == pytest.approx(0.6)


def test_across_seeds_mean_and_sample_std() -> None:
    a = cross_language_summary({"en": 0.9, "de": 0.8, "fr": 0.6})
    b = cross_language_summary({"en": 0.7, "de": 0.6, "fr": 0.6})
    out = across_seeds([a, b])
    assert out["english"]["mean"] == pytest.approx(0.8)
    assert out["english"]["std"] == pytest.approx(math.sqrt(0.02))  # (0.9-0.8)^2+(0.7-0.8)^2, n-1=1
    assert out["non_english_mean"]["mean"] == pytest.approx((0.7 + 0.6) / 2)
    assert "worst_language" not in out
