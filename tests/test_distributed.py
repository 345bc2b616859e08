"""Data-parallel training within a stage: two gloo processes on the CPU against one process with
the same global batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModel
from xstilts.data import DataSource, load_split
from xstilts.formats.pair import featurize_pairs
from xstilts.modeling.classifier import MultiHeadClassifier, load_tokenizer
from xstilts.spec import TrainingConfig, parse_spec
from xstilts.tasks import Split, get_task
from xstilts.training.distributed import Replica, run_replicated
from xstilts.training.loop import train_multi

from tests.conftest import tiny_spec


def _fit(replica: Replica | None, job: dict[str, Any], progress: Any, should_stop: Any) -> str:
    """One replica (or the single process) of the same seeded run; rank 0 saves the weights."""
    tok = load_tokenizer(str(job["model"]))
    examples = load_split(get_task("snli"), Split.TRAIN, "en", DataSource("local", job["data"]), 70)
    features = featurize_pairs(tok, examples, 64)
    torch.manual_seed(0)
    # No dropout: with it each replica would draw its own masks and the runs differ by design.
    encoder = AutoModel.from_pretrained(
        job["model"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model = MultiHeadClassifier(encoder)
    model.add_head("snli", 3)
    cfg = TrainingConfig(
        learning_rate=1e-3,
        batch_size=job["batch"],
        gradient_accumulation_steps=job["accum"],
        max_steps=4,
        checkpoint_every_steps=2,
    )
    if job.get("crash_after"):  # every replica stops after that many steps (as on a crash)
        calls = iter(range(1, 100))
        should_stop = lambda: next(calls) >= job["crash_after"]  # noqa: E731
    res = train_multi(
        model, {"snli": features}, cfg, 3, job["work"], tok.pad_token_id,
        progress=progress, should_stop=should_stop, replica=replica,
    )  # fmt: skip
    out = str(job["work"] / "final.pt")
    if replica is None or replica.main:
        state = {"state": model.state_dict(), "loss": res.final_loss}
        torch.save({**state, "resumed_from": res.resumed_from_step}, out)
    return out


@pytest.mark.parametrize(("batch", "accum"), [(8, 1), (7, 2)])
def test_two_gloo_replicas_give_the_single_process_weights(
    batch: int, accum: int, tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The same global batches (7 rows split 4 + 3: the loss weights make that exact too),
    gradient accumulation, a checkpoint written by rank 0 at step 2: the weights after 4 steps
    equal one process's up to float summation order."""
    job = {"model": tiny_model_dir, "data": data_dir, "batch": batch, "accum": accum}
    single = torch.load(_fit(None, {**job, "work": tmp_path / "one"}, None, None))
    steps: list[int] = []
    path = run_replicated(
        2, _fit, {**job, "work": tmp_path / "two"}, lambda s, t, r, loss: steps.append(s)
    )
    double = torch.load(path)
    assert steps == [1, 2, 3, 4]  # rank 0's progress, forwarded
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-5)  # the global batch's loss
    worst = max((double["state"][k] - v).abs().max().item() for k, v in single["state"].items())
    assert worst < 1e-5, worst


def test_two_replicas_resume_from_rank_0s_checkpoint_exactly(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """Replicas stopped at step 3 (checkpoint of step 2 on disk) and started again: they resume at
    step 2 and end with the weights of one uninterrupted process."""
    from xstilts.errors import CancelledError

    job = {"model": tiny_model_dir, "data": data_dir, "batch": 8, "accum": 1}
    single = torch.load(_fit(None, {**job, "work": tmp_path / "one"}, None, None))
    work = tmp_path / "two"
    with pytest.raises(CancelledError):
        run_replicated(2, _fit, {**job, "work": work, "crash_after": 3})
    assert torch.load(work / "checkpoint.pt", weights_only=False)["step"] == 2
    resumed = torch.load(run_replicated(2, _fit, {**job, "work": work}))
    assert resumed["resumed_from"] == 2
    assert resumed["loss"] == pytest.approx(single["loss"], rel=1e-5)
    worst = max((resumed["state"][k] - v).abs().max().item() for k, v in single["state"].items())
    assert worst < 1e-5, worst


def _fail(replica: Replica, job: Any, progress: Any, should_stop: Any) -> None:
    if replica.rank == 1:
        raise RuntimeError("replica 1 broke")
    replica.barrier()  # would wait for ever if the failure did not stop it


def test_a_failing_replica_fails_the_run_with_its_error() -> None:
    from xstilts.errors import StageFailedError

    with pytest.raises(StageFailedError, match="replica 1 broke"):
        run_replicated(2, _fail, None)


def test_a_stage_trains_on_two_replicas(settings, tiny_model_dir: Path) -> None:
    """XSTILTS_PROCESSES_PER_STAGE=2: the worker's training stages run data parallel, the
    experiment succeeds and its model predicts every language."""
    from xstilts.runtime.workspace import Workspace

    ws = Workspace(settings.model_copy(update={"processes_per_stage": 2}))
    spec = tiny_spec(
        tiny_model_dir,
        intermediate={"tasks": []},
        evaluation={"languages": ["en", "de"], "max_examples_per_language": 20},
    )
    spec["target"]["training"]["max_train_examples"] = 40
    result = ws.run(parse_spec(spec))
    (train,) = [s for s in result.stages if s.kind == "target_train"]
    assert train.status == "succeeded" and train.steps_run > 0
    assert [m.language for m in result.metrics] == ["en", "de"]
