"""Admission of stages to a shared GPU (xstilts.runtime.gpu_budget) between real processes, and the
stage lifecycle around it: not admitted -> back to the queue unclaimed; out of memory beside
others -> queued to run alone, attempt given back; out of memory alone -> failed, not retried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from xstilts.db.models import Stage
from xstilts.runtime.gpu_budget import GpuBudget, device_budget

from tests.conftest import tiny_spec

HOLDER = r"""
import sys
from pathlib import Path
from xstilts.runtime.gpu_budget import GpuBudget
budget = GpuBudget(Path(sys.argv[1]), 0, int(sys.argv[2]))
got = budget.admit(int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "alone", 60.0)
print("admitted", got.neighbours, flush=True)
sys.stdin.readline()  # runs "its stage" until the test says it ended
budget.release(None)
print("released", flush=True)
"""


class Holder:
    """Another worker process that asks for (and then holds) a stage's share of the budget."""

    def __init__(self, path: Path, budget: int, stage: int, need: int, alone: bool = False):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), str(budget), str(stage), str(need),
             "alone" if alone else "shared"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def admitted(self) -> int:
        """Blocks until admitted; the number of stages that were running beside it."""
        assert self.proc.stdout is not None
        word, neighbours = self.proc.stdout.readline().split()
        assert word == "admitted"
        return int(neighbours)

    def end_stage(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(10)


def _states(budget: GpuBudget) -> dict[int, str]:
    return {h.stage or 0: h.state for h in budget.holders().holders}


def _wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_stage_that_does_not_fit_waits_until_the_other_ends(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    budget = GpuBudget(path, 0, 100)
    first = Holder(path, 100, stage=1, need=60)
    assert first.admitted() == 0
    t0 = time.monotonic()
    assert budget.admit(2, 60, alone=False, wait_s=0.5) is None  # 60 + 60 > 100
    assert 0.5 <= time.monotonic() - t0 < 3
    assert _states(budget) == {1: "running"}  # gave up its place in line
    first.end_stage()
    got = budget.admit(2, 60, alone=False, wait_s=5)
    assert got is not None and got.neighbours == 0 and got.reserved == 60


def test_stages_that_fit_run_together(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    first = Holder(path, 100, stage=1, need=40)
    assert first.admitted() == 0
    second = Holder(path, 100, stage=2, need=50)
    assert second.admitted() == 1  # admitted at once, beside the first
    budget = GpuBudget(path, 0, 100)
    assert _states(budget) == {1: "running", 2: "running"}
    for h in (first, second):
        h.end_stage()
    assert budget.holders().holders == []


def test_a_killed_process_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    holder = Holder(path, 100, stage=1, need=90)
    holder.admitted()
    os.kill(holder.proc.pid, signal.SIGKILL)
    holder.proc.wait(10)
    got = GpuBudget(path, 0, 100).admit(2, 90, alone=False, wait_s=1)
    assert got is not None and got.neighbours == 0


def test_a_stage_larger_than_the_budget_runs_when_nothing_else_does(tmp_path: Path) -> None:
    got = GpuBudget(tmp_path / "gpu.json", 0, 100).admit(1, 150, alone=False, wait_s=0)
    assert got is not None and got.reserved == 150


def test_alone_waits_for_the_others_and_keeps_them_out(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    budget = GpuBudget(path, 0, 100)
    small = Holder(path, 100, stage=1, need=10)
    small.admitted()
    assert budget.admit(2, 10, alone=True, wait_s=0.5) is None  # 10 + 10 would fit: not alone
    small.end_stage()
    got = budget.admit(2, 10, alone=True, wait_s=1)
    assert got is not None and got.alone and got.reserved == 100  # the whole GPU
    late = Holder(path, 100, stage=3, need=10)
    _wait_for(lambda: _states(budget).get(3) == "waiting")
    time.sleep(0.5)
    assert _states(budget)[3] == "waiting"  # nothing beside a stage that runs alone
    budget.release(None)
    assert late.admitted() == 0
    late.end_stage()


def test_a_waiting_stage_is_not_overtaken(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    budget = GpuBudget(path, 0, 100)
    first = Holder(path, 100, stage=1, need=60)
    first.admitted()
    big = Holder(path, 100, stage=2, need=60)  # does not fit: waits
    _wait_for(lambda: _states(budget).get(2) == "waiting")
    assert budget.admit(3, 30, alone=False, wait_s=0.5) is None  # would fit, but 2 was first
    first.end_stage()
    assert big.admitted() == 0
    got = budget.admit(3, 30, alone=False, wait_s=5)
    assert got is not None and got.neighbours == 1  # 60 + 30 fit
    budget.release(None)
    big.end_stage()


# The stage lifecycle around admission, in this process (the Celery path: tests/test_service_gpu)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, stage_id: int, queue: str) -> None:
        self.sent.append(stage_id)


@pytest.fixture()
def shared_ws(settings, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A workspace whose CPU has a GPU budget of 0.2 GiB (one tiny target stage fits), its ledger
    under tmp_path, and one queued target stage."""
    import tempfile

    from xstilts.runtime.scheduler import mark_runnable
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import parse_spec

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    ws = Workspace(settings.model_copy(update={"gpu_memory_gib": 0.2}))
    spec = parse_spec(tiny_spec(tiny_model_dir, intermediate={"tasks": []}))
    exp_id = ws.submit(spec)
    ((stage_id, _),) = mark_runnable(ws.sessions, exp_id)
    yield ws, stage_id
    ws.close()


def _row(ws, stage_id: int) -> Stage:
    with ws.sessions() as s:
        return s.scalars(select(Stage).where(Stage.id == stage_id)).one()


def test_a_stage_not_admitted_goes_back_to_the_queue_unclaimed(
    shared_ws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xstilts.runtime import gpu_budget
    from xstilts.runtime.executors import execute_stage

    ws, stage_id = shared_ws
    budget = device_budget(ws.settings)
    assert budget is not None and budget.budget_bytes == int(0.2 * 1024**3)
    other = Holder(budget.path, budget.budget_bytes, stage=999, need=budget.budget_bytes)
    other.admitted()
    monkeypatch.setattr(gpu_budget, "ADMISSION_WAIT_S", 0.5)
    sent = Recorder()
    execute_stage(ws, sent, stage_id)
    row = _row(ws, stage_id)
    assert (row.status, row.attempts, sent.sent) == ("queued", 0, [stage_id])
    other.end_stage()


def _out_of_memory(monkeypatch: pytest.MonkeyPatch, when) -> list[bool]:
    """Target stages raise torch's out-of-memory error while ``when(alone)``; returns how each
    run saw its device (alone or not)."""
    import torch
    from xstilts.runtime import runners

    seen: list[bool] = []
    real = runners.run_spec

    def run_spec(ctx, stage, spec):
        seen.append(ctx.alone_on_device)
        if spec.kind == "target_train" and when(ctx.alone_on_device):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(ctx, stage, spec)

    monkeypatch.setattr(runners, "run_spec", run_spec)
    return seen


def test_out_of_memory_beside_others_requeues_to_run_alone_then_succeeds(
    shared_ws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xstilts.runtime.executors import execute_stage

    ws, stage_id = shared_ws
    seen = _out_of_memory(monkeypatch, lambda alone: not alone)
    sent = Recorder()
    execute_stage(ws, sent, stage_id)
    row = _row(ws, stage_id)
    assert (row.status, row.attempts, row.run_alone) == ("queued", 0, True)
    assert "ran out of GPU memory beside other stages" in (row.error or "")
    assert sent.sent == [stage_id]  # delivered again
    execute_stage(ws, sent, stage_id)  # the redelivery: admitted alone, and it fits
    row = _row(ws, stage_id)
    assert (row.status, row.attempts, row.error) == ("succeeded", 1, None)
    assert seen == [False, True]


def test_out_of_memory_alone_fails_at_once_with_a_clear_error(
    shared_ws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xstilts.runtime.executors import execute_stage

    ws, stage_id = shared_ws
    seen = _out_of_memory(monkeypatch, lambda alone: True)
    sent = Recorder()
    execute_stage(ws, sent, stage_id)  # beside others: queued to run alone
    execute_stage(ws, sent, stage_id)  # alone: out of memory again
    row = _row(ws, stage_id)
    assert (row.status, row.attempts, row.run_alone) == ("failed", 1, True)
    first = (row.error or "").splitlines()[0]
    assert first.startswith("ran out of GPU memory running alone on its GPU (OutOfMemoryError")
    assert "lower training.batch_size or max_seq_length" in first
    assert sent.sent == [stage_id] and seen == [False, True]  # not retried, not looping
    assert ws.status(_experiment_of(ws, stage_id))[0] == "failed"


def _experiment_of(ws, stage_id: int) -> str:
    from xstilts.runtime.scheduler import experiments_of

    (exp_id,) = experiments_of(ws.sessions, stage_id)
    return exp_id


def test_the_pool_has_stages_per_gpu_processes_where_there_is_a_gpu(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import glob

    from xstilts.runtime.celery_app import make_celery
    from xstilts.runtime.gpu_budget import pool_size

    assert settings.stages_per_gpu == 8  # on by default
    monkeypatch.setattr(glob, "glob", lambda pattern: [])  # a node without a GPU
    assert pool_size(settings) == 1
    budget = settings.model_copy(update={"gpu_memory_gib": 0.5, "stages_per_gpu": 3})
    assert pool_size(budget) == 3
    assert make_celery(budget).conf.worker_concurrency == 3
    monkeypatch.setattr(glob, "glob", lambda pattern: ["/dev/nvidia0"])
    assert pool_size(settings) == 8
