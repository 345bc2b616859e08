"""What a task is: data, not code.

A :class:`Task` names its format, labels, languages and metric, and says where each split comes from:
a Hugging Face ``datasets`` id/config for users with the hub, and one or more files in a local folder
laid out like XTREME's ``download/`` directory. ``{lang}`` in a template is filled per language, so
"task x language" never means copied code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class TaskFormat(str, Enum):
    PAIR_CLASSIFICATION = "pair_classification"


class Split(str, Enum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


@dataclass(frozen=True)
class LocalFile:
    """A file relative to the data folder and the reader that understands it."""

    path: str  # may contain {lang}
    reader: str  # a name in xstilts.data.readers.READERS

    def for_language(self, lang: str) -> str:
        return self.path.format(lang=lang)


@dataclass(frozen=True)
class HubSource:
    """Where a split lives on the Hugging Face hub, and how its columns map to ours."""

    dataset: str
    config: str | None  # may contain {lang}
    split: str
    text_a: str
    text_b: str
    label: str = "label"

    def config_for(self, lang: str) -> str | None:
        return self.config.format(lang=lang) if self.config else None


@dataclass(frozen=True)
class SplitSource:
    # Candidates tried in order; the first file that exists is read. Several candidates let one task
    # read both XTREME's preprocessed files and the original GLUE-style files.
    local: tuple[LocalFile, ...] = ()
    hub: tuple[HubSource, ...] = ()  # several hub parts are concatenated (e.g. ANLI rounds)
    languages: tuple[str, ...] | None = None  # None: the task's languages


@dataclass(frozen=True)
class Task:
    name: str
    format: TaskFormat
    labels: tuple[str, ...]
    languages: tuple[str, ...]
    metric: str
    splits: dict[Split, SplitSource]
    description: str
    version: int = 1
    # Raw label strings that mean one of ``labels`` (e.g. XNLI's "contradictory").
    label_aliases: dict[str, str] = field(default_factory=dict)
    is_target: bool = False  # an XTREME task evaluated zero-shot across languages
    train_task: str | None = None  # the English task whose train split trains this target

    def describe(self) -> dict[str, object]:
        """The task as JSON: what ``xstilts tasks --json`` and ``GET /tasks`` return."""
        return {
            "name": self.name,
            "format": self.format.value,
            "metric": self.metric,
            "labels": list(self.labels),
            "languages": list(self.languages),
            "splits": [s.value for s in self.splits],
            "target": self.is_target,
            "version": self.version,
            "description": self.description,
        }

    def split_languages(self, split: Split) -> tuple[str, ...]:
        source = self.splits.get(split)
        if source is None:
            return ()
        return source.languages or self.languages

    def label_index(self, raw: str) -> int:
        label = self.label_aliases.get(raw, raw)
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(
                f"task {self.name}: label {raw!r} is not one of {', '.join(self.labels)}"
            ) from None
