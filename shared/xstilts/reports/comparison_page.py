"""The comparison page: a candidate experiment against a baseline, per language and across
languages, with intervals, p-values and the verdict."""

from __future__ import annotations

from xstilts.comparisons.model import Comparison
from xstilts.experiments.statistics import ENGLISH
from xstilts.reports import figures
from xstilts.reports.page import Report, Table, fmt_change, fmt_interval, fmt_p, fmt_pts, join
from xstilts.reports.spread import SeedScores, spread_figure, spread_table

_STAT_NAMES = {
    "mean": "mean (all languages)",
    "xtreme_score": "XTREME task score",
    "non_english_mean": "non-English mean",
    "transfer_gap": "transfer gap (en − others)",
    "non_english_std": "non-English std",
    "non_english_variance": "non-English variance (pt²)",
    "non_english_range": "non-English range",
    "worst_value": "worst non-English",
}


def comparison_report(c: Comparison) -> Report:
    """A comparison's page (:func:`~xstilts.comparisons.compare_experiments` computes it)."""
    pct = int(round(100 * c.confidence))
    meta = [
        f"candidate {c.candidate.name} ({c.candidate.id}; intermediate: "
        f"{join(c.candidate.intermediate_tasks)}; seeds {c.candidate.seeds}) against baseline "
        f"{c.baseline.name} ({c.baseline.id}; intermediate: {join(c.baseline.intermediate_tasks)};"
        f" seeds {c.baseline.seeds})",
        f"{c.task}, {c.split} split, {c.metric}. Resampling: {c.resampling.replace('_', ' ')} — "
        f"{c.resampling_note}. {c.samples} resamples (seed {c.seed}); "
        f"{'seeds, then items' if c.seeds_scheme == 'seeds_then_items' else 'items'}; "
        f"per-language p-values adjusted with Holm's method.",
    ]

    def non_english(per_seed_of: str, seeds: list[int]) -> SeedScores:
        return {
            seed: {
                r.language: value
                for r in c.per_language
                if r.language != ENGLISH and (value := getattr(r, per_seed_of)[s]) is not None
            }
            for s, seed in enumerate(seeds)
        }

    spread_groups = [
        ("baseline", non_english("baseline_per_seed", c.baseline.seeds)),
        ("candidate", non_english("candidate_per_seed", c.candidate.seeds)),
    ]

    figs = [
        figures.per_language_scores(c),
        figures.per_language_changes(c),
        spread_figure(spread_groups, f"{c.task}: spread across the non-English languages"),
    ]
    lang_rows = [
        [
            r.language,
            str(r.n),
            fmt_pts(r.baseline),
            fmt_pts(r.candidate),
            fmt_change(r.difference),
            fmt_interval(r.ci_low, r.ci_high),
            fmt_p(r.p_value),
            r.test.replace("_", " "),
            fmt_p(r.p_adjusted),
        ]
        for r in c.per_language
    ]
    stat_rows = []
    for s in c.statistics:
        scale = 1e4 if s.statistic == "non_english_variance" else 100.0

        def v(x: float | None, scale: float = scale) -> str:
            return "–" if x is None else f"{scale * x:.2f}"

        label = _STAT_NAMES[s.statistic]
        if s.statistic == "worst_value":
            label += f" ({c.worst_language_baseline} → {c.worst_language_candidate})"
        stat_rows.append(
            [
                label,
                v(s.baseline),
                v(s.candidate),
                "–" if s.difference is None else f"{scale * s.difference:+.2f}",
                fmt_interval(s.ci_low, s.ci_high, scale),
                fmt_p(s.p_value),
                s.test.replace("_", " "),
                fmt_p(s.welch.p_value) if s.welch else "–",
            ]
        )
    change_columns = ["baseline", "candidate", "change", f"{pct}% interval", "p", "test"]
    tables = [
        Table(
            "per language (points; bold: significant after Holm)",
            ["language", "n", *change_columns, "Holm p"],
            lang_rows,
            {i for i, r in enumerate(c.per_language) if r.significant},
        ),  # fmt: skip
        Table(
            "across languages (bold: p < alpha)",
            ["statistic", *change_columns, "Welch p (seeds)"],
            stat_rows,
            {i for i, s in enumerate(c.statistics) if s.significant},
            "Variance in points squared; the rest in points.",
        ),  # fmt: skip
        spread_table("non-English scores per seed (points)", spread_groups),
    ]
    title = f"{c.task}: {c.candidate.name} vs {c.baseline.name}"
    return Report(title, [*c.verdict, *meta], figs, tables, c.warnings)
