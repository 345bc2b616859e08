"""A study spec: the paper's grid (intermediate task sets x targets x seeds) as one object, and its
expansion into one experiment spec per cell.

Every cell is validated (and planned, by the caller) before anything is stored: a study with one
bad cell is refused as a whole, each error naming the cell and the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from xstilts.errors import did_you_mean
from xstilts.jsontypes import JSONObject
from xstilts.spec import (
    MAX_NAME_LENGTH,
    MAX_TRANSLATED_LANGUAGES,
    MLM_ARM,
    TRANSLATED_SUFFIX,
    DataConfig,
    EvaluationConfig,
    ExperimentSpec,
    IntermediateConfig,
    Loc,
    ModelConfig,
    Seeds,
    SpecError,
    TrainingConfig,
    _enum,
    _Strict,
    intermediate_task_set,
    invalid,
    spec_errors,
    translated_task_names,
)
from xstilts.tasks import Split, get_task, intermediate_task_names, target_task_names

MAX_CELLS = 400  # intermediate sets x targets a study may hold


class StudySpec(_Strict):
    """``intermediate_sets``: the rows, each a list of intermediate tasks; ``[]`` (no intermediate
    training) is the baseline every row is compared with, and must be one of them. A row's item
    may also be ``mlm`` (masked-LM training beside the tasks, with ``intermediate.mlm``'s settings
    or the defaults) or ``<task>@translated`` (the task on English plus its machine-translated
    copies: every language it has, or those in ``translated_languages``). ``targets``: the
    columns. ``overrides``: per target, fields of its cells' experiment spec (deep-merged:
    ``{"xnli": {"target": {"training": {"epochs": 2}}}}``)."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)] = "study"
    model: ModelConfig = ModelConfig()
    intermediate_sets: Annotated[
        list[
            Annotated[list[Annotated[str, _enum(row_items())]], Field(max_length=len(row_items()))]
        ],
        Field(min_length=1, max_length=100),
    ]
    translated_languages: dict[
        Annotated[str, _enum(translated_task_names())],
        Annotated[
            list[Annotated[str, Field(max_length=16)]],
            Field(min_length=1, max_length=MAX_TRANSLATED_LANGUAGES),
        ],
    ] = Field(default_factory=dict)
    targets: Annotated[
        list[Annotated[str, _enum(target_task_names())]], Field(min_length=1, max_length=50)
    ]
    intermediate: IntermediateConfig = IntermediateConfig()
    target_training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    seeds: Seeds = [42]
    data: DataConfig = DataConfig()
    overrides: dict[Annotated[str, _enum(target_task_names())], JSONObject] = Field(
        default_factory=dict
    )

    @field_validator("intermediate_sets")
    @classmethod
    def _distinct_sets(cls, sets: list[list[str]]) -> list[list[str]]:
        # A set of tasks: [snli, qqp] is the row [qqp, snli] (and its intermediate stage).
        sets = [row_set(tasks, f"set {i} {tasks}: ") for i, tasks in enumerate(sets)]
        seen: set[tuple[str, ...]] = set()
        for tasks in sets:
            if tuple(tasks) in seen:
                raise ValueError(f"the set {tasks} is listed twice")
            seen.add(tuple(tasks))
        if () not in seen:
            raise ValueError(
                "must include [] (no intermediate task): the baseline every row is compared with"
            )
        return sets

    @field_validator("overrides", "translated_languages")
    @classmethod
    def _lower_case_keys(cls, by_task: dict[str, Any]) -> dict[str, Any]:
        # Task names are case-blind everywhere (rows, targets): here too.
        lowered = {task.lower(): value for task, value in by_task.items()}
        if len(lowered) != len(by_task):
            raise ValueError("a task is given twice (task names ignore case)")
        return lowered

    @field_validator("targets")
    @classmethod
    def _distinct_targets(cls, targets: list[str]) -> list[str]:
        valid = target_task_names()
        targets = [t.lower() for t in targets]
        for t in targets:
            if t not in valid:
                raise ValueError(f"unknown target task {t!r}; valid: {', '.join(valid)}")
        if len(set(targets)) != len(targets):
            raise ValueError("a target is listed twice")
        return targets

    @model_validator(mode="after")
    def _checks(self, info: ValidationInfo) -> StudySpec:
        if self.intermediate.tasks or self.intermediate.translated:
            raise ValueError(
                "intermediate.tasks, intermediate.translated: the rows of a study are its "
                "intermediate_sets (mnli@translated for translated copies; translated_languages "
                "to choose their languages); intermediate holds only their settings"
            )
        items = {item for row in self.intermediate_sets for item in row}
        if self.intermediate.mlm is not None and MLM_ARM not in items:
            raise ValueError("intermediate.mlm is set, but no row of intermediate_sets has mlm")
        for task in self.translated_languages:
            if f"{task}{TRANSLATED_SUFFIX}" not in items:
                raise ValueError(
                    f"translated_languages.{task}: no row of intermediate_sets has "
                    f"{task}{TRANSLATED_SUFFIX}"
                )
        longest = max(
            len(cell_name(self.name, row, target))
            for row in self.intermediate_sets
            for target in self.targets
        )
        if longest > MAX_NAME_LENGTH and not (
            isinstance(info.context, dict) and info.context.get("stored")
        ):
            room = MAX_NAME_LENGTH - (longest - len(self.name))
            raise invalid(
                ("name",),
                f"a cell's name is the study's name, its row and its target, and the longest "
                f"would have {longest} characters (at most {MAX_NAME_LENGTH}): "
                + (f"shorten the name to {room}" if room > 0 else "use shorter rows"),
                self.name,
            )
        unknown = sorted(set(self.overrides) - set(self.targets))
        if unknown:
            raise ValueError(f"overrides: {', '.join(unknown)} is not one of the targets")
        stored = isinstance(info.context, dict) and info.context.get("stored")
        for target, override in self.overrides.items():
            for path in () if stored else GRID_FIELDS:  # a study stored before stays readable
                if _has_path(override, path):
                    raise invalid(
                        ("overrides", target, *path),
                        "the study's grid sets this field of every cell (rows: "
                        "intermediate_sets, with their mlm and @translated items; columns: targets; seeds: seeds; names: name); "
                        "overrides may change only the cells' other settings",
                        override,
                    )
        cells = len(self.intermediate_sets) * len(self.targets)
        if cells > MAX_CELLS:
            raise ValueError(f"{cells} cells; a study holds at most {MAX_CELLS}")
        return self


# Fields of a cell's spec that the grid itself sets: an override of one would move the cell out
# of its row or column (a "baseline" that trains an intermediate task).
GRID_FIELDS: tuple[tuple[str, ...], ...] = (
    ("intermediate", "tasks"),
    ("intermediate", "translated"),
    ("intermediate", "mlm"),
    ("target", "task"),
    ("seeds",),
    ("name",),
)


def _has_path(data: object, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def row_items() -> list[str]:
    """What a study row may hold: intermediate tasks, ``<task>@translated``, ``mlm``."""
    translated = [f"{t}{TRANSLATED_SUFFIX}" for t in translated_task_names()]
    return [*intermediate_task_names(), *translated, MLM_ARM]


def row_set(items: list[str], where: str = "") -> list[str]:
    """A row's items checked and in one order (:attr:`IntermediateConfig.arm`'s: tasks sorted,
    ``mlm`` last), so that a row and its cells' arm read the same."""
    items = [item.lower() for item in items]
    valid = row_items()
    for item in items:
        if item not in valid:
            raise ValueError(
                f"{where}unknown row item {item!r}{did_you_mean(item, valid)}; valid: "
                f"{', '.join(valid)}"
            )
    tasks = [item.removesuffix(TRANSLATED_SUFFIX) for item in items if item != MLM_ARM]
    if len(set(tasks)) != len(tasks) or items.count(MLM_ARM) > 1:
        raise ValueError(f"{where}a task is listed twice")
    translated = {t for t in items if t.endswith(TRANSLATED_SUFFIX)}
    ordered = [
        f"{t}{TRANSLATED_SUFFIX}" if f"{t}{TRANSLATED_SUFFIX}" in translated else t
        for t in intermediate_task_set(tasks, where)
    ]
    return ordered + ([MLM_ARM] if MLM_ARM in items else [])


def row_intermediate(study: StudySpec, row: list[str]) -> JSONObject:
    """The ``intermediate`` section of a row's cells: the study's settings, the row's tasks, their
    translated copies and MLM where the row has them."""
    shared = study.model_dump(mode="json", exclude_unset=True).get("intermediate", {})
    out: JSONObject = {k: v for k, v in shared.items() if k not in ("mlm", "translated")}
    out["tasks"] = [item.removesuffix(TRANSLATED_SUFFIX) for item in row if item != MLM_ARM]
    translated = {}
    for item in row:
        if item.endswith(TRANSLATED_SUFFIX):
            task = item.removesuffix(TRANSLATED_SUFFIX)
            translated[task] = study.translated_languages.get(task) or get_task(
                task
            ).split_languages(Split.TRANSLATE_TRAIN)
    if translated:
        out["translated"] = translated
    if MLM_ARM in row:
        out["mlm"] = shared.get("mlm", {})
    return out


def cell_name(study: str, tasks: list[str], target: str) -> str:
    return f"{study}/{set_label(tasks)}/{target}"


def set_label(tasks: list[str]) -> str:
    """A row's name: its tasks joined by ``+``; the baseline is ``baseline``."""
    return "+".join(tasks) if tasks else "baseline"


def _merge(base: JSONObject, override: JSONObject) -> JSONObject:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def cell_spec_data(study: StudySpec, tasks: list[str], target: str) -> JSONObject:
    """The experiment spec of one cell, before validation."""
    shared = study.model_dump(mode="json", exclude_unset=True)
    data: JSONObject = {
        "name": cell_name(study.name, tasks, target),
        "intermediate": row_intermediate(study, tasks),
        "target": {"task": target, "training": shared.get("target_training", {})},
        "seeds": study.seeds,
    }
    for key in ("model", "evaluation", "data"):
        if key in shared:
            data[key] = shared[key]
    return _merge(data, study.overrides.get(target, {}))


def expand(study: StudySpec) -> list[tuple[list[str], str, ExperimentSpec]]:
    """Every cell as (intermediate tasks, target, its experiment spec), rows first. Raises one
    :class:`SpecError` with every bad cell's errors, each located as
    ``cells.<set label>/<target>.<field>``."""
    cells = []
    problems: list[tuple[Loc, str]] = []
    for tasks in study.intermediate_sets:
        for target in study.targets:
            try:
                spec = ExperimentSpec.model_validate(cell_spec_data(study, tasks, target))
            except ValidationError as e:
                where = ("cells", f"{set_label(tasks)}/{target}")
                problems += [((*where, *loc), msg) for loc, msg in spec_errors(ExperimentSpec, e)]
                continue
            cells.append((tasks, target, spec))
    if problems:
        raise SpecError(problems)
    return cells


def parse_study(data: Any) -> StudySpec:
    """Validate a decoded study spec; :class:`SpecError` names each bad field."""
    try:
        return StudySpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(spec_errors(StudySpec, e)) from None
