"""The experiment spec: what a user writes (YAML or JSON), validated strictly.

Unknown fields are errors (``extra="forbid"``) so a typo never silently falls back to a default.
Task and language errors list the valid values.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from xstilts.data.mlm import DEFAULT_MLM_LANGUAGES, MLM_LANGUAGES
from xstilts.errors import XstiltsError, did_you_mean
from xstilts.jsontypes import JSONObject
from xstilts.tasks import (
    Split,
    Task,
    all_tasks,
    get_task,
    intermediate_task_names,
    target_task_names,
)
from xstilts.tasks.registry import compatible_train_tasks
from xstilts.terminal import unsafe_character

OFFLINE_PREFIX = "offline:"
HF_PREFIX = "hf:"
LOCAL_PREFIX = "local:"
BUILTIN_MODELS = ("multilingual-e5-small",)


# Bounds on the work one spec may ask for (the error names the bound). Generous for real studies;
# what they stop is a request that ties up a worker for ever or overflows a counter.
MAX_STEPS = 10_000_000
MAX_EXAMPLES = 100_000_000
MAX_SEEDS_SCHEMA = 1024  # hard ceiling; the server's own cap (XSTILTS_MAX_SEEDS) is usually lower
MAX_PATH_CHARS = 1024

# A hub repository id as the hub itself allows it: [owner/]name, letters, digits, "-", "_", ".",
# neither starting nor ending with "-" or ".", no "--" or "..", at most 96 characters a part. Never
# a path: "/etc", "../x" and "~/x" do not match.
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
HUB_ID = re.compile(rf"(?:{_HUB_PART}/)?{_HUB_PART}")
# A git revision: a commit hash, a tag or a branch name.
REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


def is_hub_id(value: str) -> bool:
    return bool(HUB_ID.fullmatch(value)) and ".." not in value and "--" not in value


def is_revision(value: str) -> bool:
    return bool(REVISION.fullmatch(value)) and ".." not in value and "//" not in value


def _enum(values: Sequence[str]) -> Any:
    """Document the valid names as an enum in the JSON schema (validation stays case-insensitive
    and its errors list the valid values), so schema-driven clients can build valid bodies."""
    return Field(json_schema_extra={"enum": list(values)})


TARGET_LANGUAGES = sorted(
    {
        lang
        for t in all_tasks()
        if t.is_target
        for split in t.splits
        for lang in t.split_languages(split)
    }
)


# The validation context of a spec read back from the database (``model_validate(data,
# context=STORED)``): a check added after a record was stored must not make it unreadable. The
# terminal check is skipped there; the command line escapes what it shows (xstilts.terminal).
STORED: dict[str, bool] = {"stored": True}


class _Strict(BaseModel):
    # No Infinity or NaN anywhere: JSON has no such numbers and a database cannot store them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        # Names and paths reach terminals and logs: no character a terminal acts on
        # (xstilts.terminal), in a string or in the strings of a list or mapping at any depth.
        if isinstance(info.context, dict) and info.context.get("stored"):
            return value
        for item in _strings(value):
            problem = unsafe_character(item)
            if problem:
                raise ValueError(problem)
        return value


def _strings(value: Any) -> Iterator[str]:
    """The strings in ``value``, in its lists, tuples and mappings (keys too) at any depth."""
    pending = [value]
    while pending:  # a loop, not recursion: a deep override must not exhaust the stack
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, list | tuple):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                pending += [inner, key]


QA_SPECIAL_TOKENS = 4  # <s> question </s></s> context </s>
Loc = tuple[int | str, ...]


def invalid(loc: Loc, message: str, value: Any) -> ValidationError:
    """A validation error at ``loc`` (relative to the model being validated), for a check that spans
    fields: raised from a model validator, pydantic prefixes the parents' path, so the error's own
    ``loc`` names the field and nobody has to read it back out of the message."""
    error = PydanticCustomError("value_error", message)  # no context: braces stay as they are
    return ValidationError.from_exception_data(
        "ExperimentSpec", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


def doc_stride(max_seq_length: int, stride: int | None) -> int:
    return stride if stride is not None else max(1, max_seq_length // 4)


def check_windows(
    max_seq_length: int, stride: int | None, max_query_length: int, where: Loc
) -> None:
    """A QA window must hold the question, the special tokens and more context than the overlap."""
    room = max_seq_length - max_query_length - QA_SPECIAL_TOKENS
    if stride is not None and stride >= room:
        raise invalid(
            where,
            f"{stride} must be below max_seq_length - max_query_length - "
            f"{QA_SPECIAL_TOKENS} = {room}",
            stride,
        )


class TrainingConfig(_Strict):
    """Hyperparameters of one training stage."""

    learning_rate: Annotated[float, Field(gt=0, le=1)] = 2e-5
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    epochs: Annotated[float, Field(gt=0, le=1000)] = 1.0
    max_steps: Annotated[int | None, Field(ge=1, le=MAX_STEPS)] = None  # overrides epochs when set
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_seq_length: Annotated[int, Field(ge=8, le=4096)] = 128
    # Extractive QA: a context longer than a window becomes overlapping windows that share
    # doc_stride tokens (default: a quarter of max_seq_length); questions keep max_query_length.
    doc_stride: Annotated[int | None, Field(ge=1, le=4096)] = None
    max_query_length: Annotated[int, Field(ge=1, le=4096)] = 64

    @model_validator(mode="after")
    def _check_windows(self) -> TrainingConfig:
        check_windows(self.max_seq_length, self.doc_stride, self.max_query_length, ("doc_stride",))
        return self

    gradient_accumulation_steps: Annotated[int, Field(ge=1, le=1024)] = 1
    max_train_examples: Annotated[int | None, Field(ge=1, le=MAX_EXAMPLES)] = None
    freeze_word_embeddings: bool = False
    max_grad_norm: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    checkpoint_every_steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 200
    # Which model the stage keeps: the one after the last step, or (target stages, XTREME's
    # protocol) the one that scores best on the English dev split of the training task, evaluated
    # every eval_every_steps optimiser steps (default: at the end of each epoch) and after the last
    # step, on at most dev_max_examples examples (default: all). Never reads non-English data.
    select: Literal["last", "best_english_dev"] = "last"
    eval_every_steps: Annotated[int | None, Field(ge=1, le=MAX_STEPS)] = None
    dev_max_examples: Annotated[int | None, Field(ge=1, le=MAX_EXAMPLES)] = None
    # torch.compile the model for training (PyTorch inductor). Opt-in: the first steps pay the
    # compilation, and fused kernels (with their own dropout masks) make the numbers differ from
    # eager ones, so the stage key includes it when on.
    torch_compile: bool = False
    # Pad each training batch to the smallest of these widths (tokens) that holds it, so that a
    # run's batches take a few shapes, not one per length: what CUDA graphs and a static-shape
    # compile need. A batch wider than the last width keeps its own. The padding is masked: without
    # dropout the numbers are those of unpadded batches up to float rounding; with it, dropout's
    # masks are drawn over the wider batch, another draw (so the stage key includes the widths).
    # Off by default.
    pad_to_widths: Annotated[
        tuple[Annotated[int, Field(ge=1, le=4096)], ...] | None, Field(min_length=1, max_length=16)
    ] = None
    # Replay training steps as CUDA graphs: torch.compile with static shapes, mode
    # "reduce-overhead", one graph per width of pad_to_widths (which it needs). CUDA only (ignored,
    # with a warning, elsewhere). Off by default, and not yet measured on a GPU (README).
    cuda_graphs: bool = False

    @model_validator(mode="after")
    def _check_widths(self) -> TrainingConfig:
        widths = self.pad_to_widths
        if widths is not None and list(widths) != sorted(set(widths)):
            raise invalid(
                ("pad_to_widths",), "widths must be distinct and in ascending order", list(widths)
            )
        if self.cuda_graphs and widths is None:
            raise invalid(
                ("cuda_graphs",),
                "cuda_graphs needs pad_to_widths (a graph replays one shape), e.g. [64, 128]",
                self.cuda_graphs,
            )
        return self

    @model_validator(mode="after")
    def _check_selection(self) -> TrainingConfig:
        if self.select == "last":
            for name in SELECTION_FIELDS[1:]:
                if getattr(self, name) is not None:
                    raise invalid(
                        (name,),
                        f"{name} needs select: best_english_dev (select: last keeps the final "
                        "model and evaluates nothing during training)",
                        getattr(self, name),
                    )
        return self

    def identity(self) -> JSONObject:
        """What a stage key hashes: every field, less the selection fields when they are unused
        and the compile and padding options when off (so specs written before they existed keep
        their keys)."""
        unused = set(SELECTION_FIELDS) if self.select == "last" else set()
        unused |= {name for name in OFF_BY_DEFAULT if not getattr(self, name)}
        return self.model_dump(exclude=unused)


SELECTION_FIELDS = ("select", "eval_every_steps", "dev_max_examples")
OFF_BY_DEFAULT = ("torch_compile", "pad_to_widths", "cuda_graphs")


class ModelConfig(_Strict):
    """``offline:multilingual-e5-small``, ``hf:<hub id>`` (with ``revision``) or ``local:<folder>``."""

    source: Annotated[str, Field(max_length=MAX_PATH_CHARS)] = OFFLINE_PREFIX + BUILTIN_MODELS[0]
    revision: Annotated[str | None, Field(max_length=200)] = None
    # What the classification heads read: "first" (the <s> token, as XLM-R and the paper do) or
    # "mean" over tokens (what multilingual-e5 was trained to produce; far better for it).
    pooling: Literal["first", "mean"] = "first"

    @model_validator(mode="after")
    def _check_source(self) -> ModelConfig:
        s = self.source
        if s.startswith(OFFLINE_PREFIX):
            name = s[len(OFFLINE_PREFIX) :]
            if name not in BUILTIN_MODELS:
                raise invalid(
                    ("source",),
                    f"unknown built-in model {name!r}; valid: "
                    + ", ".join(OFFLINE_PREFIX + m for m in BUILTIN_MODELS),
                    s,
                )
        elif s.startswith(HF_PREFIX):
            if not is_hub_id(s[len(HF_PREFIX) :]):
                raise invalid(
                    ("source",),
                    "'hf:' needs a hub repository id ([owner/]name: letters, digits, '-', '_', "
                    "'.'), e.g. hf:FacebookAI/xlm-roberta-large; a folder is 'local:<folder>' "
                    "under XSTILTS_MODEL_ROOTS",
                    s,
                )
            if not self.revision:
                raise invalid(
                    ("revision",),
                    "a hub model needs a pinned revision (a commit hash or tag), "
                    "so that results stay reproducible",
                    self.revision,
                )
            if not is_revision(self.revision):
                raise invalid(
                    ("revision",),
                    "a revision is a commit hash, tag or branch name (letters, digits, '.', '_', "
                    "'-', '/')",
                    self.revision,
                )
        elif s.startswith(LOCAL_PREFIX):
            if not s[len(LOCAL_PREFIX) :]:
                raise invalid(("source",), "'local:' needs a folder path", s)
        else:
            raise invalid(
                ("source",),
                f"{s!r} must start with one of {OFFLINE_PREFIX!r}, {HF_PREFIX!r}, {LOCAL_PREFIX!r}",
                s,
            )
        return self


class SamplingConfig(_Strict):
    """How multi-task training picks the task of each batch (see ``xstilts.training.sampling``)."""

    strategy: Literal["proportional", "temperature", "uniform"] = "proportional"
    temperature: Annotated[float, Field(gt=0, le=100)] = 2.0
    size_cap: Annotated[int | None, Field(ge=1, le=MAX_EXAMPLES)] = (
        None  # task sizes are capped at this first
    )


MLM_ARM = "mlm"  # a study row's item for MLM training during the intermediate stage
TRANSLATED_SUFFIX = "@translated"  # a study row's item: the task plus its translated copies


MAX_NAME_LENGTH = 200  # of an experiment or a study
MAX_TRANSLATED_LANGUAGES = 64  # languages of one task's translated copies (XTREME has up to 40)


def translated_task_names() -> list[str]:
    """Intermediate tasks with machine-translated training data (a ``translate_train`` split)."""
    return [t.name for t in all_tasks() if Split.TRANSLATE_TRAIN in t.splits]


class MLMConfig(_Strict):
    """Continued multilingual masked-language-model training during the intermediate stage (the
    paper's MLM arm): one more task for the sampler, with its own head and its own loss. Lines of
    each language are packed into sequences of up to ``max_seq_length`` tokens, and
    ``mask_probability`` of their tokens (never special ones) are predicted, 80% of them shown as
    the mask token, 10% as a random token and 10% unchanged (BERT, XLM-R)."""

    languages: list[Annotated[str, _enum(MLM_LANGUAGES)]] = Field(
        default_factory=lambda: sorted(DEFAULT_MLM_LANGUAGES),
        min_length=1,
        max_length=len(MLM_LANGUAGES),
    )
    # The share of micro-batches that are MLM batches; unset: the sampler treats MLM as one more
    # task of its size (sampling.strategy).
    share: Annotated[float | None, Field(gt=0, lt=1)] = None
    mask_probability: Annotated[float, Field(gt=0, lt=1)] = 0.15
    max_seq_length: Annotated[int, Field(ge=8, le=4096)] = 128
    # Lines read per language (a fixed random subset; the hub's first lines); unset: all.
    max_lines_per_language: Annotated[int | None, Field(ge=1, le=MAX_EXAMPLES)] = None

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, languages: list[str]) -> list[str]:
        return name_set(languages, MLM_LANGUAGES, "language")


class IntermediateConfig(_Strict):
    """English intermediate task(s). Empty ``tasks`` (and no ``mlm``) is the baseline (no
    intermediate stage); several tasks train one shared encoder with a head per task (multi-task).
    ``translated`` adds machine-translated copies of a task's training data in named languages
    (XTREME's translate-train files), mixed by the sampler with the English data and feeding the
    task's one head; ``mlm`` adds masked-language-model training."""

    tasks: list[Annotated[str, _enum(intermediate_task_names())]] = Field(
        default_factory=list, max_length=len(intermediate_task_names())
    )
    training: TrainingConfig = TrainingConfig()
    sampling: SamplingConfig = SamplingConfig()
    translated: dict[
        Annotated[str, _enum(translated_task_names())],
        Annotated[
            list[Annotated[str, Field(max_length=16)]],
            Field(min_length=1, max_length=MAX_TRANSLATED_LANGUAGES),
        ],
    ] = Field(default_factory=dict)
    mlm: MLMConfig | None = None

    @model_validator(mode="after")
    def _check_translated(self) -> IntermediateConfig:
        for name, languages in self.translated.items():
            valid = translated_task_names()
            if name not in self.tasks:
                raise invalid(
                    ("translated", name),
                    f"{name!r} is not one of intermediate.tasks ({', '.join(self.tasks) or 'none'})"
                    ": translated data adds languages to a task that is trained",
                    name,
                )
            if name not in valid:
                raise invalid(
                    ("translated", name),
                    f"{name!r} has no translated training data; valid: {', '.join(valid)}",
                    name,
                )
            offered = get_task(name).split_languages(Split.TRANSLATE_TRAIN)
            unknown = [lang for lang in languages if lang not in offered]
            if unknown:
                raise invalid(
                    ("translated", name),
                    f"no translations of {name} into {', '.join(map(repr, unknown))}; valid: "
                    f"{', '.join(offered)}",
                    languages,
                )
            if len(set(languages)) != len(languages):
                raise invalid(("translated", name), "a language is listed twice", languages)
        ordered = {name: sorted(self.translated[name]) for name in sorted(self.translated)}
        if ordered != self.translated:  # one spelling of one stage
            return self.model_copy(update={"translated": ordered})
        return self

    @property
    def arm(self) -> list[str]:
        """The intermediate arm as a study row names it: the tasks (``mnli@translated`` where
        translated copies are added), then ``mlm``; [] for the baseline."""
        out = [f"{t}{TRANSLATED_SUFFIX}" if t in self.translated else t for t in self.tasks]
        return out + ([MLM_ARM] if self.mlm is not None else [])

    @property
    def trains(self) -> bool:
        """Whether there is an intermediate stage at all (else: the baseline)."""
        return bool(self.tasks) or self.mlm is not None

    @field_validator("training")
    @classmethod
    def _keeps_last(cls, training: TrainingConfig) -> TrainingConfig:
        if training.select != "last":
            raise invalid(
                ("select",),
                f"{training.select!r}: an intermediate stage keeps its last model (valid: last); "
                "checkpoint selection on English dev is for target.training",
                training.select,
            )
        return training

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        return intermediate_task_set(tasks)


def intermediate_task_set(tasks: list[str], where: str = "") -> list[str]:
    """Known intermediate task names, lower-cased and sorted: a set of tasks ([qqp, snli] and
    [snli, qqp] are one stage). ``where`` prefixes the messages (a study's row)."""
    return name_set(tasks, intermediate_task_names(), "intermediate task", "task", where)


def name_set(
    names: list[str], valid: Sequence[str], what: str, short: str = "", where: str = ""
) -> list[str]:
    """``names`` lower-cased and sorted, each one of ``valid`` and none twice; else a ValueError
    naming the unknown one (with the closest valid name) or the repeated kind (``short``, default
    ``what``). ``where`` prefixes the messages."""
    names = [n.lower() for n in names]
    for n in names:
        if n not in valid:
            raise ValueError(
                f"{where}unknown {what} {n!r}{did_you_mean(n, valid)}; valid: {', '.join(valid)}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"{where}a {short or what} is listed twice")
    return sorted(names)


class TargetConfig(_Strict):
    task: Annotated[str, _enum(target_task_names())]
    training: TrainingConfig = TrainingConfig()
    # The English task whose train split trains the target's head; default: the target's own
    # (XNLI: MNLI, XQuAD/MLQA: SQuAD). Any task of the same format and label set may stand in.
    train_task: Annotated[str | None, _enum(intermediate_task_names() + target_task_names())] = None

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        valid = target_task_names()
        if task.lower() not in valid:
            raise ValueError(
                f"unknown target task {task!r}{did_you_mean(task, valid)}; "
                f"valid: {', '.join(valid)}"
            )
        return task.lower()

    @model_validator(mode="after")
    def _check_train_task(self) -> TargetConfig:
        if self.train_task is None:
            return self
        target = get_task(self.task)
        valid = compatible_train_tasks(target)
        if not valid:
            raise invalid(
                ("train_task",), f"{target.name} trains nothing (retrieval)", self.train_task
            )
        if self.train_task.lower() not in valid:
            raise invalid(
                ("train_task",),
                f"{self.train_task!r} cannot train {target.name}; valid: {', '.join(valid)}",
                self.train_task,
            )
        return self.model_copy(update={"train_task": self.train_task.lower()})


class RetrievalConfig(_Strict):
    """Sentence representations for retrieval targets (BUCC, Tatoeba): ``pooling`` of hidden layer
    ``layer`` (0 = embeddings, negative counts from the top: -1 is the last layer), and the k of
    BUCC's k-nearest-neighbour margin scoring. XTREME used layer 14 of XLM-R Large's 24."""

    layer: Annotated[int, Field(ge=-64, le=64)] = -1
    pooling: Literal["first", "mean"] = "mean"
    k: Annotated[int, Field(ge=1, le=100)] = 4


class EvaluationConfig(_Strict):
    # None: all of the task's. Each language once, so no list is longer than there are languages.
    languages: (
        Annotated[
            list[Annotated[str, _enum(TARGET_LANGUAGES)]],
            Field(max_length=len(TARGET_LANGUAGES)),
        ]
        | None
    ) = None
    split: Literal["validation", "test"] = "validation"
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 128
    max_seq_length: Annotated[int, Field(ge=8, le=4096)] = 128
    max_examples_per_language: Annotated[int | None, Field(ge=1, le=MAX_EXAMPLES)] = None
    bootstrap_samples: Annotated[int, Field(ge=0, le=100_000)] = 1000
    # Extractive QA: window overlap (default: a quarter of max_seq_length), longest answer
    # (tokens) and the candidates per window in decoding.
    doc_stride: Annotated[int | None, Field(ge=1, le=4096)] = None
    max_answer_length: Annotated[int, Field(ge=1, le=1024)] = 30
    n_best_size: Annotated[int, Field(ge=1, le=1000)] = 20
    retrieval: RetrievalConfig = RetrievalConfig()

    @model_validator(mode="after")
    def _check_windows(self) -> EvaluationConfig:
        check_windows(self.max_seq_length, self.doc_stride, 64, ("doc_stride",))
        return self


class DataConfig(_Strict):
    source: Literal["local", "hub"] = "local"
    # A folder under one of the server's data roots (XSTILTS_DATA_ROOTS, default XSTILTS_DATA_DIR);
    # a relative path is taken under the roots. Without a path: XSTILTS_DATA_DIR.
    path: Annotated[str | None, Field(min_length=1, max_length=MAX_PATH_CHARS)] = None


# The seeds of an experiment, or of every cell of a study: each run once per seed.
Seeds = Annotated[
    list[Annotated[int, Field(ge=0, lt=2**31)]],
    Field(min_length=1, max_length=MAX_SEEDS_SCHEMA),
]


class ExperimentSpec(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)] = "experiment"
    model: ModelConfig = ModelConfig()
    intermediate: IntermediateConfig = IntermediateConfig()
    target: TargetConfig
    evaluation: EvaluationConfig = EvaluationConfig()
    seeds: Seeds = [42]
    data: DataConfig = DataConfig()

    @model_validator(mode="after")
    def _check_languages(self) -> ExperimentSpec:
        task = get_task(self.target.task)
        split = Split(self.evaluation.split)
        problem = unknown_languages(task, split, self.evaluation.languages or [])
        if problem:
            raise invalid(("evaluation", "languages"), problem, self.evaluation.languages)
        languages = self.evaluation.languages or []
        repeated = sorted(lang for lang, n in Counter(languages).items() if n > 1)
        if repeated:
            raise invalid(
                ("evaluation", "languages"),
                f"listed more than once: {', '.join(repeated)}; give each language once",
                languages,
            )
        if self.evaluation.languages is not None and not self.evaluation.languages:
            raise invalid(
                ("evaluation", "languages"), "give at least one language, or leave it out", []
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise invalid(("seeds",), "a seed is listed twice", self.seeds)
        mlm = self.intermediate.mlm
        if self.data.source == "hub" and mlm is not None and mlm.max_lines_per_language is None:
            raise invalid(
                ("intermediate", "mlm", "max_lines_per_language"),
                "data.source 'hub' streams MLM text from Wikipedia: say how many lines a "
                "language reads",
                None,
            )
        return self

    @property
    def languages(self) -> list[str]:
        task = get_task(self.target.task)
        return list(self.evaluation.languages or task.split_languages(Split(self.evaluation.split)))


def field_path(loc: Loc) -> str:
    """``("target", "task")`` -> ``"target.task"``; the empty path (the whole spec) -> ``"(spec)"``."""
    return ".".join(str(p) for p in loc) or "(spec)"


class SpecError(XstiltsError):
    """A spec that does not validate. ``locs`` are ``(field path as pydantic's loc, message)``
    pairs; ``errors`` the same with the path as a dotted string."""

    def __init__(self, locs: Sequence[tuple[Loc, str]]) -> None:
        self.locs = list(locs)
        self.errors = [(field_path(loc), msg) for loc, msg in self.locs]
        super().__init__(
            "invalid experiment spec:\n" + "\n".join(f"  {f}: {m}" for f, m in self.errors)
        )


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate a decoded spec; raise :class:`SpecError` naming each bad field (pydantic's loc)."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as e:
        problems = spec_errors(ExperimentSpec, e)
        if not any(loc[:2] == ("evaluation", "languages") for loc, _ in problems):
            problems += _language_problems(data)  # pydantic skips the cross-field check
        raise SpecError(problems) from None


def _language_problems(data: Any) -> list[tuple[Loc, str]]:
    """The languages check of :meth:`ExperimentSpec._check_languages`, on a spec that failed
    elsewhere (so one pass reports every problem), where its task and languages are readable."""
    try:
        target = data["target"]["task"].lower()
        languages = data["evaluation"]["languages"]
        split = Split(data["evaluation"].get("split", "validation"))
        task = get_task(target)
    except Exception:  # noqa: BLE001 (anything unreadable is reported by its own error)
        return []
    if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
        return []
    problem = unknown_languages(task, split, languages)
    return [(("evaluation", "languages"), problem)] if problem else []


def unknown_languages(task: Task, split: Split, languages: Sequence[str]) -> str | None:
    """Every language the task's split lacks, each with the closest valid code; None if none."""
    valid = task.split_languages(split)
    unknown = [lang for lang in languages if lang not in valid]
    if not unknown:
        return None
    named = ", ".join(f"{lang!r}{did_you_mean(lang, valid)}" for lang in unknown)
    return (
        f"unknown language{'s' if len(unknown) > 1 else ''} {named} for {task.name} "
        f"{split.value}; valid: {', '.join(valid)}"
    )


def spec_errors(model: type[BaseModel], e: ValidationError) -> list[tuple[Loc, str]]:
    """Each error as (loc, message); an unknown field's message lists the valid fields of its
    section and the closest one."""
    out = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            fields = _fields_at(model, err["loc"][:-1])
            if fields:
                name = err["loc"][-1]
                msg = (
                    f"unknown field {name!r}{did_you_mean(name, fields)}; valid fields here: "
                    f"{', '.join(fields)}"
                )
        out.append((err["loc"], msg))
    return out


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the spec section at ``loc`` (an empty list where it is not a section)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


TOO_MANY_DIGITS = f"a number has more than {sys.get_int_max_str_digits()} digits"


class DuplicateKeyError(ValueError):
    """A mapping gives one key twice: which value was meant is anyone's guess."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"key {key!r} is given twice in one mapping")
        out[key] = value
    return out


def decode_json(text: str | bytes, unique_keys: bool = False) -> Any:
    """``json.loads``, raising only ``ValueError`` with a message fit for the client: an integer
    past Python's digit limit (4,300) raises a plain ``ValueError`` whose hint is for the server.
    ``unique_keys``: a key given twice in a mapping is a :class:`DuplicateKeyError`."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys if unique_keys else None)
    except (json.JSONDecodeError, UnicodeDecodeError, DuplicateKeyError):
        raise
    except ValueError:  # the only other ValueError json.loads raises: an integer too long
        raise ValueError(TOO_MANY_DIGITS) from None


# How deep a spec's mappings and lists may nest (the API refuses deeper bodies alike).
MAX_SPEC_DEPTH = 32


# How many values (mappings, lists, scalars) a YAML spec may expand to. An alias (``*name``)
# repeats a node by reference, so a few hundred bytes of nested aliases would expand to gigabytes
# ("billion laughs"); a real spec has a few hundred.
MAX_YAML_VALUES = 100_000


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML whose mappings give each key once (a merge, ``<<: *base``, may still be
    overridden: that is what it is for)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the constructor says so below
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, refusing a document whose aliases expand it past
    :data:`MAX_YAML_VALUES` values (counted on the node graph, before anything is built) or that
    refers to itself."""
    loader = _SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set())
        if size > MAX_YAML_VALUES:
            raise yaml.YAMLError(
                f"its aliases (*name) expand it to {size:,} values; a spec may hold at most "
                f"{MAX_YAML_VALUES:,}"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """Values under ``node`` once every alias is expanded; each shared node counted once per use,
    computed once."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise yaml.YAMLError("a value refers to itself through an alias")
    open_.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, sizes, open_) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(
            _expanded_size(k, sizes, open_) + _expanded_size(v, sizes, open_) for k, v in node.value
        )
    else:
        size = 1
    open_.discard(id(node))
    sizes[id(node)] = size
    return size


def read_spec_data(path: Path) -> JSONObject:
    """A YAML or JSON spec file as a mapping (experiment or study)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise XstiltsError(f"cannot read spec {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise XstiltsError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    language = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = decode_json(text, unique_keys=True) if path.suffix == ".json" else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError, DuplicateKeyError) as e:
        raise XstiltsError(f"{path}: not valid {language}: {e}") from None
    except ValueError:  # YAML's int() of a literal past Python's digit limit
        raise XstiltsError(f"{path}: {TOO_MANY_DIGITS}") from None
    except RecursionError:
        raise XstiltsError(f"{path}: nests deeper than {MAX_SPEC_DEPTH} levels") from None
    if not isinstance(data, dict):
        raise SpecError([((), f"{path} must hold a mapping, got {type(data).__name__}")])
    if nesting_depth(data) > MAX_SPEC_DEPTH:
        raise XstiltsError(f"{path}: nests deeper than {MAX_SPEC_DEPTH} levels")
    return data


def nesting_depth(value: Any) -> int:
    """How many mappings and lists deep ``value`` nests (a loop, not recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            pending += [
                (inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item)
            ]
    return deepest


def load_spec(path: Path) -> ExperimentSpec:
    """Read a YAML or JSON spec file."""
    return parse_spec(read_spec_data(path))
