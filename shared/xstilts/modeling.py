"""An encoder with one classification head per task.

The encoder carries over between stages (intermediate -> target); heads are per task, so the target
stage starts with a fresh head. A stage's output folder holds ``encoder/`` (a normal Hugging Face
folder with the tokenizer) and ``heads.pt``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
HEADS_FILE = "heads.pt"


class ClassificationHead(nn.Module):
    """RoBERTa's sentence classification head (dense, tanh, projection) over a pooled vector."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        x = self.dropout(first_token)
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


POOLINGS = ("first", "mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence: the first token (<s>), or the mean over real (unpadded) tokens."""
    if pooling == "first":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MultiHeadClassifier(nn.Module):
    def __init__(self, encoder: PreTrainedModel, pooling: str = "first") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling = pooling
        self.heads = nn.ModuleDict()

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def add_head(self, task: str, num_labels: int) -> None:
        dropout = float(getattr(self.encoder.config, "hidden_dropout_prob", 0.1))
        self.heads[task] = ClassificationHead(self.hidden_size, num_labels, dropout)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, task: str
    ) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.heads[task](pool(hidden, attention_mask, self.pooling))


def load_encoder(name_or_path: str, revision: str | None = None) -> PreTrainedModel:
    # The pooler, where a model has one, is loaded but unused: heads read the first token.
    return AutoModel.from_pretrained(name_or_path, revision=revision, trust_remote_code=False)


def load_tokenizer(name_or_path: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=False)


def save_stage_model(
    model: MultiHeadClassifier, tokenizer: PreTrainedTokenizerBase, out_dir: Path
) -> None:
    """Write encoder, tokenizer and heads into ``out_dir`` (the caller renames it into place)."""
    enc_dir = out_dir / ENCODER_DIR
    model.encoder.save_pretrained(enc_dir)
    tokenizer.save_pretrained(enc_dir)
    heads: dict[str, Any] = {"__pooling__": model.pooling}
    for task, head in model.heads.items():
        assert isinstance(head, ClassificationHead)
        heads[task] = {"num_labels": head.out_proj.out_features, "state": head.state_dict()}
    torch.save(heads, out_dir / HEADS_FILE)


def load_stage_model(stage_dir: Path) -> tuple[MultiHeadClassifier, PreTrainedTokenizerBase]:
    enc_dir = stage_dir / ENCODER_DIR
    heads = torch.load(stage_dir / HEADS_FILE, map_location="cpu", weights_only=True)
    model = MultiHeadClassifier(load_encoder(str(enc_dir)), heads.pop("__pooling__"))
    for task, saved in heads.items():
        model.add_head(task, saved["num_labels"])
        model.heads[task].load_state_dict(saved["state"])
    return model, load_tokenizer(str(enc_dir))
