"""An experiment as one side of a comparison: its predict stages per seed and language, and the
item scores their stored predictions give."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xstilts.db.models import Experiment, ExperimentStage, Stage, StageKind, Status
from xstilts.errors import ConflictError, NotFoundError
from xstilts.experiments.queries import owned_experiment
from xstilts.experiments.stage_results import read_predictions
from xstilts.metrics import ItemScores, get_metric
from xstilts.spec import STORED, ExperimentSpec
from xstilts.tasks import Task, get_task


class AnyOwner(str):
    """The CLI's view: every experiment of the local database. A type of its own, so no API key
    (whatever its name) can stand for it."""


ANY_OWNER = AnyOwner("*")


@dataclass(frozen=True)
class PredictRef:
    seed: int
    language: str
    key: str  # the stage's content key: the same key, the same predictions
    output: Path


@dataclass(frozen=True)
class SideRef:
    """What the database says about one experiment; no prediction file is read yet."""

    id: str
    name: str
    spec: ExperimentSpec
    predicts: tuple[PredictRef, ...]

    @property
    def task(self) -> Task:
        return get_task(self.spec.target.task)

    @property
    def seeds(self) -> list[int]:
        return sorted({p.seed for p in self.predicts})

    @property
    def languages(self) -> list[str]:
        return list(dict.fromkeys(p.language for p in self.predicts))


@dataclass(frozen=True)
class SideItems:
    """One side's item scores: ``items[seed][language]``, and the split they were predicted on."""

    ref: SideRef
    split: str
    items: dict[int, dict[str, ItemScores]]


def side_ref(sessions: sessionmaker[Session], exp_id: str, owner: str | None) -> SideRef:
    """The experiment's predict stages; it must have succeeded (otherwise its predictions are
    incomplete). ``owner``: only that owner's experiment (:data:`ANY_OWNER`: any)."""
    with sessions() as s:
        exp = _experiment(s, exp_id, owner)
        if exp.status != Status.SUCCEEDED.value:
            raise ConflictError(
                f"experiment {exp_id} is {exp.status}: a comparison needs every prediction, "
                "so compare it once it has succeeded"
            )
        rows = s.execute(
            select(ExperimentStage.seed, ExperimentStage.role, Stage.key, Stage.output_uri)
            .join(Stage, Stage.id == ExperimentStage.stage_id)
            .where(
                ExperimentStage.experiment_id == exp_id,
                Stage.kind == StageKind.PREDICT.value,
            )
            .order_by(ExperimentStage.position, ExperimentStage.seed)
        ).all()
        spec = ExperimentSpec.model_validate(exp.spec, context=STORED)
        predicts = tuple(
            PredictRef(seed, role.split(":", 1)[1], key, Path(uri or ""))
            for seed, role, key, uri in rows
        )
        return SideRef(exp.id, spec.name, spec, predicts)


def _experiment(s: Session, exp_id: str, owner: str | None) -> Experiment:
    if isinstance(owner, AnyOwner):
        exp = s.get(Experiment, exp_id)
        if exp is None:
            raise NotFoundError(f"experiment {exp_id} not found")
        return exp
    return owned_experiment(s, exp_id, owner)


def load_items(ref: SideRef) -> SideItems:
    """Score every stored prediction file into items (the task's metric decides what an item is)."""
    task = ref.task
    metric = get_metric(task.metric)
    items: dict[int, dict[str, ItemScores]] = {}
    splits = set()
    for p in ref.predicts:
        try:
            data = read_predictions(p.output)
        except (OSError, ValueError):
            # Not the client's doing: this process cannot read the artifact store (not mounted,
            # or the output was deleted by hand). Say which experiment and stage.
            raise ConflictError(
                f"experiment {ref.id}: the stored predictions of its {p.language} stage (seed "
                f"{p.seed}) cannot be read here; is XSTILTS_ARTIFACTS_DIR the workers' store?"
            ) from None
        splits.add(data["split"])
        items.setdefault(p.seed, {})[p.language] = metric.item_scores(
            task, p.language, data["rows"]
        )
    return SideItems(ref, splits.pop() if len(splits) == 1 else "mixed", items)
