"""Masked language modelling (the paper's MLM arm): packed sequences of unlabelled text, a share
of their tokens masked 80/10/10 as in BERT and XLM-R, and cross-entropy over the masked tokens.

MLM trains during the intermediate stage only: it is never a target and never predicts, so it has
no outputs, decoding or submission files. Masking is dynamic (each batch draws its own) yet
reproducible: a batch's masks are a pure function of the run's seed and the batch's rows, so a
resumed run masks the batches it replays exactly as the interrupted one did.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from xstilts.formats.base import Features, Objective, pad_rows
from xstilts.modeling.batch import IGNORE, Batch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


MASKED, RANDOM = 0.8, 0.1  # of the chosen tokens: shown as the mask token, as a random token


@dataclass(frozen=True)
class Masking:
    """What masking needs from the tokenizer and the spec."""

    probability: float
    mask_id: int
    vocab_size: int
    special_ids: tuple[int, ...]
    seed: int


def pack_lines(
    token_lines: Sequence[Sequence[int]], max_length: int, cls_id: int, sep_id: int
) -> list[list[int]]:
    """Lines' tokens packed into rows of ``<s> ... </s>`` of at most ``max_length`` tokens, in
    order; a line longer than a row's room continues in the next row."""
    room = max_length - 2
    if room < 1:
        raise ValueError(f"max_seq_length {max_length} leaves no room between <s> and </s>")
    rows: list[list[int]] = []
    current: list[int] = []
    for tokens in token_lines:
        pending = list(tokens)
        while pending:
            take = room - len(current)
            current.extend(pending[:take])
            pending = pending[take:]
            if len(current) == room:
                rows.append([cls_id, *current, sep_id])
                current = []
    if current:
        rows.append([cls_id, *current, sep_id])
    return rows


def mask_tokens(
    ids: torch.Tensor, attention_mask: torch.Tensor, masking: Masking, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids with the chosen tokens replaced, the original ids at the chosen tokens and
    IGNORE elsewhere). Each real, non-special token is chosen with ``masking.probability``; a row
    where none was chosen gets one chosen at random, so no row is without a target. Of the chosen
    tokens 80% become the mask token, 10% a random token and 10% stay as they are."""
    values = ids.numpy()
    eligible = attention_mask.numpy().astype(bool) & ~np.isin(values, masking.special_ids)
    chosen = (rng.random(values.shape) < masking.probability) & eligible
    for row in np.flatnonzero(~chosen.any(axis=1) & eligible.any(axis=1)):
        chosen[row, rng.choice(np.flatnonzero(eligible[row]))] = True
    fate = rng.random(values.shape)
    random_ids = rng.integers(0, masking.vocab_size, size=values.shape)
    out = values.copy()
    out[chosen & (fate < MASKED)] = masking.mask_id
    swap = chosen & (fate >= MASKED) & (fate < MASKED + RANDOM)
    out[swap] = random_ids[swap]
    targets = np.where(chosen, values, IGNORE)
    return torch.from_numpy(out), torch.from_numpy(targets)


class MaskedLM(Objective):
    """Masked-LM training on packed lines (:func:`featurize_text`): each batch masked afresh."""

    name = "masked_lm"
    head = "masked_lm"

    def collate(self, features: Features, index: np.ndarray, pad_id: int) -> Batch:
        ids, mask = pad_rows([features.input_ids[i] for i in index], pad_id)
        masking: Masking = features.extra["masking"]
        rows = np.ascontiguousarray(index, dtype=np.int64)
        rng = np.random.default_rng([masking.seed, zlib.crc32(rows.tobytes())])
        masked_ids, targets = mask_tokens(ids, mask, masking, rng)
        return Batch(masked_ids, mask, masked=targets)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        # The head scores only the masked tokens, in row-major order: the same order as these.
        targets = batch.need("masked")
        return F.cross_entropy(logits.float(), targets[targets != IGNORE])


def featurize_text(
    tokenizer: PreTrainedTokenizerBase,
    texts: dict[str, list[str]],
    max_length: int,
    probability: float,
    seed: int,
) -> Features:
    """Each language's lines packed into rows (languages never share a row), with the masking
    settings the collate step reads."""
    if tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer has no mask token: it cannot train a masked LM")
    rows: list[list[int]] = []
    for lang in sorted(texts):
        enc = tokenizer(
            texts[lang],
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        rows += pack_lines(
            enc["input_ids"], max_length, tokenizer.cls_token_id, tokenizer.sep_token_id
        )
    masking = Masking(
        probability=probability,
        mask_id=int(tokenizer.mask_token_id),
        vocab_size=len(tokenizer),
        special_ids=tuple(sorted(int(i) for i in tokenizer.all_special_ids)),
        seed=seed,
    )
    return Features(MaskedLM.name, rows, extra={"masking": masking})
