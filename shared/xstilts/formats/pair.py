"""Pair classification (XNLI, PAWS-X, MNLI, QQP, SNLI, ANLI): one label per sentence pair."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from xstilts.data.examples import PairExample
from xstilts.formats.base import (
    Batch,
    FeatureConfig,
    Features,
    OneLabelPerExample,
    pad_rows,
)


class PairClassification(OneLabelPerExample):
    name = "pair_classification"
    head = "sequence"

    def featurize(
        self,
        tokenizer: Any,
        examples: Sequence[PairExample],
        cfg: FeatureConfig,
        labels: tuple[str, ...],
    ) -> Features:
        return featurize_pairs(tokenizer, examples, cfg.max_length)

    def collate(self, features: Features, index: np.ndarray, pad_id: int) -> Batch:
        ids, mask = pad_rows([features.input_ids[i] for i in index], pad_id)
        labels = torch.as_tensor(features.targets["labels"][index])
        return Batch(ids, mask, labels=labels)


def featurize_pairs(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[PairExample], max_length: int
) -> Features:
    """Sentence pairs as ``<s> a </s></s> b </s>`` ids, truncated longest-first."""
    enc = tokenizer(
        [e.text_a for e in examples],
        [e.text_b for e in examples],
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    labels = np.fromiter((e.label for e in examples), dtype=np.int64, count=len(examples))
    return Features(
        PairClassification.name,
        list(enc["input_ids"]),
        {"labels": labels},
        np.arange(len(examples), dtype=np.int64),
    )
