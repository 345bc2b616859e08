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
from xstilts.db import StageKind
from xstilts.errors import XstiltsError
from xstilts.models.loading import ResolvedModel
from xstilts.spec import ExperimentSpec
from xstilts.tasks import Split, get_task
from xstilts.tasks.registry import training_task

# Bump when a stage's code changes what it produces; old results then stop matching.
STAGE_CODE_VERSION = {
    StageKind.INTERMEDIATE: 1,
    StageKind.TARGET: 1,
    StageKind.PREDICT: 1,
    StageKind.EVALUATE: 1,
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
            "data.path: a local data source needs a folder: set data.path in the spec "
            "or the XSTILTS_DATA_DIR environment variable"
        )
    if not folder.is_dir():
        raise XstiltsError(f"data.path: {folder} is not a folder")
    return DataSource("local", folder.resolve())


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
    train_task = training_task(target)
    split = Split(spec.evaluation.split)
    eval_cfg = spec.evaluation.model_dump(exclude={"languages"})

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
        tgt = _stage(
            StageKind.TARGET,
            "target",
            seed,
            {
                "model": model_id,
                "upstream": upstream,
                "task": target.name,
                "train_task": train_task.name,
                "task_version": train_task.version,
                "training": spec.target.training.model_dump(),
                "seed": seed,
                "data": fingerprint_split(train_task, Split.TRAIN, "en", data),
            },
            {
                "model": model_params,
                "data": data_params,
                "task": target.name,
                "train_task": train_task.name,
                "training": spec.target.training.model_dump(),
                "upstream": upstream,
            },
            deps=(upstream,) if upstream else (),
        )
        plan.append(tgt)
        predicts = []
        for lang in spec.languages:
            pred = _stage(
                StageKind.PREDICT,
                f"predict:{lang}",
                seed,
                {
                    "upstream": tgt.key,
                    "task": target.name,
                    "task_version": target.version,
                    "language": lang,
                    "split": split.value,
                    "max_seq_length": spec.evaluation.max_seq_length,
                    "max_examples": spec.evaluation.max_examples_per_language,
                    "data": fingerprint_split(target, split, lang, data),
                },
                {
                    "data": data_params,
                    "task": target.name,
                    "language": lang,
                    "evaluation": eval_cfg,
                },
                deps=(tgt.key,),
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
