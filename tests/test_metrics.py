"""The metric registry: entries, primary metrics, task scores, accuracy and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from xstilts.errors import UnknownNameError
from xstilts.metrics import METRICS, get_metric, primary_metric, task_score
from xstilts.metrics.bootstrap import bootstrap_mean_ci, bootstrap_ratio_ci
from xstilts.tasks import all_tasks, get_task


def _rows(preds: list[object], labels: list[object]) -> list[dict[str, object]]:
    return [
        {"id": str(i), "prediction": p, "label": y}
        for i, (p, y) in enumerate(zip(preds, labels, strict=True))
    ]


def test_unknown_metric_lists_the_valid_names() -> None:
    with pytest.raises(UnknownNameError) as e:
        get_metric("bleu")
    assert e.value.field == "metric" and e.value.value == "bleu"
    assert str(e.value).endswith(
        "valid values: accuracy, bucc_f1, mlqa_f1, seqeval_f1, seqeval_f1_token_accuracy, squad_f1"
    )


def test_every_task_names_a_registered_metric_and_takes_its_primary_from_it() -> None:
    expected = {"accuracy": "accuracy", "seqeval_f1": "f1", "squad_f1": "f1"}
    expected |= {"seqeval_f1_token_accuracy": "f1"}
    expected |= {"mlqa_f1": "f1", "bucc_f1": "f1"}
    for task in all_tasks():
        assert task.metric in METRICS
        assert task.primary_metric == primary_metric(task.metric) == expected[task.metric]
    assert get_task("tatoeba").primary_metric == "accuracy"
    assert get_task("mlqa").describe()["primary_metric"] == "f1"


def test_a_task_with_an_unknown_metric_is_refused_when_defined() -> None:
    from dataclasses import replace

    with pytest.raises(UnknownNameError, match="task xnli: metric: unknown value 'acc'"):
        replace(get_task("xnli"), metric="acc")


def test_task_score_qa_is_the_mean_of_f1_and_exact_match() -> None:
    averages = {"f1": 70.0, "exact_match": 55.0}
    assert task_score("squad_f1", averages) == 62.5
    assert task_score("mlqa_f1", averages) == 62.5
    with pytest.raises(ValueError, match="needs averages of exact_match"):
        task_score("squad_f1", {"f1": 70.0})


def test_task_score_of_other_metrics_is_the_primary() -> None:
    assert task_score("accuracy", {"accuracy": 0.8}) == 0.8
    assert task_score("seqeval_f1", {"f1": 0.4, "precision": 0.9, "recall": 0.1}) == 0.4
    assert task_score("seqeval_f1_token_accuracy", {"f1": 0.4, "token_accuracy": 0.9}) == 0.4
    # BUCC stores precision, recall and the threshold too; the task score is F1 alone.
    assert task_score("bucc_f1", {"f1": 0.5, "precision": 0.9, "recall": 0.1}) == 0.5


def test_accuracy_hand_computed_over_labelled_rows() -> None:
    task = get_task("xnli")
    rows = _rows(["a", "b", "c", "c", "a"], ["a", "b", "b", "c", None])  # the last is unlabelled
    (score,) = get_metric("accuracy").score(task, "de", rows, 0)
    assert (score.metric, score.value, score.n, score.ci_low) == ("accuracy", 0.75, 4, None)
    with pytest.raises(ValueError, match="labelled"):
        get_metric("accuracy").score(task, "de", _rows(["a"], [None]), 0)


def test_bucc_scores_from_pair_rows() -> None:
    # Mined: (1,1) (2,2) (3,9); gold: (1,1) (2,2) (4,4) (5,5). P = 2/3, R = 1/2, F1 = 4/7.
    mined = {("z1", "e1"), ("z2", "e2"), ("z3", "e9")}
    gold = {("z1", "e1"), ("z2", "e2"), ("z4", "e4"), ("z5", "e5")}
    rows = [
        {"id": f"{s}\t{t}", "prediction": (s, t) in mined, "label": (s, t) in gold}
        for s, t in sorted(mined | gold)
    ]
    rows[0]["threshold"] = 1.25
    scores = {s.metric: s.value for s in get_metric("bucc_f1").score(None, "zh", rows, 100)}  # type: ignore[arg-type]
    assert scores == pytest.approx(
        {"f1": 4 / 7, "precision": 2 / 3, "recall": 0.5, "threshold": 1.25}
    )


def test_bootstrap_interval_contains_value_and_narrows_with_n() -> None:
    rng = np.random.default_rng(3)
    correct = (rng.random(2000) < 0.7).astype(np.float64)
    low, high = bootstrap_mean_ci(correct, samples=500)
    assert low < correct.mean() < high
    # Binomial standard error at n=2000, p~0.7 is ~0.0102: a 95% interval is ~0.04 wide.
    assert 0.03 < high - low < 0.05
    small_low, small_high = bootstrap_mean_ci(correct[:200], samples=500)
    assert small_high - small_low > 2 * (high - low)
    # Same inputs, same interval: results are reproducible.
    assert (low, high) == bootstrap_mean_ci(correct, samples=500)
    assert bootstrap_mean_ci(correct, samples=0) == (None, None)


def test_ratio_interval_of_a_constant_ratio_is_that_ratio() -> None:
    # Every sentence has tp = den / 2: any resampling gives 0.5 exactly.
    low, high = bootstrap_ratio_ci(np.array([1, 2, 3]), np.array([2, 4, 6]), samples=50)
    assert low == high == 0.5
