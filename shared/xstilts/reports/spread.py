"""The spread of non-English scores per seed: the figure and the table behind it, shared by the
experiment and the study pages."""

from __future__ import annotations

import numpy as np

from xstilts.experiments.results import ExperimentResults
from xstilts.experiments.statistics import ENGLISH
from xstilts.reports import figures
from xstilts.reports.page import Table, fmt_pts

SeedScores = dict[int, dict[str, float]]  # seed -> non-English language -> score


def per_seed_non_english(result: ExperimentResults) -> SeedScores:
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


def spread_figure(
    groups: list[tuple[str, SeedScores]], title: str, name: str = "spread"
) -> figures.Drawn:
    fig = figures.spread(
        [(label, {seed: list(v.values()) for seed, v in seeds.items()}) for label, seeds in groups],
        title,
    )
    return figures.Drawn(name, fig.caption, fig.png, fig.svg)


def spread_table(title: str, groups: list[tuple[str, SeedScores]]) -> Table:
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
