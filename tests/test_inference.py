"""The inference loop: outputs in the original row order, batches longest first under the caps,
a batch's outputs read only once the next batch is queued, collation ahead in a thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn
from xstilts.modeling.batch import Batch
from xstilts.training.inference import infer


class RowSums(nn.Module):
    """A real module with a parameter: each row's sum of token ids times ``scale``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, batch: Batch) -> torch.Tensor:
        return (batch.input_ids * batch.attention_mask).sum(1).float() * self.scale


def _collate(rows: list[list[int]], index: np.ndarray) -> Batch:
    width = max(len(rows[i]) for i in index)
    ids = torch.zeros((len(index), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, i in enumerate(index):
        ids[j, : len(rows[i])] = torch.tensor(rows[i])
        mask[j, : len(rows[i])] = 1
    return Batch(ids, mask)


def test_outputs_in_row_order_and_each_batch_read_after_the_next_is_queued() -> None:
    rows = [[1] * n for n in (3, 9, 1, 5, 7, 2, 4)]  # row i sums to its length
    lengths = np.array([len(r) for r in rows])
    model = RowSums()
    events: list[str] = []
    collated: list[str] = []

    def collate(index: np.ndarray) -> Batch:
        collated.append(threading.current_thread().name)
        return _collate(rows, index)

    def run(batch: Batch) -> torch.Tensor:
        events.append(f"run {batch.width}")
        return model(batch)

    def read(output: torch.Tensor, batch: Batch) -> list[float]:
        events.append(f"read {batch.width}")
        return output.tolist()

    progress: list[tuple[int, int]] = []
    out = infer(model, lengths, 2, collate, run, read, lambda d, t, _r, _l: progress.append((d, t)))
    assert out == [2.0 * n for n in lengths]  # the original order, not the batches'
    # Longest first, 2 rows a batch: widths 9, 5, 3, 1; each read once the next run is queued.
    assert events == [
        "run 9", "run 5", "read 9", "run 3", "read 5", "run 1", "read 3", "read 1",
    ]  # fmt: skip
    assert progress == [(2, 7), (4, 7), (6, 7), (7, 7)]
    assert set(collated) == {"collate"}  # made ahead, in the prefetching thread
    assert model.training  # its mode restored


def test_a_collate_error_reaches_the_caller_and_no_thread_is_left() -> None:
    rows = [[1, 2], [3], [4, 5, 6]]
    before = threading.active_count()

    def collate(index: np.ndarray) -> Batch:
        if 1 in index.tolist():
            raise KeyError("row 1 has no label")
        return _collate(rows, index)

    with pytest.raises(KeyError, match="row 1 has no label"):
        infer(RowSums(), np.array([2, 1, 3]), 1, collate, lambda b: b.input_ids, lambda o, b: o)
    assert threading.active_count() == before
    assert (
        infer(RowSums(), np.array([], dtype=np.int64), 4, collate, lambda b: b, lambda o, b: o)
        == []
    )
