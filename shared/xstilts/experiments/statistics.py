"""Statistics across languages and across seeds.

The spread statistics (variances, standard deviation, range, coefficient of variation, worst
language) are over the *non-English* languages: the question is how evenly a model transfers away
from its English training language.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

ENGLISH = "en"
SUMMARY_KEYS = (
    "num_languages",
    "mean",
    "english",
    "non_english_mean",
    "transfer_gap",
    "non_english_variance_population",
    "non_english_variance_sample",
    "non_english_std",
    "non_english_range",
    "non_english_cv",
    "worst_language",
    "worst_value",
)


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def cross_language_summary(values: Mapping[str, float]) -> dict[str, float | int | str | None]:
    """Summary of one metric over languages.

    ``transfer_gap`` is English minus the non-English mean. ``non_english_std`` is the sample
    standard deviation (n - 1); ``non_english_cv`` is that std divided by the non-English mean.
    Statistics that need more languages than given are ``None``.
    """
    if not values:
        raise ValueError("no languages to summarise")
    english = values.get(ENGLISH)
    others = {k: v for k, v in values.items() if k != ENGLISH}
    arr = np.array(list(others.values()), dtype=np.float64)
    n = arr.size
    mean_other = float(arr.mean()) if n else math.nan
    var_pop = float(arr.var(ddof=0)) if n else math.nan
    var_sample = float(arr.var(ddof=1)) if n > 1 else math.nan
    std = math.sqrt(var_sample) if n > 1 else math.nan
    worst = min(others, key=lambda k: (others[k], k)) if n else None
    return {
        "num_languages": len(values),
        "mean": float(np.mean(list(values.values()))),
        "english": english,
        "non_english_mean": _nan_to_none(mean_other),
        "transfer_gap": _nan_to_none(english - mean_other) if english is not None and n else None,
        "non_english_variance_population": _nan_to_none(var_pop),
        "non_english_variance_sample": _nan_to_none(var_sample),
        "non_english_std": _nan_to_none(std),
        "non_english_range": _nan_to_none(float(arr.max() - arr.min())) if n else None,
        "non_english_cv": _nan_to_none(std / mean_other) if n > 1 and mean_other != 0 else None,
        "worst_language": worst,
        "worst_value": others[worst] if worst is not None else None,
    }


def across_seeds(summaries: Sequence[Mapping[str, object]]) -> dict[str, dict[str, float | None]]:
    """Mean and sample standard deviation over seeds of each numeric summary statistic."""
    out: dict[str, dict[str, float | None]] = {}
    for key in SUMMARY_KEYS:
        xs = [s[key] for s in summaries if isinstance(s.get(key), (int, float))]
        if not xs or key == "num_languages":
            continue
        arr = np.array(xs, dtype=np.float64)
        out[key] = {
            "mean": float(arr.mean()),
            "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
        }
    return out
