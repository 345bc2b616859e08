"""An experiment's results: per-language metrics, the cross-language summary, the stages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xstilts.db.models import Experiment, ExperimentStage, Metric, Stage, StageKind
from xstilts.experiments.statistics import across_seeds, cross_language_summary
from xstilts.spec import ExperimentSpec
from xstilts.tasks import get_task


def experiment_results(sessions: sessionmaker[Session], exp_id: str) -> dict[str, Any]:
    """Per-language metrics, the cross-language summary (per seed and over seeds), and the stages."""
    with sessions() as s:
        exp = s.get(Experiment, exp_id)
        if exp is None:
            raise KeyError(exp_id)
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
        spec = ExperimentSpec.model_validate(exp.spec)
        metrics = [
            {
                "task": r.task,
                "language": r.language,
                "metric": r.metric,
                "value": r.value,
                "n": r.n,
                "seed": r.seed,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
            }
            for r in rows
        ]
        stage_rows = [
            {
                "role": link.role,
                "seed": link.seed,
                "kind": stages[link.stage_id].kind,
                "key": stages[link.stage_id].key,
                "status": stages[link.stage_id].status,
                "reused": link.reused,
                "steps_run": stages[link.stage_id].steps_run,
                "attempts": stages[link.stage_id].attempts,
            }
            for link in links
        ]
        status, error = exp.status, exp.error
    return {
        "experiment": {"id": exp_id, "name": spec.name, "status": status, "error": error},
        "metrics": metrics,
        "summary": summarize(metrics, spec),
        "stages": stage_rows,
    }


def summarize(all_metrics: list[dict[str, Any]], spec: ExperimentSpec) -> dict[str, Any]:
    """The cross-language summary of the task's primary metric (QA: F1), plus each metric's mean
    over languages and XTREME's task score (QA: the mean of F1 and exact match)."""
    primary = get_task(spec.target.task).primary_metric
    metrics = [m for m in all_metrics if m["metric"] == primary]
    if not metrics:
        return {}
    averages: dict[str, float] = {}
    for name in dict.fromkeys(m["metric"] for m in all_metrics):
        vals = [m["value"] for m in all_metrics if m["metric"] == name]
        averages[name] = sum(vals) / len(vals)
    xtreme_score = (
        (averages["f1"] + averages["exact_match"]) / 2
        if "exact_match" in averages
        else averages[primary]
    )
    seeds = sorted({m["seed"] for m in metrics})
    per_seed = {
        seed: cross_language_summary(
            {m["language"]: m["value"] for m in metrics if m["seed"] == seed}
        )
        for seed in seeds
    }
    languages = list(dict.fromkeys(m["language"] for m in metrics))
    mean_values = {
        lang: sum(m["value"] for m in metrics if m["language"] == lang) / len(seeds)
        for lang in languages
    }
    return {
        "task": metrics[0]["task"],
        "metric": metrics[0]["metric"],
        "languages": languages,
        "seeds": seeds,
        "intermediate_tasks": spec.intermediate.tasks,
        **cross_language_summary(mean_values),
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "across_seeds": across_seeds(list(per_seed.values())) if len(seeds) > 1 else {},
        "metric_means": averages,
        "xtreme_score": xtreme_score,
    }
