"""Comparisons: paired intervals and tests against hand-computed, brute-force and constructed cases.

Sides are built directly from item scores here (no model, no database); the end-to-end path
through stored predictions, the CLI and the API is in ``test_comparisons_service.py``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from xstilts.comparisons import CompareOptions, IncomparableError, compare
from xstilts.comparisons.compare import build_index, cross_language, mcnemar_exact_p
from xstilts.comparisons.resampling import bootstrap, draw_items, seed_weights
from xstilts.comparisons.sides import PredictRef, SideItems, SideRef
from xstilts.metrics import ItemScores, get_metric
from xstilts.metrics.base import unit_items
from xstilts.spec import ExperimentSpec
from xstilts.tasks import get_task

LANGS = ["en", "de", "fr", "ar", "sw"]


def make_side(
    task: str,
    items: dict[int, dict[str, ItemScores]],
    exp_id: str,
    intermediate: tuple[str, ...] = (),
) -> SideItems:
    spec = ExperimentSpec.model_validate(
        {
            "name": exp_id[:6],
            "target": {"task": task},
            "intermediate": {"tasks": list(intermediate)},
            "seeds": sorted(items),
        }
    )
    predicts = tuple(
        PredictRef(seed, lang, f"{exp_id}-{seed}-{lang}", Path("/unused"))
        for seed in sorted(items)
        for lang in items[seed]
    )
    return SideItems(SideRef(exp_id, spec.name, spec, predicts), "validation", items)


def xnli_items(correct: dict[str, np.ndarray]) -> dict[str, ItemScores]:
    """XNLI-style items: line i of every language is one item (ids ``dev-<lang>-<i>``)."""
    return {
        lang: unit_items([f"dev-{lang}-{i}" for i in range(len(v))], {"accuracy": v.astype(float)})
        for lang, v in correct.items()
    }


def random_correct(
    rng: np.random.Generator, n: int, rates: dict[str, float]
) -> dict[str, np.ndarray]:
    return {lang: (rng.random(n) < p).astype(float) for lang, p in rates.items()}


RATES = {"en": 0.8, "de": 0.7, "fr": 0.72, "ar": 0.6, "sw": 0.5}


def test_mcnemar_matches_statsmodels() -> None:
    rng = np.random.default_rng(3)
    a = (rng.random(300) < 0.6).astype(float)
    b = np.where(rng.random(300) < 0.2, 1 - a, a)
    table = [
        [np.sum((a == 1) & (b == 1)), np.sum((a == 1) & (b == 0))],
        [np.sum((a == 0) & (b == 1)), np.sum((a == 0) & (b == 0))],
    ]
    expected = mcnemar(table, exact=True).pvalue
    assert mcnemar_exact_p(a, b) == pytest.approx(expected, rel=1e-12)
    # By hand: 1 discordant pair each way is p = 1; 0 vs 6 is 2 * 0.5**6.
    assert mcnemar_exact_p(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    assert mcnemar_exact_p(np.zeros(6), np.ones(6)) == pytest.approx(2 * 0.5**6)


def test_holm_adjustment_on_a_known_vector() -> None:
    # By hand: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max so far 0.06.
    adjusted = multipletests([0.01, 0.04, 0.03, 0.005], method="holm")[1]
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_per_language_p_values_are_holm_adjusted() -> None:
    rng = np.random.default_rng(0)
    base = random_correct(rng, 400, RATES)
    cand = {lang: np.where(rng.random(400) < 0.15, 1.0, v) for lang, v in base.items()}
    result = compare(
        make_side("xnli", {1: xnli_items(base)}, "a" * 32),
        make_side("xnli", {1: xnli_items(cand)}, "b" * 32),
    )
    raw = [row.p_value for row in result.per_language]
    assert [row.test for row in result.per_language] == ["mcnemar_exact"] * len(LANGS)
    assert [row.p_adjusted for row in result.per_language] == pytest.approx(
        multipletests(raw, method="holm")[1]
    )
    assert result.multiple_comparisons == "holm"


def brute_force_bootstrap(
    a: dict[int, dict[str, ItemScores]],
    b: dict[int, dict[str, ItemScores]],
    langs: list[str],
    joint: bool,
    replicates: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap by loops over the drawn items (by item key, not through the index), with the
    same random draws the library makes."""
    task = get_task("xnli")
    seeds_a, seeds_b = sorted(a), sorted(b)
    # The strata in the library's order: one of every item key, or one per language.
    first = a[seeds_a[0]]
    if joint:
        keys = list(
            dict.fromkeys(task.item_key(i, lang) for lang in langs for i in first[lang].ids)
        )
        strata = [keys]
    else:
        strata = [[(lang, i) for i in first[lang].ids] for lang in langs]
    rng = np.random.default_rng(seed)
    out_a, out_b = [], []
    for start in range(0, replicates, 128):
        k = min(128, replicates - start)
        draw_a = rng.integers(0, len(seeds_a), size=(k, len(seeds_a))) if len(seeds_a) > 1 else None
        draw_b = rng.integers(0, len(seeds_b), size=(k, len(seeds_b))) if len(seeds_b) > 1 else None
        drawn = [rng.integers(0, len(s), size=(k, len(s))) for s in strata]
        for r in range(k):
            chosen = [s[j] for s, d in zip(strata, drawn, strict=True) for j in d[r]]
            for side, draw, seeds, out in (
                (a, draw_a, seeds_a, out_a),
                (b, draw_b, seeds_b, out_b),
            ):
                picked = [seeds[j] for j in draw[r]] if draw is not None else seeds
                row = []
                for lang in langs:
                    per_seed = []
                    for s in picked:
                        scores = side[s][lang]
                        by_key = {
                            (task.item_key(i, lang) if joint else (lang, i)): n
                            for i, n in zip(scores.ids, scores.num["accuracy"], strict=True)
                        }
                        hits = [by_key[c] for c in chosen if c in by_key]
                        per_seed.append(sum(hits) / len(hits))
                    row.append(np.mean(per_seed))
                out.append(row)
    return np.array(out_a), np.array(out_b)


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("seeds", [(1,), (1, 2, 3)])
def test_bootstrap_equals_brute_force_on_a_tiny_case(joint: bool, seeds: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    langs = ["en", "de", "sw"]
    rates = {"en": 0.8, "de": 0.6, "sw": 0.4}
    a = {s: xnli_items(random_correct(rng, 6, rates)) for s in seeds}
    b = {s: xnli_items(random_correct(rng, 6, rates)) for s in seeds}
    side_a, side_b = make_side("xnli", a, "a" * 32), make_side("xnli", b, "b" * 32)
    index = build_index(side_a, side_b, ["accuracy"], langs, joint=joint)
    got = list(bootstrap(index.a, index.b, index.strata, 300, seed=11))
    got_a = np.concatenate([g[0] for g in got])
    got_b = np.concatenate([g[1] for g in got])
    want_a, want_b = brute_force_bootstrap(a, b, langs, joint, 300, seed=11)
    np.testing.assert_allclose(got_a, want_a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_b, want_b, rtol=0, atol=1e-12)


def test_joint_draws_take_an_item_in_every_language() -> None:
    rng = np.random.default_rng(0)
    langs = ["en", "de", "sw"]
    side = make_side("xnli", {1: xnli_items(random_correct(rng, 5, RATES))}, "a" * 32)
    joint = build_index(side, side, ["accuracy"], langs, joint=True)
    assert [s.size for s in joint.strata] == [5]  # line i of every language is item i
    within = build_index(side, side, ["accuracy"], langs, joint=False)
    assert [s.size for s in within.strata] == [5, 5, 5]
    drawn = draw_items(np.random.default_rng(1), within.strata, 4)
    for stratum, d in zip(within.strata, drawn, strict=True):
        assert set(d.ravel()) <= set(stratum.tolist())  # a language's draws stay in it


def test_seed_weights_are_a_draw_with_replacement() -> None:
    w = seed_weights(np.random.default_rng(0), 3, 1000)
    assert w.shape == (1000, 3)
    assert np.allclose(w.sum(1), 1.0)
    assert set(np.unique(w * 3).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert 0.3 < w[:, 0].mean() < 0.37  # each seed a third of the draws on average


def test_a_variance_change_known_to_be_zero() -> None:
    """The candidate's languages are the baseline's with German's and Swahili's predictions
    exchanged: two languages change, the non-English variance is exactly the same."""
    rng = np.random.default_rng(5)
    base = random_correct(rng, 500, RATES)
    cand = {**base, "de": base["sw"].copy(), "sw": base["de"].copy()}
    result = compare(
        make_side("xnli", {1: xnli_items(base)}, "a" * 32),
        make_side("xnli", {1: xnli_items(cand)}, "b" * 32),
    )
    stats = {s.statistic: s for s in result.statistics}
    for name in ("non_english_variance", "non_english_std", "non_english_mean"):
        s = stats[name]
        assert s.difference == pytest.approx(0.0, abs=1e-12)
        assert s.ci_low < 0 < s.ci_high
        assert s.p_value > 0.2
        assert not s.significant
    de = next(r for r in result.per_language if r.language == "de")
    assert de.difference == pytest.approx(base["sw"].mean() - base["de"].mean())
    assert de.significant  # 20 points on 500 examples: found


def test_a_planted_change_is_found() -> None:
    """The candidate fixes a third of the errors in the two weakest languages: the mean rises and
    the spread falls, significantly; languages left alone are unchanged with p = 1."""
    rng = np.random.default_rng(9)
    base = random_correct(rng, 500, RATES)
    cand = dict(base)
    for lang in ("ar", "sw"):
        fix = (base[lang] == 0) & (rng.random(500) < 1 / 3)
        cand[lang] = np.where(fix, 1.0, base[lang])
    result = compare(
        make_side("xnli", {1: xnli_items(base)}, "a" * 32),
        make_side("xnli", {1: xnli_items(cand)}, "b" * 32),
    )
    rows = {r.language: r for r in result.per_language}
    for lang in ("ar", "sw"):
        assert rows[lang].difference > 0.1 and rows[lang].significant
        assert rows[lang].ci_low > 0
    for lang in ("en", "de", "fr"):
        assert rows[lang].difference == 0 and rows[lang].p_value == 1.0
    stats = {s.statistic: s for s in result.statistics}
    assert stats["non_english_mean"].ci_low > 0 and stats["non_english_mean"].significant
    assert stats["non_english_std"].ci_high < 0 and stats["non_english_std"].significant
    assert stats["non_english_std"].test == "paired_permutation"
    worst = min(LANGS[1:], key=lambda lang: base[lang].mean())
    assert result.worst_language_baseline == worst
    assert stats["worst_value"].baseline == pytest.approx(base[worst].mean())
    assert result.resampling == "joint_items"
    # The verdict in words reads off those numbers.
    mean, std = stats["non_english_mean"], stats["non_english_std"]
    assert result.verdict == [
        "Accuracy: no intermediate task (vs no intermediate task) raised the non-English mean "
        f"accuracy by {100 * mean.difference:.1f} points (95% interval [{100 * mean.ci_low:+.1f}, "
        f"{100 * mean.ci_high:+.1f}], p={mean.p_value:.2g}): evidence of better transfer.",
        "Spread: it lowered the standard deviation across non-English languages by "
        f"{-100 * std.difference:.1f} points (95% interval [{100 * std.ci_low:+.1f}, "
        f"{100 * std.ci_high:+.1f}], p={std.p_value:.2g}): evidence of more even transfer.",
        "Languages: 2 of 4 non-English languages significantly higher (ar, sw), 0 lower after "
        "Holm's adjustment.",
    ]


def test_verdict_of_a_worse_candidate_warns_that_a_smaller_spread_may_be_a_collapse() -> None:
    """Every non-English language falls towards chance (1/3): the spread shrinks with the mean,
    which the verdict must not call evener transfer without saying so."""
    rng = np.random.default_rng(4)
    base = random_correct(rng, 600, RATES)
    cand = {
        lang: (rng.random(600) < (0.8 if lang == "en" else 0.34)).astype(float) for lang in LANGS
    }
    result = compare(
        make_side("xnli", {1: xnli_items(base)}, "a" * 32),
        make_side("xnli", {1: xnli_items(cand)}, "b" * 32, ("qqp",)),
    )
    accuracy, spread, languages = result.verdict
    assert accuracy.startswith("Accuracy: QQP (vs no intermediate task) lowered the non-English")
    assert accuracy.endswith("evidence of worse transfer.")
    assert "lowered the standard deviation" in spread and "evidence of more even transfer" in spread
    assert spread.endswith("can be scores crowding towards chance rather than evener transfer)")
    assert languages.startswith(
        "Languages: 0 of 4 non-English languages significantly higher, 4 lower"
    )


def test_same_seed_same_numbers_and_the_seed_matters() -> None:
    rng = np.random.default_rng(1)
    a = make_side("xnli", {1: xnli_items(random_correct(rng, 200, RATES))}, "a" * 32)
    b = make_side("xnli", {1: xnli_items(random_correct(rng, 200, RATES))}, "b" * 32)
    first = compare(a, b, CompareOptions(samples=500, seed=4))
    again = compare(a, b, CompareOptions(samples=500, seed=4))
    other = compare(a, b, CompareOptions(samples=500, seed=5))
    assert first.model_dump() == again.model_dump()
    assert first.statistics[0].ci_low != other.statistics[0].ci_low


def test_several_seeds_are_hierarchical_with_welch_beside() -> None:
    rng = np.random.default_rng(2)
    a = {s: xnli_items(random_correct(rng, 300, RATES)) for s in (1, 2, 3)}
    better = {k: min(v + 0.08, 1.0) for k, v in RATES.items()}
    b = {s: xnli_items(random_correct(rng, 300, better)) for s in (1, 2, 3)}
    result = compare(make_side("xnli", a, "a" * 32), make_side("xnli", b, "b" * 32))
    assert result.seeds_scheme == "seeds_then_items"
    assert {r.test for r in result.per_language} == {"paired_bootstrap"}
    mean = next(s for s in result.statistics if s.statistic == "non_english_mean")
    assert len(mean.baseline_per_seed) == 3 and mean.welch is not None
    per_seed = [np.mean([a[s][lang].value("accuracy") for lang in LANGS[1:]]) for s in (1, 2, 3)]
    assert mean.baseline_per_seed == pytest.approx(per_seed)
    assert mean.baseline == pytest.approx(np.mean(per_seed))
    assert mean.ci_low > 0 and mean.significant
    assert result.warnings == []
    one = compare(make_side("xnli", {1: a[1]}, "a" * 32), make_side("xnli", b, "b" * 32))
    assert any("baseline has 1 seed" in w for w in one.warnings)


def test_f1_items_use_a_permutation_test_within_languages() -> None:
    """QA-like F1 (fractional item scores): a paired permutation test, and TyDiQA's languages
    have their own questions, so each is resampled on its own."""
    rng = np.random.default_rng(4)
    langs = ["en", "ar", "sw"]

    def qa(shift: float) -> dict[str, ItemScores]:
        return {
            lang: unit_items(
                [f"{lang}-q{i}" for i in range(120)],
                {
                    "f1": np.clip(rng.random(120) + shift, 0, 1),
                    "exact_match": (rng.random(120) < 0.4 + shift).astype(float),
                },
            )
            for lang in langs
        }

    base, cand = qa(0), qa(0.3)
    result = compare(
        make_side("tydiqa", {1: base}, "a" * 32), make_side("tydiqa", {1: cand}, "b" * 32)
    )
    assert result.resampling == "within_language"
    assert {r.test for r in result.per_language} == {"paired_permutation"}
    assert all(r.significant for r in result.per_language)
    assert [r.baseline for r in result.per_language] == pytest.approx(
        [base[lang].value("f1") for lang in langs]
    )
    # XTREME's QA score: the mean over languages of the mean of F1 and exact match.
    score = next(s for s in result.statistics if s.statistic == "xtreme_score")
    want = np.mean(
        [(base[lang].value("f1") + base[lang].value("exact_match")) / 2 for lang in langs]
    )
    assert score.baseline == pytest.approx(want)


def test_cross_language_statistics_by_hand() -> None:
    langs = ["en", "de", "sw", "ar"]
    v = np.array([[0.9, 0.7, 0.5, 0.6]])
    out = cross_language(v, ["accuracy"], langs, ("accuracy",))
    assert out["mean"][0] == pytest.approx(0.675)
    assert out["non_english_mean"][0] == pytest.approx(0.6)
    assert out["transfer_gap"][0] == pytest.approx(0.3)
    assert out["non_english_variance"][0] == pytest.approx(0.01)  # (0.01 + 0.01 + 0) / 2
    assert out["non_english_std"][0] == pytest.approx(0.1)
    assert out["non_english_range"][0] == pytest.approx(0.2)
    assert out["worst_value"][0] == pytest.approx(0.5)


def test_incomparable_experiments_are_refused_naming_the_difference() -> None:
    rng = np.random.default_rng(0)
    a = make_side("xnli", {1: xnli_items(random_correct(rng, 50, RATES))}, "a" * 32)
    fewer = make_side("xnli", {1: xnli_items(random_correct(rng, 40, RATES))}, "b" * 32)
    with pytest.raises(IncomparableError, match="the examples evaluated in en: 50 examples"):
        compare(a, fewer)
    other_langs = make_side(
        "xnli", {1: xnli_items(random_correct(rng, 50, {"en": 0.5, "de": 0.5}))}, "c" * 32
    )
    with pytest.raises(IncomparableError, match="differ in languages") as e:
        compare(a, other_langs)
    assert e.value.field == "candidate"
    pawsx = make_side("pawsx", {1: xnli_items(random_correct(rng, 50, RATES))}, "d" * 32)
    with pytest.raises(IncomparableError, match="target task: xnli vs pawsx"):
        compare(a, pawsx)


def _rows_for(metric: str, rng: np.random.Generator) -> list[dict]:
    if metric == "accuracy":
        return [
            {"id": f"x{i}", "prediction": int(rng.integers(3)), "label": int(rng.integers(3))}
            for i in range(40)
        ]
    if metric in ("squad_f1", "mlqa_f1"):
        words = ["the cat", "a dog sat", "on the mat", "cat sat"]
        return [
            {"id": f"q{i}", "prediction": str(rng.choice(words)), "label": [str(rng.choice(words))]}
            for i in range(40)
        ]
    if metric.startswith("seqeval"):
        tags = ["O", "B-PER", "I-PER", "B-LOC"]
        rows = []
        for i in range(40):
            n = int(rng.integers(2, 6))
            rows.append(
                {
                    "id": f"s{i}",
                    "prediction": [str(t) for t in rng.choice(tags, n)],
                    "label": [str(t) for t in rng.choice(tags, n)],
                }
            )
        return rows
    assert metric == "bucc_f1"
    pairs = itertools.product(range(8), range(8))
    return [
        {"id": f"de-{s}\ten-{t}", "prediction": bool(rng.random() < 0.2), "label": s == t}
        for s, t in pairs
    ]


@pytest.mark.parametrize("task", ["xnli", "xquad", "mlqa", "panx", "udpos", "bucc2018"])
def test_items_add_up_to_the_scored_metric(task: str) -> None:
    """Every metric's items give back exactly the score the evaluate stage stores."""
    t = get_task(task)
    spec = get_metric(t.metric)
    rows = _rows_for(t.metric, np.random.default_rng(6))
    scores = {s.metric: s.value for s in spec.score(t, "de", rows, 0)}
    items = spec.item_scores(t, "de", rows)
    for metric in {spec.primary, *spec.task_score_of}:
        assert items.value(metric) == pytest.approx(scores[metric], abs=1e-12)


@pytest.mark.parametrize("task", ["xnli", "pawsx", "xquad", "mlqa"])
def test_parallel_tasks_share_item_keys_across_languages(task: str, data_dir: Path) -> None:
    """The joint scheme is only right where an item key names the same example in every
    language: check it on the real files, with the example cap the specs use."""
    from xstilts.data import load_split
    from xstilts.data.loading import DataSource
    from xstilts.tasks import Split

    t = get_task(task)
    assert t.parallel_items
    langs = [
        lang for lang in ("en", "de", "es", "zh") if lang in t.split_languages(Split.VALIDATION)
    ]
    # MLQA: each language's questions are translations of English ones (none is dropped by a cap
    # here); the other tasks: the same lines or questions in every language, under the cap.
    cap = None if task == "mlqa" else 200
    keys = {}
    for lang in langs:
        examples = load_split(t, Split.VALIDATION, lang, DataSource("local", data_dir), cap)
        keys[lang] = {t.item_key(e.guid, lang) for e in examples}
        assert len(keys[lang]) == len(examples)
    for lang in langs:
        if task == "mlqa":
            assert keys[lang] <= keys["en"]
        else:
            assert keys[lang] == keys["en"]
    assert not get_task("tatoeba").parallel_items


def test_agrees_with_scipy_on_one_language() -> None:
    """Within one language and one seed, our paired bootstrap interval and permutation p-value of
    a change in F1-like scores agree with scipy's ``bootstrap(paired=True)`` and
    ``permutation_test(permutation_type="samples")`` (different random streams: approximately)."""
    from scipy import stats

    rng = np.random.default_rng(12)
    n = 400
    a = rng.random(n)
    b = np.clip(a + rng.normal(0.03, 0.2, n), 0, 1)

    def side(v: np.ndarray, exp_id: str) -> SideItems:
        items = unit_items(
            [f"en-q{i}" for i in range(n)], {"f1": v, "exact_match": (v > 0.5) * 1.0}
        )
        return make_side("tydiqa", {1: {"en": items}}, exp_id)

    ours = compare(side(a, "a" * 32), side(b, "b" * 32), CompareOptions(samples=4000))
    row = ours.per_language[0]
    ref = stats.bootstrap(
        (a, b), lambda x, y: np.mean(y) - np.mean(x), paired=True, n_resamples=4000,
        method="percentile", random_state=1,
    )  # fmt: skip
    assert row.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.006)
    assert row.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.006)
    perm = stats.permutation_test(
        (a, b), lambda x, y: np.mean(y) - np.mean(x), permutation_type="samples",
        n_resamples=4000, random_state=1,
    )  # fmt: skip
    assert row.test == "paired_permutation"
    assert row.p_value == pytest.approx(perm.pvalue, abs=0.01)


def test_unequal_seed_counts_are_warned_and_the_spread_verdict_hedged() -> None:
    """One and the same model on both sides, 3 seeds against 10: averaging more seeds removes
    more training noise per language, so the candidate's spread looks smaller (found significant
    here). The comparison must say the seed count can explain it, not call it evener transfer."""
    langs = ["en", "de", "fr", "ar", "sw", "ru", "zh", "hi"]
    rng = np.random.default_rng(22)

    def side(seeds: range) -> dict[int, dict[str, ItemScores]]:
        out = {}
        for s in seeds:  # the seed's training noise: its own accuracy in each language
            rates = {lang: 0.7 + rng.normal(0, 0.03) for lang in langs}
            out[s] = xnli_items({k: (rng.random(400) < p).astype(float) for k, p in rates.items()})
        return out

    result = compare(
        make_side("xnli", side(range(1, 4)), "a" * 32),
        make_side("xnli", side(range(1, 11)), "b" * 32),
        CompareOptions(samples=500),
    )
    std = next(s for s in result.statistics if s.statistic == "non_english_std")
    assert std.significant and std.difference is not None and std.difference < 0
    [warning] = result.warnings
    assert warning.startswith("the baseline has 3 seeds and the candidate 10: ")
    spread = result.verdict[1]
    assert "evidence of more even transfer. But the sides have 3 and 10 seeds" in spread
    assert spread.endswith("compare the same number of seeds a side.")


def test_the_language_warning_counts_non_english_languages() -> None:
    """The spread is taken over the non-English languages: en, de and fr give it two values."""
    rng = np.random.default_rng(3)
    rates = {"en": 0.8, "de": 0.7, "fr": 0.6}
    a = {s: xnli_items(random_correct(rng, 100, rates)) for s in (1, 2, 3)}
    b = {s: xnli_items(random_correct(rng, 100, rates)) for s in (1, 2, 3)}
    result = compare(make_side("xnli", a, "a" * 32), make_side("xnli", b, "b" * 32))
    assert result.warnings == ["2 non-English language(s): the spread statistics need 3 or more"]
