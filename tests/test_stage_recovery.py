"""What the reconciler and a stage's fence repair, each found by an outside review: a stage whose
runner dies on every attempt, a runner that lost its lease and writes on, a cancel that raced a new
request for the same stage, an experiment whose last refresh was lost, a stale verdict stored over a
newer one, a message held by a dead worker, a live stage's write collected as abandoned, and a
replica that outlives its worker. Outcomes are written as a runner records them (no training),
against real databases, a real Redis and real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update
from xstilts.db.models import Experiment, Stage, utcnow
from xstilts.errors import CancelledError
from xstilts.runtime import lifecycle
from xstilts.runtime.lifecycle import LeaseKeeper, StageContext, claim
from xstilts.runtime.scheduler import MAX_ATTEMPTS, cancel, reconcile, refresh_experiment
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import tiny_spec
from tests.service_fixtures import broker_url, pg_url  # noqa: F401 - fixtures
from tests.test_failed_and_cancelled import Sent, _set, _status, _submit


def _expire(ws: Workspace, stage_id: int) -> None:
    """The lease runs out: its runner died (or stalled) without a word."""
    with ws.sessions.begin() as s:
        s.execute(
            update(Stage)
            .where(Stage.id == stage_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )


def _row(ws: Workspace, stage_id: int) -> Stage:
    with ws.sessions() as s:
        row = s.get(Stage, stage_id)
        assert row is not None
        return row


def _experiment(ws: Workspace, exp_id: str) -> Experiment:
    with ws.sessions() as s:
        row = s.get(Experiment, exp_id)
        assert row is not None
        return row


def test_a_stage_whose_runner_is_lost_on_every_attempt_fails_instead_of_looping(
    settings, tiny_model_dir: Path
) -> None:
    ws = Workspace(settings)
    exp_id, stages = _submit(ws, tiny_model_dir, [1])
    (train,) = stages["target_train"]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claimed = claim(ws.sessions, train, lease_s=60)
        assert claimed is not None and claimed.attempt == attempt
        _expire(ws, train)  # e.g. the host's OOM killer, every time
        sent = Sent()
        reconcile(ws.sessions, sent)
        if attempt < MAX_ATTEMPTS:
            assert sent.ids == [train]  # delivered again, queued with a fresh redelivery lease
            assert _status(ws, train) == "queued"
    assert sent.ids == []  # the last loss ends it
    row = _row(ws, train)
    assert row.status == "failed" and row.attempts == MAX_ATTEMPTS
    assert f"last attempt ({MAX_ATTEMPTS} of {MAX_ATTEMPTS}) was lost" in (row.error or "")
    exp = _experiment(ws, exp_id)
    assert exp.status == "failed" and "was lost" in (exp.error or "")
    # Nobody may take it over either, even before a reconciler ran.
    with ws.sessions.begin() as s:
        s.execute(update(Stage).where(Stage.id == train).values(status="running"))
    _expire(ws, train)
    assert claim(ws.sessions, train, lease_s=60) is None
    # A new request for it gets every attempt again.
    _set(ws, train, "failed")
    ws.submit(parse_spec(tiny_spec(tiny_model_dir, intermediate={"tasks": []},
                                   evaluation={"languages": ["en"]}, seeds=[1])))  # fmt: skip
    row = _row(ws, train)
    assert (row.status, row.attempts) == ("pending", 0)


def test_a_runner_that_lost_its_lease_writes_nothing_and_is_told_to_stop(
    settings, tiny_model_dir: Path
) -> None:
    ws = Workspace(settings)
    _, stages = _submit(ws, tiny_model_dir, [1])
    (train,) = stages["target_train"]
    stalled = claim(ws.sessions, train, lease_s=60)
    assert stalled is not None and stalled.attempt == 1
    _expire(ws, train)  # e.g. a database outage longer than the lease
    reconcile(ws.sessions, Sent())
    owner = claim(ws.sessions, train, lease_s=60)
    assert owner is not None and owner.attempt == 2
    ctx = StageContext(ws.sessions, ws.store)
    # The stalled runner wakes: its heartbeat finds the stage no longer its own and says so.
    keeper = LeaseKeeper(ws.sessions, stalled, lease_s=60, every_s=0.05)
    with keeper:
        assert keeper.lost.wait(5)
    assert _row(ws, train).lease_until is not None
    # Its end, whatever it is, is not recorded over the attempt that now runs.
    assert not lifecycle._failed_attempt(ctx, stalled, "RuntimeError: stale", retry=True)
    assert not lifecycle._finish(ctx, stalled, lifecycle.Status.CANCELLED, error="stale")
    row = _row(ws, train)
    assert (row.status, row.attempts, row.error) == ("running", 2, None)
    # Nor does it publish anything: the check before an output folder or metrics are written.
    with pytest.raises(CancelledError, match="taken over by another runner"):
        replace(ctx, claimed=stalled).check_owned()
    out = ws.store.stage_dir("target_train", row.key)
    with pytest.raises(CancelledError):
        with ws.store.writing(out, replace(ctx, claimed=stalled).check_owned) as tmp:
            (tmp / "model.bin").write_bytes(b"stale")
    assert not out.exists() and not list(out.parent.glob(".tmp-*"))
    replace(ctx, claimed=owner).check_owned()  # the owner may
    # The attempt that owns it records its end.
    assert lifecycle._failed_attempt(ctx, owner, "RuntimeError: real", retry=True)
    assert (_row(ws, train).status, _row(ws, train).error) == ("queued", "RuntimeError: real")


def test_a_claim_after_a_new_request_reset_the_attempts_is_still_a_new_owner(
    settings, tiny_model_dir: Path
) -> None:
    """A new request gives a stage its attempts again, so attempt numbers repeat: runner A holds
    attempt 1, stalls; the stage is queued again, cancelled, asked for again and claimed by B, as
    attempt 1 too. A must not pass for B."""
    ws = Workspace(settings)
    old, stages = _submit(ws, tiny_model_dir, [1])
    (train,) = stages["target_train"]
    stalled = claim(ws.sessions, train, lease_s=60)
    assert stalled is not None
    _expire(ws, train)
    reconcile(ws.sessions, Sent())  # queued again
    cancel(ws.sessions, old)
    assert _status(ws, train) == "cancelled"
    _submit(ws, tiny_model_dir, [1])  # reset: pending, attempts 0
    owner = claim(ws.sessions, train, lease_s=60)
    assert owner is not None and owner.attempt == stalled.attempt == 1
    ctx = StageContext(ws.sessions, ws.store)
    assert not lifecycle._finish(ctx, stalled, lifecycle.Status.CANCELLED, error="stale")
    assert _row(ws, train).status == "running"
    with pytest.raises(CancelledError):
        replace(ctx, claimed=stalled).check_owned()
    keeper = LeaseKeeper(ws.sessions, stalled, lease_s=60, every_s=0.05)
    with keeper:
        assert keeper.lost.wait(5)
    assert lifecycle._finish(ctx, owner, lifecycle.Status.CANCELLED, error="real")


def test_a_cancelled_stage_that_a_live_experiment_links_runs_again(
    settings, tiny_model_dir: Path
) -> None:
    """A cancel marks the stages nobody else wants in one statement after deciding it in another;
    a request that linked one in between (or while its runner was stopping) found it queued or
    running and left it as it was. The state that leaves, made directly."""
    ws = Workspace(settings)
    old, stages = _submit(ws, tiny_model_dir, [1])
    (train,) = stages["target_train"]
    new, _ = _submit(ws, tiny_model_dir, [1])  # the same stages, reused
    with ws.sessions.begin() as s:
        s.execute(update(Experiment).where(Experiment.id == old).values(cancel_requested=True))
    _set(ws, train, "cancelled")
    assert refresh_experiment(ws.sessions, new) == "queued"  # and it would stay so for ever
    sent = Sent()
    reconcile(ws.sessions, sent)
    assert train in sent.ids and _status(ws, train) == "queued"
    assert _experiment(ws, new).status == "queued"
    # A cancelled experiment alone does not bring its stages back.
    cancel(ws.sessions, new)
    assert _status(ws, train) == "cancelled"
    reconcile(ws.sessions, sent := Sent())
    assert _status(ws, train) == "cancelled" and train not in sent.ids


def test_the_reconciler_derives_a_status_whose_refresh_was_lost(
    settings, tiny_model_dir: Path
) -> None:
    ws = Workspace(settings)
    exp_id, stages = _submit(ws, tiny_model_dir, [1])
    assert refresh_experiment(ws.sessions, exp_id) == "queued"
    for sid in [sid for ids in stages.values() for sid in ids]:
        _set(ws, sid, "succeeded")  # the worker died before its refresh of the experiment
    assert _experiment(ws, exp_id).status == "queued"
    reconcile(ws.sessions, Sent())
    assert _experiment(ws, exp_id).status == "succeeded"


def test_a_failed_stage_retried_by_another_request_clears_the_old_error(
    settings, tiny_model_dir: Path
) -> None:
    ws = Workspace(settings)
    exp_id, stages = _submit(ws, tiny_model_dir, [1])
    (train,) = stages["target_train"]
    _set(ws, train, "failed")
    assert refresh_experiment(ws.sessions, exp_id) == "failed"
    assert "out of luck" in (_experiment(ws, exp_id).error or "")
    _submit(ws, tiny_model_dir, [1])  # resets the failed stage: it runs again
    _set(ws, train, "running")
    assert refresh_experiment(ws.sessions, exp_id) == "running"
    assert _experiment(ws, exp_id).error is None


def test_a_refresh_reads_the_stages_after_the_refresh_before_it(
    pg_url: str,  # noqa: F811
    settings,
    tiny_model_dir: Path,
) -> None:
    """A transaction holds the experiment's row (as another refresh does) while the last stage
    succeeds; a refresh started meanwhile must wait and then see the stage succeeded. Before, it
    read the stage still running and stored "running" after the other had stored "succeeded"."""
    from xstilts.db.migrate import upgrade

    upgrade(pg_url)
    ws = Workspace(settings.model_copy(update={"database_url": pg_url}))
    exp_id, stages = _submit(ws, tiny_model_dir, [1])
    ids = [sid for group in stages.values() for sid in group]
    for sid in ids:
        _set(ws, sid, "succeeded" if sid != ids[-1] else "running")
    engine = create_engine(pg_url)
    result: list[str] = []
    with engine.connect() as holder:
        tx = holder.begin()
        holder.execute(text("SELECT id FROM experiments WHERE id = :id FOR UPDATE"), {"id": exp_id})
        holder.execute(
            text("UPDATE stages SET status = 'succeeded' WHERE id = :id"), {"id": ids[-1]}
        )
        thread = threading.Thread(
            target=lambda: result.append(refresh_experiment(ws.sessions, exp_id))
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not _waits_on_a_lock(holder.engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waits_on_a_lock(holder.engine)  # the refresh waits for the row
        tx.commit()
    thread.join(10)
    engine.dispose()
    assert result == ["succeeded"]
    assert _experiment(ws, exp_id).status == "succeeded"


def _waits_on_a_lock(engine) -> bool:
    with engine.connect() as c:
        return bool(
            c.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
        )


def test_a_message_held_by_a_dead_worker_stops_hiding_its_stage(
    broker_url: str,  # noqa: F811
) -> None:
    """A worker took a stage's message (kombu keeps it in ``unacked`` until the ack) and died. The
    reconciler must not trust that message for Redis's 7-day visibility timeout."""
    from xstilts.config import Settings
    from xstilts.runtime.celery_app import (
        RUN_STAGE,
        UNACKED_HELD_S,
        make_celery,
        redis_in_flight,
    )

    app = make_celery(Settings(broker_url=broker_url))
    app.send_task(RUN_STAGE, args=[41], queue="gpu")
    app.send_task(RUN_STAGE, args=[42], queue="gpu")
    assert redis_in_flight(broker_url, ("gpu",)) == {41, 42}  # both waiting in the queue
    # A worker takes the first message and dies at once (no clean-up gives it back).
    taker = "; ".join(
        [
            "import os, sys",
            "from kombu import Connection",
            "channel = Connection(sys.argv[1]).channel()",
            "assert channel.basic_get('gpu', no_ack=False) is not None",
            "os._exit(0)",
        ]
    )
    subprocess.run([sys.executable, "-c", taker, broker_url], check=True, timeout=60)
    now = time.time()
    assert redis_in_flight(broker_url, ("gpu",), now=now) == {41, 42}
    assert redis_in_flight(broker_url, ("gpu",), now=now + UNACKED_HELD_S + 1) == {42}


def test_gc_keeps_a_live_stages_write_in_progress_however_old(
    settings, tiny_model_dir: Path
) -> None:
    from xstilts.runtime.gc import KEY_PREFIX, collect_garbage

    ws = Workspace(settings)
    _, stages = _submit(ws, tiny_model_dir, [1])
    (train,) = stages["target_train"]
    (predict,) = stages["predict"]
    old = time.time() - 7200
    folders = {}
    for sid in (train, predict):
        key = _row(ws, sid).key[:KEY_PREFIX]
        kind = _row(ws, sid).kind
        folders[sid] = ws.store.root / "stages" / f".tmp-{kind}-{key}-0123abcd"
        folders[sid].mkdir(parents=True)
        (folders[sid] / "model.bin").write_bytes(b"x" * 100)
        os.utime(folders[sid], (old, old))
    _set(ws, train, "running")  # writing into its folder for two hours now
    _set(ws, predict, "failed")  # crashed mid-write
    report = collect_garbage(ws.sessions, ws.store, dry_run=False)
    assert folders[train].is_dir()
    assert not folders[predict].exists()
    assert report.reasons["abandoned write"] == 1


def test_a_replica_ends_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "replica.pid"
    script = tmp_path / "parent.py"  # spawn finds the child's function in a file, not in -c
    script.write_text(_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    replica = int(pid_file.read_text())
    assert _alive(replica)
    parent.send_signal(signal.SIGKILL)  # no clean-up runs in the parent
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(replica) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(replica)
    if alive:
        os.kill(replica, signal.SIGKILL)
    assert not alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


# A parent that starts a daemon child as run_replicated does (spawn), which watches it and would
# otherwise sleep for a minute.
_PARENT = """
import multiprocessing as mp, sys, time

def child(path):
    import os
    from xstilts.training.distributed import _exit_with_parent
    _exit_with_parent()
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)

if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=child, args=(sys.argv[1],), daemon=True)
    p.start()
    time.sleep(120)
"""
