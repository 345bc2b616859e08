"""Turn a spec into a DAG of typed stage specs, each identified by a content hash of what
determines its output.

A stage's key hashes its kind, the stage code version, the model (source, revision, content
fingerprint), the upstream stage's key, task(s), hyperparameters, seed and data fingerprints. Two
experiments that need the same intermediate model therefore plan the same key, and it is trained
once. Each stage kind has its own spec type; the database stores it as JSON (``Stage.params``) and
:func:`parse_stage_spec` turns it back into the typed object a runner receives. Paths (the model
folder, the data folder) and settings that do not change the output (the evaluation batch size) are
part of the spec but not of the key: the same files elsewhere give the same key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from xstilts.data import DataSource, fingerprint_split
from xstilts.data.loading import resolve_local_files
from xstilts.data.mlm import check_text_files, fingerprint_text
from xstilts.db.models import StageKind
from xstilts.errors import DataNotFoundError, XstiltsError
from xstilts.jsontypes import JSONObject
from xstilts.modeling.sources import ResolvedModel
from xstilts.spec import (
    EvaluationConfig,
    ExperimentSpec,
    MLMConfig,
    SamplingConfig,
    TrainingConfig,
)
from xstilts.tasks import Split, Task, TaskFormat, get_task
from xstilts.tasks.registry import training_task

# Bump when a stage's code changes what it produces; old results then stop matching.
STAGE_CODE_VERSION = {
    StageKind.INTERMEDIATE: 2,  # 2: heads of every format, label names stored with each head
    StageKind.TARGET: 2,
    StageKind.PREDICT: 2,
    StageKind.EVALUATE: 3,  # 3: tagging scored as seqeval 0.0.12, with precision and recall
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Frozen):
    """The pretrained model a stage starts from: how it is identified (source, revision, content
    fingerprint: part of keys) and where it is loaded from (``name_or_path``: not)."""

    source: str
    revision: str | None
    fingerprint: str
    name_or_path: str
    pooling: Literal["first", "mean"]

    def identity(self) -> JSONObject:
        return self.model_dump(exclude={"name_or_path"})


class DataRef(_Frozen):
    """Where task data is read from: a local folder or the Hugging Face hub."""

    kind: Literal["local", "hub"]
    path: str | None = None

    @property
    def source(self) -> DataSource:
        return DataSource(self.kind, Path(self.path) if self.path else None)


class _StageSpecBase(_Frozen):
    """What every stage spec has: its seed, and the keys of the stages that must succeed first."""

    seed: int
    deps: tuple[str, ...] = ()


class MLMStage(_Frozen):
    """The MLM part of an intermediate stage: its settings and each language's text fingerprint
    (in ``config.languages``' order)."""

    config: MLMConfig
    fingerprints: tuple[str, ...]


def stream_name(task: str, lang: str) -> str:
    """The training stream of a task's data in one language: ``mnli`` (English), ``mnli@de``."""
    return task if lang == "en" else f"{task}@{lang}"


MLM_STREAM = "mlm"  # the MLM stream and its head


class IntermediateStageSpec(_StageSpecBase):
    """Train one encoder on English task(s), a fresh head per task (several: multi-task), and
    optionally on translated copies of a task's data (``translated``: its head) and on MLM."""

    kind: Literal["intermediate_train"] = "intermediate_train"
    model: ModelRef
    data: DataRef
    tasks: tuple[str, ...]
    task_versions: tuple[int, ...]
    training: TrainingConfig
    sampling: SamplingConfig | None = None  # several streams only
    data_fingerprints: tuple[str, ...]
    # Per task, the languages of its machine-translated copies, and each copy's fingerprint (by
    # stream name: ``mnli@de``).
    translated: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    translated_fingerprints: dict[str, str] = Field(default_factory=dict)
    mlm: MLMStage | None = None

    def identity(self) -> JSONObject:
        out: JSONObject = {
            "model": self.model.identity(),
            "tasks": list(self.tasks),
            "task_versions": list(self.task_versions),
            "training": self.training.identity(),
            "seed": self.seed,
            "data": list(self.data_fingerprints),
        }
        if self.sampling is not None:  # single-task keys stay as they were
            out["sampling"] = self.sampling.model_dump()
        if self.translated:  # and so do keys without translated data or MLM
            out["translated"] = {t: list(langs) for t, langs in self.translated.items()}
            out["translated_data"] = dict(self.translated_fingerprints)
        if self.mlm is not None:
            out["mlm"] = {**self.mlm.config.model_dump(), "data": list(self.mlm.fingerprints)}
        return out

    def streams(self) -> dict[str, str]:
        """Each training stream and the head it feeds: the tasks in English, their translated
        copies, then MLM."""
        out = {t: t for t in self.tasks}
        for task, languages in self.translated.items():
            out.update({stream_name(task, lang): task for lang in languages})
        if self.mlm is not None:
            out[MLM_STREAM] = MLM_STREAM
        return out


class TargetStageSpec(_StageSpecBase):
    """Train the target's head on its English training task, on the intermediate encoder (or the
    pretrained one for the baseline). The head is named after the training task, so targets
    trained on the same task (XQuAD and MLQA: SQuAD) share the stage."""

    kind: Literal["target_train"] = "target_train"
    model: ModelRef
    data: DataRef
    upstream: str | None  # the intermediate stage's key
    format: str
    train_task: str
    task_version: int
    training: TrainingConfig
    data_fingerprint: str
    # select: best_english_dev: the English dev split of train_task that picks the checkpoint.
    dev_data_fingerprint: str | None = None

    @property
    def head(self) -> str:
        return self.train_task

    def identity(self) -> JSONObject:
        out = {
            "model": self.model.identity(),
            "upstream": self.upstream,
            "format": self.format,
            "train_task": self.train_task,
            "task_version": self.task_version,
            "training": self.training.identity(),
            "seed": self.seed,
            "data": self.data_fingerprint,
        }
        if self.dev_data_fingerprint is not None:
            out["dev_data"] = self.dev_data_fingerprint
        return out


class PredictStageSpec(_StageSpecBase):
    """Predict one language of the target's evaluation split with the target model (``head`` set)
    or, for retrieval, embed it with the intermediate encoder or the bare model (``head`` None)."""

    kind: Literal["predict"] = "predict"
    model: ModelRef
    data: DataRef
    upstream: str | None  # the stage whose model predicts; None: the pretrained model
    head: str | None
    task: str
    task_version: int
    language: str
    evaluation: EvaluationConfig  # ``languages`` left out: one stage is one language
    data_fingerprint: str
    # What decides a prediction beside model and data, per format (QA windows, retrieval layer).
    decode: JSONObject | None = None
    # BUCC on test: its threshold is tuned on this split's gold.
    tuning_split: Split | None = None
    tuning_fingerprint: str | None = None

    def identity(self) -> JSONObject:
        out: JSONObject = {
            "upstream": self.upstream,
            "model": self.model.identity() if self.upstream is None else None,
            "head": self.head,
            "task": self.task,
            "task_version": self.task_version,
            "language": self.language,
            "split": self.evaluation.split,
            "max_seq_length": self.evaluation.max_seq_length,
            "max_examples": self.evaluation.max_examples_per_language,
            "data": self.data_fingerprint,
        }
        if self.decode is not None:
            out["decode"] = self.decode
            if self.tuning_fingerprint is not None:
                out["tuning_data"] = self.tuning_fingerprint
        return out


class EvaluateStageSpec(_StageSpecBase):
    """Turn every language's predictions into the task's metrics (the ``deps`` are the predict
    stages, in language order)."""

    kind: Literal["evaluate"] = "evaluate"
    task: str
    metric: str
    languages: tuple[str, ...]
    bootstrap_samples: int

    def identity(self) -> JSONObject:
        kept = self.model_dump(include={"task", "metric", "bootstrap_samples", "seed"})
        return {"predictions": list(self.deps), **kept}


StageSpec = Annotated[
    IntermediateStageSpec | TargetStageSpec | PredictStageSpec | EvaluateStageSpec,
    Field(discriminator="kind"),
]
_STAGE_SPEC: TypeAdapter[StageSpec] = TypeAdapter(StageSpec)


def parse_stage_spec(params: JSONObject) -> StageSpec:
    """The typed spec of a stored stage (``Stage.params``)."""
    return _STAGE_SPEC.validate_python(params)


@dataclass(frozen=True)
class PlannedStage:
    role: str  # within its experiment: "intermediate", "target", "predict:de", "evaluate"
    spec: StageSpec

    @property
    def kind(self) -> StageKind:
        return StageKind(self.spec.kind)

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def deps(self) -> tuple[str, ...]:
        return self.spec.deps

    def identity(self) -> JSONObject:
        """What the key hashes."""
        kind = self.kind
        return {
            "kind": kind.value,
            "code_version": STAGE_CODE_VERSION[kind],
            **self.spec.identity(),
        }

    @cached_property
    def key(self) -> str:
        return stage_key(self.identity())

    def params(self) -> JSONObject:
        """What the database stores to run it: the spec as JSON."""
        return self.spec.model_dump(mode="json")


def stage_key(identity: JSONObject) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_data_source(
    spec: ExperimentSpec, default_dir: Path | None, roots: tuple[Path, ...] = ()
) -> DataSource:
    """The spec's data: the hub, ``default_dir`` (``XSTILTS_DATA_DIR``), or ``data.path``, which must
    resolve (symbolic links followed) to a folder under one of ``roots``; a relative path is taken
    under each root in turn. Refusals name the field and the path as given, never what it resolved
    to. ``roots`` default to ``(default_dir,)``."""
    if spec.data.source == "hub":
        return DataSource("hub")
    if not spec.data.path:
        if default_dir is None:
            raise XstiltsError(
                "a local data source needs a folder: set data.path in the spec "
                "or the XSTILTS_DATA_DIR environment variable",
                field="data.path",
            )
        if not default_dir.is_dir():
            raise XstiltsError(
                "the data folder (XSTILTS_DATA_DIR) is not a folder", field="data.path"
            )
        return DataSource("local", default_dir.resolve())
    roots = roots or ((default_dir,) if default_dir else ())
    if not roots:
        raise XstiltsError(
            "no data roots are configured (XSTILTS_DATA_ROOTS or XSTILTS_DATA_DIR), so data.path "
            "cannot be used",
            field="data.path",
        )
    given = spec.data.path
    for root in roots:
        root = root.resolve()
        try:
            folder = (root / given).resolve()
            inside = folder == root or root in folder.parents
            if inside and folder.is_dir():
                return DataSource("local", folder)
        except (OSError, ValueError):  # a name too long, a loop of links: not a folder either
            continue
    raise XstiltsError(
        f"{given!r} is not a folder under the configured data roots (XSTILTS_DATA_ROOTS, default "
        "XSTILTS_DATA_DIR); give a folder inside one of them, absolute or relative to it",
        field="data.path",
    )


def _decode_settings(target: Task, evaluation: EvaluationConfig) -> JSONObject | None:
    """Prediction settings beyond model and data that a format reads (None: none)."""
    if target.format is TaskFormat.EXTRACTIVE_QA:
        return {
            "doc_stride": evaluation.doc_stride,
            "max_answer_length": evaluation.max_answer_length,
            "n_best_size": evaluation.n_best_size,
        }
    if target.format is TaskFormat.RETRIEVAL:
        return {"retrieval": evaluation.retrieval.model_dump()}
    return None


def check_files(needed: list[tuple[Task, Split, str]], data: DataSource) -> None:
    """Every data file the experiment reads exists: one error listing every missing one (a
    spec's first missing file would otherwise hide the next)."""
    if data.kind != "local" or data.path is None:
        return
    missing = []
    unique = {(task.name, split, lang): (task, split, lang) for task, split, lang in needed}
    for task, split, lang in unique.values():
        for part in [get_task(name) for name in task.combines] or [task]:
            try:
                resolve_local_files(part, split, lang, data.path)
            except DataNotFoundError as e:
                missing.append(str(e))
    if len(missing) > 1:
        raise DataNotFoundError(f"{len(missing)} data files are missing: " + "; ".join(missing))
    if missing:
        raise DataNotFoundError(missing[0])


def plan_experiment(
    spec: ExperimentSpec, model: ResolvedModel, data: DataSource
) -> list[PlannedStage]:
    """Stages in topological order (dependencies first), for every seed."""
    model_ref = ModelRef(
        source=spec.model.source,
        revision=model.revision,
        fingerprint=model.fingerprint,
        name_or_path=model.name_or_path,
        pooling=spec.model.pooling,
    )
    data_ref = DataRef(kind=data.kind, path=str(data.path) if data.path else None)
    target = get_task(spec.target.task)
    train_task = training_task(target, spec.target.train_task)
    split = Split(spec.evaluation.split)
    evaluation = spec.evaluation.model_copy(update={"languages": None})
    decode = _decode_settings(target, evaluation)
    tuning_split = target.threshold_tuning_split if split is Split.TEST else None
    if decode is not None and tuning_split is not None:
        decode["tuning_split"] = tuning_split.value

    needed = [(get_task(name), Split.TRAIN, "en") for name in spec.intermediate.tasks]
    needed += [
        (get_task(name), Split.TRANSLATE_TRAIN, lang)
        for name, languages in spec.intermediate.translated.items()
        for lang in languages
    ]
    if train_task is not None:
        needed.append((train_task, Split.TRAIN, "en"))
        if spec.target.training.select == "best_english_dev":
            needed.append((train_task, Split.VALIDATION, "en"))
    needed += [(target, split, lang) for lang in spec.languages]
    if tuning_split is not None and decode is not None:
        needed += [(target, tuning_split, lang) for lang in spec.languages]
    check_files(needed, data)
    mlm = spec.intermediate.mlm
    if mlm is not None:
        check_text_files(mlm.languages, data)

    plan: list[PlannedStage] = []
    for seed in spec.seeds:
        base: JSONObject = {"seed": seed, "model": model_ref, "data": data_ref}
        upstream: str | None = None
        if spec.intermediate.trains:
            tasks = [get_task(name) for name in spec.intermediate.tasks]
            translated = {t: tuple(langs) for t, langs in spec.intermediate.translated.items()}
            streams = len(tasks) + sum(map(len, translated.values())) + (mlm is not None)
            inter = PlannedStage(
                "intermediate",
                IntermediateStageSpec(
                    **base,
                    tasks=tuple(t.name for t in tasks),
                    task_versions=tuple(t.version for t in tasks),
                    training=spec.intermediate.training,
                    sampling=spec.intermediate.sampling if streams > 1 else None,
                    data_fingerprints=tuple(
                        fingerprint_split(t, Split.TRAIN, "en", data) for t in tasks
                    ),
                    translated=translated,
                    translated_fingerprints={
                        stream_name(name, lang): fingerprint_split(
                            get_task(name), Split.TRANSLATE_TRAIN, lang, data
                        )
                        for name, languages in translated.items()
                        for lang in languages
                    },
                    mlm=(
                        MLMStage(
                            config=mlm,
                            fingerprints=tuple(fingerprint_text(x, data) for x in mlm.languages),
                        )
                        if mlm is not None
                        else None
                    ),
                ),
            )
            plan.append(inter)
            upstream = inter.key
        if train_task is None:  # retrieval: predictions read the intermediate (or bare) encoder
            model_stage_key = upstream
        else:
            tgt = PlannedStage(
                "target",
                TargetStageSpec(
                    **base,
                    deps=(upstream,) if upstream else (),
                    upstream=upstream,
                    format=target.format.value,
                    train_task=train_task.name,
                    task_version=train_task.version,
                    training=spec.target.training,
                    data_fingerprint=fingerprint_split(train_task, Split.TRAIN, "en", data),
                    dev_data_fingerprint=(
                        fingerprint_split(train_task, Split.VALIDATION, "en", data)
                        if spec.target.training.select == "best_english_dev"
                        else None
                    ),
                ),
            )
            plan.append(tgt)
            model_stage_key = tgt.key
        predicts = [
            PlannedStage(
                f"predict:{lang}",
                PredictStageSpec(
                    **base,
                    deps=(model_stage_key,) if model_stage_key else (),
                    upstream=model_stage_key,
                    head=train_task.name if train_task else None,
                    task=target.name,
                    task_version=target.version,
                    language=lang,
                    evaluation=evaluation,
                    data_fingerprint=fingerprint_split(target, split, lang, data),
                    decode=decode,
                    tuning_split=tuning_split,
                    tuning_fingerprint=(
                        fingerprint_split(target, tuning_split, lang, data)
                        if tuning_split and decode is not None
                        else None
                    ),
                ),
            )
            for lang in spec.languages
        ]
        plan.extend(predicts)
        plan.append(
            PlannedStage(
                "evaluate",
                EvaluateStageSpec(
                    seed=seed,
                    deps=tuple(p.key for p in predicts),
                    task=target.name,
                    metric=target.metric,
                    languages=tuple(spec.languages),
                    bootstrap_samples=spec.evaluation.bootstrap_samples,
                ),
            )
        )
    return plan
