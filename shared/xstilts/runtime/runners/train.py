"""Training stages: the intermediate stage (one encoder, a fresh head per English task) and the
target stage (the intermediate encoder, or the pretrained one, with a fresh head for the target's
English training task)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from xstilts.data import DataSource, load_split
from xstilts.experiments.plan import IntermediateStageSpec, TargetStageSpec
from xstilts.formats import get_trained_format
from xstilts.formats.base import DecodeConfig, FeatureConfig, Features, HeadOutputs
from xstilts.metrics import get_metric
from xstilts.modeling.classifier import (
    MultiHeadClassifier,
    load_encoder,
    load_stage_model,
    load_tokenizer,
    save_stage_model,
)
from xstilts.runtime.artifacts import TRAIN_RESULT_FILE
from xstilts.runtime.lifecycle import ProgressRecorder, StageContext, StageOutcome, StageRef
from xstilts.spec import TrainingConfig, doc_stride
from xstilts.tasks import Split, Task, get_task
from xstilts.training.distributed import Replica, run_replicated
from xstilts.training.loop import Selection, train_multi
from xstilts.training.predict import predict
from xstilts.training.sampling import sampling_probabilities


def run(
    ctx: StageContext, stage: StageRef, spec: IntermediateStageSpec | TargetStageSpec
) -> StageOutcome:
    upstream = None
    if isinstance(spec, TargetStageSpec) and spec.upstream:
        upstream = ctx.stage_output(spec.upstream)
    job = _Job(spec, upstream, ctx.store.work_dir(stage.key))
    out = ctx.store.stage_dir(stage.kind, stage.key)
    progress = ProgressRecorder(ctx, stage)
    # Checkpoint selection evaluates in one process; everything else may use several replicas.
    replicas = 1 if spec.training.select == "best_english_dev" else ctx.processes_per_stage
    with ctx.store.writing(out) as tmp:
        if replicas > 1:
            result = run_replicated(
                replicas, _fit, replace(job, out=tmp), progress, ctx.should_stop
            )
        else:
            result = _fit(None, replace(job, out=tmp), progress, ctx.should_stop)
    ctx.store.discard_work(stage.key)
    return StageOutcome(out, result, steps_run=result["steps_run"])


@dataclass(frozen=True)
class _Job:
    """What a training process needs, picklable for data-parallel replicas."""

    spec: IntermediateStageSpec | TargetStageSpec
    upstream: Path | None  # the intermediate stage's output a target stage starts from
    work: Path  # checkpoints
    out: Path | None = None  # where the model and its training result are written


def _fit(
    replica: Replica | None,
    job: _Job,
    progress: Callable[[int, int, float, float], None] | None,
    should_stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    """Build the model and data, train, and (one process, or rank 0) write the model into
    ``job.out``; returns the training result."""
    spec = job.spec
    if isinstance(spec, IntermediateStageSpec):
        model, tokenizer = _pretrained(spec)
        heads = {t: t for t in spec.tasks}
    elif job.upstream is not None:
        # Encoder weights carry over from the intermediate model; its heads are dropped.
        upstream, tokenizer = load_stage_model(job.upstream)
        model = MultiHeadClassifier(upstream.encoder, spec.model.pooling)
        heads = {spec.head: spec.train_task}
    else:
        model, tokenizer = _pretrained(spec)
        heads = {spec.head: spec.train_task}
    cfg = spec.training
    data: dict[str, Features] = {}
    torch.manual_seed(spec.seed)  # the fresh heads' initialisation is part of the seeded run
    features_cfg = FeatureConfig(
        cfg.max_seq_length, doc_stride(cfg.max_seq_length, cfg.doc_stride), cfg.max_query_length
    )
    # A fresh head per entry of heads ({head name: task whose English train split feeds it}) on
    # a shared encoder; several heads make it multi-task training.
    for head, task_name in heads.items():
        task = get_task(task_name)
        fmt = get_trained_format(task.format.value)
        examples = load_split(task, Split.TRAIN, "en", spec.data.source, cfg.max_train_examples)
        labels = fmt.labels(task, examples)
        data[head] = fmt.featurize(tokenizer, examples, features_cfg, labels)
        model.add_head(head, len(labels), fmt.head, labels)
    selection = None
    if cfg.select == "best_english_dev":
        ((head, task_name),) = heads.items()  # target stages only (the spec refuses the others)
        selection = english_dev_selection(
            get_task(task_name), head, model, tokenizer, features_cfg, spec.data.source, cfg
        )
    sampling = spec.sampling if isinstance(spec, IntermediateStageSpec) else None
    probabilities = None
    if sampling is not None:
        probabilities = sampling_probabilities(
            {h: len(f) for h, f in data.items()},
            sampling.strategy,
            sampling.temperature,
            sampling.size_cap,
        )
    res = train_multi(
        model,
        data,
        cfg,
        spec.seed,
        job.work,
        tokenizer.pad_token_id,
        probabilities=probabilities,
        progress=progress if replica is None or replica.main else None,
        should_stop=should_stop,
        selection=selection,
        replica=replica,
    )
    result = {**asdict(res), "sampling_probabilities": probabilities}
    if job.out is not None and (replica is None or replica.main):
        save_stage_model(model, tokenizer, job.out)
        (job.out / TRAIN_RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def _pretrained(spec: IntermediateStageSpec | TargetStageSpec) -> tuple[MultiHeadClassifier, Any]:
    m = spec.model
    encoder = load_encoder(m.name_or_path, m.revision)
    return MultiHeadClassifier(encoder, m.pooling), load_tokenizer(m.name_or_path, m.revision)


DEV_BATCH_SIZE = 64


def english_dev_selection(
    task: Task,
    head: str,
    model: MultiHeadClassifier,
    tokenizer: Any,
    features_cfg: FeatureConfig,
    source: DataSource,
    cfg: TrainingConfig,
) -> Selection:
    """Scores a model on ``task``'s English dev split (at most ``cfg.dev_max_examples``), by the
    task's primary metric, exactly as a predict and an evaluate stage would score it."""
    fmt = get_trained_format(task.format.value)
    examples = load_split(task, Split.VALIDATION, "en", source, cfg.dev_max_examples)
    labels = model.labels[head]
    features = fmt.featurize(tokenizer, examples, features_cfg, labels)

    def score(m: MultiHeadClassifier) -> float:
        outputs = predict(m, head, features, DEV_BATCH_SIZE, tokenizer.pad_token_id)
        rows = fmt.decode(HeadOutputs(examples, features, outputs, labels), DecodeConfig())
        return fmt.score(task, "en", rows, 0)[0].value

    return Selection(get_metric(task.metric).primary, score)
