"""Reports: figures (PNG and SVG) and one self-contained HTML page about an experiment, a
comparison of two, or a study. ``xstilts report`` writes them to a folder; the API serves the
page at ``/experiments/{id}/report``, ``/comparisons/report`` and ``/studies/{id}/report``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from xstilts.comparisons import CompareOptions, compare_experiments
from xstilts.comparisons.model import Comparison
from xstilts.comparisons.sides import AnyOwner
from xstilts.experiments.queries import owned_experiment
from xstilts.experiments.results import ExperimentResults, experiment_results
from xstilts.experiments.statistics import ENGLISH
from xstilts.reports import figures
from xstilts.reports.page import (
    Report,
    Table,
    fmt_change,
    fmt_interval,
    fmt_p,
    fmt_pts,
    join,
)
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.studies import study_results
from xstilts.studies.model import StudyResults

__all__ = ["Report", "comparison_report", "experiment_report", "study_report", "write_report"]

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


def write_report(report: Report, out: Path) -> list[Path]:
    """The figures as ``<name>.png`` and ``<name>.svg`` and the page as ``index.html``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fig in report.figures:
        (out / f"{fig.name}.png").write_bytes(fig.png)
        (out / f"{fig.name}.svg").write_text(fig.svg, encoding="utf-8")
        written += [out / f"{fig.name}.png", out / f"{fig.name}.svg"]
    (out / "index.html").write_text(report.html(), encoding="utf-8")
    return [*written, out / "index.html"]


SeedScores = dict[int, dict[str, float]]  # seed -> non-English language -> score


def _per_seed_non_english(result: ExperimentResults) -> SeedScores:
    if result.summary is None:
        return {}
    primary = result.summary.metric
    return {
        seed: {
            m.language: m.value
            for m in result.metrics
            if m.seed == seed and m.metric == primary and m.language != ENGLISH
        }
        for seed in result.summary.seeds
    }


def _spread(
    groups: list[tuple[str, SeedScores]], title: str, name: str = "spread"
) -> figures.Drawn:
    fig = figures.spread(
        [(label, {seed: list(v.values()) for seed, v in seeds.items()}) for label, seeds in groups],
        title,
    )
    return figures.Drawn(name, fig.caption, fig.png, fig.svg)


def _spread_table(title: str, groups: list[tuple[str, SeedScores]]) -> Table:
    """The numbers behind a spread figure: each experiment's and seed's non-English scores."""
    langs = list(dict.fromkeys(lang for _, seeds in groups for v in seeds.values() for lang in v))
    rows = []
    for label, seeds in groups:
        for seed, values in seeds.items():
            xs = [values[lang] for lang in langs if lang in values]
            std = float(np.std(xs, ddof=1)) if len(xs) > 1 else None
            rows.append(
                [label, str(seed), *(fmt_pts(values.get(lang)) for lang in langs),
                 fmt_pts(float(np.mean(xs)) if xs else None), fmt_pts(std, 2)]
            )  # fmt: skip
    return Table(title, ["experiment", "seed", *langs, "mean", "std"], rows)


def experiment_report(sessions: sessionmaker[Session], exp_id: str, owner: str | None) -> Report:
    """One experiment: its per-language scores with intervals and its spread across languages."""
    if not isinstance(owner, AnyOwner):
        with sessions() as s:
            owned_experiment(s, exp_id, owner)
    result = experiment_results(sessions, exp_id)
    summary = result.summary
    exp = result.experiment
    meta = [f"experiment {exp.id}, status {exp.status}"]
    if summary is None:
        return Report(f"{exp.name}: no results yet", meta, [], [], [])
    primary = summary.metric
    langs = summary.languages
    rows = []
    values: dict[str, list[float]] = {}
    for lang in langs:
        ms = [m for m in result.metrics if m.language == lang and m.metric == primary]
        values[lang] = [m.value for m in ms]
        ci = ms[0] if len(ms) == 1 else None
        rows.append(
            [
                lang,
                str(ms[0].n),
                *(fmt_pts(m.value) for m in ms),
                fmt_pts(sum(values[lang]) / len(ms)),
                fmt_interval(ci.ci_low, ci.ci_high) if ci else "–",
            ]
        )
    meta.append(
        f"{summary.task} ({primary}); intermediate tasks: {join(summary.intermediate_tasks)}; "
        f"seeds {summary.seeds}; XTREME task score {100 * summary.xtreme_score:.1f}"
    )
    figs = [
        figures.experiment_scores(exp.name, summary.task, primary, result),
        _spread([(exp.name, _per_seed_non_english(result))], f"{summary.task}: spread"),
    ]
    stats = [
        ["non-English mean", fmt_pts(summary.non_english_mean)],
        ["transfer gap", fmt_pts(summary.transfer_gap)],
        ["non-English std", fmt_pts(summary.non_english_std, 2)],
        [
            "non-English variance (pt²)",
            "–"
            if summary.non_english_variance_sample is None
            else f"{1e4 * summary.non_english_variance_sample:.2f}",
        ],
        ["non-English range", fmt_pts(summary.non_english_range)],
        ["worst non-English", f"{summary.worst_language} {fmt_pts(summary.worst_value)}"],
    ]
    seeds = [f"seed {s}" for s in summary.seeds]
    tables = [
        Table(
            f"{primary} per language (points)",
            ["language", "n", *seeds, "mean", "95% interval (one seed)"],
            rows,
        ),
        Table("across the non-English languages (seed means)", ["statistic", "value"], stats),
        _spread_table(
            "non-English scores per seed (points)", [(exp.name, _per_seed_non_english(result))]
        ),
    ]
    return Report(f"{exp.name}: {summary.task}", meta, figs, tables)


def comparison_report(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    baseline: str,
    candidate: str,
    owner: str | None,
    options: CompareOptions | None = None,
) -> Report:
    c = compare_experiments(sessions, store, baseline, candidate, owner, options)
    return _comparison_page(c)


def _comparison_page(c: Comparison) -> Report:
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
        _spread(spread_groups, f"{c.task}: spread across the non-English languages"),
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
    tables = [
        Table(
            "per language (points; bold: significant after Holm)",
            [
                "language",
                "n",
                "baseline",
                "candidate",
                "change",
                f"{pct}% interval",
                "p",
                "test",
                "Holm p",
            ],
            lang_rows,
            {i for i, r in enumerate(c.per_language) if r.significant},
        ),  # fmt: skip
        Table(
            "across languages (bold: p < alpha)",
            [
                "statistic",
                "baseline",
                "candidate",
                "change",
                f"{pct}% interval",
                "p",
                "test",
                "Welch p (seeds)",
            ],
            stat_rows,
            {i for i, s in enumerate(c.statistics) if s.significant},
            "Variance in points squared; the rest in points.",
        ),  # fmt: skip
        _spread_table("non-English scores per seed (points)", spread_groups),
    ]
    title = f"{c.task}: {c.candidate.name} vs {c.baseline.name}"
    return Report(title, [*c.verdict, *meta], figs, tables, c.warnings)


def study_report(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    study_id: str,
    owner: str | None,
    options: CompareOptions | None = None,
) -> Report:
    r = study_results(sessions, store, study_id, owner, options, limit=10_000)
    return _study_page(sessions, r)


def _study_page(sessions: sessionmaker[Session], r: StudyResults) -> Report:
    figs = [figures.grid_heatmap(r)]
    spread_tables = []
    for j, target in enumerate(r.targets):
        groups = []
        for row, line in zip(r.rows, r.cells, strict=True):
            cell = line[j]
            if cell.status == "succeeded":
                result = experiment_results(sessions, cell.experiment_id)
                groups.append((row, _per_seed_non_english(result)))
        if groups:
            title = f"{target}: non-English scores per row and seed"
            figs.append(_spread(groups, title, f"spread_{target}"))
            spread_tables.append(_spread_table(f"{title} (points)", groups))
    rows: list[list[str]] = []
    bold: set[int] = set()
    for line in r.cells:
        for cell in line:
            sc, sd = cell.score_change, cell.non_english_std_change
            if (sc and sc.significant) or (sd and sd.significant):
                bold.add(len(rows))
            rows.append(
                [
                    cell.row,
                    cell.target,
                    cell.status,
                    fmt_pts(cell.xtreme_score),
                    fmt_change(sc.difference) if sc else "–",
                    fmt_interval(sc.ci_low, sc.ci_high) if sc else "–",
                    fmt_p(sc.p_value) if sc else "–",
                    fmt_pts(cell.non_english_std, 2),
                    fmt_change(sd.difference) if sd else "–",
                    fmt_interval(sd.ci_low, sd.ci_high) if sd else "–",
                    fmt_p(sd.p_value) if sd else "–",
                ]
            )
    table = Table(
        "the matrix (points; changes over the baseline row of the same target)",
        ["row", "target", "status", "task score", "change", "95% interval", "p",
         "non-English std", "change", "95% interval", "p"],
        rows,
        bold,
        "Bold: the task score or the std changed significantly (p < 0.05).",
    )  # fmt: skip
    warnings = sorted({w for line in r.cells for cell in line for w in cell.warnings})
    meta = [
        f"study {r.id}: {len(r.rows)} intermediate task sets x {len(r.targets)} targets, "
        f"seeds {r.seeds}"
    ]
    return Report(f"study {r.name}", meta, figs, [table, *spread_tables], warnings)


def report_for(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    what: str,
    owner: str | None,
) -> Report:
    """``what``: an experiment id, a study id, or ``A..B`` (baseline..candidate)."""
    from xstilts.db.models import Study

    if ".." in what:
        a, b = what.split("..", 1)
        return comparison_report(sessions, store, a, b, owner)
    with sessions() as s:
        is_study = s.get(Study, what) is not None
    if is_study:
        return study_report(sessions, store, what, owner)
    return experiment_report(sessions, what, owner)
