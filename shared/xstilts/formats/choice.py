"""Multiple choice (HellaSwag, CommonsenseQA, Cosmos QA): each choice is scored as a sequence
``<s> context </s></s> question choice </s>`` and the choices of an example compete in a softmax."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xstilts.data.examples import ChoiceExample
from xstilts.formats.base import (
    Batch,
    FeatureConfig,
    Features,
    OneLabelPerExample,
    pad_rows,
)
from xstilts.tasks.base import Task

LETTERS = "ABCDEFGHIJ"


class MultipleChoice(OneLabelPerExample):
    name = "multiple_choice"
    head = "choice"

    def labels(self, task: Task, examples: Sequence[ChoiceExample]) -> tuple[str, ...]:
        return tuple(LETTERS[: max(len(e.choices) for e in examples)])

    def featurize(
        self,
        tokenizer: Any,
        examples: Sequence[ChoiceExample],
        cfg: FeatureConfig,
        labels: tuple[str, ...],
    ) -> Features:
        firsts = [e.context for e in examples for _ in e.choices]
        seconds = [f"{e.question} {c}".strip() for e in examples for c in e.choices]
        enc = tokenizer(
            firsts,
            seconds,
            truncation=True,
            max_length=cfg.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        rows, k = [], 0
        for e in examples:
            rows.append([list(x) for x in enc["input_ids"][k : k + len(e.choices)]])
            k += len(e.choices)
        labels_arr = np.fromiter((e.label for e in examples), dtype=np.int64, count=len(examples))
        return Features(
            self.name, rows, {"labels": labels_arr}, np.arange(len(examples), dtype=np.int64)
        )

    def collate(self, features: Features, index: np.ndarray, pad_id: int) -> Batch:
        groups = [features.input_ids[i] for i in index]
        num_choices = len(groups[0])
        if any(len(g) != num_choices for g in groups):
            raise ValueError("a batch mixes examples with different numbers of choices")
        ids, mask = pad_rows([row for g in groups for row in g], pad_id)
        return Batch(
            ids,
            mask,
            labels=torch.as_tensor(features.targets["labels"][index]),
            num_choices=num_choices,
        )

    def label_name(self, labels: tuple[str, ...], index: int) -> str:
        return LETTERS[index]
