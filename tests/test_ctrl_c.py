"""Ctrl-C in ``xstilts run`` is never lost and never aborts the process.

A run interrupted just as it took a stage over from a killed earlier run went on to the end: its
SIGINT was cleared before Python raised KeyboardInterrupt. And a run whose stage did not stop
within the grace after the cancel could abort at exit (134) with the stage's thread inside torch.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from xstilts.runtime.ctrl_c import ctrl_c_latch

from tests.conftest import tiny_spec


@pytest.fixture()
def swallowed_sigint() -> Iterator[None]:
    """SIGINT handled by something that swallows it (as a native library polling for Ctrl-C
    does): no KeyboardInterrupt ever comes."""
    before = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_latch_sees_a_ctrl_c_that_was_swallowed(swallowed_sigint: None) -> None:
    with ctrl_c_latch() as interrupted:
        assert not interrupted()
        signal.raise_signal(signal.SIGINT)
        assert interrupted() and interrupted()  # and it stays seen
    assert signal.set_wakeup_fd(-1) == -1  # its descriptor is given back


def test_the_latch_ignores_other_signals_and_leaves_a_wakeup_fd_it_does_not_own(
    swallowed_sigint: None,
) -> None:
    before = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        with ctrl_c_latch() as interrupted:
            signal.raise_signal(signal.SIGUSR1)
            assert not interrupted()
    finally:
        signal.signal(signal.SIGUSR1, before)
    import socket

    a, b = socket.socketpair()
    b.setblocking(False)
    signal.set_wakeup_fd(b.fileno())
    try:
        with ctrl_c_latch() as interrupted:
            assert signal.set_wakeup_fd(b.fileno()) == b.fileno()  # still the owner's
            signal.raise_signal(signal.SIGINT)
            assert not interrupted()  # not watching: Python's own handling is all there is
        assert a.recv(8) == bytes([signal.SIGINT])  # the owner got it
    finally:
        signal.set_wakeup_fd(-1)
        a.close()
        b.close()


def test_off_the_main_thread_the_latch_watches_nothing() -> None:
    seen: list[bool] = []

    def other() -> None:
        with ctrl_c_latch() as interrupted:
            seen.append(interrupted())

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [False] and signal.set_wakeup_fd(-1) == -1


def _wait_no_executor(timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while any(t.name == "xstilts-executor" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the stage's thread never stopped"
        time.sleep(0.1)


def test_a_swallowed_ctrl_c_still_cancels_the_run(
    settings, tiny_model_dir: Path, swallowed_sigint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real workspace: Ctrl-C arrives while a stage trains and is swallowed; the
    run still cancels its experiment and raises. A stage that does not stop within the grace
    (none here) makes it :class:`LeftRunningError`, which the CLI ends the process on."""
    from xstilts.errors import LeftRunningError
    from xstilts.runtime import workspace as workspace_module
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import parse_spec

    monkeypatch.setattr(workspace_module, "CANCEL_GRACE_S", 0.0)
    spec = tiny_spec(tiny_model_dir, intermediate={"tasks": []}, evaluation={"languages": ["en"]})
    spec["target"]["training"] = dict(spec["target"]["training"], max_train_examples=4096)
    ws = Workspace(settings)
    exp_id = ws.submit(parse_spec(spec))
    sent = []

    def on_poll(_: str) -> None:
        if not sent and ws.status(exp_id)[0] == "running":
            sent.append(time.monotonic())
            signal.raise_signal(signal.SIGINT)

    try:
        with pytest.raises(LeftRunningError):
            ws.follow(exp_id, on_poll=on_poll, poll_s=0.05)
        assert sent and time.monotonic() - sent[0] < 5
        _wait_no_executor()
        assert ws.status(exp_id)[0] == "cancelled"
    finally:
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
