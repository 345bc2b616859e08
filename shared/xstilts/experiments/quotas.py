"""Limits on the work one request may start, checked per API key before anything is planned.

Planning fingerprints models and data and builds every stage; a study of 8 rows, 5 targets and
45 seeds plans 35,775 stage links (27 s of CPU) before the old post-planning cap refused it. The
estimate here costs microseconds per cell: it counts the stages a spec will plan (the same count
:func:`~xstilts.experiments.plan.plan_experiment` gives) and the training stages whose outputs a
request keeps on disk, one model each.

- ``XSTILTS_QUOTA_STAGES``: stage links one request (an experiment, or a study's cells together)
  may plan; 422 naming the limit.
- ``XSTILTS_QUOTA_DISK_GIB``: disk the request's training outputs would take at most (shared
  stages counted once, reuse of earlier ones not subtracted); 422.
- ``XSTILTS_QUOTA_LIVE_EXPERIMENTS``: a key's experiments pending, queued or running at once, this
  request's included; 429, since it passes as they finish. Counted before planning, and again
  inside the transaction that stores the request, where the key's submissions take turns: requests
  sent together cannot all pass on the same count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import Experiment, Status
from xstilts.errors import XstiltsError
from xstilts.modeling.sources import resolve_model
from xstilts.spec import HF_PREFIX, ExperimentSpec
from xstilts.tasks import get_task
from xstilts.tasks.registry import training_task

GIB = 1 << 30
# A hub model's size is unknown before it is downloaded: assume XLM-R Large's weights in fp32.
HUB_MODEL_BYTES = int(2.24e9)
WEIGHT_SUFFIXES = (".safetensors", ".bin")
LIVE = (Status.PENDING.value, Status.QUEUED.value, Status.RUNNING.value)
_SUBMISSIONS_LOCK_SPACE = 0x5857  # the advisory locks' first key: "XW", xstilts submissions


class QuotaExceededError(XstiltsError):
    """A limit that passes with time (live experiments): the API answers 429."""


@dataclass(frozen=True)
class WorkEstimate:
    experiments: int
    stage_links: int  # stages over all experiments and seeds, shared ones counted per experiment
    training_stages: int  # distinct training stages (each keeps one model)
    disk_bytes: int


def stage_count(spec: ExperimentSpec) -> int:
    """The stages :func:`~xstilts.experiments.plan.plan_experiment` plans for ``spec``."""
    per_seed = (
        (1 if spec.intermediate.trains else 0)
        + (0 if training_task(get_task(spec.target.task), spec.target.train_task) is None else 1)
        + len(spec.languages)
        + 1  # evaluate
    )
    return per_seed * len(spec.seeds)


def estimate(specs: Sequence[ExperimentSpec], settings: Settings) -> WorkEstimate:
    training: dict[tuple[str, ...], int] = {}  # a training stage's identity -> its model's bytes
    for spec in specs:
        weights = model_bytes(spec, settings)
        train = training_task(get_task(spec.target.task), spec.target.train_task)
        for seed in spec.seeds:
            base = (spec.model.model_dump_json(), str(seed))
            tasks = tuple(spec.intermediate.arm)
            if spec.intermediate.trains:
                training[(*base, "intermediate", *tasks, spec.intermediate.model_dump_json())] = (
                    weights
                )
            if train is not None:
                identity = (*base, "target", *tasks, train.name, spec.target.model_dump_json())
                training[identity] = weights
    return WorkEstimate(
        experiments=len(specs),
        stage_links=sum(stage_count(spec) for spec in specs),
        training_stages=len(training),
        disk_bytes=sum(training.values()),
    )


def model_bytes(spec: ExperimentSpec, settings: Settings) -> int:
    """The size of the model's weight files (a trained stage's output is about that)."""
    if spec.model.source.startswith(HF_PREFIX):
        return HUB_MODEL_BYTES
    folder = Path(resolve_model(spec.model, settings.model_roots, settings.cache_dir).name_or_path)
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))


def check_quota(
    sessions: sessionmaker[Session],
    settings: Settings,
    specs: Sequence[ExperimentSpec],
    owner: str | None,
) -> WorkEstimate:
    """Refuse a request past a limit, naming it; cheap enough to run before any planning."""
    work = estimate(specs, settings)
    if work.stage_links > settings.quota_stages:
        raise XstiltsError(
            f"the request plans {work.stage_links} stages; a request may plan at most "
            f"{settings.quota_stages} (XSTILTS_QUOTA_STAGES): use fewer cells, languages or seeds",
            field="seeds",
        )
    limit = settings.quota_disk_gib * GIB
    if work.disk_bytes > limit:
        raise XstiltsError(
            f"the request's {work.training_stages} training stages would keep about "
            f"{work.disk_bytes / GIB:.1f} GiB of models; a request may keep at most "
            f"{settings.quota_disk_gib:g} GiB (XSTILTS_QUOTA_DISK_GIB): use fewer seeds or rows",
            field="seeds",
        )
    with sessions() as s:
        live = live_experiments(s, owner)
    if live + work.experiments > settings.quota_live_experiments:
        raise _too_many_live(live, work.experiments, settings)
    return work


def live_experiments(s: Session, owner: str | None) -> int:
    """The key's experiments pending, queued or running."""
    count = s.scalar(
        select(func.count())
        .select_from(Experiment)
        .where(Experiment.owner == owner, Experiment.status.in_(LIVE))
    )
    return count or 0


def take_turn(s: Session, owner: str | None) -> None:
    """Make the key's submissions store one at a time, so that the live-experiment quota, counted
    again inside the storing transaction (:func:`check_live_stored`), holds for requests that
    arrive together (each passed :func:`check_quota` before any was stored). On Postgres a
    transaction-scoped advisory lock per key; SQLite lets one transaction write at a time already
    (the storing transaction's first statement is a write)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:owner))"),
            {"space": _SUBMISSIONS_LOCK_SPACE, "owner": owner or ""},
        )


def check_live_stored(s: Session, settings: Settings, owner: str | None, added: int) -> None:
    """Inside the storing transaction, after :func:`take_turn` and the inserts: the key's live
    experiments, this request's ``added`` ones included, within the quota (else 429, and the
    transaction rolls back)."""
    live = live_experiments(s, owner)
    if live > settings.quota_live_experiments:
        raise _too_many_live(live - added, added, settings)


def _too_many_live(live: int, adding: int, settings: Settings) -> QuotaExceededError:
    return QuotaExceededError(
        f"this key has {live} experiments pending, queued or running and the request adds "
        f"{adding}; a key may have at most {settings.quota_live_experiments} at once "
        "(XSTILTS_QUOTA_LIVE_EXPERIMENTS): retry when some have finished"
    )
