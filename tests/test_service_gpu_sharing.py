"""Stages per GPU with the real parts: a Celery GPU worker whose pool runs two stages at once, one
process each, admitted by memory (xstilts.runtime.gpu_budget) against a budget given to the CPU
with XSTILTS_GPU_MEMORY_GIB. One tiny target stage needs 0.124 GiB (tests/test_memory.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from sqlalchemy import select
from xstilts.db.migrate import upgrade
from xstilts.db.models import Stage
from xstilts.db.session import make_engine, session_factory
from xstilts.experiments.results import experiment_results
from xstilts.experiments.submit import plan, submit_experiment
from xstilts.runtime.celery_app import CeleryExecutor, make_celery
from xstilts.runtime.executors import execute_stage
from xstilts.runtime.scheduler import mark_runnable, refresh_experiment, start
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import tiny_spec
from tests.service_fixtures import Workers, broker_url, pg_url  # noqa: F401 (fixtures)

TWO_FIT_GIB, ONE_FITS_GIB = "0.3", "0.2"


@pytest.fixture()
def gpu_service(settings, pg_url, broker_url, tiny_model_dir: Path, tmp_path: Path):  # noqa: F811
    svc_settings = settings.model_copy(
        update={"database_url": pg_url, "broker_url": broker_url, "artifacts_dir": tmp_path / "svc"}
    )
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "XSTILTS_DATABASE_URL": pg_url,
        "XSTILTS_BROKER_URL": broker_url,
        "XSTILTS_ARTIFACTS_DIR": str(svc_settings.artifacts_dir),
        "XSTILTS_DATA_DIR": str(settings.data_dir),
        "XSTILTS_MODEL_ROOTS": str(tiny_model_dir.parent),
        "XSTILTS_LEASE_SECONDS": "4",
        "XSTILTS_STAGES_PER_GPU": "2",  # the pool's size: no --concurrency, as deployed
        "TMPDIR": str(tmp_path / "tmp"),  # the GPU ledger of this test alone
        "TOKENIZERS_PARALLELISM": "false",
    }
    upgrade(pg_url)
    engine = make_engine(pg_url)
    workers = Workers(env, tmp_path)
    yield SimpleNamespace(
        settings=svc_settings,
        sessions=session_factory(engine),
        executor=CeleryExecutor(make_celery(svc_settings)),
        workers=workers,
        env=env,
    )
    workers.stop_all()
    engine.dispose()


def _start_gpu_worker(svc, gib: str, module: str = "services.worker.main", **env: str) -> None:
    svc.workers.env = {**svc.env, "XSTILTS_GPU_MEMORY_GIB": gib, **env}
    svc.workers.start("gpu", "gpu", module=module, concurrency=None)


def _two_seeds(model: Path, examples: int = 64) -> dict:
    """A baseline with two seeds: two target stages, runnable at the same moment."""
    data = tiny_spec(
        model,
        intermediate={"tasks": []},
        evaluation={"languages": ["en"], "max_examples_per_language": 20},
        seeds=[1, 2],
    )
    data["target"]["training"]["max_train_examples"] = examples
    return data


def _run(svc, data: dict, want: str = "succeeded", timeout: float = 180) -> str:
    spec = parse_spec(data)
    exp_id = submit_experiment(svc.sessions, spec, plan(spec, svc.settings))
    start(svc.sessions, svc.executor, exp_id)
    deadline = time.monotonic() + timeout
    while (status := refresh_experiment(svc.sessions, exp_id)) != want:
        if status in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            logs = "\n".join(svc.workers.log(n)[-4000:] for n in svc.workers.procs)
            svc.workers.stop_all()
            pytest.fail(f"experiment {status}, wanted {want}\n{logs}")
        time.sleep(0.3)
    return exp_id


def _targets(svc) -> list[Stage]:
    with svc.sessions() as s:
        return list(s.scalars(select(Stage).where(Stage.kind == "target_train")).all())


def _targets_succeeded(svc, timeout: float = 180) -> list[Stage]:
    deadline = time.monotonic() + timeout
    while True:
        targets = _targets(svc)
        statuses = {t.status for t in targets}
        if statuses == {"succeeded"}:
            return targets
        assert "failed" not in statuses and time.monotonic() < deadline, (
            f"{statuses}\n{svc.workers.log('gpu')[-4000:]}"
        )
        time.sleep(0.3)


def _overlap(stages: list[Stage]) -> bool:
    a, b = stages
    assert a.started_at and a.finished_at and b.started_at and b.finished_at
    return max(a.started_at, b.started_at) < min(a.finished_at, b.finished_at)


def _same_models(one: Path, other: Path) -> None:
    """The target stages' weights, byte for byte, and their heads, tensor for tensor."""
    mine = sorted(one.glob("stages/target_train-*"))
    assert len(mine) == 2 and [p.name for p in mine] == [
        p.name for p in sorted(other.glob("stages/target_train-*"))
    ]
    for folder in mine:
        twin = other / "stages" / folder.name
        weights = (folder / "encoder" / "model.safetensors").read_bytes()
        assert weights == (twin / "encoder" / "model.safetensors").read_bytes(), folder.name
        heads, twin_heads = (torch.load(f / "heads.pt", weights_only=False) for f in (folder, twin))
        for name, head in heads.items():
            if isinstance(head, dict):
                for k, v in head["state"].items():
                    assert torch.equal(v, twin_heads[name]["state"][k]), (folder.name, k)


def test_two_stages_run_at_once_in_two_processes_with_the_sequential_results(
    gpu_service, settings, tiny_model_dir: Path
) -> None:
    _start_gpu_worker(gpu_service, TWO_FIT_GIB)
    data = _two_seeds(tiny_model_dir, examples=128)
    _run(gpu_service, data, want="running")  # no eval worker: the target stages are the point
    targets = _targets_succeeded(gpu_service)
    assert _overlap(targets), [(t.started_at, t.finished_at) for t in targets]
    assert {t.attempts for t in targets} == {1}
    log = gpu_service.workers.log("gpu")
    assert "1 other stage(s) running" in log  # the second was admitted beside the first
    processes = {
        line.split("ForkPoolWorker-")[1].split("]")[0]
        for line in log.splitlines()
        if "ForkPoolWorker-" in line and "admitted on the GPU" in line
    }
    assert len(processes) == 2  # one pool process each

    # The same two stages one after another, in this process, through the same execute_stage.
    ws = Workspace(settings)
    exp_id = ws.submit(parse_spec(data))
    for stage_id, _ in mark_runnable(ws.sessions, exp_id):
        execute_stage(ws, _Nowhere(), stage_id)
    _same_models(gpu_service.settings.artifacts_dir, settings.artifacts_dir)
    with ws.sessions() as s:
        one_by_one = {
            t.key: t.result for t in s.scalars(select(Stage).where(Stage.kind == "target_train"))
        }
    for t in targets:
        assert t.result is not None
        for field in ("final_loss", "task_losses", "loss_start", "loss_end", "steps_run"):
            assert t.result[field] == one_by_one[t.key][field], field


class _Nowhere:
    """An executor that delivers nothing: only the stages called by hand run."""

    def send(self, stage_id: int, queue: str) -> None:
        pass


def test_a_stage_that_does_not_fit_waits_for_the_other(gpu_service, tiny_model_dir: Path) -> None:
    _start_gpu_worker(gpu_service, ONE_FITS_GIB)
    _run(gpu_service, _two_seeds(tiny_model_dir), want="running")  # no eval worker: stops there
    targets = _targets_succeeded(gpu_service)
    assert not _overlap(targets)  # the second was claimed only once the first had ended
    assert {t.attempts for t in targets} == {1}  # waiting spent no attempt
    assert "waits for GPU memory: needs 0.12 GiB" in gpu_service.workers.log("gpu")


def test_out_of_memory_beside_another_stage_runs_it_again_alone(
    gpu_service, tiny_model_dir: Path
) -> None:
    _start_gpu_worker(
        gpu_service, TWO_FIT_GIB, "tests.oom_worker", XSTILTS_TEST_OOM="beside_others"
    )
    _run(gpu_service, _two_seeds(tiny_model_dir), want="running")
    targets = _targets_succeeded(gpu_service)
    assert all(t.run_alone and t.attempts == 1 and t.error is None for t in targets)
    assert not _overlap(targets)  # alone means alone
    log = gpu_service.workers.log("gpu")
    assert log.count("ran out of GPU memory beside other stages: queued again to run alone") == 2
    assert log.count("admitted on the GPU alone") == 2


def test_out_of_memory_alone_fails_the_stage_once(gpu_service, tiny_model_dir: Path) -> None:
    _start_gpu_worker(gpu_service, TWO_FIT_GIB, "tests.oom_worker", XSTILTS_TEST_OOM="always")
    data = tiny_spec(tiny_model_dir, intermediate={"tasks": []}, evaluation={"languages": ["en"]})
    exp_id = _run(gpu_service, data, want="failed")
    (target,) = _targets(gpu_service)
    assert (target.status, target.attempts, target.run_alone) == ("failed", 1, True)
    error = experiment_results(gpu_service.sessions, exp_id).experiment.error or ""
    assert "ran out of GPU memory running alone on its GPU" in error
    time.sleep(2)  # nothing runs it again
    assert _targets(gpu_service)[0].attempts == 1
