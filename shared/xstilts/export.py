"""Write an experiment's predictions in XTREME's submission layout (``xstilts export``)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xstilts.db import Experiment, ExperimentStage, Stage, StageKind, Status
from xstilts.errors import XstiltsError
from xstilts.stages import PREDICTIONS_FILE

SPLIT_PREFIX = {"validation": "dev", "test": "test"}


def export_predictions(
    sessions: sessionmaker[Session], exp_id: str, out_dir: Path, seed: int | None = None
) -> list[Path]:
    """``<out>/<task>/<dev|test>-<lang>.tsv``, one predicted label per line in the data's order.

    With several seeds, ``seed`` picks one (default: the first in the spec).
    """
    with sessions() as s:
        exp = s.get(Experiment, exp_id)
        if exp is None:
            raise XstiltsError(f"experiment: no experiment {exp_id!r} in this database")
        seeds = exp.spec["seeds"]
        seed = seeds[0] if seed is None else seed
        if seed not in seeds:
            raise XstiltsError(f"--seed: {seed} is not one of the experiment's seeds {seeds}")
        prefix = SPLIT_PREFIX[exp.spec["evaluation"]["split"]]
        rows = s.execute(
            select(ExperimentStage.role, Stage.status, Stage.output_uri)
            .join(Stage, Stage.id == ExperimentStage.stage_id)
            .where(
                ExperimentStage.experiment_id == exp_id,
                ExperimentStage.seed == seed,
                Stage.kind == StageKind.PREDICT.value,
            )
            .order_by(ExperimentStage.position)
        ).all()
    outputs = [output for _, status, output in rows if status == Status.SUCCEEDED.value and output]
    if not rows or len(outputs) != len(rows):
        raise XstiltsError(f"experiment {exp_id}: predictions are not all finished yet")
    written = []
    for output in outputs:
        data = json.loads((Path(output) / PREDICTIONS_FILE).read_text(encoding="utf-8"))
        path = out_dir / data["task"] / f"{prefix}-{data['language']}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(f"{r['prediction']}\n" for r in data["rows"]), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
