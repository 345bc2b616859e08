"""The experiment page: per-language scores with intervals, and the spread across languages."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from xstilts.comparisons.sides import AnyOwner
from xstilts.experiments.queries import owned_experiment
from xstilts.experiments.results import experiment_results
from xstilts.reports import figures
from xstilts.reports.page import Report, Table, fmt_interval, fmt_pts, join
from xstilts.reports.spread import per_seed_non_english, spread_figure, spread_table


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
        spread_figure([(exp.name, per_seed_non_english(result))], f"{summary.task}: spread"),
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
        spread_table(
            "non-English scores per seed (points)", [(exp.name, per_seed_non_english(result))]
        ),
    ]
    return Report(f"{exp.name}: {summary.task}", meta, figs, tables)
