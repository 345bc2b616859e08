"""What a failed experiment still runs, what cancelling it does, and a cancel that races the last
stage's end. The stages' outcomes are written as a runner records them (no training here): the
scheduler's decisions are what is under test, against a real workspace database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update
from xstilts.db.models import Experiment, ExperimentStage, Stage
from xstilts.errors import ConflictError
from xstilts.runtime.scheduler import (
    advance,
    cancel,
    mark_runnable,
    refresh_experiment,
    stage_unwanted,
)
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import tiny_spec


class Sent:
    """An executor that records what it is asked to deliver."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def send(self, stage_id: int, queue: str) -> None:
        self.ids.append(stage_id)


def _submit(ws: Workspace, model_dir: Path, seeds: list[int]) -> tuple[str, dict[str, list[int]]]:
    """An experiment of a target training per seed, each with its prediction; its stage ids by
    kind, in seed order. The trainings are queued."""
    spec = tiny_spec(
        model_dir, intermediate={"tasks": []}, evaluation={"languages": ["en"]}, seeds=seeds
    )
    exp_id = ws.submit(parse_spec(spec))
    mark_runnable(ws.sessions, exp_id)
    with ws.sessions() as s:
        rows = s.scalars(
            select(Stage)
            .join(ExperimentStage, ExperimentStage.stage_id == Stage.id)
            .where(ExperimentStage.experiment_id == exp_id)
            .order_by(Stage.id)
        ).all()
        by_kind: dict[str, list[int]] = {}
        for row in rows:
            by_kind.setdefault(row.kind, []).append(row.id)
    return exp_id, by_kind


def _set(ws: Workspace, stage_id: int, status: str) -> None:
    error = "RuntimeError: out of luck\n  (traceback)" if status == "failed" else None
    with ws.sessions.begin() as s:
        s.execute(update(Stage).where(Stage.id == stage_id).values(status=status, error=error))


def _status(ws: Workspace, stage_id: int) -> str:
    with ws.sessions() as s:
        row = s.get(Stage, stage_id)
        assert row is not None
        return row.status


def test_a_failed_experiment_starts_nothing_new_and_can_be_cancelled_while_it_runs(
    settings, tiny_model_dir: Path
) -> None:
    ws = Workspace(settings)
    exp_id, stages = _submit(ws, tiny_model_dir, [1, 2, 3])
    one, two, three = stages["target_train"]
    assert [_status(ws, sid) for sid in (one, two, three)] == ["queued"] * 3
    _set(ws, one, "failed")  # for good: its attempts are spent
    _set(ws, two, "running")
    _set(ws, three, "running")
    assert refresh_experiment(ws.sessions, exp_id) == "failed"

    # Seed 2's training ends well: its prediction would be runnable, but the experiment failed.
    _set(ws, two, "succeeded")
    sent = Sent()
    advance(ws.sessions, sent, two)
    assert sent.ids == []
    assert [_status(ws, sid) for sid in stages["predict"]] == ["pending"] * 3
    assert not stage_unwanted(ws.sessions, three)  # it runs on, for a resubmission to reuse

    # Its stage still running can be stopped: the cancel is taken, the status stays failed.
    cancel(ws.sessions, exp_id)
    assert stage_unwanted(ws.sessions, three)
    assert refresh_experiment(ws.sessions, exp_id) == "failed"
    with ws.sessions() as s:
        exp = s.get(Experiment, exp_id)
        assert exp is not None and exp.cancel_requested
        assert exp.error == "stage target_train failed: RuntimeError: out of luck"

    # Once nothing of it runs, there is nothing to cancel.
    _set(ws, three, "cancelled")
    with pytest.raises(ConflictError, match="failed and nothing of it is still running"):
        cancel(ws.sessions, exp_id)
    ws.close()


def test_a_live_sibling_still_gets_the_stages_a_failed_experiment_shares(
    settings, tiny_model_dir: Path
) -> None:
    ws = Workspace(settings)
    failed_id, stages = _submit(ws, tiny_model_dir, [1, 2])
    live_id, shared = _submit(ws, tiny_model_dir, [2])  # seed 2's stages, by key
    assert shared["target_train"] == [stages["target_train"][1]]
    one, two = stages["target_train"]
    _set(ws, one, "failed")
    assert refresh_experiment(ws.sessions, failed_id) == "failed"
    _set(ws, two, "succeeded")
    sent = Sent()
    advance(ws.sessions, sent, two)
    assert sent.ids == shared["predict"]  # queued for the live sibling
    assert refresh_experiment(ws.sessions, live_id) == "running"
    ws.close()


def test_a_cancel_that_races_the_last_stage_leaves_the_experiment_succeeded(
    settings, tiny_model_dir: Path
) -> None:
    """Every stage has succeeded, but the stage's runner has not yet derived the experiment's
    status (stored: running) when the cancel comes: it used to turn the experiment cancelled for
    good, results and all."""
    ws = Workspace(settings)
    exp_id, stages = _submit(ws, tiny_model_dir, [1])
    assert refresh_experiment(ws.sessions, exp_id) == "queued"
    for sid in (sid for ids in stages.values() for sid in ids):
        _set(ws, sid, "succeeded")
    with pytest.raises(ConflictError, match="has succeeded"):
        cancel(ws.sessions, exp_id)
    assert refresh_experiment(ws.sessions, exp_id) == "succeeded"
    # Cancelled first, while a live sibling shares every stage: once the sibling's run has
    # finished them, the cancelled experiment's results are all there too.
    cancelled_id, other = _submit(ws, tiny_model_dir, [2])
    sibling_id, same = _submit(ws, tiny_model_dir, [2])
    assert same == other
    cancel(ws.sessions, cancelled_id)
    assert refresh_experiment(ws.sessions, cancelled_id) == "cancelled"
    assert _status(ws, other["target_train"][0]) == "queued"  # the sibling still wants it
    for sid in (sid for ids in other.values() for sid in ids):
        _set(ws, sid, "succeeded")
    assert refresh_experiment(ws.sessions, sibling_id) == "succeeded"
    assert refresh_experiment(ws.sessions, cancelled_id) == "succeeded"
    ws.close()


def test_a_cancel_stops_a_prediction_between_batches_and_publishes_nothing(
    settings, tiny_model_dir: Path
) -> None:
    """Prediction and evaluation poll for a cancel as training does (they used to run to the
    end): a prediction stops at its next batch, an evaluation before its next language; each
    ends cancelled and writes no output folder."""
    from dataclasses import replace

    from xstilts.errors import CancelledError
    from xstilts.runtime.lifecycle import StageContext, run_stage

    ws = Workspace(settings)
    spec = tiny_spec(
        tiny_model_dir,
        intermediate={"tasks": []},
        evaluation={"languages": ["en"], "max_examples_per_language": 40, "batch_size": 4},
    )
    exp_id = ws.submit(parse_spec(spec))
    [(train_id, _)] = mark_runnable(ws.sessions, exp_id)
    ctx = StageContext(ws.sessions, ws.store, lease_seconds=ws.lease_seconds)
    assert run_stage(ctx, train_id)
    sent = Sent()
    advance(ws.sessions, sent, train_id)
    [predict_id] = sent.ids
    asked: list[int] = []

    def third_time() -> bool:  # the cancel lands while the third batch runs
        asked.append(1)
        return len(asked) == 3

    with pytest.raises(CancelledError, match=r"stage predict \w+ cancelled at 12/40"):
        run_stage(replace(ctx, should_stop=third_time), predict_id)
    assert len(asked) == 3
    with ws.sessions() as s:
        row = s.get(Stage, predict_id)
        assert row is not None
        assert (row.status, row.output_uri) == ("cancelled", None)
        assert row.progress_step is not None and row.progress_step < 40
        assert not ws.store.stage_dir(row.kind, row.key).exists()

    # Run again, it predicts every row; the evaluation asked to stop scores no language.
    _set(ws, predict_id, "queued")
    assert run_stage(ctx, predict_id)
    sent.ids.clear()
    advance(ws.sessions, sent, predict_id)
    [evaluate_id] = sent.ids
    with pytest.raises(CancelledError, match=r"stage evaluate \w+ cancelled after 0 of 1 lang"):
        run_stage(replace(ctx, should_stop=lambda: True), evaluate_id)
    assert _status(ws, evaluate_id) == "cancelled"
    ws.close()


def test_a_run_says_which_stage_an_earlier_run_still_holds(
    settings, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A re-run after a kill used to sit silent until the dead run's lease lapsed."""
    from datetime import timedelta

    from xstilts.db.models import utcnow

    ws = Workspace(settings)
    exp_id, stages = _submit(ws, tiny_model_dir, [1])
    [held] = stages["target_train"]
    with ws.sessions.begin() as s:
        s.execute(
            update(Stage)
            .where(Stage.id == held)
            .values(status="running", lease_until=utcnow() + timedelta(seconds=95))
        )
    with caplog.at_level("WARNING", logger="xstilts.runtime.workspace"):
        ws._say_held(exp_id)
    [line] = caplog.messages
    assert line.startswith("stage target_train ") and "if its lease lapses, in 9" in line
    ws.close()
