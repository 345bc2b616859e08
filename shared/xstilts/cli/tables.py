"""Human-readable tables of results (CLI output; the JSON carries the same numbers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, scale: float = 1e4) -> str:
    return "-" if x is None else f"{scale * x:.2f}"


def results_table(result: dict[str, Any]) -> str:
    """Per-language metric (mean over seeds) with n and 95% CI, then the cross-language summary."""
    summary = result["summary"]
    if not summary:
        return "(no metrics)"
    metric = summary["metric"]
    by_lang: dict[str, list[dict[str, Any]]] = {}
    for m in result["metrics"]:
        if m["metric"] == metric:
            by_lang.setdefault(m["language"], []).append(m)
    lines = [
        f"{summary['task']} {metric} (%), seeds {summary['seeds']}",
        f"{'lang':<6}{'value':>8}{'n':>7}  95% CI",
    ]
    for lang, ms in by_lang.items():
        value = sum(m["value"] for m in ms) / len(ms)
        ci = f"{_pct(ms[0]['ci_low'])}-{_pct(ms[0]['ci_high'])}" if len(ms) == 1 else ""
        lines.append(f"{lang:<6}{_pct(value):>8}{ms[0]['n']:>7}  {ci}")
    lines.append("")
    lines.extend(summary_lines(summary))
    means = summary.get("metric_means", {})
    if len(means) > 1:
        lines.append(
            "mean of each metric          "
            + ", ".join(
                f"{k} {_num(v, 100) if k == 'threshold' else _pct(v)}" for k, v in means.items()
            )
        )
    if "xtreme_score" in summary:
        lines.append(f"XTREME task score           {_pct(summary['xtreme_score'])}")
    return "\n".join(lines)


def summary_lines(s: dict[str, Any]) -> list[str]:
    cv = "-" if s["non_english_cv"] is None else f"{s['non_english_cv']:.3f}"
    return [
        f"mean (all languages)        {_pct(s['mean'])}",
        f"English                     {_pct(s['english'])}",
        f"non-English mean            {_pct(s['non_english_mean'])}",
        f"transfer gap (en - non-en)  {_pct(s['transfer_gap'])}",
        f"non-English variance (pop.) {_num(s['non_english_variance_population'])} (x1e-4)",
        f"non-English variance (samp.){_num(s['non_english_variance_sample'])} (x1e-4)",
        f"non-English std             {_pct(s['non_english_std'])}",
        f"non-English range           {_pct(s['non_english_range'])}",
        f"non-English CV              {cv}",
        f"worst language              {s['worst_language']} ({_pct(s['worst_value'])})",
    ]


def comparison_table(results: Sequence[dict[str, Any]]) -> str:
    """Side by side per-language values and the summary of several experiments (e.g. baseline vs X-STILTs)."""
    names = [r["experiment"]["name"] for r in results]
    width = max(12, *(len(n) + 2 for n in names))
    langs: list[str] = []
    for r in results:
        for lang in r["summary"].get("languages", []):
            if lang not in langs:
                langs.append(lang)
    values = [
        {
            lang: sum(
                m["value"]
                for m in r["metrics"]
                if m["language"] == lang and m["metric"] == r["summary"]["metric"]
            )
            / max(1, len(r["summary"]["seeds"]))
            for lang in r["summary"]["languages"]
        }
        for r in results
    ]
    head = f"{'':<28}" + "".join(f"{n:>{width}}" for n in names)
    if len(results) == 2:
        head += f"{'delta':>10}"
    lines = [head]

    def row(label: str, xs: list[float | None], fmt: Any) -> str:
        line = f"{label:<28}" + "".join(f"{fmt(x):>{width}}" for x in xs)
        if len(xs) == 2 and xs[0] is not None and xs[1] is not None:
            line += f"{fmt(xs[1] - xs[0]):>10}"
        return line

    for lang in langs:
        lines.append(row(lang, [v.get(lang) for v in values], _pct))
    lines.append("")
    for label, key, fmt in (
        ("mean (all)", "mean", _pct),
        ("English", "english", _pct),
        ("non-English mean", "non_english_mean", _pct),
        ("transfer gap", "transfer_gap", _pct),
        ("non-English variance x1e-4", "non_english_variance_sample", _num),
        ("non-English std", "non_english_std", _pct),
        ("worst non-English", "worst_value", _pct),
    ):
        lines.append(row(label, [r["summary"].get(key) for r in results], fmt))
    return "\n".join(lines)
