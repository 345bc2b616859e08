"""The evaluate stage: every language's predictions become the task's metrics (stored as rows)
and the cross-language summary (stored with the stage and in ``metrics.json``).

It scores through the metric registry alone, importing no format, so the CPU eval worker that
runs it never loads torch or transformers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from sqlalchemy import delete

from xstilts.db.models import Metric
from xstilts.experiments.plan import EvaluateStageSpec
from xstilts.experiments.results import MetricRow
from xstilts.experiments.stage_results import METRICS_FILE, EvaluateStageResult, read_predictions
from xstilts.experiments.statistics import cross_language_summary
from xstilts.metrics import PredictionRow, get_metric
from xstilts.runtime.lifecycle import StageContext, StageOutcome, StageRef
from xstilts.tasks import get_task


def run(ctx: StageContext, stage: StageRef, spec: EvaluateStageSpec) -> StageOutcome:
    task = get_task(spec.task)
    metric = get_metric(spec.metric)
    values: dict[str, float] = {}
    rows: list[Metric] = []
    one_class: list[str] = []  # languages whose every prediction is the same
    for done, key in enumerate(spec.deps):  # the predict stages, one per language
        ctx.stop_if_asked(f"after {done} of {len(spec.deps)} languages")
        data = read_predictions(ctx.stage_output(key))
        lang = data["language"]
        scores = metric.score(task, lang, data["rows"], spec.bootstrap_samples)
        values[lang] = scores[0].value  # the task's primary metric
        if single_prediction(data["rows"]):
            one_class.append(lang)
        rows.extend(
            Metric(stage_id=stage.id, task=task.name, language=lang, seed=spec.seed, **asdict(sc))
            for sc in scores
        )
    summary = cross_language_summary(values)
    with ctx.sessions.begin() as s:
        ctx.check_owned(s)  # in the same transaction: a runner taken over writes no metrics
        # Idempotent: a re-run replaces this stage's metrics instead of adding a second set.
        s.execute(delete(Metric).where(Metric.stage_id == stage.id))
        s.add_all(rows)
    out = ctx.store.stage_dir(stage.kind, stage.key)
    with ctx.store.writing(out, ctx.check_owned) as tmp:
        metrics = [MetricRow.model_validate(r).model_dump() for r in rows]
        (tmp / METRICS_FILE).write_text(
            json.dumps({"metrics": metrics, "summary": summary}, indent=2)
        )
    return StageOutcome(
        out, EvaluateStageResult.model_validate({"summary": summary, "one_class": one_class})
    )


def single_prediction(rows: Sequence[PredictionRow]) -> bool:
    """Whether more than one example got one and the same prediction (a tagger's: every token the
    same tag), which a model that learnt nothing does."""
    seen: set[str] = set()
    for r in rows:
        pred = r["prediction"]
        for p in pred if isinstance(pred, list) else [pred]:
            seen.add(json.dumps(p))
            if len(seen) > 1:
                return False
    return len(rows) > 1
