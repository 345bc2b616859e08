"""Leases: a live runner keeps its stage even without progress; a dead one loses it."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from xstilts.db.migrate import upgrade
from xstilts.db.models import Stage, utcnow
from xstilts.db.session import make_engine, session_factory
from xstilts.runtime import lifecycle as stages


def test_lease_is_kept_while_the_process_lives_then_lapses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        s.add(Stage(key="k" * 64, kind="target_train", identity={}, params={}, status="pending"))
    with sessions() as s:
        stage_id = s.query(Stage.id).scalar()

    ref = stages.claim(sessions, stage_id, lease_s=1.0)
    assert ref is not None and (ref.attempt, ref.key, ref.kind) == (1, "k" * 64, "target_train")
    with stages.LeaseKeeper(sessions, ref, lease_s=1.0, every_s=0.2) as keeper:
        time.sleep(2.5)  # no progress reported for 2.5 lease periods: e.g. saving a big checkpoint
        assert not stages.claim(
            sessions, stage_id, lease_s=1.0
        )  # still held: nobody else may start it
        assert not keeper.lost.is_set()
    time.sleep(1.3)  # the runner is gone; its lease runs out
    again = stages.claim(sessions, stage_id, lease_s=1.0)
    assert again is not None and again.attempt == 2
    with sessions() as s:
        stage = s.get(Stage, stage_id)
        assert stage.attempts == 2 and stage.lease_until is not None
        assert stage.lease_until.replace(tzinfo=None) > (utcnow() + timedelta(seconds=0.5)).replace(
            tzinfo=None
        )
    engine.dispose()
