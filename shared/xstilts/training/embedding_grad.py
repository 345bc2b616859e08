"""The word-embedding gradient in one buffer that lives for the whole run, written and cleared row
by row, on the CPU.

XLM-R's word embeddings are 250k rows (96M of the offline model's 117M parameters, 1 GB of XLM-R
base's), and a batch touches a few thousand of them. PyTorch's embedding backward nevertheless
allocates a fresh dense gradient every step: on the CPU that is a new 384 MB mapping, faulted in
page by page and then zero-filled (about 0.5 s a step on 2 cores, a quarter of a training step).
Here the gradient goes into one buffer allocated once; backward adds each micro-batch's rows into
it, and after the optimiser step only the rows that were touched are set back to zero.

The numbers are the same bit for bit (tested): each row is summed in index order as PyTorch's CPU
kernel does, and micro-batches are summed into the buffer in the order autograd accumulates them.
Clipping and AdamW still see a dense gradient (every row, most of them zero), so their arithmetic is
unchanged. Not used where another component must see the gradient arrive (DistributedDataParallel
reduces it in autograd hooks) or on GPUs (no page faults there, and their kernel sums differently).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel


class _RowGradient:
    """The persistent buffer and the rows written since it was last cleared."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight
        self.buffer = torch.zeros_like(weight)
        self.touched: list[torch.Tensor] = []
        weight.grad = self.buffer

    def add(self, ids: torch.Tensor, grad_out: torch.Tensor, padding_idx: int | None) -> None:
        flat = ids.reshape(-1)
        rows = grad_out.reshape(-1, grad_out.shape[-1])
        if padding_idx is not None:  # nn.Embedding gives its padding row no gradient
            keep = flat != padding_idx
            flat, rows = flat[keep], rows[keep]
        unique, inverse = torch.unique(flat, return_inverse=True)
        # A micro-batch's sum per row first (index order, as the dense kernel adds), then one add
        # into the buffer: what autograd's dense accumulation of micro-batches computes.
        summed = rows.new_zeros(len(unique), rows.shape[1]).index_add_(0, inverse, rows)
        self.buffer.index_add_(0, unique, summed.to(self.buffer.dtype))
        self.touched.append(unique)

    def clear(self) -> None:
        """Zero the rows written since the last call and hand the buffer back as the gradient
        (``optimizer.zero_grad(set_to_none=True)`` detaches it)."""
        if self.touched:
            self.buffer.index_fill_(0, torch.cat(self.touched), 0.0)
            self.touched.clear()
        self.weight.grad = self.buffer


class _Lookup(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        ids: torch.Tensor,
        weight: torch.Tensor,
        padding_idx: int | None,
        sink: _RowGradient,
    ) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.padding_idx, ctx.sink = padding_idx, sink
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[None, None, None, None]:
        (ids,) = ctx.saved_tensors
        ctx.sink.add(ids, grad_out, ctx.padding_idx)
        return None, None, None, None  # the weight's gradient is already in the buffer


class _RowGradEmbedding(nn.Embedding):
    """Stands in for the encoder's ``nn.Embedding`` during training, holding the same weight
    parameter under the same name (state dict, optimiser and clipping see no difference)."""

    def __init__(self, original: nn.Embedding, sink: _RowGradient) -> None:
        super().__init__(
            original.num_embeddings,
            original.embedding_dim,
            padding_idx=original.padding_idx,
            _weight=original.weight.detach(),
        )
        self.weight = original.weight
        self.sink = sink

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():  # evaluation during training (model selection)
            return super().forward(ids)
        return _Lookup.apply(ids, self.weight, self.padding_idx, self.sink)


def _eligible(embedding: nn.Embedding, device: torch.device) -> bool:
    return (
        device.type == "cpu"
        and type(embedding) is nn.Embedding
        and embedding.weight.requires_grad
        and embedding.max_norm is None
        and not embedding.scale_grad_by_freq
        and not embedding.sparse
    )


@contextmanager
def row_gradient(encoder: PreTrainedModel, device: torch.device, enabled: bool) -> Iterator[Any]:
    """While training, the encoder's input embeddings write their gradient row by row into one
    buffer; yields a function to call instead of zeroing that gradient after each optimiser step
    (a no-op where the dense path is kept). The encoder gets its own embedding module back."""
    embedding = encoder.get_input_embeddings()
    if not enabled or not isinstance(embedding, nn.Embedding) or not _eligible(embedding, device):
        yield lambda: None
        return
    sink = _RowGradient(embedding.weight)
    encoder.set_input_embeddings(_RowGradEmbedding(embedding, sink))
    try:
        yield sink.clear
    finally:
        encoder.set_input_embeddings(embedding)
        embedding.weight.grad = None
