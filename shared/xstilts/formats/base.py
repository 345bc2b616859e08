"""What a task format implements, once: featurise, collate, loss, decode, and the submission
layout both ways (export, read back).

Tasks are registry entries naming one of these formats; the training loop, the predict stage,
``xstilts export`` and ``xstilts score`` talk to a :class:`Format` for these. Scores come from the
task's metric (:mod:`xstilts.metrics`), not from a format: the evaluate stage scores without
importing the formats, and so without torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from xstilts.metrics import PredictionRow
from xstilts.modeling.batch import Batch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from xstilts.tasks.base import Task


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


@dataclass
class Features:
    """Tokenised rows of one task split. ``targets`` holds what the loss needs (format-specific);
    ``example_index`` maps rows back to examples (QA windows and long sentences make several)."""

    format: str
    input_ids: list[Any]
    # Format-private (each format reads back only what its own featurize wrote): arrays and row
    # lists for the loss in ``targets``; decoding's bookkeeping (QA spans, word offsets) in ``extra``.
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


@dataclass(frozen=True)
class HeadOutputs:
    """What a head produced for one split: the examples, their features (rows map back to
    examples), each row's output (:meth:`TrainedFormat.outputs`) and the head's label names."""

    examples: Sequence[Any]
    features: Features
    outputs: Sequence[Any]
    labels: tuple[str, ...]


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
    """One task format: XTREME's submission layout both ways (export writes it from prediction
    rows, ``read_submission`` turns it back into prediction rows)."""

    name: str
    # The extension of this format's files in XTREME's submission layout (predictions and labels).
    submission_suffix: str = ".tsv"

    @abstractmethod
    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        """(file extension, file text) in XTREME's submission layout (``gold``: the labels file)."""

    @abstractmethod
    def read_submission(self, task: Task, pred_path: Path, gold_path: Path) -> list[PredictionRow]:
        """Prediction rows (``{"id", "prediction", "label"}``, as the predict stage stores them)
        from a predictions file and its labels file in XTREME's submission layout, so that
        ``xstilts score`` scores them with the task's metric, as the evaluate stage does."""


class Objective(ABC):
    """What the training loop needs of a stream it trains on: the kind of ``head`` it feeds, how
    rows become a batch, and the loss. A task format is one (:class:`TrainedFormat`); the masked
    LM of the MLM arm is one and nothing more: it predicts nothing and has no submission files."""

    name: str
    head: str

    @abstractmethod
    def collate(self, features: Features, index: np.ndarray, pad_id: int) -> Batch: ...

    @abstractmethod
    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor: ...


class TrainedFormat(Format, Objective):
    """A format whose tasks train a head of kind ``head`` on the encoder and predict with it."""

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
    def outputs(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        """Per row of the batch, what decoding needs (label ids, token tags, span logits)."""

    @abstractmethod
    def decode(self, head: HeadOutputs, cfg: DecodeConfig) -> list[PredictionRow]:
        """Prediction rows (``{"id", "prediction", "label"}``) from what the head produced."""


class OneLabelPerExample(TrainedFormat):
    """Formats that predict one label per example (pair classification, multiple choice):
    cross-entropy over ``batch.labels``, argmax decoding, one label per line."""

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits.float(), batch.need("labels"))

    def outputs(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        return logits.argmax(-1).cpu().tolist()

    def label_name(self, labels: tuple[str, ...], index: int) -> str:
        """The name a prediction row uses for label ``index`` of the head's ``labels``."""
        return labels[index]

    def decode(self, head: HeadOutputs, cfg: DecodeConfig) -> list[PredictionRow]:
        return [
            {
                "id": e.guid,
                "prediction": self.label_name(head.labels, p),
                "label": self.label_name(head.labels, e.label) if e.label >= 0 else None,
            }
            for e, p in zip(head.examples, head.outputs, strict=True)
        ]

    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        return self.submission_suffix, "".join(
            f"{r['label'] if gold else r['prediction']}\n" for r in rows
        )

    def read_submission(self, task: Task, pred_path: Path, gold_path: Path) -> list[PredictionRow]:
        gold = check_gold_labels(task, read_labels(gold_path), gold_path)
        pred = read_labels(pred_path)
        check_predicted_labels(task, pred, pred_path)
        pred = canonical_labels(task, pred)
        return label_rows(pred, gold, pred_path, gold_path)


def read_labels(path: Path) -> list[str]:
    """One label per non-blank line of a submission file (surrounding whitespace dropped)."""
    return [line.strip() for line in submission_text(path).splitlines() if line.strip()]


def submission_text(path: Path) -> str:
    """A submission or labels file's text; one that is not UTF-8 is a ValueError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def check_gold_labels(task: Task, gold: list[str], path: Path) -> list[str]:
    """Gold labels must be the task's (a label outside them would score every answer wrong, in
    silence). A task without a fixed label set (multiple choice: its answers are per item) has
    nothing to check."""
    for label in sorted(set(gold)) if task.labels else ():
        try:
            task.label_index(label)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return canonical_labels(task, gold)


def check_predicted_labels(
    task: Task, pred: Sequence[str], path: Path, lines: Sequence[int] | None = None
) -> None:
    """Predictions must be the task's labels too: one outside them (ids for names, another task's
    label set) is a bug in the file's making, which would score as wrong answers in silence.
    The error names the first such entry: its file line where ``lines`` gives each entry's."""
    for label in sorted(set(pred)) if task.labels else ():
        try:
            task.label_index(label)
        except ValueError as e:
            first = pred.index(label)
            where = f"line {lines[first]}" if lines is not None else f"entry {first + 1}"
            raise ValueError(f"{path}: {where}: {e}") from None


def canonical_labels(task: Task, labels: list[str]) -> list[str]:
    """Labels with the task's other spellings (XNLI's "contradictory") as its own, so that a gold
    file and a predictions file that spell one label two ways agree."""
    aliases = task.label_aliases
    return [aliases.get(label, label) for label in labels] if aliases else labels


def check_same_length(
    pred: Sequence[Any], gold: Sequence[Any], pred_path: Path, gold_path: Path
) -> None:
    """A predictions file must answer every labelled item: a shorter one is an error, not a score."""
    if len(pred) != len(gold):
        raise ValueError(f"{pred_path}: {len(pred)} entries, but {gold_path} has {len(gold)}")


def label_rows(
    pred: Sequence[Any], gold: Sequence[Any], pred_path: Path, gold_path: Path
) -> list[PredictionRow]:
    """Rows pairing the i-th prediction with the i-th label (line-aligned submission files)."""
    check_same_length(pred, gold, pred_path, gold_path)
    return [
        {"id": str(i), "prediction": p, "label": g}
        for i, (p, g) in enumerate(zip(pred, gold, strict=True))
    ]
