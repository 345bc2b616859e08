"""An experiment's results: per-language metrics, the cross-language summary, the stages.

:class:`ExperimentResults` is the one contract for them: the CLI prints it, ``xstilts run --json``
writes ``model_dump(mode="json")`` of it, ``xstilts compare`` reads those files back with
``model_validate``, and the API returns it from ``/experiments/{id}/metrics``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xstilts.db.models import Experiment, ExperimentStage, Metric, Stage, StageKind
from xstilts.errors import NotFoundError
from xstilts.experiments.stage_results import (
    CheckpointSelection,
    CrossLanguageStats,
    EvaluateStageResult,
    StageResult,
    TrainStageResult,
    stored_result,
)
from xstilts.experiments.statistics import across_seeds, cross_language_summary
from xstilts.metrics import task_score
from xstilts.spec import STORED, ExperimentSpec
from xstilts.tasks import get_task


class MetricRow(BaseModel):
    """One metric of one language and seed (a row of the ``metrics`` table)."""

    model_config = ConfigDict(from_attributes=True)

    task: str
    language: str
    metric: str
    value: float
    n: int
    seed: int
    ci_low: float | None
    ci_high: float | None


class ExperimentRef(BaseModel):
    id: str
    name: str
    status: str
    error: str | None


class StageView(BaseModel):
    """A stage as one experiment sees it: its role and seed there, and whether it was reused."""

    role: str
    seed: int
    kind: str
    key: str
    status: str
    reused: bool
    attempts: int


class StageRow(StageView):
    steps_run: int  # optimiser steps over all attempts
    selection: CheckpointSelection | None = None


class SeedSpread(BaseModel):
    """A statistic's mean and sample standard deviation over seeds (``std`` needs two seeds)."""

    mean: float
    std: float | None


class Summary(CrossLanguageStats):
    """The cross-language statistics of the per-language values averaged over seeds, plus the same
    per seed, their spread over seeds, each metric's mean and XTREME's task score."""

    task: str
    metric: str  # the task's primary metric, which the statistics are of
    languages: list[str]
    seeds: list[int]
    intermediate_tasks: list[str]
    per_seed: dict[str, CrossLanguageStats]  # keyed by the seed as a string (JSON object keys)
    across_seeds: dict[str, SeedSpread]  # keyed by statistic; empty for one seed
    metric_means: dict[str, float]
    xtreme_score: float


class ExperimentResults(BaseModel):
    experiment: ExperimentRef
    metrics: list[MetricRow]
    summary: Summary | None  # None until the first metric exists (older files hold {})
    stages: list[StageRow]
    # Signs that a result is degenerate (a model that predicts one class, a loss that did not
    # fall), each with its likely cause.
    warnings: list[str] = []

    @field_validator("summary", mode="before")
    @classmethod
    def _empty_summary(cls, value: Any) -> Any:
        return None if value == {} else value  # files written before the model had {}


def experiment_results(sessions: sessionmaker[Session], exp_id: str) -> ExperimentResults:
    """Per-language metrics, the cross-language summary (per seed and over seeds), and the stages."""
    with sessions() as s:
        exp = s.get(Experiment, exp_id)
        if exp is None:
            raise NotFoundError(f"experiment {exp_id} not found")
        links = s.scalars(
            select(ExperimentStage)
            .where(ExperimentStage.experiment_id == exp_id)
            .order_by(ExperimentStage.position)
        ).all()
        ids = [link.stage_id for link in links]
        stages = {st.id: st for st in s.scalars(select(Stage).where(Stage.id.in_(ids)))}
        eval_ids = [sid for sid, st in stages.items() if st.kind == StageKind.EVALUATE.value]
        rows = s.scalars(
            select(Metric).where(Metric.stage_id.in_(eval_ids)).order_by(Metric.seed, Metric.id)
        ).all()
        spec = ExperimentSpec.model_validate(exp.spec, context=STORED)
        metrics = [MetricRow.model_validate(r) for r in rows]
        results = {sid: stored_result(st.kind, st.result) for sid, st in stages.items()}
        stage_rows = [
            StageRow(
                role=link.role,
                seed=link.seed,
                kind=stages[link.stage_id].kind,
                key=stages[link.stage_id].key,
                status=stages[link.stage_id].status,
                reused=link.reused,
                steps_run=stages[link.stage_id].steps_run,
                attempts=stages[link.stage_id].attempts,
                selection=_selection(results[link.stage_id]),
            )
            for link in links
        ]
        ref = ExperimentRef(id=exp_id, name=spec.name, status=exp.status, error=exp.error)
        warnings = degenerate_warnings(
            [(link.seed, link.role, results[link.stage_id]) for link in links]
        )
    return ExperimentResults(
        experiment=ref,
        metrics=metrics,
        summary=summarize(metrics, spec),
        stages=stage_rows,
        warnings=warnings,
    )


def _selection(result: StageResult | None) -> CheckpointSelection | None:
    return result.selection if isinstance(result, TrainStageResult) else None


def degenerate_warnings(stages: list[tuple[int, str, StageResult | None]]) -> list[str]:
    """Warnings from the stages' results: a training whose loss did not fall, an evaluation
    whose predictions are one class for every example."""
    out = []
    for seed, role, result in stages:
        if isinstance(result, TrainStageResult):
            out.extend(_training_warnings(seed, role, result))
        elif isinstance(result, EvaluateStageResult) and result.one_class:
            out.append(
                f"seed {seed}: every prediction in {', '.join(result.one_class)} is the same "
                "class: the model learnt nothing useful (too few training steps? learning rate?) "
                "and the metric measures the class balance"
            )
    return out


def _training_warnings(seed: int, role: str, result: TrainStageResult) -> list[str]:
    out = []
    # Several streams (tasks, translated copies, MLM) have losses of different scales: each is
    # judged on its own, as the mixed sequence of steps says little.
    streams: dict[str, tuple[float | None, float | None]] = dict(result.task_loss_start_end)
    if len(streams) < 2:
        streams = {"": (result.loss_start, result.loss_end)}
    for stream, (start, end) in streams.items():
        if start is not None and end is not None and end >= start:
            what = f"the {stream} loss" if stream else "the loss"
            out.append(
                f"seed {seed} {role} training: {what} did not fall ({start:.3f} at the "
                f"start, {end:.3f} at the end): too few steps, or a learning rate too high "
                "or too low"
            )
    if result.mlm_head == "new":
        out.append(
            f"seed {seed} {role} training: the model has no LM head, so MLM trained a new one "
            "tied to the input embeddings (its loss starts from chance)"
        )
    return out


def summarize(all_metrics: list[MetricRow], spec: ExperimentSpec) -> Summary | None:
    """The cross-language summary of the task's primary metric (QA: F1), plus each metric's mean
    over languages and XTREME's task score (QA: the mean of F1 and exact match); None before the
    primary metric has any value."""
    task = get_task(spec.target.task)
    primary = task.primary_metric
    metrics = [m for m in all_metrics if m.metric == primary]
    if not metrics:
        return None
    averages: dict[str, float] = {}
    for name in dict.fromkeys(m.metric for m in all_metrics):
        vals = [m.value for m in all_metrics if m.metric == name]
        averages[name] = sum(vals) / len(vals)
    xtreme_score = task_score(task.metric, averages)
    seeds = sorted({m.seed for m in metrics})
    per_seed = {
        seed: cross_language_summary({m.language: m.value for m in metrics if m.seed == seed})
        for seed in seeds
    }
    languages = list(dict.fromkeys(m.language for m in metrics))
    mean_values = {
        lang: sum(m.value for m in metrics if m.language == lang) / len(seeds) for lang in languages
    }
    return Summary.model_validate(
        {
            "task": metrics[0].task,
            "metric": metrics[0].metric,
            "languages": languages,
            "seeds": seeds,
            "intermediate_tasks": spec.intermediate.arm,
            **cross_language_summary(mean_values),
            "per_seed": {str(k): v for k, v in per_seed.items()},
            "across_seeds": across_seeds(list(per_seed.values())) if len(seeds) > 1 else {},
            "metric_means": averages,
            "xtreme_score": xtreme_score,
        }
    )
