"""Training stages: the intermediate stage (one encoder, a fresh head per English task) and the
target stage (the intermediate encoder, or the pretrained one, with a fresh head for the target's
English training task)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from xstilts.data import DataSource, load_split
from xstilts.data.mlm import load_text
from xstilts.experiments.plan import MLM_STREAM, IntermediateStageSpec, TargetStageSpec
from xstilts.experiments.stage_results import TRAIN_RESULT_FILE, TrainStageResult
from xstilts.formats import get_trained_format
from xstilts.formats.base import DecodeConfig, FeatureConfig, Features, HeadOutputs
from xstilts.formats.masked_lm import featurize_text
from xstilts.metrics import get_metric
from xstilts.modeling.classifier import (
    MultiHeadClassifier,
    checkpoint_lm_head,
    load_encoder,
    load_stage_model,
    load_tokenizer,
    save_stage_model,
)
from xstilts.runtime.lifecycle import ProgressRecorder, StageContext, StageOutcome, StageRef
from xstilts.spec import SamplingConfig, TrainingConfig, doc_stride
from xstilts.tasks import Split, Task, get_task
from xstilts.training.distributed import Replica, run_replicated
from xstilts.training.loop import Selection, train_multi
from xstilts.training.predict import predict
from xstilts.training.sampling import sampling_probabilities

log = logging.getLogger(__name__)


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
    with ctx.store.writing(out, ctx.check_owned) as tmp:
        if replicas > 1:
            result = run_replicated(
                replicas, _fit, replace(job, out=tmp), progress, ctx.should_stop
            )
        else:
            result = _fit(None, replace(job, out=tmp), progress, ctx.should_stop)
    ctx.check_owned()  # a successor resuming from the checkpoints keeps them
    ctx.store.discard_work(stage.key)
    return StageOutcome(out, result)


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
) -> TrainStageResult:
    """Build the model and data, train, and (one process, or rank 0) write the model into
    ``job.out``; returns the training result."""
    spec = job.spec
    if isinstance(spec, IntermediateStageSpec):
        model, tokenizer = _pretrained(spec)
        streams = spec.streams()
    elif job.upstream is not None:
        # Encoder weights carry over from the intermediate model; its heads are dropped.
        upstream, tokenizer = load_stage_model(job.upstream)
        model = MultiHeadClassifier(upstream.encoder, spec.model.pooling)
        streams = {spec.head: spec.head}
    else:
        model, tokenizer = _pretrained(spec)
        streams = {spec.head: spec.head}
    cfg = spec.training
    torch.manual_seed(spec.seed)  # the fresh heads' initialisation is part of the seeded run
    features_cfg = FeatureConfig(
        cfg.max_seq_length, doc_stride(cfg.max_seq_length, cfg.doc_stride), cfg.max_query_length
    )
    # A fresh head per task on a shared encoder, fed by its streams ({stream: head}): the task's
    # English train split, its translated copies (``mnli@de``), and MLM's text (the "mlm" head);
    # several streams make it multi-task training.
    data: dict[str, Features] = {}
    mlm_head = None
    for stream, head in streams.items():
        if stream == MLM_STREAM:
            continue
        task = get_task(spec.train_task if isinstance(spec, TargetStageSpec) else head)
        lang = stream.partition("@")[2] or "en"
        split = Split.TRAIN if lang == "en" else Split.TRANSLATE_TRAIN
        fmt = get_trained_format(task.format.value)
        examples = load_split(task, split, lang, spec.data.source, cfg.max_train_examples)
        if head not in model.heads:  # the English stream comes first and names the labels
            labels = fmt.labels(task, examples)
            model.add_head(head, len(labels), fmt.head, labels)
        data[stream] = fmt.featurize(tokenizer, examples, features_cfg, model.labels[head])
    if isinstance(spec, IntermediateStageSpec) and spec.mlm is not None:
        mlm_head = _add_mlm_head(model, spec)
        mlm = spec.mlm.config
        texts = {
            lang: load_text(lang, spec.data.source, mlm.max_lines_per_language)
            for lang in mlm.languages
        }
        data[MLM_STREAM] = featurize_text(
            tokenizer, texts, mlm.max_seq_length, mlm.mask_probability, spec.seed
        )
    selection = None
    if cfg.select == "best_english_dev":
        ((head, _),) = streams.items()  # target stages only (the spec refuses the others)
        assert isinstance(spec, TargetStageSpec)
        selection = english_dev_selection(
            get_task(spec.train_task), head, model, tokenizer, features_cfg, spec.data.source, cfg
        )
    probabilities = None
    if isinstance(spec, IntermediateStageSpec) and spec.sampling is not None:
        share = spec.mlm.config.share if spec.mlm is not None else None
        probabilities = stream_probabilities(
            {stream: len(f) for stream, f in data.items()}, spec.sampling, share
        )
    res = train_multi(
        model,
        data,
        cfg,
        spec.seed,
        job.work,
        tokenizer.pad_token_id,
        probabilities=probabilities,
        heads=streams,
        progress=progress if replica is None or replica.main else None,
        should_stop=should_stop,
        selection=selection,
        replica=replica,
    )
    result = TrainStageResult.model_validate(
        {**asdict(res), "sampling_probabilities": probabilities, "mlm_head": mlm_head}
    )
    if job.out is not None and (replica is None or replica.main):
        save_stage_model(model, tokenizer, job.out)
        (job.out / TRAIN_RESULT_FILE).write_text(result.model_dump_json(indent=2))
    return result


def _add_mlm_head(
    model: MultiHeadClassifier, spec: IntermediateStageSpec
) -> Literal["checkpoint", "new"]:
    """Add the MLM head: the checkpoint's LM head where it has one ("checkpoint"), else a new one
    tied to the input embeddings ("new", with a warning)."""
    embeddings = model.encoder.get_input_embeddings()
    assert isinstance(embeddings, torch.nn.Embedding)
    vocab = embeddings.num_embeddings
    model.add_head(MLM_STREAM, vocab, "masked_lm")
    state = checkpoint_lm_head(spec.model.name_or_path, spec.model.revision)
    if state is not None:
        model.heads[MLM_STREAM].load_state_dict(state)
        return "checkpoint"
    log.warning(
        "%s has no LM head: MLM trains a new head tied to the input embeddings",
        spec.model.source,
    )
    return "new"


def stream_probabilities(
    sizes: dict[str, int], sampling: SamplingConfig, mlm_share: float | None
) -> dict[str, float]:
    """How often each stream's batch is drawn: by the sampling strategy over the streams' sizes,
    MLM's included; with ``mlm_share``, MLM gets that share of the batches and the other streams
    the rest, in the strategy's proportions."""
    tasks = {s: n for s, n in sizes.items() if s != MLM_STREAM}
    if mlm_share is None or MLM_STREAM not in sizes or not tasks:
        return sampling_probabilities(
            sizes, sampling.strategy, sampling.temperature, sampling.size_cap
        )
    p = sampling_probabilities(tasks, sampling.strategy, sampling.temperature, sampling.size_cap)
    return {**{s: v * (1 - mlm_share) for s, v in p.items()}, MLM_STREAM: mlm_share}


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
        return get_metric(task.metric).score(task, "en", rows, 0)[0].value

    return Selection(get_metric(task.metric).primary, score)
