"""The service path with real parts: Postgres, Redis, and Celery workers as separate processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from xstilts.db.migrate import upgrade
from xstilts.db.models import Metric, Stage
from xstilts.db.session import make_engine, session_factory
from xstilts.experiments.results import experiment_results
from xstilts.experiments.submit import plan, submit_experiment
from xstilts.runtime.celery_app import CeleryExecutor, make_celery
from xstilts.runtime.scheduler import cancel, reconcile, refresh_experiment, start
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import broken_mnli_folder, tiny_spec
from tests.service_fixtures import Workers, broker_url, pg_url  # noqa: F401 (fixtures)


@pytest.fixture()
def service(settings, pg_url, broker_url, tiny_model_dir: Path, tmp_path: Path):  # noqa: F811
    svc_settings = settings.model_copy(
        update={
            "database_url": pg_url,
            "broker_url": broker_url,
            "artifacts_dir": tmp_path / "svc-artifacts",
        }
    )
    env = {
        **os.environ,
        "XSTILTS_DATABASE_URL": pg_url,
        "XSTILTS_BROKER_URL": broker_url,
        "XSTILTS_ARTIFACTS_DIR": str(svc_settings.artifacts_dir),
        "XSTILTS_DATA_DIR": str(settings.data_dir),
        "XSTILTS_MODEL_ROOTS": str(tiny_model_dir.parent),
        "XSTILTS_LEASE_SECONDS": "4",
        "TOKENIZERS_PARALLELISM": "false",
    }
    upgrade(pg_url)  # the deployment's migrate job: workers never migrate
    engine = make_engine(pg_url)
    sessions = session_factory(engine)
    workers = Workers(env, tmp_path)
    svc = SimpleNamespace(
        settings=svc_settings,
        sessions=sessions,
        executor=CeleryExecutor(make_celery(svc_settings)),
        workers=workers,
    )
    yield svc
    workers.stop_all()
    engine.dispose()


def _submit(svc, spec) -> str:
    exp_id = submit_experiment(svc.sessions, spec, plan(spec, svc.settings))
    start(svc.sessions, svc.executor, exp_id)  # after the commit, as the API does
    return exp_id


def _wait(svc, exp_id: str, want: str = "succeeded", timeout: float = 240) -> float:
    t0 = time.monotonic()
    while True:
        status = refresh_experiment(svc.sessions, exp_id)
        if status == want:
            return time.monotonic() - t0
        if status in ("failed", "cancelled") and status != want:
            logs = "\n".join(svc.workers.log(n)[-3000:] for n in svc.workers.procs)
            pytest.fail(
                f"experiment {status}: {experiment_results(svc.sessions, exp_id).experiment}\n{logs}"
            )
        if time.monotonic() - t0 > timeout:
            logs = "\n".join(svc.workers.log(n)[-3000:] for n in svc.workers.procs)
            pytest.fail(f"experiment still {status} after {timeout}s\n{logs}")
        time.sleep(0.3)


def test_celery_workers_end_to_end_match_library_and_reuse(
    service, settings, tiny_model_dir: Path
) -> None:
    import hashlib

    from fastapi.testclient import TestClient
    from xstilts.api.app import create_app

    service.workers.start("gpu", "gpu")
    service.workers.start("eval", "eval", module="services.eval.main")
    data = tiny_spec(tiny_model_dir)
    spec = parse_spec(data)
    # Through the API exactly as deployed: Postgres, and a Celery executor sending to real workers.
    api_settings = service.settings.model_copy(
        update={"api_keys": {"alice": hashlib.sha256(b"k").hexdigest()}}
    )
    app = create_app(api_settings, executor_factory=lambda *_: service.executor)
    with TestClient(app, headers={"Authorization": "Bearer k"}) as http:
        created = http.post("/experiments", json=data)
        assert created.status_code == 201, created.text
        exp_id = created.json()["id"]
        deadline = time.monotonic() + 240
        while (body := http.get(f"/experiments/{exp_id}").json())["status"] != "succeeded":
            assert body["status"] in ("queued", "running"), body
            assert time.monotonic() < deadline, service.workers.log("gpu")[-3000:]
            time.sleep(0.3)
        assert {st["status"] for st in body["stages"]} == {"succeeded"}
        got = http.get(f"/experiments/{exp_id}/metrics").json()

    direct = Workspace(settings).run(spec)  # the same spec, in-process on SQLite
    assert [(m["language"], m["value"], m["n"]) for m in got["metrics"]] == [
        (m.language, m.value, m.n) for m in direct.metrics
    ]
    assert direct.summary is not None
    assert (
        got["summary"]["non_english_variance_sample"] == direct.summary.non_english_variance_sample
    )

    # A second experiment with the same intermediate stage and another target training.
    other = tiny_spec(tiny_model_dir)
    other["target"]["training"] = dict(other["target"]["training"], learning_rate=5e-4)
    exp2 = _submit(service, parse_spec(other))
    _wait(service, exp2)
    stages2 = {s.role: s for s in experiment_results(service.sessions, exp2).stages}
    assert stages2["intermediate"].reused and stages2["intermediate"].attempts == 1
    assert stages2["intermediate"].steps_run == 16  # trained once, by the first experiment
    assert not stages2["target"].reused and stages2["target"].steps_run == 16

    # Duplicate deliveries of finished stages run nothing.
    target_id = next(
        s.id
        for s in service.sessions().scalars(select(Stage).where(Stage.key == stages2["target"].key))
    )
    service.executor.send(target_id, "gpu")
    service.executor.send(target_id, "gpu")
    time.sleep(3)
    with service.sessions() as s:
        stage = s.get(Stage, target_id)
        assert stage.attempts == 1 and stage.steps_run == 16 and stage.status == "succeeded"
    assert "xstilts.run_stage" in service.workers.log("gpu")


def _long_spec(model_dir: Path, **training: object) -> dict:
    data = tiny_spec(
        model_dir,
        intermediate={"tasks": []},
        evaluation={"languages": ["en"], "max_examples_per_language": 20},
    )
    data["target"]["training"].update({"max_train_examples": 3000, "batch_size": 8, **training})
    return data


def test_sigkill_worker_mid_training_new_worker_resumes(service, tiny_model_dir: Path) -> None:
    spec = parse_spec(_long_spec(tiny_model_dir, checkpoint_every_steps=40))
    first = service.workers.start("gpu1", "gpu")
    service.workers.start("eval", "eval", module="services.eval.main")
    exp_id = _submit(service, spec)
    work = service.settings.artifacts_dir / "work"
    deadline = time.monotonic() + 120
    while not list(work.glob("*/checkpoint.pt")):
        assert time.monotonic() < deadline, service.workers.log("gpu1")[-3000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # the parent; its pool child is killed with it below
    for child in _children(first.pid):
        os.kill(child, signal.SIGKILL)
    killed_at = time.monotonic()

    service.workers.start("gpu2", "gpu")
    while refresh_experiment(service.sessions, exp_id) != "succeeded":
        reconcile(service.sessions, service.executor)  # what celery beat does every 30 s
        assert time.monotonic() - killed_at < 180, service.workers.log("gpu2")[-3000:]
        time.sleep(1)
    recovery_s = time.monotonic() - killed_at
    result = experiment_results(service.sessions, exp_id)
    target = next(s for s in result.stages if s.role == "target")
    assert target.attempts == 2 and target.status == "succeeded"
    (out,) = (service.settings.artifacts_dir / "stages").glob("target_train-*")
    import json

    train_result = json.loads((out / "train_result.json").read_text())
    assert train_result["resumed_from_step"] > 0 and train_result["resumed_from_step"] % 40 == 0
    with service.sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(Metric)) == 1
        )  # exactly one set (1 language)
    print(f"kill-and-resume recovery: {recovery_s:.1f} s")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry.name))
    return out


def test_cancel_stops_running_stage_within_seconds(service, tiny_model_dir: Path) -> None:
    spec = parse_spec(_long_spec(tiny_model_dir, epochs=50, checkpoint_every_steps=100000))
    service.workers.start("gpu", "gpu")
    exp_id = _submit(service, spec)
    deadline = time.monotonic() + 120
    while True:
        with service.sessions() as s:
            stage = s.scalars(select(Stage).where(Stage.kind == "target_train")).one()
            if stage.status == "running" and stage.progress_step > 0:
                break
        assert time.monotonic() < deadline, service.workers.log("gpu")[-3000:]
        time.sleep(0.2)
    t0 = time.monotonic()
    cancel(service.sessions, exp_id)
    while True:
        with service.sessions() as s:
            stage = s.scalars(select(Stage).where(Stage.kind == "target_train")).one()
            if stage.status == "cancelled":
                break
        assert time.monotonic() - t0 < 10, f"still {stage.status}"
        time.sleep(0.1)
    print(f"cancel stopped the running stage in {time.monotonic() - t0:.1f} s")
    assert stage.progress_step < stage.progress_total
    assert refresh_experiment(service.sessions, exp_id) == "cancelled"


def test_a_stage_failing_on_its_data_is_failed_at_once_with_its_error(
    service, tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    folder = broken_mnli_folder(tmp_path, data_dir)
    spec = parse_spec(
        tiny_spec(
            tiny_model_dir,
            intermediate={"tasks": []},
            evaluation={"languages": ["en"]},
            data={"source": "local", "path": str(folder)},
        )
    )
    service.workers.start("gpu", "gpu")
    exp_id = _submit(service, spec)
    _wait(service, exp_id, want="failed", timeout=120)
    result = experiment_results(service.sessions, exp_id)
    target = next(s for s in result.stages if s.role == "target")
    # Another attempt would fail the same way: the worker fails it at once, saying so.
    assert target.status == "failed" and target.attempts == 1
    assert "maybe" in (result.experiment.error or "") and "not retried" in result.experiment.error
    with service.sessions() as s:
        stage = s.scalars(select(Stage).where(Stage.kind == "target_train")).one()
        assert "label 'maybe' is not one of" in (stage.error or "")
        predict = s.scalars(select(Stage).where(Stage.kind == "predict")).one()
        assert predict.status == "pending"  # never ran: its dependency failed


def test_reconciler_redelivers_a_lost_message(service, tiny_model_dir: Path) -> None:
    from datetime import timedelta

    from sqlalchemy import update
    from xstilts.db.models import utcnow
    from xstilts.runtime.scheduler import mark_runnable

    spec = parse_spec(
        tiny_spec(
            tiny_model_dir,
            intermediate={"tasks": []},
            evaluation={"languages": ["en"], "max_examples_per_language": 10},
        )
    )
    service.workers.start("gpu", "gpu")
    service.workers.start("eval", "eval", module="services.eval.main")
    exp_id = submit_experiment(service.sessions, spec, plan(spec, service.settings))
    queued = mark_runnable(service.sessions, exp_id)  # committed as queued, but never sent: "lost"
    assert [q for _, q in queued] == ["gpu"]
    time.sleep(2)
    with service.sessions() as s:
        assert s.get(Stage, queued[0][0]).status == "queued"  # nothing ran it
    assert reconcile(service.sessions, service.executor) == []  # not overdue yet
    with service.sessions.begin() as s:  # pretend the redelivery window has passed
        s.execute(
            update(Stage)
            .where(Stage.id == queued[0][0])
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )
    assert reconcile(service.sessions, service.executor) == [queued[0][0]]
    _wait(service, exp_id, timeout=120)
    with service.sessions() as s:
        assert s.get(Stage, queued[0][0]).attempts == 1


def test_celery_runs_other_formats_and_seed_shared_stages(
    service, settings, tiny_model_dir: Path
) -> None:
    """A tagging target and a two-seed retrieval baseline (one predict stage serving both seeds,
    on Postgres) through the real workers give the in-process numbers."""
    service.workers.start("gpu", "gpu")
    service.workers.start("eval", "eval", module="services.eval.main")
    panx = tiny_spec(tiny_model_dir, intermediate={"tasks": []})
    panx["target"] = {"task": "panx", "training": panx["target"]["training"]}
    panx["evaluation"] = {"languages": ["en", "de"], "max_examples_per_language": 30}
    tatoeba = tiny_spec(tiny_model_dir, intermediate={"tasks": []}, seeds=[1, 2])
    tatoeba["target"] = {"task": "tatoeba"}
    tatoeba["evaluation"] = {"languages": ["de"], "max_examples_per_language": 40}
    for data in (panx, tatoeba):
        spec = parse_spec(data)
        exp_id = _submit(service, spec)
        _wait(service, exp_id)
        got = experiment_results(service.sessions, exp_id)
        direct = Workspace(settings).run(spec)
        assert got.metrics == direct.metrics
    predicts = [s for s in got.stages if s.kind == "predict"]
    assert [s.seed for s in predicts] == [1, 2] and len({s.key for s in predicts}) == 1
