"""The typed seams between packages: stage results per kind, prediction rows per format family, and
the one atomic-write helper."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from xstilts.db.models import StageKind
from xstilts.experiments.stage_results import (
    EvaluateStageResult,
    PredictStageResult,
    TrainStageResult,
    stored_result,
)
from xstilts.experiments.statistics import cross_language_summary
from xstilts.files import replacing, write_atomic
from xstilts.formats import get_format
from xstilts.metrics.base import AnswerRow, LabelRow, MinedPairRow, NearestRow, TagRow
from xstilts.tasks import get_task
from xstilts.training.loop import TrainResult

from tests.test_submission import CASES, _export

FAMILY = {
    "xnli": LabelRow,
    "hellaswag": LabelRow,
    "panx": TagRow,
    "mlqa": AnswerRow,
    "tatoeba": NearestRow,
    "bucc2018": MinedPairRow,
}


def _conforms(row: dict[str, Any], family: Any) -> None:
    """``row`` has the family's required keys and no other than its declared ones."""
    hints = typing.get_type_hints(family, include_extras=True)
    required = {k for k, t in hints.items() if typing.get_origin(t) is not typing.NotRequired}
    assert required <= set(row) <= set(hints), (family.__name__, sorted(row))


@pytest.mark.parametrize("name", list(CASES))
def test_rows_written_and_read_back_are_their_family(name: str, tmp_path: Path) -> None:
    task = get_task(name)
    _, rows = CASES[name]
    fmt = get_format(task.format.value)
    back = fmt.read_submission(
        task, _export(rows, fmt, tmp_path, False), _export(rows, fmt, tmp_path, True)
    )
    for row in [*rows, *back]:
        _conforms(row, FAMILY[name])


def test_a_training_result_is_stored_field_for_field() -> None:
    # Every field of the loop's result is a field of the stored result: a field added to one but
    # not the other fails validation (extra fields are refused where a runner writes).
    loop_fields = {f.name for f in dataclasses.fields(TrainResult)}
    assert loop_fields <= set(TrainStageResult.model_fields)
    res = TrainResult(
        steps_run=4, total_steps=4, resumed_from_step=0, examples_per_s=2.5, final_loss=0.7,
        num_examples=32, task_loss_start_end={"mnli": (1.1, 0.7)}, loss_start=1.1, loss_end=0.7,
    )  # fmt: skip
    stored = TrainStageResult.model_validate(
        {**dataclasses.asdict(res), "sampling_probabilities": None, "mlm_head": None}
    )
    assert stored.task_loss_start_end == {"mnli": (1.1, 0.7)} and stored.steps_run == 4
    with pytest.raises(ValidationError, match="renamed_field"):
        TrainStageResult.model_validate({**dataclasses.asdict(res), "renamed_field": 1})


def test_stored_results_read_back_by_kind_and_tolerate_other_versions() -> None:
    assert set(StageKind) == {StageKind(k) for k in ("intermediate_train", "target_train",
                                                     "predict", "evaluate")}  # fmt: skip
    # A training result stored before MLM existed, with a field a later version dropped.
    old = {
        "steps_run": 3, "total_steps": 3, "resumed_from_step": 0, "examples_per_s": 1.0,
        "final_loss": 0.5, "num_examples": 24, "loss_start": 0.9, "loss_end": 0.5,
        "selection": {"metric": "accuracy", "selected_step": 2, "selected_score": 0.6,
                      "total_steps": 3, "history": [[2, 0.6], [3, 0.55]]},
        "a_field_from_elsewhere": True,
    }  # fmt: skip
    for kind in (StageKind.INTERMEDIATE, StageKind.TARGET):
        r = stored_result(kind.value, json.loads(json.dumps(old)))
        assert isinstance(r, TrainStageResult)
        assert r.mlm_head is None and r.selection is not None and r.selection.selected_step == 2
    summary = cross_language_summary({"en": 0.8, "de": 0.6, "fr": 0.5})
    ev = stored_result("evaluate", {"summary": summary, "one_class": ["de"], "steps_run": 0})
    assert isinstance(ev, EvaluateStageResult) and ev.summary.non_english_mean == pytest.approx(
        0.55
    )
    assert stored_result("predict", {"n": 7, "steps_run": 0}) == PredictStageResult(n=7)
    assert stored_result("predict", None) is None  # not finished yet


def test_atomic_writes_replace_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "result.json"
    write_atomic(path, "first")
    assert path.read_text() == "first"
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer crashed")
    assert path.read_text() == "second"  # the old file, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]  # no temporary left
