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
from xstilts.comparisons import ANY_OWNER, CompareOptions, compare_experiments
from xstilts.config import Settings
from xstilts.runtime.gc import GcReport, Tally, collect_garbage
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


# --------------------------------------------------------------------------- the comparison cache

DAY = 24 * HOUR
MIB = 1 << 20


def _bare_settings(tmp_path: Path) -> Settings:
    """A workspace of its own in ``tmp_path`` (an empty SQLite database): the comparison cache
    needs no stage."""
    return Settings(
        home=tmp_path,
        artifacts_dir=tmp_path / "artifacts",
        database_url=f"sqlite:///{tmp_path / 'xstilts.db'}",
    )


def _cached(folder: Path, name: str, size: int, used_s_ago: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"{" + b" " * (size - 2) + b"}")
    return _aged(path, used_s_ago)


def _kinds(report: GcReport) -> dict[str, tuple[int, int, int, int]]:
    """kind -> (kept files, kept bytes, deleted files, deleted bytes)."""
    out = {}
    for kind in set(report.kept) | set(report.deleted):
        k, d = report.kept.get(kind, Tally()), report.deleted.get(kind, Tally())
        out[kind] = (k.count, k.bytes, d.count, d.bytes)
    return out


def test_gc_deletes_comparisons_unused_for_longer_than_the_age_limit(tmp_path: Path) -> None:
    ws = Workspace(_bare_settings(tmp_path))
    folder = ws.store.root / "comparisons"
    stale = _cached(folder, f"{'a' * 32}.json", 100, 40 * DAY)
    recent = _cached(folder, f"{'b' * 32}.json", 200, 10 * DAY)
    fresh = _cached(folder, f"{'c' * 32}.json", 300, 0)
    abandoned = _cached(folder, f".{'d' * 32}.json.0123abcd", 50, 2 * HOUR)
    writing = _cached(folder, f".{'e' * 32}.json.4567cdef", 60, 60)
    stranger = _cached(folder, "notes.txt", 70, 400 * DAY)  # not the cache's: never touched

    dry = collect_garbage(ws.sessions, ws.store, dry_run=True, comparisons_max_age_days=30)
    assert _kinds(dry) == {"comparisons": (2, 500, 1, 100), "unfinished write": (1, 60, 1, 50)}
    assert dict(dry.reasons) == {"comparison not used for 30 days": 1, "abandoned write": 1}
    assert dry.freed_bytes == 150
    assert all(p.exists() for p in (stale, recent, fresh, abandoned, writing, stranger))

    done = collect_garbage(ws.sessions, ws.store, dry_run=False, comparisons_max_age_days=30)
    assert _kinds(done) == _kinds(dry) and done.freed_bytes == 150
    assert not stale.exists() and not abandoned.exists()
    assert recent.exists() and fresh.exists() and writing.exists() and stranger.exists()
    # A tighter limit reaches the 10-day-old one; without limits the cache is only counted.
    assert collect_garbage(ws.sessions, ws.store).deleted.get("comparisons") is None
    assert collect_garbage(ws.sessions, ws.store, comparisons_max_age_days=5).freed_bytes == 200
    ws.close()


def test_gc_keeps_the_most_recently_used_comparisons_that_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(_bare_settings(tmp_path))
    folder = ws.store.root / "comparisons"
    # Newest first: 0.5, 0.3, 0.1 and 0.6 MiB. Under 0.7 MiB, least recently used first leaves
    # only the newest; dropping the largest first would have kept the 0.3 and 0.1 instead.
    sizes = [int(f * MIB) for f in (0.5, 0.3, 0.1, 0.6)]
    files = [_cached(folder, f"{n:032x}.json", s, n * HOUR) for n, s in enumerate(sizes, 1)]

    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path))
    out = tmp_path / "gc.json"
    assert main(["gc", "--dry-run", "--comparisons-max-mib", "0.7", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["freed_bytes"] == sum(sizes[1:])
    assert report["kinds"]["comparisons"] == {
        "kept": {"count": 1, "bytes": sizes[0]},
        "deleted": {"count": 3, "bytes": sum(sizes[1:])},
    }
    assert report["reasons"] == {"least recently used comparison over 0.7 MiB": 3}
    assert all(p.exists() for p in files)
    printed = capsys.readouterr().out
    assert "comparisons" in printed and "would delete" in printed

    assert main(["gc", "--comparisons-max-mib", "0.7"]) == 0
    assert [p.exists() for p in files] == [True, False, False, False]

    # A limit the rest fits under deletes nothing more; 0 MiB keeps none.
    assert collect_garbage(ws.sessions, ws.store, comparisons_max_mib=0.5).freed_bytes == 0
    assert collect_garbage(ws.sessions, ws.store, comparisons_max_mib=0).freed_bytes == sizes[0]
    ws.close()


def test_gc_limits_come_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xstilts gc` without flags and the service's periodic task read the same settings."""
    from xstilts.runtime import celery_app

    settings = _bare_settings(tmp_path)
    folder = settings.artifacts_dir / "comparisons"
    old = _cached(folder, f"{'a' * 32}.json", 100, 3 * DAY)
    new = _cached(folder, f"{'b' * 32}.json", 100, 0)
    assert (Settings().comparisons_max_age_days, Settings().comparisons_max_mib) == (30, 512)

    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path))
    monkeypatch.setenv("XSTILTS_COMPARISONS_MAX_AGE_DAYS", "2")
    assert main(["gc"]) == 0
    assert not old.exists() and new.exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # the flag is checked too (argparse: exit 2)
        main(["gc", "--comparisons-max-age-days", "0"])
    assert exited.value.code == 2
    assert "days must be more than 0" in capsys.readouterr().err

    ws = Workspace(settings.model_copy(update={"comparisons_max_mib": 0.0}))
    monkeypatch.setattr(celery_app, "_runtime", lambda: (ws, None))
    celery_app.gc_task()
    assert not new.exists()
    ws.close()


def test_a_served_cached_comparison_counts_as_used(settings, tiny_model_dir: Path) -> None:
    spec = parse_spec(
        tiny_spec(
            tiny_model_dir,
            intermediate={"tasks": []},
            evaluation={"languages": ["en", "de"], "max_examples_per_language": 20},
        )
    )
    ws = Workspace(settings)
    exp_id = ws.run(spec).experiment.id
    options = CompareOptions(samples=200)
    first = compare_experiments(ws.sessions, ws.store, exp_id, exp_id, ANY_OWNER, options)
    (served,) = (ws.store.root / "comparisons").iterdir()
    assert not first.cached
    never_served = _cached(served.parent, f"{'f' * 32}.json", 100, 40 * DAY)
    _aged(served, 40 * DAY)  # computed long ago...

    again = compare_experiments(ws.sessions, ws.store, exp_id, exp_id, ANY_OWNER, options)
    assert again.cached and time.time() - served.stat().st_mtime < 60  # ...and served just now
    report = collect_garbage(ws.sessions, ws.store, dry_run=False, comparisons_max_age_days=30)
    assert report.deleted["comparisons"].count == 1 and not never_served.exists()
    assert served.exists()
    third = compare_experiments(ws.sessions, ws.store, exp_id, exp_id, ANY_OWNER, options)
    assert third.cached and third.per_language == first.per_language
    ws.close()
