"""Ctrl-C in ``xstilts run`` never aborts the process.

A run whose stage did not stop within the grace after the cancel ended with Python shutting down
around the stage's thread, still inside torch: that aborts (exit 134, "terminate called without
an active exception"). Such a run now ends at once with 130; one whose stage stops in time ends as
before.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_spec


def _wait_no_executor(timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while any(t.name == "xstilts-executor" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the stage's thread never stopped"
        time.sleep(0.1)


@pytest.mark.parametrize("grace_s", [60.0, 0.0])
def test_ctrl_c_cancels_and_says_whether_the_stage_stopped(
    settings, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, grace_s: float
) -> None:
    """Through the real workspace: Ctrl-C while a stage trains cancels the experiment. A stage
    that stops within the grace: KeyboardInterrupt, as before. One that is still running when
    the grace ends (none can stop in 0 s): :class:`LeftRunningError`, which the CLI ends the
    process on."""
    from xstilts.errors import LeftRunningError
    from xstilts.runtime import workspace as workspace_module
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import parse_spec

    monkeypatch.setattr(workspace_module, "CANCEL_GRACE_S", grace_s)
    # Python's own Ctrl-C handling, whatever this process inherited (a shell starts background
    # jobs with SIGINT ignored, and Python then installs no handler).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    spec = tiny_spec(tiny_model_dir, intermediate={"tasks": []}, evaluation={"languages": ["en"]})
    spec["target"]["training"] = dict(spec["target"]["training"], max_train_examples=4096)
    ws = Workspace(settings)
    exp_id = ws.submit(parse_spec(spec))
    sent = []

    def on_poll(_: str) -> None:
        if not sent and ws.status(exp_id)[0] == "running":
            sent.append(time.monotonic())
            signal.raise_signal(signal.SIGINT)  # Python's own handler: KeyboardInterrupt here

    try:
        with pytest.raises(KeyboardInterrupt) as interrupted:
            ws.follow(exp_id, on_poll=on_poll, poll_s=0.05)
        assert isinstance(interrupted.value, LeftRunningError) == (grace_s == 0.0)
        if grace_s:  # it waited for the stage, which stopped at its next step
            assert not any(t.name == "xstilts-executor" for t in threading.enumerate())
        _wait_no_executor()
        assert ws.status(exp_id)[0] == "cancelled"
    finally:
        signal.signal(signal.SIGINT, before)
        _wait_no_executor()
        ws.close()


def test_the_cli_ends_at_once_when_a_stage_is_left_running(tmp_path: Path) -> None:
    """Without ending the process itself, the CLI would wait for (or shut Python down around)
    the thread still running the stage."""
    script = textwrap.dedent(
        """
        import sys, threading, time
        from xstilts.cli import experiments
        from xstilts.cli.main import main
        from xstilts.errors import LeftRunningError

        def run(args):
            threading.Thread(target=time.sleep, args=(120,)).start()  # the stage, not stopping
            raise LeftRunningError

        experiments.cmd_run = run
        sys.exit(main(["run", "spec.yaml"]))
        """
    )
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert time.monotonic() - t0 < 30
    assert done.stderr.strip().endswith("interrupted; run the same command again to resume")
    # Its standard error gone too (`xstilts run 2>&1 | tee log`, Ctrl-C to both): still at once.
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None and proc.stdout is not None
    proc.stderr.close()
    proc.stdout.close()
    assert proc.wait(60) == 130
    assert time.monotonic() - t0 < 30
