"""End to end on a tiny random model and a few hundred real examples: stages, reuse, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch  # noqa: F401
from xstilts.experiments.statistics import cross_language_summary
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import tiny_spec


def _steps(n_examples: int, batch: int) -> int:
    return math.ceil(n_examples / batch)


def test_end_to_end_then_rerun_trains_nothing(
    settings, tiny_model_dir: Path, optimizer_steps
) -> None:
    spec = parse_spec(tiny_spec(tiny_model_dir))
    ws = Workspace(settings)
    result = ws.run(spec)

    # 256 capped examples, batch 16, one epoch: 16 steps each for intermediate and target.
    assert optimizer_steps[0] == 2 * _steps(256, 16)
    roles = [s.role for s in result.stages]
    assert roles == ["intermediate", "target", "predict:en", "predict:de", "predict:ar", "evaluate"]
    assert all(s.status == "succeeded" and not s.reused for s in result.stages)

    metrics = result.metrics
    assert [(m.task, m.language, m.metric, m.n, m.seed) for m in metrics] == [
        ("xnli", lang, "accuracy", 60, 1) for lang in ("en", "de", "ar")
    ]
    for m in metrics:
        assert 0 <= m.value <= 1 and m.ci_low <= m.value <= m.ci_high
        assert round(m.value * 60) == pytest.approx(m.value * 60)  # a count out of 60
    expected = cross_language_summary({m.language: m.value for m in metrics})
    for key, value in expected.items():
        assert getattr(result.summary, key) == value

    optimizer_steps[0] = 0
    again = Workspace(settings).run(spec)
    assert optimizer_steps[0] == 0
    assert all(s.reused for s in again.stages)
    assert again.metrics == metrics
    assert again.experiment.id != result.experiment.id


def test_shared_intermediate_is_trained_once(
    settings, tiny_model_dir: Path, data_dir: Path, tmp_path: Path, optimizer_steps
) -> None:
    # A data folder with the real files plus an English PAWS-X training file (here: its dev set),
    # so that two experiments can share the QQP intermediate stage with different targets.
    folder = tmp_path / "data"
    folder.mkdir()
    for sub in ("qqp", "mnli", "xnli"):
        (folder / sub).symlink_to(data_dir / sub)
    (folder / "pawsx").mkdir()
    for f in ("dev-en.tsv", "dev-de.tsv", "dev-es.tsv"):
        (folder / "pawsx" / f).symlink_to(data_dir / "pawsx" / f)
    (folder / "pawsx" / "train-en.tsv").symlink_to(data_dir / "pawsx" / "dev-en.tsv")

    ws = Workspace(settings)
    xnli = tiny_spec(tiny_model_dir, data={"source": "local", "path": str(folder)})
    ws.run(parse_spec(xnli))
    assert optimizer_steps[0] == 2 * _steps(256, 16)

    optimizer_steps[0] = 0
    paws = dict(xnli, target={"task": "pawsx", "training": xnli["target"]["training"]})
    paws["evaluation"] = dict(xnli["evaluation"], languages=["en", "de", "es"])
    result = ws.run(parse_spec(paws))
    assert optimizer_steps[0] == _steps(256, 16)  # the target stage only
    stages = {s.role: s for s in result.stages}
    assert stages["intermediate"].reused and not stages["target"].reused
    assert [m.language for m in result.metrics] == ["en", "de", "es"]


def test_a_stage_that_fails_on_its_data_fails_at_once(
    settings, tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """A label outside the task's would fail every attempt the same way: one attempt, failed,
    saying it was not retried (a cause that may pass is retried: the next test)."""
    from xstilts.errors import StageFailedError

    folder = tmp_path / "broken"
    (folder / "qqp").mkdir(parents=True)
    (folder / "mnli").symlink_to(data_dir / "mnli")
    (folder / "xnli").mkdir()
    (folder / "qqp" / "train.json").write_text(
        '{"0": {"text_a": "a", "text_b": "b", "label": "maybe"}}'
    )
    (folder / "xnli" / "dev-en.tsv").write_text("a\tb\tneutral\n")
    spec = parse_spec(
        tiny_spec(
            tiny_model_dir,
            data={"source": "local", "path": str(folder)},
            evaluation={"languages": ["en"]},
        )
    )
    ws = Workspace(settings)
    with pytest.raises(StageFailedError, match="label 'maybe' is not one of 0, 1") as failed:
        ws.run(spec)
    assert "not retried" in str(failed.value)
    from sqlalchemy import select
    from xstilts.db.models import Experiment, Stage

    with ws.sessions() as s:
        stage = s.scalars(select(Stage).where(Stage.kind == "intermediate_train")).one()
        assert (stage.status, stage.attempts) == ("failed", 1)
        assert "maybe" in (stage.error or "") and "not retried" in (stage.error or "")
        assert s.scalars(select(Experiment)).one().status == "failed"
    # Nothing half-written: no stage output folder exists for the failed stage.
    assert not list((settings.artifacts_dir / "stages").glob("intermediate_train-*"))
    # A new request for the same spec tries the failed stage again (its data may be mended).
    with pytest.raises(StageFailedError):
        ws.run(spec)
    with ws.sessions() as s:
        stage = s.scalars(select(Stage).where(Stage.kind == "intermediate_train")).one()
        assert (stage.status, stage.attempts) == ("failed", 1)


def test_a_failure_that_may_pass_is_retried_and_never_seen_failed_in_between(
    settings, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cause that may pass (here the model's files unreadable for a moment: an I/O error on
    a network share) is retried, bounded. The failed attempt and the decision to retry are one
    transaction: between them, a reader deriving the experiment's status (another stage ending,
    a poll) used to see it failed."""
    import errno

    from sqlalchemy import select
    from xstilts.db.models import Stage
    from xstilts.errors import StageFailedError
    from xstilts.runtime.lifecycle import StageContext, run_stage
    from xstilts.runtime.runners import train as train_runner
    from xstilts.runtime.scheduler import MAX_ATTEMPTS, mark_runnable, refresh_experiment

    loads = []

    def unreadable(*args: object, **kw: object) -> object:
        loads.append(args)
        raise OSError(errno.EIO, "Input/output error", str(tiny_model_dir))

    monkeypatch.setattr(train_runner, "load_encoder", unreadable)
    spec = parse_spec(
        tiny_spec(tiny_model_dir, intermediate={"tasks": []}, evaluation={"languages": ["en"]})
    )
    ws = Workspace(settings)
    exp_id = ws.submit(spec)
    [(stage_id, _)] = mark_runnable(ws.sessions, exp_id)
    ctx = StageContext(ws.sessions, ws.store, lease_seconds=ws.lease_seconds)
    seen = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(StageFailedError, match="Input/output error") as failed:
            run_stage(ctx, stage_id)
        assert "not retried" not in str(failed.value)
        with ws.sessions() as s:
            stage = s.get(Stage, stage_id)
            assert stage is not None and stage.attempts == attempt
            assert "Input/output error" in (stage.error or "")  # the attempt's error, kept
            seen.append((failed.value.retry, stage.status, refresh_experiment(ws.sessions, exp_id)))
    assert seen == [(True, "queued", "queued")] * (MAX_ATTEMPTS - 1) + [(False, "failed", "failed")]
    assert len(loads) == MAX_ATTEMPTS
    with ws.sessions() as s:
        assert s.scalars(select(Stage).where(Stage.kind == "predict")).one().status == "pending"
    # The share is back and a new request runs it: every attempt again, and it succeeds.
    monkeypatch.undo()
    ws.submit(spec)
    mark_runnable(ws.sessions, exp_id)
    assert run_stage(ctx, stage_id)
    with ws.sessions() as s:
        stage = s.get(Stage, stage_id)
        assert stage is not None and (stage.status, stage.attempts) == ("succeeded", 1)
    ws.close()


def test_multi_task_intermediate_feeds_the_target(
    settings, tiny_model_dir: Path, optimizer_steps
) -> None:
    import json

    import torch as _torch

    spec = parse_spec(
        tiny_spec(
            tiny_model_dir,
            intermediate={
                "tasks": ["snli", "qqp"],
                "training": tiny_spec(tiny_model_dir)["intermediate"]["training"],
                "sampling": {"strategy": "temperature", "temperature": 2.0},
            },
            evaluation={"languages": ["en"], "max_examples_per_language": 20},
        )
    )
    result = Workspace(settings).run(spec)
    # (256 + 256) / 16 = 32 multi-task steps, then 16 target steps.
    assert optimizer_steps[0] == 32 + 16
    (out,) = (settings.artifacts_dir / "stages").glob("intermediate_train-*")
    train_result = json.loads((out / "train_result.json").read_text())
    assert train_result["sampling_probabilities"] == {"qqp": 0.5, "snli": 0.5}  # equal sizes
    assert sum(train_result["task_batches"].values()) == 32
    assert set(train_result["task_losses"]) == {"qqp", "snli"}
    heads = _torch.load(out / "heads.pt", weights_only=True)
    assert {k for k in heads if not k.startswith("__")} == {"qqp", "snli"}
    assert [m.language for m in result.metrics] == ["en"]


def test_target_keeps_the_checkpoint_best_on_english_dev(
    settings, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xstilts.cli.tables import results_table
    from xstilts.runtime.runners import train as train_runner

    read: list[tuple[str, str, str]] = []
    load_split = train_runner.load_split

    def recording_load_split(task, split, lang, *args, **kwargs):  # type: ignore[no-untyped-def]
        read.append((task.name, split.value, lang))
        return load_split(task, split, lang, *args, **kwargs)

    monkeypatch.setattr(train_runner, "load_split", recording_load_split)
    spec = tiny_spec(tiny_model_dir, intermediate={"tasks": []})
    spec["target"]["training"] |= {
        "select": "best_english_dev",
        "eval_every_steps": 5,
        "dev_max_examples": 40,
    }
    result = Workspace(settings).run(parse_spec(spec))

    # Training reads English MNLI train and English MNLI dev, nothing else.
    assert read == [("mnli", "train", "en"), ("mnli", "validation", "en")]
    (target,) = [s for s in result.stages if s.role == "target"]
    sel = target.selection
    assert sel is not None and sel.metric == "accuracy" and sel.total_steps == 16
    assert [step for step, _ in sel.history] == [5, 10, 15, 16]
    for _, score in sel.history:
        assert round(score * 40) == pytest.approx(score * 40)  # a count out of 40 dev pairs
    best = max(score for _, score in sel.history)
    assert sel.selected_score == best
    assert sel.selected_step == next(step for step, score in sel.history if score == best)
    assert f"step {sel.selected_step} of 16, English dev accuracy" in results_table(result)
