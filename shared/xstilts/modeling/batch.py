"""What a format's ``collate`` makes and a model's forward pass and a format's loss read."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# A token target that is not predicted (torch's cross-entropy ``ignore_index``): a tag where a token
# is not a word's first piece, a masked-LM target where a token is not masked, padding.
IGNORE = -100


@dataclass(frozen=True)
class Batch:
    """Token ids and their mask (rows x width, padded), and the targets of one format; a field
    another format has is None. Multiple choice puts an example's choices on consecutive rows."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None  # a class per row (pairs), per example (multiple choice)
    tags: torch.Tensor | None = None  # a tag id per token, IGNORE where none (tagging)
    start: torch.Tensor | None = None  # the answer span's first and last token (QA)
    end: torch.Tensor | None = None
    num_choices: int | None = None  # rows per example (multiple choice)
    # The original token where a token is to be predicted, IGNORE elsewhere (masked LM).
    masked: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        """The tensors on ``device``; to a GPU through pinned memory, without blocking (the copy
        overlaps what runs; a later kernel on the same stream waits for it)."""
        cuda = device.type == "cuda"

        def moved(t: torch.Tensor) -> torch.Tensor:
            return t.pin_memory().to(device, non_blocking=True) if cuda else t.to(device)

        def maybe(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else moved(t)

        return Batch(
            moved(self.input_ids),
            moved(self.attention_mask),
            labels=maybe(self.labels),
            tags=maybe(self.tags),
            start=maybe(self.start),
            end=maybe(self.end),
            num_choices=self.num_choices,
            masked=maybe(self.masked),
        )

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[-1])

    def padded_to(self, width: int, pad_id: int) -> Batch:
        """The batch widened to ``width`` tokens with masked padding: pad ids, mask 0, per-token
        targets IGNORE. Every position a loss or a head reads is unchanged, so the numbers are the
        same up to float rounding (sums over more, exactly zero, terms)."""
        extra = width - self.width
        if extra < 0:
            raise ValueError(f"a batch {self.width} tokens wide cannot be padded to {width}")
        if extra == 0:
            return self

        def widened(t: torch.Tensor, value: int) -> torch.Tensor:
            return F.pad(t, (0, extra), value=value)

        def maybe(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else widened(t, IGNORE)

        return Batch(
            widened(self.input_ids, pad_id),
            widened(self.attention_mask, 0),
            labels=self.labels,
            tags=maybe(self.tags),
            start=self.start,
            end=self.end,
            num_choices=self.num_choices,
            masked=maybe(self.masked),
        )

    def need(self, name: str) -> torch.Tensor:
        """The target ``name``, which the format's own collate sets."""
        value = getattr(self, name)
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"the batch has no {name!r}: not collated by this format")
        return value
