"""The eval worker evaluates without torch or transformers: a real evaluate stage, run in a fresh
interpreter through the eval worker's task body (``executors.execute_stage``), scores real XNLI
labels and leaves neither library imported. (``test_layering`` checks the worker's start-up.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import xstilts
from sqlalchemy import select, update
from xstilts.data import load_split
from xstilts.db.models import Metric, Stage, Status
from xstilts.experiments.plan import PredictStageSpec, parse_stage_spec
from xstilts.experiments.stage_results import PREDICTIONS_FILE
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec
from xstilts.tasks import Split, get_task

from tests.conftest import tiny_spec

# Run in the fresh interpreter: what the eval worker does with a delivered stage id, then which
# modules that left loaded.
EVAL_WORKER = """
import json, sys
from xstilts.config import Settings
from xstilts.runtime.executors import execute_stage
from xstilts.runtime.workspace import Workspace

class Sent:
    def __init__(self):
        self.sent = []
    def send(self, stage_id, queue):
        self.sent.append((stage_id, queue))

settings, stage_id = json.loads(sys.argv[1]), int(sys.argv[2])
ws = Workspace(Settings(**settings), upgrade_embedded=False)
execute_stage(ws, Sent(), stage_id)
ws.close()
print(json.dumps(sorted(sys.modules)))
"""

SETTINGS_FIELDS = {
    "home",
    "data_dir",
    "cache_dir",
    "artifacts_dir",
    "database_url",
    "model_roots",
    "data_roots",
}


def _predictions(spec: PredictStageSpec, wrong_every: int) -> list[dict[str, Any]]:
    """Rows as the predict stage writes them for ``spec``'s real examples: the gold label, except
    that every ``wrong_every``-th row predicts the next label."""
    task = get_task(spec.task)
    ev = spec.evaluation
    examples = load_split(
        task, Split(ev.split), spec.language, spec.data.source, ev.max_examples_per_language
    )
    return [
        {
            "id": e.guid,
            "prediction": task.labels[(e.label + (i % wrong_every == 0)) % len(task.labels)],
            "label": task.labels[e.label],
        }
        for i, e in enumerate(examples)
    ]


def test_an_evaluate_stage_imports_neither_torch_nor_transformers(
    settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    ws = Workspace(settings)
    ws.submit(parse_spec(tiny_spec(tiny_model_dir)))
    with ws.sessions() as s:
        (evaluate,) = s.scalars(select(Stage).where(Stage.kind == "evaluate")).all()
        predict = {p.key: p for p in s.scalars(select(Stage).where(Stage.kind == "predict"))}
    eval_spec = parse_stage_spec(evaluate.params)
    assert eval_spec.kind == "evaluate" and len(eval_spec.deps) == 3

    # The predict stages' outputs, written by hand, as if they had run.
    expected: dict[str, float] = {}
    for wrong_every, key in zip((3, 4, 5), eval_spec.deps, strict=True):
        spec = parse_stage_spec(predict[key].params)
        assert isinstance(spec, PredictStageSpec)
        rows = _predictions(spec, wrong_every)
        assert len(rows) == 60
        expected[spec.language] = sum(r["prediction"] == r["label"] for r in rows) / len(rows)
        out = tmp_path / "predictions" / spec.language
        out.mkdir(parents=True)
        (out / PREDICTIONS_FILE).write_text(
            json.dumps({"task": "xnli", "language": spec.language, "split": "test", "rows": rows})
        )
        with ws.sessions.begin() as s:
            s.execute(
                update(Stage)
                .where(Stage.key == key)
                .values(status=Status.SUCCEEDED.value, output_uri=str(out))
            )
    # 1 in 3, 4 and 5 rows wrong: 40/60, 45/60, 48/60.
    assert sorted(expected.values()) == [40 / 60, 45 / 60, 48 / 60]

    paths = [str(Path(xstilts.__file__).parents[1]), str(Path(__file__).parents[1])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    worker_settings = settings.model_dump_json(include=SETTINGS_FIELDS)
    done = subprocess.run(
        [sys.executable, "-c", EVAL_WORKER, worker_settings, str(evaluate.id)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "xstilts.runtime.runners.evaluate" in loaded  # the stage did run in that interpreter
    assert "torch" not in loaded and "transformers" not in loaded
    assert [m for m in loaded if m.startswith("xstilts.formats")] == []

    with ws.sessions() as s:
        stage = s.get(Stage, evaluate.id)
        assert stage is not None and stage.status == Status.SUCCEEDED.value, stage and stage.error
        metrics = s.scalars(select(Metric).where(Metric.stage_id == evaluate.id)).all()
        accuracy = {m.language: m.value for m in metrics if m.metric == "accuracy"}
        assert {m.n for m in metrics} == {60}
    assert accuracy == expected
    summary = json.loads((Path(stage.output_uri) / "metrics.json").read_text())["summary"]
    assert summary["mean"] == pytest.approx(sum(expected.values()) / 3)
    ws.close()
