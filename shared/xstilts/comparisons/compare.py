"""Compare two experiments on the same evaluation: per-language changes and changes of the
statistics across languages, each with a paired interval and a test.

- Intervals: percentile bootstrap of candidate minus baseline, the same resampled items for both
  (paired); with several seeds, each replicate first draws each side's seeds (hierarchical).
- Tests, one seed a side: exact McNemar where items are right-or-wrong (accuracy), otherwise a
  paired permutation test (each item's two scores swapped at random). With several seeds: the
  bootstrap's own two-sided p-value, and Welch's t on the per-seed values beside it.
- Per-language p-values are adjusted across languages with Holm's step-down method.

The resampling scheme follows the task: items joint across languages where its evaluation sets are
translations of each other (:attr:`~xstilts.tasks.base.Task.parallel_items`), within each language
otherwise. Everything is seeded: the same inputs and options give the same numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from xstilts import interrupts
from xstilts.comparisons.model import (
    STATISTICS,
    Change,
    Comparison,
    LanguageChange,
    Side,
    StatisticChange,
    Test,
    Welch,
)
from xstilts.comparisons.resampling import ScoreCube, bootstrap, permutation
from xstilts.comparisons.sides import SideItems
from xstilts.comparisons.verdict import verdict
from xstilts.errors import XstiltsError
from xstilts.experiments.statistics import ENGLISH
from xstilts.metrics import ItemScores, get_metric

FEW_SEEDS = 3  # below this many seeds a side, the output warns


class IncomparableError(XstiltsError):
    """The two experiments were not evaluated alike (task, split, languages or examples)."""


@dataclass(frozen=True)
class CompareOptions:
    samples: int = 2000  # bootstrap replicates, and permutations where a permutation test runs
    confidence: float = 0.95
    alpha: float = 0.05  # what "significant" means in the output
    seed: int = 0

    def __post_init__(self) -> None:
        if not 100 <= self.samples <= 100_000:
            raise XstiltsError("must be between 100 and 100000", field="samples")
        if not 0.5 <= self.confidence < 1:
            raise XstiltsError("must be at least 0.5 and below 1", field="confidence")
        if not 0 < self.alpha < 1:
            raise XstiltsError("must be between 0 and 1", field="alpha")
        if not 0 <= self.seed < 2**31:
            raise XstiltsError("must be from 0 to 2147483647", field="seed")


@dataclass(frozen=True)
class ItemIndex:
    """Both sides' scores on one item index, with the strata a bootstrap draw keeps apart."""

    a: ScoreCube
    b: ScoreCube
    strata: list[np.ndarray]
    columns: list[tuple[str, str]]  # (metric, language) per column, metric-major
    sizes: dict[str, int]  # items per language
    binary: bool  # every item of the primary metric scores 0 or 1 out of 1 (McNemar applies)


def compare(a: SideItems, b: SideItems, options: CompareOptions | None = None) -> Comparison:
    """Candidate ``b`` against baseline ``a``."""
    options = options or CompareOptions()
    check_comparable(a, b)
    task = a.ref.task
    metric = get_metric(task.metric)
    metrics = [metric.primary, *(m for m in metric.task_score_of if m != metric.primary)]
    languages = a.ref.languages
    index = build_index(a, b, metrics, languages, joint=task.parallel_items)

    def statistic_columns(v: np.ndarray) -> dict[str, np.ndarray]:
        return cross_language(v, metrics, languages, metric.task_score_of)

    # Observed values, per seed and averaged over seeds.
    obs_a, obs_b = index.a.observed(), index.b.observed()
    seeds_a, seeds_b = index.a.per_seed(), index.b.per_seed()

    boot_a, boot_b = _collect(
        bootstrap(index.a, index.b, index.strata, options.samples, options.seed)
    )
    single = index.a.seeds == 1 and index.b.seeds == 1
    perm: tuple[np.ndarray, np.ndarray] | None = None
    if single:
        perm = _collect(permutation(index.a, index.b, options.samples, options.seed + 1))

    per_language: list[LanguageChange] = []
    raw_p: list[float] = []
    for j, lang in enumerate(languages):
        interrupts.check()
        test, p = _language_test(index, j, boot_a, boot_b, perm, single)
        change = _change(
            obs_a[j],
            obs_b[j],
            boot_b[:, j] - boot_a[:, j],
            seeds_a[:, j],
            seeds_b[:, j],
            test,
            p,
            options,
        )
        raw_p.append(1.0 if change.p_value is None else change.p_value)
        per_language.append(
            LanguageChange(
                language=lang,
                n=index.sizes[lang],
                baseline_ci=_percentiles(boot_a[:, j], options.confidence),
                candidate_ci=_percentiles(boot_b[:, j], options.confidence),
                p_adjusted=None,
                significant=False,
                **change.model_dump(),
            )
        )
    adjusted = multipletests(raw_p, alpha=options.alpha, method="holm")[1]
    for row, p_adj in zip(per_language, adjusted, strict=True):
        row.p_adjusted = float(p_adj)
        row.significant = bool(p_adj < options.alpha)

    stats_obs_a, stats_obs_b = statistic_columns(obs_a[None]), statistic_columns(obs_b[None])
    stats_seed_a, stats_seed_b = statistic_columns(seeds_a), statistic_columns(seeds_b)
    interrupts.check()
    stats_boot_a, stats_boot_b = statistic_columns(boot_a), statistic_columns(boot_b)
    stats_perm = (statistic_columns(perm[0]), statistic_columns(perm[1])) if perm else None
    statistics: list[StatisticChange] = []
    for name, description in STATISTICS.items():
        interrupts.check()
        if name not in stats_obs_a:
            continue
        observed = float(stats_obs_b[name][0] - stats_obs_a[name][0])
        diffs = stats_boot_b[name] - stats_boot_a[name]
        stat_test: Test
        stat_test, p = (
            (
                "paired_permutation",
                _permutation_p(stats_perm[1][name] - stats_perm[0][name], observed),
            )
            if stats_perm is not None
            else ("paired_bootstrap", _bootstrap_p(diffs))
        )
        change = _change(
            stats_obs_a[name][0],
            stats_obs_b[name][0],
            diffs,
            stats_seed_a[name],
            stats_seed_b[name],
            stat_test,
            p,
            options,
        )
        significant = change.p_value is not None and change.p_value < options.alpha
        statistics.append(
            StatisticChange(
                statistic=name,
                description=description,
                significant=significant,
                **change.model_dump(),
            )
        )

    joint = task.parallel_items
    result = Comparison(
        baseline=_side(a),
        candidate=_side(b),
        task=task.name,
        split=a.split,
        metric=metric.primary,
        languages=languages,
        resampling="joint_items" if joint else "within_language",
        resampling_note=(
            f"{task.name}'s evaluation sets are translations of each other: a draw takes an item "
            "in every language at once, keeping the correlation between languages"
            if joint
            else f"{task.name}'s languages have their own items: each language is resampled "
            "on its own"
        ),
        seeds_scheme="items" if single else "seeds_then_items",
        samples=options.samples,
        confidence=options.confidence,
        alpha=options.alpha,
        seed=options.seed,
        per_language=per_language,
        statistics=statistics,
        worst_language_baseline=_worst(languages, obs_a),
        worst_language_candidate=_worst(languages, obs_b),
        warnings=_warnings(a, b, sum(lang != ENGLISH for lang in languages)),
    )
    result.verdict = verdict(result)
    return result


def check_comparable(a: SideItems, b: SideItems) -> None:
    """Refuse two experiments whose numbers would not measure the same thing."""

    def refuse(what: str, x: object, y: object, hint: str = "") -> IncomparableError:
        return IncomparableError(
            f"baseline {a.ref.id} and candidate {b.ref.id} differ in {what}: {x} vs {y}{hint}",
            field="candidate",
        )

    if a.ref.task.name != b.ref.task.name:
        raise refuse("target task", a.ref.task.name, b.ref.task.name)
    if a.split != b.split:
        raise refuse("evaluation split", a.split, b.split)
    if sorted(a.ref.languages) != sorted(b.ref.languages):
        raise refuse("languages", ",".join(a.ref.languages), ",".join(b.ref.languages))
    first_a, first_b = a.items[a.ref.seeds[0]], b.items[b.ref.seeds[0]]
    for lang in a.ref.languages:
        if set(first_a[lang].ids) != set(first_b[lang].ids):
            raise refuse(
                f"the examples evaluated in {lang}",
                f"{len(first_a[lang].ids)} examples",
                f"{len(first_b[lang].ids)} (not the same ones)",
                "; give both the same evaluation.max_examples_per_language and data",
            )


def build_index(
    a: SideItems, b: SideItems, metrics: list[str], languages: list[str], joint: bool
) -> ItemIndex:
    """Lay both sides' item scores on one item index (see :mod:`.resampling`)."""
    task = a.ref.task
    keys: dict[tuple[str, str], int] = {}  # (stratum, item key) -> index
    first = a.items[a.ref.seeds[0]]
    for lang in languages:
        for item_id in first[lang].ids:
            key = ("", task.item_key(item_id, lang)) if joint else (lang, item_id)
            keys.setdefault(key, len(keys))
    n_items = len(keys)

    def cube(side: SideItems) -> ScoreCube:
        seeds = side.ref.seeds
        num = np.zeros((len(seeds), n_items, len(metrics) * len(languages)))
        den = np.zeros_like(num)
        for s, seed in enumerate(seeds):
            for j, lang in enumerate(languages):
                scores: ItemScores = side.items[seed][lang]
                rows = np.array(
                    [
                        keys[("", task.item_key(i, lang)) if joint else (lang, i)]
                        for i in scores.ids
                    ],
                    dtype=np.int64,
                )
                if len(set(rows.tolist())) != rows.size:
                    raise IncomparableError(
                        f"experiment {side.ref.id}: {lang} has two examples that are one item",
                        field="candidate",
                    )
                for m, name in enumerate(metrics):
                    num[s, rows, m * len(languages) + j] = scores.num[name]
                    den[s, rows, m * len(languages) + j] = scores.den[name]
        return ScoreCube(num, den)

    if joint:
        strata = [np.arange(n_items)]
    else:
        strata = [
            np.array([i for (stratum, _), i in keys.items() if stratum == lang], dtype=np.int64)
            for lang in languages
        ]
    ca, cb = cube(a), cube(b)
    primary = slice(0, len(languages))
    present = ca.den[:, :, primary] > 0
    binary = bool(
        np.all(ca.den[:, :, primary][present] == 1)
        and np.all(np.isin(ca.num[:, :, primary][present], (0.0, 1.0)))
        and np.all(np.isin(cb.num[:, :, primary][cb.den[:, :, primary] > 0], (0.0, 1.0)))
    )
    sizes = {lang: len(first[lang].ids) for lang in languages}
    columns = [(m, lang) for m in metrics for lang in languages]
    return ItemIndex(ca, cb, strata, columns, sizes, binary)


def cross_language(
    values: np.ndarray, metrics: list[str], languages: list[str], task_score_of: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The :data:`~xstilts.comparisons.model.STATISTICS` of each row of per-column values
    (rows: replicates or seeds; columns: metric-major, as :func:`build_index` lays them out)."""
    n = len(languages)
    primary = values[:, :n]
    others = [j for j, lang in enumerate(languages) if lang != ENGLISH]
    out: dict[str, np.ndarray] = {"mean": np.nanmean(primary, 1)}
    out["xtreme_score"] = np.mean(
        [
            np.nanmean(values[:, metrics.index(m) * n : (metrics.index(m) + 1) * n], 1)
            for m in task_score_of
        ],
        axis=0,
    )
    if not others:
        return out
    rest = primary[:, others]
    out["non_english_mean"] = np.nanmean(rest, 1)
    if ENGLISH in languages:
        out["transfer_gap"] = primary[:, languages.index(ENGLISH)] - out["non_english_mean"]
    if len(others) > 1:
        out["non_english_variance"] = np.nanvar(rest, 1, ddof=1)
        out["non_english_std"] = np.sqrt(out["non_english_variance"])
    out["non_english_range"] = np.nanmax(rest, 1) - np.nanmin(rest, 1)
    out["worst_value"] = np.nanmin(rest, 1)
    return out


def mcnemar_exact_p(baseline_right: np.ndarray, candidate_right: np.ndarray) -> float:
    """Exact McNemar: the discordant pairs split as a fair coin would (two-sided binomial)."""
    only_a = int(np.sum((baseline_right == 1) & (candidate_right == 0)))
    only_b = int(np.sum((baseline_right == 0) & (candidate_right == 1)))
    if only_a + only_b == 0:
        return 1.0
    return float(scipy_stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)


def _collect(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for part in chunks:
        interrupts.check()  # a request that gave up stops its resampling here
        parts.append(part)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided p-value of "no change" from the bootstrap distribution of the change: twice the
    smaller tail beyond zero (the level at which the percentile interval would touch zero)."""
    d = diffs[~np.isnan(diffs)]
    below, above = int(np.sum(d <= 0)), int(np.sum(d >= 0))
    return min(1.0, 2 * (1 + min(below, above)) / (d.size + 1))


def _permutation_p(null: np.ndarray, observed: float) -> float:
    """Share of swapped replicates at least as far from zero as the observed change (with the
    observed one counted, so p is never 0)."""
    d = null[~np.isnan(null)]
    return (1 + int(np.sum(np.abs(d) >= abs(observed) - 1e-12))) / (d.size + 1)


def _language_test(
    index: ItemIndex,
    j: int,
    boot_a: np.ndarray,
    boot_b: np.ndarray,
    perm: tuple[np.ndarray, np.ndarray] | None,
    single: bool,
) -> tuple[Test, float]:
    if single and index.binary:
        present = index.a.den[0, :, j] > 0
        return "mcnemar_exact", mcnemar_exact_p(
            index.a.num[0, present, j], index.b.num[0, present, j]
        )
    if perm is not None:
        observed = index.b.observed()[j] - index.a.observed()[j]
        return "paired_permutation", _permutation_p(perm[1][:, j] - perm[0][:, j], observed)
    return "paired_bootstrap", _bootstrap_p(boot_b[:, j] - boot_a[:, j])


def _change(
    a: float,
    b: float,
    diffs: np.ndarray,
    seeds_a: np.ndarray,
    seeds_b: np.ndarray,
    test: Test,
    p: float,
    options: CompareOptions,
) -> Change:
    low, high = _percentiles(diffs, options.confidence) or (None, None)
    return Change(
        baseline=_num(a),
        candidate=_num(b),
        difference=_num(b - a),
        ci_low=low,
        ci_high=high,
        test=test,
        p_value=_num(p),
        baseline_per_seed=[_num(x) for x in seeds_a],
        candidate_per_seed=[_num(x) for x in seeds_b],
        welch=_welch(seeds_a, seeds_b),
    )


def _worst(languages: list[str], values: np.ndarray) -> str | None:
    others = [(float(values[j]), lang) for j, lang in enumerate(languages) if lang != ENGLISH]
    finite = [x for x in others if math.isfinite(x[0])]
    return min(finite)[1] if finite else None


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float] | None:
    finite = values[~np.isnan(values)]
    if not finite.size:
        return None
    tail = (1 - confidence) / 2
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))


def _welch(a: np.ndarray, b: np.ndarray) -> Welch | None:
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        return None
    with warnings.catch_warnings():  # nearly equal values: scipy warns, the result says it
        warnings.simplefilter("ignore", RuntimeWarning)
        res = scipy_stats.ttest_ind(b, a, equal_var=False)
    if not (math.isfinite(res.statistic) and math.isfinite(res.pvalue)):
        return None  # no spread on either side: the t statistic is undefined
    return Welch(t=float(res.statistic), df=float(res.df), p_value=float(res.pvalue))


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _side(side: SideItems) -> Side:
    return Side(
        id=side.ref.id,
        name=side.ref.name,
        seeds=side.ref.seeds,
        intermediate_tasks=side.ref.spec.intermediate.arm,
    )


def _warnings(a: SideItems, b: SideItems, non_english: int) -> list[str]:
    out = []
    n_a, n_b = len(a.ref.seeds), len(b.ref.seeds)
    if n_a != n_b:
        out.append(
            f"the baseline has {n_a} seed{'s' if n_a > 1 else ''} and the candidate {n_b}: a "
            "side's score in a language is the mean over its seeds, so the side with more "
            "seeds keeps less training noise in each language and its spread across languages "
            "looks smaller for that reason alone; compare the same number of seeds a side (the "
            "per-seed values and Welch's test are not biased by the count)"
        )
    for role, side in (("baseline", a), ("candidate", b)):
        n = len(side.ref.seeds)
        if n < FEW_SEEDS:
            out.append(
                f"the {role} has {n} seed{'s' if n > 1 else ''}: its intervals cover the "
                "evaluation sample"
                + (" and only a little of" if n > 1 else " but not")
                + " the training noise between seeds; run 3 or more seeds a side"
            )
    if non_english < 3:
        out.append(f"{non_english} non-English language(s): the spread statistics need 3 or more")
    return out
