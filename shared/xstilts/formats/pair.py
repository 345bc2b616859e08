"""Pair classification (XNLI, PAWS-X, MNLI, QQP, SNLI, ANLI): one label per sentence pair."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from xstilts.data.examples import PairExample
from xstilts.formats.base import (
    Batch,
    DecodeConfig,
    FeatureConfig,
    Features,
    OneLabelPerExample,
    PredictionRow,
    pad_rows,
)
from xstilts.tasks.base import HubSource, Task
from xstilts.training.batching import featurize


class PairClassification(OneLabelPerExample):
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
