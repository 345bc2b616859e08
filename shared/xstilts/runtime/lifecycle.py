"""Running one stage by id: the single entry point every executor calls (``run_stage``).

The database row says what to run; outputs go to the artifact store; the row is updated with the
result. A stage claims itself with a conditional update, so a second caller finds nothing to do.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from xstilts.data import DataSource, load_split
from xstilts.db.models import Metric, Stage, StageKind, Status, utcnow
from xstilts.errors import CancelledError, StageFailedError
from xstilts.experiments.statistics import cross_language_summary
from xstilts.formats import get_format, get_trained_format
from xstilts.formats.base import DecodeConfig, FeatureConfig, Features
from xstilts.formats.retrieval import Retrieval, SearchConfig
from xstilts.modeling.classifier import (
    MultiHeadClassifier,
    load_encoder,
    load_stage_model,
    load_tokenizer,
    save_stage_model,
)
from xstilts.runtime.artifacts import ArtifactStore
from xstilts.spec import TrainingConfig, doc_stride
from xstilts.tasks import Split, get_task
from xstilts.training.loop import predict, sampling_probabilities, train_multi

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.json"
METRICS_FILE = "metrics.json"
# How long a running stage may go without a heartbeat before another runner may take it over.
LEASE_SECONDS = float(os.environ.get("XSTILTS_LEASE_SECONDS", "60"))
# Several heartbeats fit in one lease, so a live stage never looks dead between two of them.
HEARTBEAT_SECONDS = min(5.0, LEASE_SECONDS / 4)


class StageReporter(Protocol):
    """What a stage tells the outside world while it runs (a progress bar, the database, ...)."""

    def progress(self, stage: Stage, step: int, total: int, examples_per_s: float) -> None: ...


@dataclass
class StageContext:
    sessions: sessionmaker[Session]
    store: ArtifactStore
    reporter: StageReporter | None = None
    should_stop: Callable[[], bool] | None = None


def _data_source(params: dict[str, Any]) -> DataSource:
    d = params["data"]
    return DataSource(d["kind"], Path(d["path"]) if d["path"] else None)


def claim(sessions: sessionmaker[Session], stage_id: int, lease_s: float = LEASE_SECONDS) -> bool:
    """Move a stage to running if it is pending/queued, or running with an expired lease.

    A conditional UPDATE: of two callers, exactly one gets the row; the other returns False.
    """
    now = utcnow()
    claimable = or_(
        Stage.status.in_([Status.PENDING.value, Status.QUEUED.value]),
        and_(Stage.status == Status.RUNNING.value, Stage.lease_until < now),
    )
    with sessions.begin() as s:
        res = s.execute(
            update(Stage)
            .where(Stage.id == stage_id, claimable)
            .values(
                status=Status.RUNNING.value,
                attempts=Stage.attempts + 1,
                started_at=now,
                lease_until=now + timedelta(seconds=lease_s),
                error=None,
            )
        )
        return cast(CursorResult[Any], res).rowcount == 1


def record_progress(
    sessions: sessionmaker[Session], stage_id: int, step: int, total: int, rate: float
) -> None:
    """Store a running stage's progress (its lease is :class:`_LeaseKeeper`'s job)."""
    with sessions.begin() as s:
        s.execute(
            update(Stage)
            .where(Stage.id == stage_id, Stage.status == Status.RUNNING.value)
            .values(progress_step=step, progress_total=total, examples_per_s=rate)
        )


class _LeaseKeeper:
    """Extends a running stage's lease from a background thread while this process lives.

    Step-level heartbeats alone would let the lease lapse during anything long between two steps
    (saving a multi-GB checkpoint, loading a model, a long prediction batch), and the reconciler
    would then start a second runner. The lease ends with the process: a killed worker's stage is
    picked up once it expires.
    """

    def __init__(self, sessions: sessionmaker[Session], stage_id: int) -> None:
        self.sessions = sessions
        self.stage_id = stage_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{stage_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.sessions.begin() as s:
                    s.execute(
                        update(Stage)
                        .where(Stage.id == self.stage_id, Stage.status == Status.RUNNING.value)
                        .values(lease_until=utcnow() + timedelta(seconds=LEASE_SECONDS))
                    )
            except Exception:  # a database hiccup must not kill the stage; the next beat retries
                log.warning("lease heartbeat for stage %d failed", self.stage_id, exc_info=True)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_stage(ctx: StageContext, stage_id: int) -> bool:
    """Run a stage if it can be claimed. Returns True if this call ran it."""
    if not claim(ctx.sessions, stage_id):
        return False
    with ctx.sessions() as s:
        stage = s.get(Stage, stage_id)
        assert stage is not None
        s.expunge(stage)
    try:
        with _LeaseKeeper(ctx.sessions, stage_id):
            output, result = _RUNNERS[StageKind(stage.kind)](ctx, stage)
    except CancelledError as e:
        _finish(ctx, stage_id, Status.CANCELLED, error=str(e))
        raise
    except KeyboardInterrupt:
        # Ctrl-C: hand the stage back at once (its checkpoint stays) so a re-run resumes it.
        with ctx.sessions.begin() as s:
            s.execute(
                update(Stage)
                .where(Stage.id == stage_id)
                .values(status=Status.PENDING.value, lease_until=None)
            )
        raise
    except Exception as e:
        log.exception("stage %s (%s) failed", stage.kind, stage.key[:12])
        detail = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=8))
        _finish(ctx, stage_id, Status.FAILED, error=detail)
        raise StageFailedError(
            f"stage {stage.kind} {stage.key[:12]} failed: {type(e).__name__}: {e}"
        ) from e
    _finish(ctx, stage_id, Status.SUCCEEDED, output=str(output), result=result)
    return True


def _finish(
    ctx: StageContext,
    stage_id: int,
    status: Status,
    output: str | None = None,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    with ctx.sessions.begin() as s:
        stage = s.get(Stage, stage_id)
        assert stage is not None
        stage.status = status.value
        stage.finished_at = utcnow()
        stage.error = error
        if output is not None:
            stage.output_uri = output
        if result is not None:
            stage.result = result
            stage.steps_run += int(result.get("steps_run", 0))


def _stage_output(ctx: StageContext, key: str) -> Path:
    with ctx.sessions() as s:
        dep = s.scalars(select(Stage).where(Stage.key == key)).one()
        if dep.status != Status.SUCCEEDED.value or not dep.output_uri:
            raise StageFailedError(
                f"dependency {dep.kind} {key[:12]} has not succeeded ({dep.status})"
            )
        return Path(dep.output_uri)


def _progress_fn(ctx: StageContext, stage: Stage) -> Callable[[int, int, float, float], None]:
    last = 0.0

    def report(step: int, total: int, rate: float, loss: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= HEARTBEAT_SECONDS or step == total:
            record_progress(ctx.sessions, stage.id, step, total, rate)
            last = now
        if ctx.reporter is not None:
            ctx.reporter.progress(stage, step, total, rate)

    return report


def _train_stage(
    ctx: StageContext,
    stage: Stage,
    model: MultiHeadClassifier,
    tokenizer: Any,
    heads: dict[str, str],
) -> tuple[Path, dict[str, Any]]:
    """Train a fresh head per entry of ``heads`` ({head name: task whose English train split feeds
    it}) on a shared encoder; several heads make it multi-task training."""
    params = stage.params
    cfg = TrainingConfig.model_validate(params["training"])
    seed = int(stage.identity["seed"])
    data: dict[str, Features] = {}
    torch.manual_seed(seed)  # the fresh heads' initialisation is part of the seeded run
    features_cfg = FeatureConfig(
        cfg.max_seq_length, doc_stride(cfg.max_seq_length, cfg.doc_stride), cfg.max_query_length
    )
    for head, task_name in heads.items():
        task = get_task(task_name)
        fmt = get_trained_format(task.format.value)
        examples = load_split(task, Split.TRAIN, "en", _data_source(params), cfg.max_train_examples)
        labels = fmt.labels(task, examples)
        data[head] = fmt.featurize(tokenizer, examples, features_cfg, labels)
        model.add_head(head, len(labels), fmt.head, labels)
    probabilities = None
    if "sampling" in params:
        sampling = params["sampling"]
        probabilities = sampling_probabilities(
            {h: len(f) for h, f in data.items()},
            sampling["strategy"],
            sampling["temperature"],
            sampling["size_cap"],
        )
    res = train_multi(
        model,
        data,
        cfg,
        seed,
        ctx.store.work_dir(stage.key),
        tokenizer.pad_token_id,
        probabilities=probabilities,
        progress=_progress_fn(ctx, stage),
        should_stop=ctx.should_stop,
    )
    result = {**asdict(res), "sampling_probabilities": probabilities}
    out = ctx.store.stage_dir(stage.kind, stage.key)
    with ctx.store.writing(out) as tmp:
        save_stage_model(model, tokenizer, tmp)
        (tmp / "train_result.json").write_text(json.dumps(result, indent=2))
    ctx.store.discard_work(stage.key)
    return out, result


def _run_intermediate(ctx: StageContext, stage: Stage) -> tuple[Path, dict[str, Any]]:
    m = stage.params["model"]
    model = MultiHeadClassifier(load_encoder(m["name_or_path"], m["revision"]), m["pooling"])
    tokenizer = load_tokenizer(m["name_or_path"], m["revision"])
    return _train_stage(ctx, stage, model, tokenizer, {t: t for t in stage.params["tasks"]})


def _run_target(ctx: StageContext, stage: Stage) -> tuple[Path, dict[str, Any]]:
    params = stage.params
    if params["upstream"]:
        # Encoder weights carry over from the intermediate model; its heads are dropped.
        upstream_model, tokenizer = load_stage_model(_stage_output(ctx, params["upstream"]))
        model = MultiHeadClassifier(upstream_model.encoder, params["model"]["pooling"])
    else:
        m = params["model"]
        model = MultiHeadClassifier(load_encoder(m["name_or_path"], m["revision"]), m["pooling"])
        tokenizer = load_tokenizer(m["name_or_path"], m["revision"])
    return _train_stage(ctx, stage, model, tokenizer, {params["head"]: params["train_task"]})


_MODEL_CACHE: dict[str, tuple[MultiHeadClassifier, Any]] = {}


def _cached_stage_model(path: Path) -> tuple[MultiHeadClassifier, Any]:
    """One target model serves every language's predict stage without reloading."""
    key = str(path)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = load_stage_model(path)
    return _MODEL_CACHE[key]


def _run_predict(ctx: StageContext, stage: Stage) -> tuple[Path, dict[str, Any]]:
    params = stage.params
    ev = params["evaluation"]
    task = get_task(params["task"])
    fmt = get_format(task.format.value)
    lang = params["language"]
    source = _data_source(params)
    split = Split(ev["split"])
    examples = load_split(task, split, lang, source, ev["max_examples_per_language"])
    progress = _progress_fn(ctx, stage)
    if isinstance(fmt, Retrieval):
        encoder, tokenizer = _retrieval_encoder(ctx, stage)
        tuning = None
        if params.get("tuning_split"):
            tuning = load_split(
                task, Split(params["tuning_split"]), lang, source, ev["max_examples_per_language"]
            )[0]
        rows = fmt.retrieve(
            task,
            encoder,
            tokenizer,
            examples[0],
            SearchConfig(
                **ev["retrieval"], batch_size=ev["batch_size"], max_length=ev["max_seq_length"]
            ),
            tuning,
            progress=lambda done, total: progress(done, total, float("nan"), float("nan")),
        )
    else:
        fmt = get_trained_format(task.format.value)
        model, tokenizer = _cached_stage_model(_stage_output(ctx, stage.identity["upstream"]))
        # The target model's head is named after its English training task (MNLI for XNLI), so
        # XQuAD and MLQA, both trained on SQuAD, share one target stage.
        head = params["head"]
        labels = model.labels[head]
        features = fmt.featurize(
            tokenizer,
            examples,
            FeatureConfig(ev["max_seq_length"], doc_stride(ev["max_seq_length"], ev["doc_stride"])),
            labels,
        )
        outputs = predict(
            model, head, features, ev["batch_size"], tokenizer.pad_token_id, progress=progress
        )
        rows = fmt.decode(
            examples,
            features,
            outputs,
            labels,
            DecodeConfig(ev["n_best_size"], ev["max_answer_length"]),
        )
    out = ctx.store.stage_dir(stage.kind, stage.key)
    with ctx.store.writing(out) as tmp:
        (tmp / PREDICTIONS_FILE).write_text(
            json.dumps({"task": task.name, "language": lang, "split": split.value, "rows": rows})
        )
    return out, {"n": len(rows), "steps_run": 0}


def _retrieval_encoder(ctx: StageContext, stage: Stage) -> tuple[Any, Any]:
    """The intermediate model's encoder, or the bare pretrained model for the baseline."""
    upstream = stage.identity["upstream"]
    if upstream:
        model, tokenizer = _cached_stage_model(_stage_output(ctx, upstream))
        return model.encoder, tokenizer
    m = stage.params["model"]
    return load_encoder(m["name_or_path"], m["revision"]), load_tokenizer(
        m["name_or_path"], m["revision"]
    )


def _run_evaluate(ctx: StageContext, stage: Stage) -> tuple[Path, dict[str, Any]]:
    params = stage.params
    task = get_task(params["task"])
    fmt = get_format(task.format.value)
    seed = int(params["seed"])
    values: dict[str, float] = {}
    rows: list[Metric] = []
    for key in stage.identity["predictions"]:
        data = json.loads((_stage_output(ctx, key) / PREDICTIONS_FILE).read_text())
        lang = data["language"]
        scores = fmt.score(task, lang, data["rows"], params["bootstrap_samples"])
        values[lang] = scores[0].value  # the task's primary metric
        rows.extend(
            Metric(
                stage_id=stage.id,
                task=task.name,
                language=lang,
                metric=sc.metric,
                value=sc.value,
                n=sc.n,
                seed=seed,
                ci_low=sc.ci_low,
                ci_high=sc.ci_high,
            )
            for sc in scores
        )
    summary = cross_language_summary(values)
    with ctx.sessions.begin() as s:
        # Idempotent: a re-run replaces this stage's metrics instead of adding a second set.
        s.execute(delete(Metric).where(Metric.stage_id == stage.id))
        s.add_all(rows)
    out = ctx.store.stage_dir(stage.kind, stage.key)
    with ctx.store.writing(out) as tmp:
        metrics = [{c: getattr(r, c) for c in _METRIC_FIELDS} for r in rows]
        (tmp / METRICS_FILE).write_text(
            json.dumps({"metrics": metrics, "summary": summary}, indent=2)
        )
    return out, {"summary": summary, "steps_run": 0}


_METRIC_FIELDS = ("task", "language", "metric", "value", "n", "seed", "ci_low", "ci_high")


_RUNNERS: dict[StageKind, Callable[[StageContext, Stage], tuple[Path, dict[str, Any]]]] = {
    StageKind.INTERMEDIATE: _run_intermediate,
    StageKind.TARGET: _run_target,
    StageKind.PREDICT: _run_predict,
    StageKind.EVALUATE: _run_evaluate,
}
