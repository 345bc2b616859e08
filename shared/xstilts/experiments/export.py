"""Write an experiment's predictions in XTREME's submission layout (``xstilts export``)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xstilts.db.models import Experiment, ExperimentStage, Stage, StageKind, Status
from xstilts.errors import XstiltsError
from xstilts.experiments.stage_results import read_predictions
from xstilts.files import write_atomic
from xstilts.formats import get_format
from xstilts.tasks import get_task

SPLIT_PREFIX = {"validation": "dev", "test": "test"}


def export_predictions(
    sessions: sessionmaker[Session],
    exp_id: str,
    out_dir: Path,
    seed: int | None = None,
    labels_dir: Path | None = None,
) -> list[Path]:
    """Write ``<out>/<task>/<dev|test>-<lang>.<tsv|json>`` in XTREME's submission layout, in the
    data's order; with ``labels_dir``, also the gold labels in the same layout (what
    ``xstilts score --labels`` reads). With several seeds, ``seed`` picks one (default: the first).
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
        data = read_predictions(Path(output))
        task = get_task(data["task"])
        fmt = get_format(task.format.value)
        folder = task.xtreme_name or task.name
        ext, text = fmt.export(data["rows"])
        written.append(_write(out_dir / folder / f"{prefix}-{data['language']}{ext}", text))
        if labels_dir is not None:
            ext, text = fmt.export(data["rows"], gold=True)
            written.append(_write(labels_dir / folder / f"{prefix}-{data['language']}{ext}", text))
    return written


def _write(path: Path, text: str) -> Path:
    """Atomically: a reader never sees half a file."""
    return write_atomic(path, text)
