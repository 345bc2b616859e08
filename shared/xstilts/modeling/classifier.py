"""An encoder with one classification head per task.

The encoder carries over between stages (intermediate -> target); heads are per task, so the target
stage starts with a fresh head. A stage's output folder holds ``encoder/`` (a normal Hugging Face
folder with the tokenizer) and ``heads.pt``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from xstilts.modeling.batch import IGNORE, Batch
from xstilts.modeling.sources import loadable

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
HEADS_FILE = "heads.pt"


POOLINGS = ("first", "mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence: the first token (<s>), or the mean over real (unpadded) tokens."""
    if pooling == "first":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class SequenceHead(nn.Module):
    """One label per sequence (pair classification): RoBERTa's classification head (dense, tanh,
    projection) over the pooled vector."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, pooling: str, batch: Batch
    ) -> torch.Tensor:
        x = self.dropout(pool(hidden, mask, pooling))
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class ChoiceHead(SequenceHead):
    """One score per (context, choice) sequence; the choices of an example compete in a softmax."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__(hidden_size, 1, dropout)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, pooling: str, batch: Batch
    ) -> torch.Tensor:
        return super().forward(hidden, mask, pooling, batch).view(-1, int(batch.num_choices or 1))


class TokenHead(nn.Module):
    """One label per token (tagging): a linear layer over each token, as XTREME's taggers."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, pooling: str, _: Batch
    ) -> torch.Tensor:
        return self.out_proj(self.dropout(hidden))


class SpanHead(nn.Module):
    """Start and end logits per token (extractive QA); padding is masked out of both."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.out_proj = nn.Linear(hidden_size, 2)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, pooling: str, _: Batch
    ) -> torch.Tensor:
        logits = self.out_proj(hidden).float()
        return logits.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(torch.float32).min)


class MaskedLMHead(nn.Module):
    """Token scores over the vocabulary at the masked tokens only (``batch.masked``): XLM-R's LM
    head (dense, GELU, layer norm) and a decoder tied to the encoder's input embeddings, plus a
    bias. Scoring only the ~15% masked tokens keeps a 250k vocabulary's logits small."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=1e-5)
        self.bias = nn.Parameter(torch.zeros(num_labels))
        self._embeddings: tuple[nn.Embedding, ...] = ()  # a tuple: tied, not registered twice

    def tie(self, embeddings: nn.Module) -> None:
        if not isinstance(embeddings, nn.Embedding):
            raise TypeError(f"cannot tie an LM head to {type(embeddings).__name__}")
        if embeddings.num_embeddings != self.bias.numel():
            raise ValueError(
                f"LM head of {self.bias.numel()} tokens, embeddings of {embeddings.num_embeddings}"
            )
        self._embeddings = (embeddings,)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor, pooling: str, batch: Batch
    ) -> torch.Tensor:
        chosen = hidden[batch.need("masked") != IGNORE]
        x = self.layer_norm(F.gelu(self.dense(chosen)))
        return F.linear(x, self._embeddings[0].weight, self.bias)


# A checkpoint's LM head, by its parameter names in Hugging Face checkpoints: XLM-R / RoBERTa
# (``lm_head.*``) and BERT (``cls.predictions.*``), as this head's names.
LM_HEAD_NAMES = {
    "dense.weight": ("lm_head.dense.weight", "cls.predictions.transform.dense.weight"),
    "dense.bias": ("lm_head.dense.bias", "cls.predictions.transform.dense.bias"),
    "layer_norm.weight": (
        "lm_head.layer_norm.weight",
        "cls.predictions.transform.LayerNorm.weight",
    ),
    "layer_norm.bias": ("lm_head.layer_norm.bias", "cls.predictions.transform.LayerNorm.bias"),
    "bias": ("lm_head.bias", "cls.predictions.bias"),
}


HEADS: dict[str, type[nn.Module]] = {
    "sequence": SequenceHead,
    "token": TokenHead,
    "span": SpanHead,
    "choice": ChoiceHead,
    "masked_lm": MaskedLMHead,
}


class MultiHeadClassifier(nn.Module):
    """A shared encoder and one head per task; each head's kind comes from the task's format."""

    def __init__(self, encoder: PreTrainedModel, pooling: str = "first") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
        self.encoder = encoder
        self.pooling = pooling
        self.heads = nn.ModuleDict()
        self.head_kinds: dict[str, str] = {}
        self.labels: dict[str, tuple[str, ...]] = {}  # label names per head, in logit order

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def add_head(
        self, task: str, num_labels: int, kind: str = "sequence", labels: tuple[str, ...] = ()
    ) -> None:
        if kind not in HEADS:
            raise ValueError(f"head kind {kind!r}: valid: {', '.join(HEADS)}")
        dropout = float(getattr(self.encoder.config, "hidden_dropout_prob", 0.1))
        head = HEADS[kind](self.hidden_size, num_labels, dropout)
        if isinstance(head, MaskedLMHead):
            head.tie(self.encoder.get_input_embeddings())
        self.heads[task] = head
        self.head_kinds[task] = kind
        self.labels[task] = tuple(labels)

    def forward(self, batch: Batch, task: str) -> torch.Tensor:
        mask = batch.attention_mask
        hidden = self.encoder(input_ids=batch.input_ids, attention_mask=mask).last_hidden_state
        return self.heads[task](hidden, mask, self.pooling, batch)


def load_encoder(name_or_path: str, revision: str | None = None) -> PreTrainedModel:
    # The pooler, where a model has one, is loaded but unused: heads read the first token.
    return AutoModel.from_pretrained(
        loadable(name_or_path), revision=revision, trust_remote_code=False
    )


def load_tokenizer(name_or_path: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(
        loadable(name_or_path), revision=revision, trust_remote_code=False
    )


class SavedHead(TypedDict):
    """A head as ``heads.pt`` stores it (beside ``"__pooling__"``: the model's pooling)."""

    kind: str
    labels: list[str]
    num_labels: int
    state: dict[str, torch.Tensor]


def save_stage_model(
    model: MultiHeadClassifier, tokenizer: PreTrainedTokenizerBase, out_dir: Path
) -> None:
    """Write encoder, tokenizer and heads into ``out_dir`` (the caller renames it into place)."""
    enc_dir = out_dir / ENCODER_DIR
    model.encoder.save_pretrained(enc_dir)
    tokenizer.save_pretrained(enc_dir)
    heads: dict[str, str | SavedHead] = {"__pooling__": model.pooling}
    for task, head in model.heads.items():
        heads[task] = SavedHead(
            kind=model.head_kinds[task],
            labels=list(model.labels[task]),
            num_labels=_num_labels(head),
            state=head.state_dict(),
        )
    torch.save(heads, out_dir / HEADS_FILE)


def _num_labels(head: nn.Module) -> int:
    if isinstance(head, MaskedLMHead):
        return head.bias.numel()
    assert isinstance(head, (SequenceHead, TokenHead, SpanHead))
    return head.out_proj.out_features


def checkpoint_lm_head(
    name_or_path: str, revision: str | None = None
) -> dict[str, torch.Tensor] | None:
    """The LM head's weights in a pretrained checkpoint (safetensors), named as
    :class:`MaskedLMHead`'s; None where the checkpoint has none (an encoder saved alone)."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    def find(name: str) -> str | None:
        return cached_file(
            loadable(name_or_path),
            name,
            revision=revision,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )

    files: list[str] = []
    index = find("model.safetensors.index.json")
    if index:
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        files = [f for f in (find(s) for s in shards) if f]
    else:
        single = find("model.safetensors")
        files = [single] if single else []
    found: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            keys = set(f.keys())
            for ours, theirs in LM_HEAD_NAMES.items():
                for name in theirs:
                    if ours not in found and name in keys:
                        found[ours] = f.get_tensor(name)
    return found if len(found) == len(LM_HEAD_NAMES) else None


def load_stage_model(stage_dir: Path) -> tuple[MultiHeadClassifier, PreTrainedTokenizerBase]:
    enc_dir = stage_dir / ENCODER_DIR
    heads = torch.load(stage_dir / HEADS_FILE, map_location="cpu", weights_only=True)
    model = MultiHeadClassifier(load_encoder(str(enc_dir)), heads.pop("__pooling__"))
    for task, saved in heads.items():
        kind = saved.get("kind", "sequence")
        model.add_head(task, saved["num_labels"], kind, tuple(saved.get("labels", ())))
        model.heads[task].load_state_dict(saved["state"])
    return model, load_tokenizer(str(enc_dir))
