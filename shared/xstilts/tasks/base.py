"""What a task is: data, not code.

A :class:`Task` names its format, labels, languages and metric, and says where each split comes from:
a Hugging Face ``datasets`` id/config for users with the hub, and one or more files in a local folder
laid out like XTREME's ``download/`` directory. ``{lang}`` in a template is filled per language, so
"task x language" never means copied code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from xstilts.metrics import get_metric


class TaskFormat(str, Enum):
    PAIR_CLASSIFICATION = "pair_classification"
    TOKEN_CLASSIFICATION = "token_classification"
    EXTRACTIVE_QA = "extractive_qa"
    MULTIPLE_CHOICE = "multiple_choice"
    RETRIEVAL = "retrieval"


class Split(str, Enum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"
    # The train split machine-translated from English into a language (XTREME's translate-train).
    TRANSLATE_TRAIN = "translate_train"


@dataclass(frozen=True)
class LocalFile:
    """A file relative to the data folder and the reader that understands it."""

    path: str  # may contain {lang}, {code} (the dataset's own language code) and {name}
    reader: str  # a name in xstilts.data.readers.READERS
    glob: bool = (
        False  # the path is a pattern; every match is read (UD: all treebanks of a language)
    )

    def for_language(self, lang: str, code: str | None = None, name: str | None = None) -> str:
        return self.path.format(lang=lang, code=code or lang, name=name or lang)


@dataclass(frozen=True)
class HubSource:
    """Where a split lives on the Hugging Face hub, and how its columns map to ours."""

    dataset: str
    config: str | None  # may contain {lang}, {code} and {name} as LocalFile.path
    split: str
    text_a: str = ""  # pairs: first text; tagging: the tokens column; retrieval: source sentences
    text_b: str = ""
    label: str = "label"
    layout: str | None = None  # multiple choice: which dataset's columns (hellaswag, ...)
    id_prefix: str | None = None  # keep rows whose id starts with this ({name} filled per language)

    def config_for(self, lang: str, code: str | None = None, name: str | None = None) -> str | None:
        if not self.config:
            return None
        return self.config.format(lang=lang, code=code or lang, name=name or lang)


@dataclass(frozen=True)
class SplitSource:
    # Candidates tried in order; the first file that exists is read. Several candidates let one task
    # read both XTREME's preprocessed files and the original GLUE-style files.
    local: tuple[LocalFile, ...] = ()
    hub: tuple[HubSource, ...] = ()  # several hub parts are concatenated (e.g. ANLI rounds)
    languages: tuple[str, ...] | None = None  # None: the task's languages
    # One sentence saying where the files come from (a download address, a licence to obtain):
    # "no file found" errors end with it. May contain {lang}, {code} and {name} as LocalFile.path.
    hint: str = ""

    def hint_for(self, lang: str, code: str | None = None, name: str | None = None) -> str:
        return self.hint.format(lang=lang, code=code or lang, name=name or lang)


@dataclass(frozen=True)
class Task:
    name: str
    format: TaskFormat
    labels: tuple[str, ...]
    languages: tuple[str, ...]
    metric: str  # a name in xstilts.metrics.METRICS
    splits: dict[Split, SplitSource]
    description: str
    version: int = 1
    # Raw label strings that mean one of ``labels`` (e.g. XNLI's "contradictory").
    label_aliases: dict[str, str] = field(default_factory=dict)
    is_target: bool = False  # an XTREME task evaluated zero-shot across languages
    train_task: str | None = None  # the English task whose train split trains this target
    # The dataset's own code per XTREME code ({code} in paths: "deu" for Tatoeba's German) and
    # language names ({name}: "German" in the hub's udpos.German config).
    language_codes: dict[str, str] = field(default_factory=dict)
    language_names: dict[str, str] = field(default_factory=dict)
    combines: tuple[str, ...] = ()  # a union of other tasks' data with one head (ANLI+)
    xtreme_name: str | None = None  # the task's folder in XTREME's submission layout
    # Extractive QA: some questions have no answer (SQuAD v2.0). The head may then answer "no
    # answer", and an empty prediction is right where the gold has none.
    unanswerable_questions: bool = False
    # Retrieval: mine a set of translation pairs above a tuned score threshold (BUCC) instead of
    # retrieving one English sentence per source sentence (Tatoeba).
    mines_pairs: bool = False
    # Retrieval that mines pairs: the split whose gold pairs tune the threshold when predicting
    # another split (BUCC's test split is tuned on the validation split).
    threshold_tuning_split: Split | None = None
    # The evaluation sets of the languages are translations of each other, item for item (XNLI and
    # PAWS-X line by line, XQuAD and MLQA by question id): comparisons then resample an item in
    # every language at once (:meth:`item_key` names it). Tatoeba is not: each language's English
    # side is a different set of sentences.
    parallel_items: bool = False

    def __post_init__(self) -> None:
        # A misspelt metric fails when the registry is imported, not on a worker at evaluate time.
        get_metric(self.metric, f"task {self.name}: metric")

    @property
    def primary_metric(self) -> str:
        """The per-language metric summaries and comparisons use (QA also stores exact match)."""
        return get_metric(self.metric).primary

    def item_key(self, example_id: str, lang: str) -> str:
        """What an example is across languages: its id without the language (``dev-de-17`` is
        item ``dev-17`` of XNLI, the line it comes from; a QA question id is the same in every
        language). Only meaningful where :attr:`parallel_items`."""
        return "-".join(part for part in example_id.split("-") if part != lang)

    def code(self, lang: str) -> str:
        return self.language_codes.get(lang, lang)

    def language_name(self, lang: str) -> str:
        return self.language_names.get(lang, lang)

    def describe(self) -> dict[str, object]:
        """The task as JSON: what ``xstilts tasks --json`` and ``GET /tasks`` return."""
        return {
            "name": self.name,
            "format": self.format.value,
            "metric": self.metric,
            "primary_metric": self.primary_metric,
            "labels": list(self.labels),
            "languages": list(self.languages),
            "splits": [s.value for s in self.splits],
            "target": self.is_target,
            "train_task": self.train_task,
            "combines": list(self.combines),
            "version": self.version,
            "description": self.description,
        }

    def split_languages(self, split: Split) -> tuple[str, ...]:
        source = self.splits.get(split)
        if source is None:
            return ()
        return source.languages or self.languages

    @property
    def trains(self) -> bool:
        return Split.TRAIN in self.splits or bool(self.combines)

    def label_index(self, raw: str) -> int:
        label = self.label_aliases.get(raw, raw)
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(
                f"task {self.name}: label {raw!r} is not one of {', '.join(self.labels)}"
            ) from None
