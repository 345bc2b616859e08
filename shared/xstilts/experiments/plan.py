"""Turn a spec into a DAG of stages, each identified by a content hash of what determines its output.

A stage's key hashes its kind, the stage code version, the model (source, revision, content
fingerprint), the upstream stage's key, task(s), hyperparameters, seed and data fingerprints. Two
experiments that need the same intermediate model therefore plan the same key, and it is trained
once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts.data import DataSource, fingerprint_split
from xstilts.db.models import StageKind
from xstilts.errors import XstiltsError
from xstilts.modeling.sources import ResolvedModel
from xstilts.spec import ExperimentSpec
from xstilts.tasks import Split, Task, TaskFormat, get_task
from xstilts.tasks.registry import training_task

# Bump when a stage's code changes what it produces; old results then stop matching.
STAGE_CODE_VERSION = {
    StageKind.INTERMEDIATE: 2,  # 2: heads of every format, label names stored with each head
    StageKind.TARGET: 2,
    StageKind.PREDICT: 2,
    StageKind.EVALUATE: 2,
}


@dataclass(frozen=True)
class PlannedStage:
    key: str
    kind: StageKind
    role: str
    seed: int
    identity: dict[str, Any]
    params: dict[str, Any]
    deps: tuple[str, ...] = field(default_factory=tuple)


def stage_key(identity: dict[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stage(
    kind: StageKind,
    role: str,
    seed: int,
    identity: dict[str, Any],
    params: dict[str, Any],
    deps: tuple[str, ...] = (),
) -> PlannedStage:
    identity = {"kind": kind.value, "code_version": STAGE_CODE_VERSION[kind], **identity}
    return PlannedStage(
        stage_key(identity), kind, role, seed, identity, {**params, "deps": list(deps)}, deps
    )


def resolve_data_source(spec: ExperimentSpec, default_dir: Path | None) -> DataSource:
    if spec.data.source == "hub":
        return DataSource("hub")
    folder = Path(spec.data.path).expanduser() if spec.data.path else default_dir
    if folder is None:
        raise XstiltsError(
            "a local data source needs a folder: set data.path in the spec "
            "or the XSTILTS_DATA_DIR environment variable",
            field="data.path",
        )
    if not folder.is_dir():
        raise XstiltsError(f"{folder} is not a folder", field="data.path")
    return DataSource("local", folder.resolve())


def _decode_identity(
    target: Task, decode: dict[str, Any], lang: str, data: DataSource
) -> dict[str, Any]:
    """Predict-stage identity beyond model and data: decoding settings, and the tuning data of a
    BUCC threshold tuned on another split. Empty for formats without settings (keys unchanged)."""
    if not decode:
        return {}
    out: dict[str, Any] = {"decode": decode}
    if "tuning_split" in decode:
        out["tuning_data"] = fingerprint_split(target, Split(decode["tuning_split"]), lang, data)
    return out


def plan_experiment(
    spec: ExperimentSpec, model: ResolvedModel, data: DataSource
) -> list[PlannedStage]:
    """Stages in topological order (dependencies first), for every seed."""
    model_id = {
        "pooling": spec.model.pooling,
        "source": spec.model.source,
        "revision": model.revision,
        "fingerprint": model.fingerprint,
    }
    model_params = {
        "name_or_path": model.name_or_path,
        "revision": model.revision,
        "pooling": spec.model.pooling,
    }
    data_params = {"kind": data.kind, "path": str(data.path) if data.path else None}
    target = get_task(spec.target.task)
    train_task = training_task(target, spec.target.train_task)
    split = Split(spec.evaluation.split)
    eval_cfg = spec.evaluation.model_dump(exclude={"languages"})
    # What else decides a prediction besides the model and the data, per format.
    decode: dict[str, Any] = {}
    if target.format is TaskFormat.EXTRACTIVE_QA:
        decode = {k: eval_cfg[k] for k in ("doc_stride", "max_answer_length", "n_best_size")}
    elif target.format is TaskFormat.RETRIEVAL:
        decode = {"retrieval": eval_cfg["retrieval"]}
        if target.name == "bucc2018" and split is Split.TEST:
            # The threshold is tuned on the validation (sample) gold.
            decode["tuning_split"] = Split.VALIDATION.value

    plan: list[PlannedStage] = []
    for seed in spec.seeds:
        upstream: str | None = None
        if spec.intermediate.tasks:
            tasks = [get_task(name) for name in spec.intermediate.tasks]
            training = spec.intermediate.training.model_dump()
            identity: dict[str, Any] = {
                "model": model_id,
                "tasks": [t.name for t in tasks],
                "task_versions": [t.version for t in tasks],
                "training": training,
                "seed": seed,
                "data": [fingerprint_split(t, Split.TRAIN, "en", data) for t in tasks],
            }
            params: dict[str, Any] = {
                "model": model_params,
                "data": data_params,
                "tasks": [t.name for t in tasks],
                "training": training,
            }
            if len(tasks) > 1:  # single-task keys stay as they were
                identity["sampling"] = spec.intermediate.sampling.model_dump()
                params["sampling"] = spec.intermediate.sampling.model_dump()
            inter = _stage(StageKind.INTERMEDIATE, "intermediate", seed, identity, params)
            plan.append(inter)
            upstream = inter.key
        if train_task is None:  # retrieval: predictions read the intermediate (or bare) encoder
            model_stage_key = upstream
        else:
            tgt = _stage(
                StageKind.TARGET,
                "target",
                seed,
                {
                    "model": model_id,
                    "upstream": upstream,
                    "format": target.format.value,
                    "train_task": train_task.name,
                    "task_version": train_task.version,
                    "training": spec.target.training.model_dump(),
                    "seed": seed,
                    "data": fingerprint_split(train_task, Split.TRAIN, "en", data),
                },
                {
                    "model": model_params,
                    "data": data_params,
                    "head": train_task.name,
                    "train_task": train_task.name,
                    "training": spec.target.training.model_dump(),
                    "upstream": upstream,
                },
                deps=(upstream,) if upstream else (),
            )
            plan.append(tgt)
            model_stage_key = tgt.key
        predicts = []
        for lang in spec.languages:
            pred = _stage(
                StageKind.PREDICT,
                f"predict:{lang}",
                seed,
                {
                    "upstream": model_stage_key,
                    "model": model_id if model_stage_key is None else None,
                    "head": train_task.name if train_task else None,
                    "task": target.name,
                    "task_version": target.version,
                    "language": lang,
                    "split": split.value,
                    "max_seq_length": spec.evaluation.max_seq_length,
                    "max_examples": spec.evaluation.max_examples_per_language,
                    "data": fingerprint_split(target, split, lang, data),
                    **_decode_identity(target, decode, lang, data),
                },
                {
                    "data": data_params,
                    "model": model_params,
                    "head": train_task.name if train_task else None,
                    "task": target.name,
                    "language": lang,
                    "evaluation": eval_cfg,
                    "tuning_split": decode.get("tuning_split"),
                },
                deps=(model_stage_key,) if model_stage_key else (),
            )
            plan.append(pred)
            predicts.append(pred)
        plan.append(
            _stage(
                StageKind.EVALUATE,
                "evaluate",
                seed,
                {
                    "predictions": [p.key for p in predicts],
                    "task": target.name,
                    "metric": target.metric,
                    "bootstrap_samples": spec.evaluation.bootstrap_samples,
                    "seed": seed,
                },
                {
                    "task": target.name,
                    "languages": spec.languages,
                    "seed": seed,
                    "bootstrap_samples": spec.evaluation.bootstrap_samples,
                },
                deps=tuple(p.key for p in predicts),
            )
        )
    return plan
