"""Artifact garbage collection: delete what no stage of the database can still use.

The artifact folder holds, per stage, its output (``stages/<kind>-<key>``: a trained model, the
predictions or the metrics) and, while it trains, its resumption checkpoints (``work/<key>``: model
and optimiser state, about three times the model). A stage that succeeds keeps its output and drops
its checkpoints at once (``runners/train.py``). What is left to collect:

- **orphans**: outputs and checkpoints of keys the database does not know (a database that was
  reset, or an artifact folder shared by mistake), once older than ``min_age_s`` (a stage planned
  after this collection read the database may be writing one);
- **dead outputs**: the output folder of a stage that is not ``succeeded`` (a crash between the
  rename and the bookkeeping; its next attempt rewrites it);
- **spent checkpoints**: checkpoints of a stage that succeeded;
- **abandoned writes**: ``.tmp-*`` folders older than ``min_age_s`` whose stage is not running
  (a crash mid-write; younger ones may be a write in progress, and a running stage's may be hours
  old);
- with ``resumable=True`` also the checkpoints of failed and cancelled stages, which a later request
  would otherwise resume from (it then starts from scratch);
- **the comparison cache** (``comparisons/<key>.json``, one file per pair of experiments and
  options a client asked for, :mod:`xstilts.comparisons`): results not used (written, or served:
  serving one sets its modification time) for ``comparisons_max_age_days``, then the least
  recently used until the rest fit in ``comparisons_max_mib``; and its abandoned writes
  (``.<key>.json.<hex>``) older than ``min_age_s``. A result collected is computed again when
  asked for.

Outputs of succeeded stages are always kept: later experiments reuse them by key (a target model
serves a new language's prediction stage) and ``export`` reads the predictions.
"""

from __future__ import annotations

import shutil
import stat
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xstilts.db.models import Stage, Status
from xstilts.runtime.artifacts import ArtifactStore

KEY_PREFIX = 20  # stage and work folders are named by the key's first 20 hex digits
LIVE = (Status.PENDING.value, Status.QUEUED.value, Status.RUNNING.value)
RESUMABLE = (Status.FAILED.value, Status.CANCELLED.value)
COMPARISONS = "comparisons"  # the cache's folder under the artifact root, and its report kind
DAY_S = 86400.0
MIB = 1 << 20


@dataclass
class Tally:
    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size


@dataclass
class GcReport:
    """What was found, per stage kind (``work`` rows are checkpoints), kept or deleted."""

    dry_run: bool
    kept: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    deleted: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def freed_bytes(self) -> int:
        return sum(t.bytes for t in self.deleted.values())

    def as_json(self) -> dict[str, object]:
        kinds = sorted(set(self.kept) | set(self.deleted))
        return {
            "dry_run": self.dry_run,
            "freed_bytes": self.freed_bytes,
            "reasons": dict(self.reasons),
            "kinds": {
                k: {
                    "kept": vars(self.kept.get(k, Tally())),
                    "deleted": vars(self.deleted.get(k, Tally())),
                }
                for k in kinds
            },
        }


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def collect_garbage(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    *,
    dry_run: bool = True,
    resumable: bool = False,
    min_age_s: float = 3600.0,
    comparisons_max_age_days: float | None = None,
    comparisons_max_mib: float | None = None,
) -> GcReport:
    """Delete (or with ``dry_run`` only count) what no stage can use and the comparisons over the
    cache's limits (None: no limit of that kind); see the module docstring."""
    with sessions() as s:
        statuses = {
            key[:KEY_PREFIX]: status for key, status in s.execute(select(Stage.key, Stage.status))
        }
    report = GcReport(dry_run=dry_run)
    now = time.time()

    def old(path: Path) -> bool:
        return now - path.stat().st_mtime > min_age_s

    def visit(path: Path, kind: str, reason: str | None) -> None:
        size = folder_bytes(path)
        if reason is None:
            report.kept[kind].add(size)
            return
        report.deleted[kind].add(size)
        report.reasons[reason] += 1
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)

    stages_root = store.root / "stages"
    for path in sorted(stages_root.iterdir()) if stages_root.is_dir() else ():
        if not path.is_dir():
            continue
        if path.name.startswith(".tmp-"):
            # .tmp-<kind>-<key prefix>-<8 hex>: a running stage's write in progress is kept however
            # old (a training stage writes into it for hours; its mtime is its creation time).
            writer = path.name.removeprefix(".tmp-").rpartition("-")[0].rpartition("-")[2]
            abandoned = old(path) and statuses.get(writer) != Status.RUNNING.value
            visit(path, "unfinished write", "abandoned write" if abandoned else None)
            continue
        kind, _, prefix = path.name.rpartition("-")
        status = statuses.get(prefix)
        if status is None:
            visit(path, kind, "orphan" if old(path) else None)
        elif status != Status.SUCCEEDED.value and status not in LIVE:
            visit(path, kind, "output of a stage that did not succeed")
        else:
            visit(path, kind, None)

    work_root = store.root / "work"
    for path in sorted(work_root.iterdir()) if work_root.is_dir() else ():
        if not path.is_dir():
            continue
        status = statuses.get(path.name)
        if status is None:
            reason: str | None = "orphan" if old(path) else None
        elif status == Status.SUCCEEDED.value:
            reason = "checkpoints of a stage that succeeded"
        elif status in RESUMABLE and resumable:
            reason = "checkpoints of a failed or cancelled stage"
        else:
            reason = None
        visit(path, "checkpoints", reason)

    _collect_comparisons(
        store.root / COMPARISONS,
        report,
        now=now,
        min_age_s=min_age_s,
        max_age_days=comparisons_max_age_days,
        max_mib=comparisons_max_mib,
    )
    return report


def _collect_comparisons(
    folder: Path,
    report: GcReport,
    *,
    now: float,
    min_age_s: float,
    max_age_days: float | None,
    max_mib: float | None,
) -> None:
    used: list[tuple[float, str, int]] = []  # (last used, name, bytes) of each cached result
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # a write renamed into place, or a result deleted, since the listing
        if not stat.S_ISREG(st.st_mode):
            continue
        if path.name.startswith("."):
            old = now - st.st_mtime > min_age_s
            _visit_file(
                report, path, st.st_size, "unfinished write", "abandoned write" if old else None
            )
        elif path.suffix == ".json":
            used.append((st.st_mtime, path.name, st.st_size))
    used.sort()  # least recently used first
    if max_age_days is not None:
        unused = [u for u in used if now - u[0] > max_age_days * DAY_S]
        for _, name, size in unused:
            reason = f"comparison not used for {max_age_days:g} days"
            _visit_file(report, folder / name, size, COMPARISONS, reason)
        used = used[len(unused) :]
    total = sum(size for *_, size in used)
    for _, name, size in used:
        if max_mib is not None and total > max_mib * MIB:
            reason = f"least recently used comparison over {max_mib:g} MiB"
            _visit_file(report, folder / name, size, COMPARISONS, reason)
            total -= size
        else:
            _visit_file(report, folder / name, size, COMPARISONS, None)


def _visit_file(report: GcReport, path: Path, size: int, kind: str, reason: str | None) -> None:
    if reason is None:
        report.kept[kind].add(size)
        return
    report.deleted[kind].add(size)
    report.reasons[reason] += 1
    if not report.dry_run:
        path.unlink(missing_ok=True)
