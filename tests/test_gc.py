"""Artifact garbage collection on a real workspace: a tiny experiment runs, then leftovers of
crashes and of a reset database are added beside its artifacts; `xstilts gc` counts (dry run) and
deletes exactly those, keeps every output a later experiment or `export` needs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from xstilts.cli.main import main
from xstilts.runtime.gc import collect_garbage
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import tiny_spec

HOUR = 3600


def _aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def _leftover(path: Path, size: int, age_s: float = 2 * HOUR) -> Path:
    path.mkdir(parents=True)
    (path / "checkpoint.pt").write_bytes(b"\0" * size)
    return _aged(path, age_s)


def test_gc_deletes_only_what_no_stage_can_use(
    settings,
    tiny_model_dir: Path,
    tmp_path: Path,
    optimizer_steps: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = parse_spec(
        tiny_spec(
            tiny_model_dir,
            intermediate={"tasks": []},
            evaluation={"languages": ["en", "de"], "max_examples_per_language": 20},
        )
    )
    ws = Workspace(settings)
    first = ws.run(spec)
    store = ws.store
    outputs = sorted(p.name for p in (store.root / "stages").iterdir())
    assert len(outputs) == 4  # target_train, a predict per language, evaluate
    assert not any((store.root / "work").iterdir())  # a succeeded stage keeps no checkpoints
    target_key = next(s.key for s in first.stages if s.role == "target")

    # Leftovers: checkpoints of the succeeded target (a crash before they were dropped), an
    # output and checkpoints of a key the database does not know, an old and a young unfinished
    # write, and a young unknown checkpoint (a stage planned after gc read the database).
    spent = _leftover(store.root / "work" / target_key[:20], 1000)
    orphan_out = _leftover(store.root / "stages" / f"target_train-{'0' * 20}", 2000)
    orphan_work = _leftover(store.root / "work" / ("1" * 20), 3000)
    old_tmp = _leftover(store.root / "stages" / ".tmp-predict-abc-1234", 4000)
    young_tmp = _leftover(store.root / "stages" / ".tmp-predict-def-5678", 5000, age_s=60)
    young_work = _leftover(store.root / "work" / ("2" * 20), 6000, age_s=60)

    dry = collect_garbage(ws.sessions, store, dry_run=True)
    assert dry.freed_bytes == 1000 + 2000 + 3000 + 4000
    assert dict(dry.reasons) == {
        "checkpoints of a stage that succeeded": 1,
        "orphan": 2,
        "abandoned write": 1,
    }
    assert all(p.exists() for p in (spent, orphan_out, orphan_work, old_tmp))
    kept = {kind: t.count for kind, t in dry.kept.items()}
    assert kept == {
        "target_train": 1,
        "predict": 2,
        "evaluate": 1,
        "unfinished write": 1,
        "checkpoints": 1,
    }
    assert dry.kept["target_train"].bytes > 1_000_000  # the trained model: weights and tokenizer

    # The CLI, as an operator runs it, on the same workspace.
    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path))
    out_json = tmp_path / "gc.json"
    assert main(["gc", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "deleted" in printed and "orphan" in printed
    report = json.loads(out_json.read_text())
    assert report["freed_bytes"] == 10_000 and report["dry_run"] is False
    assert not any(p.exists() for p in (spent, orphan_out, orphan_work, old_tmp))
    assert young_tmp.exists() and young_work.exists()
    assert sorted(p.name for p in (store.root / "stages").iterdir() if p.name[0] != ".") == outputs

    # Everything kept is still usable: the same spec reuses every stage and gives the same numbers.
    optimizer_steps[0] = 0
    again = Workspace(settings).run(spec)
    assert optimizer_steps[0] == 0 and all(s.reused for s in again.stages)
    assert [(m.language, m.value) for m in again.metrics] == [
        (m.language, m.value) for m in first.metrics
    ]
    assert collect_garbage(ws.sessions, store, dry_run=True).freed_bytes == 0
