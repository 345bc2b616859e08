"""Human-readable tables of results (CLI output; the JSON carries the same numbers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xstilts.comparisons.model import Change, Comparison
from xstilts.experiments.results import CrossLanguageStats, ExperimentResults, MetricRow, Summary
from xstilts.studies.model import CellResult, StudyResults
from xstilts.tasks.base import TaskFormat
from xstilts.tasks.registry import REGISTRY
from xstilts.terminal import terminal_safe


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, scale: float = 1e4) -> str:
    return "-" if x is None else f"{scale * x:.2f}"


def results_table(result: ExperimentResults) -> str:
    """Per-language metric (mean over seeds) with n and 95% CI, then the cross-language summary."""
    summary = result.summary
    if summary is None:
        return "(no metrics)"
    by_lang: dict[str, list[MetricRow]] = {}
    others: dict[tuple[str, str], list[float]] = {}  # (language, metric) -> values over seeds
    for m in result.metrics:
        if m.metric == summary.metric:
            by_lang.setdefault(m.language, []).append(m)
        else:
            others.setdefault((m.language, m.metric), []).append(m.value)
    extra = [k for k in summary.metric_means if k != summary.metric]
    # Retrieval of one translation per sentence: a score means little without the number of
    # candidates it was picked from (the language's English sentences, as many as its own).
    task = REGISTRY.get(summary.task)
    candidates = task is not None and task.format is TaskFormat.RETRIEVAL and not task.mines_pairs
    lines = [
        f"{summary.task} {summary.metric} (%), seeds {summary.seeds}",
        f"{'lang':<6}{'value':>8}{'n':>7}  {'95% CI':<12}"
        + (f"{'candidates':>11}" if candidates else "")
        + "".join(f"{k:>16}" for k in extra),
    ]
    for lang, ms in by_lang.items():
        value = sum(m.value for m in ms) / len(ms)
        ci = f"{_pct(ms[0].ci_low)}-{_pct(ms[0].ci_high)}" if len(ms) == 1 else ""
        cells = ""
        for k in extra:
            vals = others.get((lang, k), [])
            mean = sum(vals) / len(vals) if vals else None
            cells += f"{_num(mean, 100) if k == 'threshold' else _pct(mean):>16}"
        pool = f"{ms[0].n:>11}" if candidates else ""
        lines.append(f"{lang:<6}{_pct(value):>8}{ms[0].n:>7}  {ci:<12}{pool}{cells}".rstrip())
    if candidates:
        lines.append(
            "each sentence picks its translation among its language's candidates (chance 1 in "
            "that many): with few candidates, accuracy is high"
        )
    lines.append("")
    lines.extend(summary_lines(summary))
    means = summary.metric_means
    if len(means) > 1:
        lines.append(
            "mean of each metric          "
            + ", ".join(
                f"{k} {_num(v, 100) if k == 'threshold' else _pct(v)}" for k, v in means.items()
            )
        )
    lines.append(f"XTREME task score           {_pct(summary.xtreme_score)}")
    for st in result.stages:
        if st.selection is not None:
            sel = st.selection
            lines.append(
                f"checkpoint (seed {st.seed})         step {sel.selected_step} of "
                f"{sel.total_steps}, English dev {sel.metric} {_pct(sel.selected_score)} "
                f"(best of {len(sel.history)} evaluations)"
            )
    return "\n".join(lines)


def summary_lines(s: CrossLanguageStats) -> list[str]:
    cv = "-" if s.non_english_cv is None else f"{s.non_english_cv:.3f}"
    return [
        f"mean (all languages)        {_pct(s.mean)}",
        f"English                     {_pct(s.english)}",
        f"non-English mean            {_pct(s.non_english_mean)}",
        f"transfer gap (en - non-en)  {_pct(s.transfer_gap)}",
        f"non-English variance, pop.  {_num(s.non_english_variance_population)} (points squared)",
        f"non-English variance, n-1   {_num(s.non_english_variance_sample)} (points squared)",
        f"non-English std             {_pct(s.non_english_std)}",
        f"non-English range           {_pct(s.non_english_range)}",
        f"non-English CV              {cv}",
        f"worst language              {s.worst_language} ({_pct(s.worst_value)})",
    ]


def _language_means(result: ExperimentResults) -> dict[str, float]:
    """The summary's metric per language, averaged over seeds (empty before any metric)."""
    s = result.summary
    if s is None:
        return {}
    return {
        lang: sum(m.value for m in result.metrics if m.language == lang and m.metric == s.metric)
        / max(1, len(s.seeds))
        for lang in s.languages
    }


_COMPARED: tuple[
    tuple[str, Callable[[Summary], float | None], Callable[[float | None], str]], ...
] = (
    ("mean (all)", lambda s: s.mean, _pct),
    ("English", lambda s: s.english, _pct),
    ("non-English mean", lambda s: s.non_english_mean, _pct),
    ("transfer gap", lambda s: s.transfer_gap, _pct),
    ("non-English variance (pt^2)", lambda s: s.non_english_variance_sample, _num),
    ("non-English std", lambda s: s.non_english_std, _pct),
    ("worst non-English", lambda s: s.worst_value, _pct),
)


def comparison_table(results: Sequence[ExperimentResults]) -> str:
    """Side by side per-language values and the summary of several experiments (e.g. baseline vs X-STILTs)."""
    # Names and languages come from results files a user passes: shown escaped, never raw.
    names = [terminal_safe(r.experiment.name) for r in results]
    width = max(12, *(len(n) + 2 for n in names))
    values = [_language_means(r) for r in results]
    langs = list(dict.fromkeys(lang for v in values for lang in v))
    head = f"{'':<28}" + "".join(f"{n:>{width}}" for n in names)
    if len(results) == 2:
        head += f"{'delta':>10}"
    lines = [head]

    def row(label: str, xs: list[float | None], fmt: Callable[[float | None], str]) -> str:
        line = f"{label:<28}" + "".join(f"{fmt(x):>{width}}" for x in xs)
        if len(xs) == 2 and xs[0] is not None and xs[1] is not None:
            line += f"{fmt(xs[1] - xs[0]):>10}"
        return line

    for lang in langs:
        lines.append(row(terminal_safe(lang), [v.get(lang) for v in values], _pct))
    lines.append("")
    for label, statistic, fmt in _COMPARED:
        lines.append(
            row(label, [None if r.summary is None else statistic(r.summary) for r in results], fmt)
        )
    worst = [
        terminal_safe((r.summary.worst_language if r.summary else None) or "-") for r in results
    ]
    lines.append(f"{'worst language':<28}" + "".join(f"{w:>{width}}" for w in worst))
    lines += [f"warning: {terminal_safe(w)}" for w in side_by_side_warnings(results)]
    return "\n".join(lines)


def side_by_side_warnings(results: Sequence[ExperimentResults]) -> list[str]:
    """What makes a side-by-side table's summaries incomparable: other tasks or metrics, other
    languages (a mean or spread over other sets), other numbers of examples in a language."""
    names = [r.experiment.name for r in results]
    warnings = []
    tasks = [sorted({m.task for m in r.metrics}) for r in results]
    metrics = [r.summary.metric if r.summary else None for r in results]
    if len({tuple(t) for t in tasks}) > 1 or len(set(metrics)) > 1:
        said = ", ".join(
            f"{n}: {'+'.join(t) or '-'} ({m or '-'})"
            for n, t, m in zip(names, tasks, metrics, strict=True)
        )
        warnings.append(f"the experiments measure different tasks or metrics ({said})")
    langs = [list(_language_means(r)) for r in results]
    every = list(dict.fromkeys(lang for ls in langs for lang in ls))
    missing = [
        f"{n} lacks {', '.join(x for x in every if x not in ls)}"
        for n, ls in zip(names, langs, strict=True)
        if set(ls) != set(every)
    ]
    if missing:
        warnings.append(
            "the experiments were evaluated on different languages (" + "; ".join(missing) + "): "
            "their means and spreads across languages are over different sets"
        )
    sizes: dict[str, set[int]] = {}
    for r in results:
        for m in r.metrics:
            if r.summary is not None and m.metric == r.summary.metric:
                sizes.setdefault(m.language, set()).add(m.n)
    uneven = [lang for lang in every if len(sizes.get(lang, set())) > 1]
    if uneven:
        warnings.append(
            f"different numbers of examples were evaluated in {', '.join(uneven)}: those values "
            "are not on the same examples"
        )
    return warnings


_STAT_LABELS = {
    "mean": ("mean (all languages)", 100.0),
    "xtreme_score": ("XTREME task score", 100.0),
    "non_english_mean": ("non-English mean", 100.0),
    "transfer_gap": ("transfer gap (en - others)", 100.0),
    "non_english_std": ("non-English std", 100.0),
    "non_english_variance": ("non-English variance (pt^2)", 1e4),
    "non_english_range": ("non-English range", 100.0),
    "worst_value": ("worst non-English", 100.0),
}
_TESTS = {"mcnemar_exact": "McNemar", "paired_permutation": "perm.", "paired_bootstrap": "boot."}


def _signed(x: float | None, scale: float) -> str:
    return "-" if x is None else f"{scale * x:+.2f}"


def _p(x: float | None) -> str:
    return "-" if x is None else ("<0.001" if x < 0.001 else f"{x:.3f}")


def _interval(c: Change, scale: float) -> str:
    if c.ci_low is None or c.ci_high is None:
        return "-"
    return f"[{scale * c.ci_low:+.2f}, {scale * c.ci_high:+.2f}]"


def _side_label(side: object) -> str:
    tasks = getattr(side, "intermediate_tasks", [])
    name = terminal_safe(getattr(side, "name", ""))
    return f"{name} ({'+'.join(tasks) if tasks else 'no intermediate task'})"


def paired_comparison_table(c: Comparison) -> str:
    """A comparison in points: per-language changes with intervals and Holm-adjusted p-values,
    then the statistics across languages, the scheme used and the warnings."""
    pct = int(round(100 * c.confidence))
    lines = [
        f"{c.task} ({c.metric}, {c.split}): candidate {c.candidate.id[:8]} "
        f"{_side_label(c.candidate)} vs baseline {c.baseline.id[:8]} {_side_label(c.baseline)}",
        f"seeds: baseline {len(c.baseline.seeds)}, candidate {len(c.candidate.seeds)}; "
        f"{c.samples} resamples, seed {c.seed}" + ("; cached" if c.cached else ""),
        f"resampling: {c.resampling.replace('_', ' ')}: {c.resampling_note}",
        "",
        f"{'language':<10}{'n':>6}{'baseline':>10}{'candidate':>11}{'change':>9}"
        f"{f'{pct}% interval':>20}{'p':>8} {'test':<8}{'Holm p':>8}",
    ]
    for r in c.per_language:
        lines.append(
            f"{r.language:<10}{r.n:>6}{_pct(r.baseline):>10}{_pct(r.candidate):>11}"
            f"{_signed(r.difference, 100):>9}{_interval(r, 100):>20}{_p(r.p_value):>8} "
            f"{_TESTS[r.test]:<8}{_p(r.p_adjusted):>8}" + (" *" if r.significant else "")
        )
    lines += [
        "",
        f"{'across languages':<30}{'baseline':>10}{'candidate':>11}{'change':>9}"
        f"{f'{pct}% interval':>20}{'p':>8} {'test':<8}{'Welch p':>8}",
    ]
    for s in c.statistics:
        label, scale = _STAT_LABELS[s.statistic]
        if s.statistic == "worst_value":
            label = f"worst ({c.worst_language_baseline} -> {c.worst_language_candidate})"
        value = _num if scale == 1e4 else _pct
        lines.append(
            f"{label:<30}{value(s.baseline):>10}{value(s.candidate):>11}"
            f"{_signed(s.difference, scale):>9}{_interval(s, scale):>20}{_p(s.p_value):>8} "
            f"{_TESTS[s.test]:<8}{_p(s.welch.p_value if s.welch else None):>8}"
            + (" *" if s.significant else "")
        )
    lines.append("")
    lines.append(
        f"* significant at {c.alpha} (languages: after Holm's adjustment across "
        f"{len(c.per_language)} languages). Changes are candidate minus baseline, in points."
    )
    lines += [f"warning: {w}" for w in c.warnings]
    if c.verdict:
        lines += ["", *c.verdict]
    return "\n".join(lines)


def _cell_change(change: Change | None) -> str:
    if change is None or change.difference is None:
        return "-"
    star = "*" if change.p_value is not None and change.p_value < 0.05 else " "
    return f"{100 * change.difference:+.1f} {_interval(change, 100)} p={_p(change.p_value)}{star}"


def study_table(r: StudyResults) -> str:
    """The matrix twice: task score with its change over the baseline, then the change of the
    non-English standard deviation (points; * p < 0.05)."""
    width = max(len(_cell_change(None)), 44)
    head = f"{'':<22}" + "".join(f"{t:>{width}}" for t in r.targets)

    def block(title: str, show: Callable[[CellResult], str]) -> list[str]:
        lines = [title, head]
        for row, cells in zip(r.rows[r.offset :], r.cells, strict=False):
            lines.append(f"{row:<22}" + "".join(f"{show(c):>{width}}" for c in cells))
        return lines

    def score(c: CellResult) -> str:
        if c.xtreme_score is None:
            return c.status
        text = f"{100 * c.xtreme_score:.1f}"
        return text if c.score_change is None else f"{text}  {_cell_change(c.score_change)}"

    def std(c: CellResult) -> str:
        if c.non_english_std is None:
            return c.status
        text = f"{100 * c.non_english_std:.2f}"
        return (
            text
            if c.non_english_std_change is None
            else f"{text}  {_cell_change(c.non_english_std_change)}"
        )

    lines = [
        f"study {r.id} ({terminal_safe(r.name)}): {len(r.rows)} rows x {len(r.targets)} targets, "
        f"seeds {r.seeds}"
    ]
    lines += ["", *block("XTREME task score, change over the baseline [95% interval]", score)]
    lines += ["", *block("non-English standard deviation, change over the baseline", std)]
    return "\n".join(lines)
