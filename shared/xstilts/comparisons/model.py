"""What a comparison returns: the typed contract of ``xstilts compare --json`` and
``GET /comparisons``. Scores are in [0, 1] like the metrics; variances in their square."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# The statistics over languages a comparison reports, in this order, with what each one is.
STATISTICS: dict[str, str] = {
    "mean": "mean of the primary metric over all languages",
    "xtreme_score": "XTREME's task score: the mean over languages (QA: of F1 and exact match)",
    "non_english_mean": "mean over the non-English languages",
    "transfer_gap": "English minus the non-English mean",
    "non_english_std": "sample standard deviation (n-1) over the non-English languages",
    "non_english_variance": "sample variance (n-1) over the non-English languages",
    "non_english_range": "best minus worst non-English language",
    "worst_value": "the worst non-English language's score",
}

Test = Literal["mcnemar_exact", "paired_permutation", "paired_bootstrap"]


class Side(BaseModel):
    """One experiment of the comparison."""

    id: str
    name: str
    seeds: list[int]
    intermediate_tasks: list[str]


class Welch(BaseModel):
    """Welch's t-test on the per-seed values (training noise between seeds)."""

    t: float
    df: float
    p_value: float


class Change(BaseModel):
    """Candidate minus baseline of one quantity, with a paired interval and a test."""

    baseline: float | None
    candidate: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    test: Test
    p_value: float | None
    baseline_per_seed: list[float | None]
    candidate_per_seed: list[float | None]
    welch: Welch | None = None  # two or more seeds on each side


class LanguageChange(Change):
    language: str
    n: int  # evaluated items (examples, questions, sentences)
    # Each side's own interval of its score (the same resamples; with seeds, hierarchical).
    baseline_ci: tuple[float, float] | None = None
    candidate_ci: tuple[float, float] | None = None
    p_adjusted: float | None  # Holm's step-down adjustment across the languages
    significant: bool  # adjusted p below alpha


class StatisticChange(Change):
    statistic: str
    description: str
    significant: bool  # p below alpha


class Comparison(BaseModel):
    baseline: Side
    candidate: Side
    task: str
    split: str
    metric: str  # the primary metric the per-language changes are of
    languages: list[str]
    resampling: Literal["joint_items", "within_language"]
    resampling_note: str
    seeds_scheme: Literal["items", "seeds_then_items"]
    samples: int
    confidence: float
    alpha: float
    seed: int
    multiple_comparisons: Literal["holm"] = "holm"
    per_language: list[LanguageChange]
    statistics: list[StatisticChange]
    # Which non-English language is worst on each side (the worst_value statistic's languages).
    worst_language_baseline: str | None = None
    worst_language_candidate: str | None = None
    warnings: list[str]
    # The answer in words: non-English mean, spread, languages that changed (see .verdict).
    verdict: list[str] = []
    cached: bool = False
