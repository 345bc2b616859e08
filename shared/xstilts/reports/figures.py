"""The report's figures, drawn with matplotlib's Agg backend (no display), each as PNG and SVG.

Readable in greyscale: the two sides differ by marker shape and fill as well as colour, the
heatmap's colour map (cividis) gets lighter monotonically, and a non-significant cell is hatched.

Names in titles and labels are users' text, so matplotlib's formula syntax is off (``$...$`` in a
name is drawn as written, never parsed). Figures are made without pyplot, whose registry keeps
every figure until it is closed (an exception would leak it); and one figure is drawn at a time,
since matplotlib's font and text caches are shared between threads.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ParamSpec

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xstilts.comparisons.model import Comparison
from xstilts.experiments.results import ExperimentResults
from xstilts.experiments.statistics import ENGLISH
from xstilts.studies.model import StudyResults

BASELINE = {"color": "#1b3a6b", "marker": "o", "mfc": "white", "label": "baseline"}
CANDIDATE = {"color": "#d55e00", "marker": "s", "mfc": "#d55e00", "label": "candidate"}
STYLE: dict[str, object] = {  # matplotlib rcParams
    "font.size": 10,
    "axes.titlesize": 11,
    "svg.fonttype": "none",
    "text.parse_math": False,  # users' names: "$x$" is text, not a formula
    "text.usetex": False,
}
_DRAWING = threading.Lock()
# A figure grows with what it shows (seeds, rows of a study), which a client chooses: past this
# many inches a side (4,160 pixels at 130 dpi) its columns or rows are drawn closer instead, so a
# large study costs a bounded drawing (8 rows of 64 seeds took 7 s and 460 MB uncapped).
MAX_INCHES = 32.0
P = ParamSpec("P")


def _figure(width: float, height: float) -> Figure:
    """A figure of this size in inches, neither side above :data:`MAX_INCHES`."""
    return Figure(figsize=(min(width, MAX_INCHES), min(height, MAX_INCHES)))


def _drawn_alone(draw: Callable[P, Drawn]) -> Callable[P, Drawn]:
    """Draw under :data:`STYLE`, one figure at a time in the process."""

    @functools.wraps(draw)
    def locked(*args: P.args, **kwargs: P.kwargs) -> Drawn:
        with _DRAWING, matplotlib.rc_context(STYLE):  # type: ignore[arg-type]
            return draw(*args, **kwargs)

    return locked


@dataclass(frozen=True)
class Drawn:
    """One figure as PNG bytes and SVG text, with the caption the page shows."""

    name: str
    caption: str
    png: bytes
    svg: str


def _render(fig: Figure, name: str, caption: str) -> Drawn:
    fig.tight_layout()
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=130)
    fig.savefig(svg, format="svg")
    return Drawn(name, caption, png.getvalue(), svg.getvalue())


def _language_ticks(ax: Axes, x: np.ndarray, languages: Sequence[str]) -> None:
    ax.set_xticks(x, [f"{lang}*" if lang == ENGLISH else lang for lang in languages])


def _y_grid(ax: Axes) -> None:
    ax.grid(axis="y", color="0.85", lw=0.6)
    ax.set_axisbelow(True)


def _finish(fig: Figure, ax: Axes, name: str, caption: str) -> Drawn:
    """A chart's last steps: the horizontal grid, then drawn."""
    _y_grid(ax)
    return _render(fig, name, caption)


def _pts(x: float | None) -> float:
    return np.nan if x is None else 100 * x


@_drawn_alone
def per_language_scores(c: Comparison) -> Drawn:
    """Both sides' score per language with intervals, languages by the baseline's score."""
    rows = sorted(c.per_language, key=lambda r: r.baseline or 0.0, reverse=True)
    x = np.arange(len(rows))
    fig = _figure(max(6.0, 0.55 * len(rows) + 2), 4.2)
    ax = fig.subplots()
    for offset, style, value, ci in (
        (-0.15, BASELINE, "baseline", "baseline_ci"),
        (0.15, CANDIDATE, "candidate", "candidate_ci"),
    ):
        ys = np.array([_pts(getattr(r, value)) for r in rows])
        intervals = [getattr(r, ci) or (np.nan, np.nan) for r in rows]
        err = np.array(
            [[y - 100 * lo, 100 * hi - y] for y, (lo, hi) in zip(ys, intervals, strict=True)]
        ).T
        ax.errorbar(
            x + offset, ys, yerr=err, fmt=style["marker"], color=style["color"],
            mfc=style["mfc"], capsize=3, ms=6, label=style["label"], lw=1.2,
        )  # fmt: skip
    _language_ticks(ax, x, [r.language for r in rows])
    ax.set_ylabel(f"{c.metric} (points)")
    ax.set_title(f"{c.task}: {c.metric} per language, {int(100 * c.confidence)}% intervals")
    if any(r.language == ENGLISH for r in rows):
        ax.axvspan(
            [r.language for r in rows].index(ENGLISH) - 0.45,
            [r.language for r in rows].index(ENGLISH) + 0.45,
            color="0.9", zorder=0,
        )  # fmt: skip
    ax.legend(loc="best", frameon=False)
    return _finish(
        fig,
        ax,
        "per_language",
        "Each language's score, baseline (hollow circles) and candidate (filled squares), with "
        "intervals; languages ordered by the baseline's score; English (*) shaded.",
    )


@_drawn_alone
def experiment_scores(name: str, task: str, metric: str, result: ExperimentResults) -> Drawn:
    """One experiment's score per language (mean over seeds, each seed a small dot), languages
    by score, with the bootstrap interval where there is one seed."""
    langs = result.summary.languages if result.summary else []
    per_lang = {
        lang: [m for m in result.metrics if m.language == lang and m.metric == metric]
        for lang in langs
    }
    order = sorted(langs, key=lambda lang: -np.mean([m.value for m in per_lang[lang]]))
    x = np.arange(len(order))
    fig = _figure(max(6.0, 0.55 * len(order) + 2), 4.0)
    ax = fig.subplots()
    for xi, lang in zip(x, order, strict=True):
        ms = per_lang[lang]
        mean = 100 * np.mean([m.value for m in ms])
        if len(ms) == 1 and ms[0].ci_low is not None and ms[0].ci_high is not None:
            ax.vlines(xi, 100 * ms[0].ci_low, 100 * ms[0].ci_high, color=BASELINE["color"], lw=1.5)
        if len(ms) > 1:
            ax.plot([xi] * len(ms), [100 * m.value for m in ms], ".", color="0.5", ms=4)
        ax.plot(xi, mean, "o", color=BASELINE["color"], ms=7)
    _language_ticks(ax, x, order)
    ax.set_ylabel(f"{metric} (points)")
    ax.set_title(f"{name}: {task} {metric} per language")
    return _finish(
        fig,
        ax,
        "per_language",
        "Each language's score (mean over seeds; small dots: single seeds; bars: 95% bootstrap "
        "interval with one seed); English marked *.",
    )


@_drawn_alone
def per_language_changes(c: Comparison) -> Drawn:
    """Candidate minus baseline per language with intervals; filled: significant after Holm."""
    rows = sorted(c.per_language, key=lambda r: r.baseline or 0.0, reverse=True)
    x = np.arange(len(rows))
    d = np.array([_pts(r.difference) for r in rows])
    low = np.array([_pts(r.ci_low) for r in rows])
    high = np.array([_pts(r.ci_high) for r in rows])
    fig = _figure(max(6.0, 0.55 * len(rows) + 2), 4.0)
    ax = fig.subplots()
    ax.axhline(0, color="0.2", lw=1)
    ax.vlines(x, low, high, color="0.35", lw=1.5)
    sig = np.array([r.significant for r in rows])
    ax.plot(x[sig], d[sig], "D", color="#d55e00", ms=7, label="significant (Holm)")
    ax.plot(x[~sig], d[~sig], "D", color="#d55e00", mfc="white", ms=7, label="not significant")
    for xi, r in zip(x, rows, strict=True):
        if r.significant:
            ax.annotate("*", (xi, _pts(r.ci_high)), ha="center", va="bottom", fontsize=12)
    _language_ticks(ax, x, [r.language for r in rows])
    ax.set_ylabel("change (points)")
    ax.set_title(f"{c.task}: candidate minus baseline, {int(100 * c.confidence)}% paired intervals")
    ax.legend(loc="best", frameon=False)
    return _finish(
        fig,
        ax,
        "per_language_change",
        "Change per language with paired intervals and a zero line; filled diamonds (and *) are "
        f"significant at {c.alpha} after Holm's adjustment across languages.",
    )


@_drawn_alone
def spread(groups: Sequence[tuple[str, Mapping[int, Sequence[float]]]], title: str) -> Drawn:
    """Non-English scores of each experiment, one column of dots per seed, with each seed's
    mean as a bar: ``groups`` is (label, {seed: scores in [0, 1]})."""
    fig = _figure(max(5.0, 1.0 * sum(len(s) for _, s in groups) + 2), 4.2)
    ax = fig.subplots()
    ticks, labels = [], []
    pos = 0.0
    rng = np.random.default_rng(0)  # fixed jitter: the same figure for the same numbers
    for g, (label, seeds) in enumerate(groups):
        marker = "os^Dv"[g % 5]
        for seed, scores in seeds.items():
            ys = 100 * np.asarray(scores, dtype=float)
            xs = pos + rng.uniform(-0.12, 0.12, ys.size)
            ax.plot(
                xs, ys, marker, color="0.25", mfc="white" if g % 2 else "0.25", ms=5, alpha=0.85
            )
            ax.hlines(ys.mean(), pos - 0.25, pos + 0.25, color="#d55e00", lw=2)
            ticks.append(pos)
            short = label if len(label) <= 16 else label[:15] + "…"
            labels.append(f"{short}\nseed {seed}")
            pos += 1
        pos += 0.5
    ax.set_xticks(ticks, labels, fontsize=8)
    ax.set_ylabel("non-English score (points)")
    ax.set_title(title)
    return _finish(
        fig,
        ax,
        "spread",
        "Each non-English language's score (dots), one column per seed, with the column's mean "
        "(bar): the spread across languages the variance statistics summarise.",
    )


# The heatmap's colours reach their ends at the largest change shown, or at these (points) when
# every change is smaller: small changes stay pale.
SCORE_SCALE_POINTS = 5.0
STD_SCALE_POINTS = 2.0


def colour_limit(values: np.ndarray, floor: float) -> float:
    """The end of a symmetric colour scale: the largest change shown, but at least ``floor`` (a
    lone +0.2 would otherwise fill its cell with the brightest colour, as if it were the largest
    effect there could be). NaN cells (not available) do not count."""
    largest = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    return max(largest, floor)


@_drawn_alone
def grid_heatmap(r: StudyResults) -> Drawn:
    """Two panels: change of the task score and of the non-English std over the baseline, per
    (intermediate set, target); hatched cells are not significant; blank: not available."""
    rows = [
        row for row, cells in zip(r.rows[r.offset :], r.cells, strict=False) if row != "baseline"
    ]
    cells = [c for c in r.cells if c and c[0].row != "baseline"]
    fig = _figure(max(7.0, 2.2 * len(r.targets) * 2 + 2), 1.0 + 0.6 * max(1, len(rows)))
    axes = fig.subplots(1, 2)
    for ax, attr, title, floor in (
        (axes[0], "score_change", "task score change (points)", SCORE_SCALE_POINTS),
        (axes[1], "non_english_std_change", "non-English std change (points)", STD_SCALE_POINTS),
    ):
        values = np.full((len(rows), len(r.targets)), np.nan)
        sig = np.zeros_like(values, dtype=bool)
        for i, line in enumerate(cells):
            for j, cell in enumerate(line):
                change = getattr(cell, attr)
                if change is not None and change.difference is not None:
                    values[i, j] = 100 * change.difference
                    sig[i, j] = bool(change.significant)
        limit = colour_limit(values, floor)
        image = ax.imshow(values, cmap="cividis", vmin=-limit, vmax=limit, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(r.targets)):
                if np.isnan(values[i, j]):
                    ax.text(j, i, "n/a", ha="center", va="center", color="0.4", fontsize=9)
                    continue
                light = (values[i, j] + limit) / (2 * limit) > 0.55
                ax.text(
                    j, i, f"{values[i, j]:+.1f}" + ("*" if sig[i, j] else ""),
                    ha="center", va="center", color="black" if light else "white",
                    fontsize=10, fontweight="bold" if sig[i, j] else "normal",
                )  # fmt: skip
                if not sig[i, j]:
                    ax.add_patch(
                        Rectangle(
                            (j - 0.5, i - 0.5),
                            1,
                            1,
                            fill=False,
                            hatch="///",
                            edgecolor="0.6",
                            lw=0,
                        )  # fmt: skip
                    )
        ax.set_xticks(range(len(r.targets)), r.targets)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(title)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return _render(
        fig,
        "grid",
        "Change over the baseline row for each intermediate task set (rows) and target "
        "(columns); * and bold: p < 0.05; hatched: not significant; n/a: not available yet. "
        f"Colours reach their ends at the largest change, or at ±{SCORE_SCALE_POINTS:g} points "
        f"(score) and ±{STD_SCALE_POINTS:g} (std) when every change is smaller.",
    )
