"""What a task format implements, once: featurise, collate, loss, decode, score and export.

Tasks are registry entries naming one of these formats; the training loop, the predict and
evaluate stages, ``xstilts export`` and ``xstilts score`` only ever talk to a :class:`Format`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from xstilts.metrics import bootstrap_mean_ci

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from xstilts.tasks.base import HubSource, Task

Batch = dict[str, Any]
PredictionRow = dict[str, Any]  # {"id", "prediction", "label"}: what a predict stage stores


@dataclass(frozen=True)
class FeatureConfig:
    """Sequence limits for featurisation (QA windows use ``doc_stride``)."""

    max_length: int = 128
    doc_stride: int = 128
    max_query_length: int = 64


@dataclass(frozen=True)
class DecodeConfig:
    """How raw model outputs become predictions (QA span search)."""

    n_best_size: int = 20
    max_answer_length: int = 30


@dataclass(frozen=True)
class Score:
    """One metric of one language: ``value`` in [0, 1], with n and an optional bootstrap CI."""

    metric: str
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass
class Features:
    """Tokenised rows of one task split. ``targets`` holds what the loss needs (format-specific);
    ``example_index`` maps rows back to examples (QA windows and long sentences make several)."""

    format: str
    input_ids: list[Any]
    targets: dict[str, Any] = field(default_factory=dict)
    example_index: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens a row costs: its length, or for multiple choice its longest choice x choices."""

        def cost(row: Any) -> int:
            if row and isinstance(row[0], list):
                return max(len(r) for r in row) * len(row)
            return len(row)

        return np.fromiter((cost(r) for r in self.input_ids), dtype=np.int64, count=len(self))


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest row: (input_ids, attention_mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[j, : len(r)] = 1
    return ids, mask


class Format(ABC):
    """One task format: examples from files and hub rows, per-language scores, export."""

    name: str

    @abstractmethod
    def from_records(self, task: Task, records: Iterable[Any]) -> list[Any]:
        """Examples from what a local reader yields (raw labels mapped to the task's labels)."""

    @abstractmethod
    def from_hub(self, task: Task, hub: HubSource, rows: Any, lang: str) -> list[Any]:
        """Examples from the rows of a Hugging Face ``datasets`` split."""

    @abstractmethod
    def score(
        self, task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
    ) -> list[Score]:
        """The task's metrics for one language; the first is the task's primary metric."""

    @abstractmethod
    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        """(file extension, file text) in XTREME's submission layout (``gold``: the labels file)."""


class TrainedFormat(Format):
    """A format whose tasks train a head of kind ``head`` on the encoder and predict with it."""

    head: str

    def labels(self, task: Task, examples: Sequence[Any]) -> tuple[str, ...]:
        """The label set a head predicts (fixed per task; open sets come from the training data)."""
        return task.labels

    @abstractmethod
    def featurize(
        self,
        tokenizer: PreTrainedTokenizerBase,
        examples: Sequence[Any],
        cfg: FeatureConfig,
        labels: tuple[str, ...],
    ) -> Features: ...

    @abstractmethod
    def collate(self, features: Features, index: np.ndarray, pad_id: int) -> Batch: ...

    @abstractmethod
    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor: ...

    @abstractmethod
    def outputs(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        """Per row of the batch, what decoding needs (label ids, token tags, span logits)."""

    @abstractmethod
    def decode(
        self,
        examples: Sequence[Any],
        features: Features,
        outputs: Sequence[Any],
        labels: tuple[str, ...],
        cfg: DecodeConfig,
    ) -> list[PredictionRow]: ...


class OneLabelPerExample(TrainedFormat):
    """Formats that predict one label per example (pair classification, multiple choice):
    cross-entropy over ``batch["labels"]``, argmax decoding, accuracy, one label per line."""

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits.float(), batch["labels"])

    def outputs(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        return logits.argmax(-1).cpu().tolist()

    def score(
        self, task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
    ) -> list[Score]:
        return [accuracy_score(rows, bootstrap_samples)]

    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        key = "label" if gold else "prediction"
        return ".tsv", "".join(f"{r[key]}\n" for r in rows)


def accuracy_score(rows: Sequence[PredictionRow], bootstrap_samples: int) -> Score:
    """Accuracy of ``prediction`` against ``label`` over labelled rows, with a bootstrap CI."""
    labelled = [r for r in rows if r["label"] is not None]
    if not labelled:
        raise ValueError("accuracy needs labelled rows; this split has no labels")
    correct = np.array([r["prediction"] == r["label"] for r in labelled], dtype=np.float64)
    low, high = bootstrap_mean_ci(correct, bootstrap_samples)
    return Score("accuracy", float(correct.mean()), len(labelled), low, high)
