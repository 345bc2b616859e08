"""Cross-language and cross-seed statistics against hand-computed cases."""

from __future__ import annotations

import math

import pytest
from xstilts.experiments.statistics import across_seeds, cross_language_summary


def test_cross_language_summary_hand_computed() -> None:
    # non-English values 0.6, 0.7, 0.8: mean 0.7, deviations -0.1, 0, 0.1, squares sum 0.02
    s = cross_language_summary({"en": 0.9, "de": 0.8, "fr": 0.7, "sw": 0.6})
    assert s["num_languages"] == 4
    assert s["mean"] == pytest.approx(0.75)
    assert s["english"] == 0.9
    assert s["non_english_mean"] == pytest.approx(0.7)
    assert s["transfer_gap"] == pytest.approx(0.2)
    assert s["non_english_variance_population"] == pytest.approx(0.02 / 3)
    assert s["non_english_variance_sample"] == pytest.approx(0.01)
    assert s["non_english_std"] == pytest.approx(0.1)
    assert s["non_english_range"] == pytest.approx(0.2)
    assert s["non_english_cv"] == pytest.approx(0.1 / 0.7)
    assert (s["worst_language"], s["worst_value"]) == ("sw", 0.6)


def test_summary_with_too_few_languages_says_none() -> None:
    s = cross_language_summary({"en": 0.9, "de": 0.5})
    assert s["non_english_variance_population"] == 0.0
    assert s["non_english_variance_sample"] is None and s["non_english_std"] is None
    assert s["transfer_gap"] == pytest.approx(0.4)
    only_en = cross_language_summary({"en": 0.8})
    assert only_en["non_english_mean"] is None and only_en["worst_language"] is None
    no_en = cross_language_summary({"de": 0.5, "fr": 0.7})
    assert no_en["english"] is None and no_en["transfer_gap"] is None
    assert no_en["mean"] == pytest.approx(0.6)


def test_across_seeds_mean_and_sample_std() -> None:
    a = cross_language_summary({"en": 0.9, "de": 0.8, "fr": 0.6})
    b = cross_language_summary({"en": 0.7, "de": 0.6, "fr": 0.6})
    out = across_seeds([a, b])
    assert out["english"]["mean"] == pytest.approx(0.8)
    assert out["english"]["std"] == pytest.approx(math.sqrt(0.02))  # (0.9-0.8)^2+(0.7-0.8)^2, n-1=1
    assert out["non_english_mean"]["mean"] == pytest.approx((0.7 + 0.6) / 2)
    assert "worst_language" not in out


def test_degenerate_results_are_named_with_their_cause() -> None:
    from xstilts.experiments.results import degenerate_warnings
    from xstilts.runtime.runners.evaluate import single_prediction

    assert single_prediction([{"prediction": "neutral"}, {"prediction": "neutral"}])
    assert not single_prediction([{"prediction": "neutral"}, {"prediction": "entailment"}])
    assert not single_prediction([{"prediction": "neutral"}])  # one example says nothing
    # A tagger that tags every token O; one that tags a single token otherwise is not.
    assert single_prediction([{"prediction": ["O", "O"]}, {"prediction": ["O"]}])
    assert not single_prediction([{"prediction": ["O", "O"]}, {"prediction": ["B-PER"]}])

    from xstilts.experiments.stage_results import (
        CrossLanguageStats,
        EvaluateStageResult,
        TrainStageResult,
    )

    def trained(start: float, end: float) -> TrainStageResult:
        return TrainStageResult(
            steps_run=10,
            total_steps=10,
            resumed_from_step=0,
            examples_per_s=1.0,
            final_loss=end,
            num_examples=80,
            loss_start=start,
            loss_end=end,
        )

    stats = CrossLanguageStats.model_validate(cross_language_summary({"en": 0.5, "de": 0.4}))
    warnings = degenerate_warnings(
        [
            (1, "target", trained(1.1, 1.12)),
            (1, "intermediate", trained(1.1, 0.4)),  # fell: fine
            (1, "evaluate", EvaluateStageResult(summary=stats, one_class=["de", "sw"])),
            (2, "evaluate", EvaluateStageResult(summary=stats)),
            (2, "predict:de", None),
        ]
    )
    assert warnings[0].startswith("seed 1 target training: the loss did not fall (1.100")
    assert "learning rate" in warnings[0]
    assert warnings[1].startswith("seed 1: every prediction in de, sw is the same class")
    assert len(warnings) == 2
