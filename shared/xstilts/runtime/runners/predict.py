"""The predict stage: one language of the target's evaluation split, predicted by the target model
(or, for retrieval targets, embedded and searched with the intermediate or pretrained encoder).
Writes ``predictions.json``: the rows (id, prediction, label) the evaluate stage scores."""

from __future__ import annotations

import json
from typing import Any

from xstilts.data import load_split
from xstilts.experiments.plan import PredictStageSpec
from xstilts.experiments.stage_results import PREDICTIONS_FILE, PredictStageResult
from xstilts.formats import get_format, get_trained_format
from xstilts.formats.base import DecodeConfig, FeatureConfig, HeadOutputs, PredictionRow
from xstilts.formats.retrieval import Retrieval, SearchConfig
from xstilts.modeling.classifier import load_encoder, load_tokenizer
from xstilts.runtime.lifecycle import ProgressRecorder, StageContext, StageOutcome, StageRef
from xstilts.runtime.runners.cache import ModelCache
from xstilts.spec import doc_stride
from xstilts.tasks import Split, Task, get_task


def run(ctx: StageContext, stage: StageRef, spec: PredictStageSpec) -> StageOutcome:
    task = get_task(spec.task)
    ev = spec.evaluation
    examples = load_split(
        task, Split(ev.split), spec.language, spec.data.source, ev.max_examples_per_language
    )
    progress = ProgressRecorder(ctx, stage, stops=True)
    models = ctx.models or ModelCache()
    if spec.head is None:
        rows = _retrieve(ctx, spec, task, examples, models, progress)
    else:
        fmt = get_trained_format(task.format.value)
        model, tokenizer = models.stage_model(ctx.stage_output(_upstream(spec)))
        # The target model's head is named after its English training task (MNLI for XNLI), so
        # XQuAD and MLQA, both trained on SQuAD, share one target stage.
        labels = model.labels[spec.head]
        features = fmt.featurize(
            tokenizer,
            examples,
            FeatureConfig(ev.max_seq_length, doc_stride(ev.max_seq_length, ev.doc_stride)),
            labels,
        )
        from xstilts.training.predict import predict

        outputs = predict(
            model, spec.head, features, ev.batch_size, tokenizer.pad_token_id, progress=progress
        )
        rows = fmt.decode(
            HeadOutputs(examples, features, outputs, labels),
            DecodeConfig(ev.n_best_size, ev.max_answer_length),
        )
    out = ctx.store.stage_dir(stage.kind, stage.key)
    with ctx.store.writing(out, ctx.check_owned) as tmp:
        (tmp / PREDICTIONS_FILE).write_text(
            json.dumps(
                {"task": task.name, "language": spec.language, "split": ev.split, "rows": rows}
            )
        )
    return StageOutcome(out, PredictStageResult(n=len(rows)))


def _upstream(spec: PredictStageSpec) -> str:
    if spec.upstream is None:
        raise ValueError(f"predict stage for {spec.task} has a head but no model stage upstream")
    return spec.upstream


def _retrieve(
    ctx: StageContext,
    spec: PredictStageSpec,
    task: Task,
    examples: list[Any],
    models: ModelCache,
    progress: ProgressRecorder,
) -> list[PredictionRow]:
    """Retrieval trains no head: sentence vectors come from the intermediate model's encoder, or
    from the bare pretrained model for the baseline."""
    fmt = get_format(task.format.value)
    assert isinstance(fmt, Retrieval)
    ev = spec.evaluation
    if spec.upstream:
        model, tokenizer = models.stage_model(ctx.stage_output(spec.upstream))
        encoder = model.encoder
    else:
        encoder = load_encoder(spec.model.name_or_path, spec.model.revision)
        tokenizer = load_tokenizer(spec.model.name_or_path, spec.model.revision)
    tuning = None
    if spec.tuning_split:
        tuning = load_split(
            task,
            Split(spec.tuning_split),
            spec.language,
            spec.data.source,
            ev.max_examples_per_language,
        )[0]
    return fmt.retrieve(
        task,
        encoder,
        tokenizer,
        examples[0],
        SearchConfig(
            **ev.retrieval.model_dump(), batch_size=ev.batch_size, max_length=ev.max_seq_length
        ),
        tuning,
        progress=lambda done, total: progress(done, total, float("nan")),
    )
