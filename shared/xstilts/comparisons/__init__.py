"""Comparisons of two experiments: is a change per language, in the mean or in the spread across
languages real? Paired intervals and tests from the stored per-example predictions
(:mod:`.compare`), computed once per pair and options and kept in the artifact store
(:mod:`.cache`)."""

from __future__ import annotations

from xstilts.comparisons.cache import cached_comparison, compare_experiments, compare_sides
from xstilts.comparisons.compare import CompareOptions, IncomparableError, compare
from xstilts.comparisons.model import STATISTICS, Comparison
from xstilts.comparisons.sides import ANY_OWNER

__all__ = [
    "ANY_OWNER",
    "STATISTICS",
    "CompareOptions",
    "Comparison",
    "IncomparableError",
    "compare",
    "cached_comparison",
    "compare_experiments",
    "compare_sides",
]
