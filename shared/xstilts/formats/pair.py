"""Pair classification (XNLI, PAWS-X, MNLI, QQP, SNLI, ANLI): one label per sentence pair."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xstilts.data.batching import featurize
from xstilts.data.examples import PairExample
from xstilts.formats.base import (
    Batch,
    DecodeConfig,
    FeatureConfig,
    Features,
    Format,
    PredictionRow,
    Score,
    bootstrap_mean_ci,
    pad_rows,
)
from xstilts.tasks.base import HubSource, Task


class PairClassification(Format):
    name = "pair_classification"
    head = "sequence"

    def from_records(self, task: Task, records: Iterable[Any]) -> list[PairExample]:
        return [PairExample(guid, a, b, task.label_index(y)) for guid, a, b, y in records]

    def from_hub(self, task: Task, hub: HubSource, rows: Any, lang: str) -> list[PairExample]:
        out = []
        for i, row in enumerate(rows):
            label = int(row[hub.label])
            if label < 0:
                continue  # SNLI/GLUE rows without a gold label
            out.append(
                PairExample(f"{hub.split}-{lang}-{i}", row[hub.text_a], row[hub.text_b], label)
            )
        return out

    def featurize(
        self,
        tokenizer: Any,
        examples: Sequence[PairExample],
        cfg: FeatureConfig,
        labels: tuple[str, ...],
    ) -> Features:
        return featurize(tokenizer, examples, cfg.max_length)

    def collate(self, features: Features, index: np.ndarray, pad_id: int) -> Batch:
        ids, mask = pad_rows([features.input_ids[i] for i in index], pad_id)
        labels = torch.as_tensor(features.targets["labels"][index])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits.float(), batch["labels"])

    def outputs(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        return logits.argmax(-1).cpu().tolist()

    def decode(
        self,
        examples: Sequence[PairExample],
        features: Features,
        outputs: Sequence[Any],
        labels: tuple[str, ...],
        cfg: DecodeConfig,
    ) -> list[PredictionRow]:
        return [
            {
                "id": e.guid,
                "prediction": labels[p],
                "label": labels[e.label] if e.label >= 0 else None,
            }
            for e, p in zip(examples, outputs, strict=True)
        ]

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
