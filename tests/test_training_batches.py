"""The training loop's source of micro-batches (prefetched in a thread, the order an uninterrupted
run takes) and its loss book (no read of the device per micro-batch)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from xstilts.data import DataSource, load_split
from xstilts.formats import get_trained_format
from xstilts.formats.base import Features
from xstilts.formats.pair import featurize_pairs
from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder, load_tokenizer
from xstilts.spec import TrainingConfig
from xstilts.tasks import Split, get_task
from xstilts.training.batching import TrainingBatches
from xstilts.training.loop import _LossBook, train_multi
from xstilts.training.sampling import TaskSchedule


def _features(model_dir: Path, data_dir: Path) -> tuple[list[Features], int]:
    tok = load_tokenizer(str(model_dir))
    feats = [
        featurize_pairs(
            tok, load_split(get_task(t), Split.TRAIN, "en", DataSource("local", data_dir), n), 48
        )
        for t, n in (("snli", 40), ("qqp", 24))
    ]
    return feats, int(tok.pad_token_id)


def _batches(feats: list[Features], pad: int, start: int, prefetch: int) -> TrainingBatches:
    fmt = get_trained_format(feats[0].format)
    schedule = TaskSchedule(["snli", "qqp"], {"snli": 0.6, "qqp": 0.4}, seed=3)
    return TrainingBatches(
        feats, [fmt, fmt], schedule, 8, 2, 3, start, pad, torch.device("cpu"), prefetch=prefetch
    )


def _take(batches: TrainingBatches, n: int) -> list[tuple[int, list[int], torch.Tensor]]:
    with batches:
        return [
            (mb.task, mb.rows.tolist(), mb.batch.input_ids)
            for mb in (next(batches) for _ in range(n))
        ]


def test_prefetched_batches_are_the_batches_in_order_and_resume_skips_exactly(
    tiny_model_dir: Path, data_dir: Path
) -> None:
    feats, pad = _features(tiny_model_dir, data_dir)
    inline = _take(_batches(feats, pad, 0, prefetch=0), 24)
    ahead = _take(_batches(feats, pad, 0, prefetch=3), 24)
    assert [(t, r) for t, r, _ in ahead] == [(t, r) for t, r, _ in inline]
    assert all(torch.equal(a, b) for (_, _, a), (_, _, b) in zip(ahead, inline, strict=True))
    assert {t for t, _, _ in inline} == {0, 1}  # both tasks drawn
    # Each batch is padded to its longest row only.
    longest = [max(len(feats[t].input_ids[i]) for i in rows) for t, rows, _ in inline]
    assert [ids.shape[1] for _, _, ids in inline] == longest
    # From optimiser step 5 (accumulation 2): micro-batch 10 on, as the full run had them.
    resumed = _take(_batches(feats, pad, 5, prefetch=2), 14)
    assert [(t, r) for t, r, _ in resumed] == [(t, r) for t, r, _ in inline[10:]]


def test_a_collate_error_reaches_the_loop_and_close_stops_the_thread(
    tiny_model_dir: Path, data_dir: Path
) -> None:
    feats, pad = _features(tiny_model_dir, data_dir)
    broken = Features(feats[1].format, feats[1].input_ids, {}, feats[1].example_index)
    batches = _batches([feats[0], broken], pad, 0, prefetch=2)
    with pytest.raises(KeyError, match="labels"), batches:  # qqp's batches have no labels
        for _ in range(24):
            next(batches)
    started = threading.active_count()
    batches = _batches(feats, pad, 0, prefetch=2)
    next(batches)
    assert threading.active_count() == started + 1
    batches.close()
    assert threading.active_count() == started


def test_loss_book_sums_as_python_floats_would() -> None:
    values = [0.6931471824645996, 1.0986123085021973, 0.40546509623527527, 2.3025851249694824]
    book = _LossBook(tasks=2, steps=2, device=torch.device("cpu"))
    for k, v in enumerate(values):  # accumulation 2: steps (0, 1) and (2, 3); tasks alternate
        book.add(k % 2, torch.tensor(v, dtype=torch.float32), 2)
        if k % 2:
            book.end_step(k // 2)
    f32 = [float(torch.tensor(v, dtype=torch.float32)) for v in values]
    assert book.step_losses() == [0.0 + f32[0] / 2 + f32[1] / 2, 0.0 + f32[2] / 2 + f32[3] / 2]
    assert book.task_means() == {0: (f32[0] + f32[2]) / 2, 1: (f32[1] + f32[3]) / 2}
    assert book.batches == [2, 2]


def test_the_loop_reads_the_loss_from_the_device_only_to_log(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feats, pad = _features(tiny_model_dir, data_dir)
    torch.manual_seed(0)
    model = MultiHeadClassifier(load_encoder(str(tiny_model_dir)))
    model.add_head("snli", 3)
    model.add_head("qqp", 2)
    reads = []
    item = torch.Tensor.item

    def counted(self: torch.Tensor) -> object:
        reads.append(self.dtype)
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", counted)
    cfg = TrainingConfig(batch_size=8, max_steps=12, gradient_accumulation_steps=2)
    result = train_multi(model, {"snli": feats[0], "qqp": feats[1]}, cfg, 0, tmp_path, pad)
    # 24 micro-batches, 12 steps: the loss is read once, for the last step's log line.
    assert reads == [torch.float64]
    assert result.steps_run == 12 and sum(result.task_batches.values()) == 24
    assert np.isfinite(result.final_loss) and set(result.task_losses) == {"snli", "qqp"}
