"""Leases: a live runner keeps its stage even without progress; a dead one loses it."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from xstilts.db.models import Stage, init_db, make_engine, session_factory, utcnow
from xstilts.runtime import lifecycle as stages


def test_lease_is_kept_while_the_process_lives_then_lapses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stages, "LEASE_SECONDS", 1.0)
    monkeypatch.setattr(stages, "HEARTBEAT_SECONDS", 0.2)
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    init_db(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        s.add(Stage(key="k" * 64, kind="target_train", identity={}, params={}, status="pending"))
    with sessions() as s:
        stage_id = s.query(Stage.id).scalar()

    assert stages.claim(sessions, stage_id, lease_s=1.0)
    with stages._LeaseKeeper(sessions, stage_id):
        time.sleep(2.5)  # no progress reported for 2.5 lease periods: e.g. saving a big checkpoint
        assert not stages.claim(sessions, stage_id)  # still held: nobody else may start it
    time.sleep(1.3)  # the runner is gone; its lease runs out
    assert stages.claim(sessions, stage_id)
    with sessions() as s:
        stage = s.get(Stage, stage_id)
        assert stage.attempts == 2 and stage.lease_until is not None
        assert stage.lease_until.replace(tzinfo=None) > (utcnow() + timedelta(seconds=0.5)).replace(
            tzinfo=None
        )
    engine.dispose()
