"""A real crash: SIGKILL the CLI in the middle of training; the same command resumes and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import tiny_spec


def _run_command(
    settings, tiny_model_dir: Path, tmp_path: Path, examples: int, every: int, **env: str
) -> tuple[list[str], dict[str, str]]:
    """`xstilts run` of a target-only spec long enough to interrupt (``examples`` / 8 steps, a
    checkpoint every ``every``), writing its results to ``tmp_path/r.json``, and its environment."""
    data = tiny_spec(
        tiny_model_dir,
        intermediate={"tasks": []},
        evaluation={"languages": ["en"], "max_examples_per_language": 20},
    )
    data["target"]["training"].update(
        {"max_train_examples": examples, "batch_size": 8, "checkpoint_every_steps": every}
    )
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(data))
    environment = {
        **os.environ,
        "XSTILTS_HOME": str(settings.home),
        "XSTILTS_DATA_DIR": str(settings.data_dir),
        "XSTILTS_MODEL_ROOTS": str(tiny_model_dir.parent),
        **env,
    }
    cmd = [
        sys.executable,
        "-m",
        "xstilts.cli",
        "run",
        str(spec),
        "-q",
        "--json",
        str(tmp_path / "r.json"),
    ]
    return cmd, environment


def _wait_for_checkpoint(proc: subprocess.Popen, work: Path) -> None:
    deadline = time.monotonic() + 120
    while not list(work.glob("*/checkpoint.pt")):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def test_sigkill_mid_training_then_resume(settings, tiny_model_dir: Path, tmp_path: Path) -> None:
    # A short lease, so the test need not wait a minute; long enough that a busy machine's late
    # heartbeat does not hand the resumed stage over once more (4 beats a lease).
    cmd, env = _run_command(settings, tiny_model_dir, tmp_path, 3000, 40, XSTILTS_LEASE_SECONDS="5")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    work = settings.home / "artifacts" / "work"
    _wait_for_checkpoint(proc, work)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "r.json").exists()
    time.sleep(5.5)  # the dead process's lease expires

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    target = next(s for s in result["stages"] if s["role"] == "target")
    assert target["status"] == "succeeded" and target["attempts"] == 2, done.stderr
    (out,) = (settings.home / "artifacts" / "stages").glob("target_train-*")
    train_result = json.loads((out / "train_result.json").read_text())
    total = 3000 // 8 + (3000 % 8 > 0)
    assert train_result["total_steps"] == total
    assert train_result["resumed_from_step"] > 0 and train_result["resumed_from_step"] % 40 == 0
    assert train_result["steps_run"] == total - train_result["resumed_from_step"]
    # Exactly one set of metrics, and the checkpoint folder is gone once the stage finished.
    assert [m["language"] for m in result["metrics"]] == ["en"]
    assert not list(work.glob("*/checkpoint.pt"))


def test_ctrl_c_cancels_then_the_same_command_resumes(
    settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Ctrl-C in `xstilts run` cancels the experiment through the same orchestration as the
    service: training stops at its next step, keeps its checkpoint, and a re-run resumes it."""
    cmd, env = _run_command(settings, tiny_model_dir, tmp_path, 1200, 20)
    # A shell starts background jobs with SIGINT ignored, and a child inherits that: Python then
    # installs no Ctrl-C handler. Give the CLI the default disposition, as a terminal would.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    work = settings.home / "artifacts" / "work"
    _wait_for_checkpoint(proc, work)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err

    from sqlalchemy import select
    from xstilts.db.models import Experiment, Stage
    from xstilts.runtime.workspace import Workspace

    ws = Workspace(settings)
    with ws.sessions() as s:
        assert s.scalars(select(Experiment.status)).one() == "cancelled"
        target = s.scalars(select(Stage).where(Stage.kind == "target_train")).one()
        assert target.status == "cancelled" and target.attempts == 1
    assert list(work.glob("*/checkpoint.pt"))  # kept for the re-run

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (out,) = (settings.home / "artifacts" / "stages").glob("target_train-*")
    train_result = json.loads((out / "train_result.json").read_text())
    assert train_result["resumed_from_step"] > 0 and train_result["resumed_from_step"] % 20 == 0
    assert (
        train_result["steps_run"] == train_result["total_steps"] - train_result["resumed_from_step"]
    )
