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
    """One task format. ``head`` is the kind of head it trains (None: nothing is trained)."""

    name: str
    head: str | None

    # --- reading ---------------------------------------------------------------------------
    @abstractmethod
    def from_records(self, task: Task, records: Iterable[Any]) -> list[Any]:
        """Examples from what a local reader yields (raw labels mapped to the task's labels)."""

    @abstractmethod
    def from_hub(self, task: Task, hub: HubSource, rows: Any, lang: str) -> list[Any]:
        """Examples from the rows of a Hugging Face ``datasets`` split."""

    def labels(self, task: Task, examples: Sequence[Any]) -> tuple[str, ...]:
        """The label set a head predicts (fixed per task; open sets come from the training data)."""
        return task.labels

    # --- model -----------------------------------------------------------------------------
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

    # --- results ---------------------------------------------------------------------------
    @abstractmethod
    def score(
        self, task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
    ) -> list[Score]:
        """The task's metrics for one language; the first is the task's primary metric."""

    @abstractmethod
    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        """(file extension, file text) in XTREME's submission layout (``gold``: the labels file)."""


def bootstrap_mean_ci(
    values: np.ndarray, samples: int, confidence: float = 0.95, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of a mean of per-item scores (accuracy, QA F1/EM)."""
    values = np.asarray(values, dtype=np.float64)
    if samples <= 0 or values.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, 256):  # chunks bound memory for large test sets
        k = min(256, samples - start)
        means[start : start + k] = values[rng.integers(0, values.size, size=(k, values.size))].mean(
            1
        )
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_ratio_ci(
    numerator: np.ndarray,
    denominator: np.ndarray,
    samples: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Bootstrap interval of sum(numerator) / sum(denominator) over resampled items.

    Micro F1 is 2*tp / (n_pred + n_gold); entities never cross sentences, so resampling sentences
    with their counts resamples the metric exactly.
    """
    num, den = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    if samples <= 0 or num.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    stats = np.empty(samples)
    for start in range(0, samples, 256):
        k = min(256, samples - start)
        idx = rng.integers(0, num.size, size=(k, num.size))
        d = den[idx].sum(1)
        stats[start : start + k] = np.where(d > 0, num[idx].sum(1) / np.maximum(d, 1e-12), 0.0)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)
