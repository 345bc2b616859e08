"""The training loop's source of micro-batches (prefetched in a thread, the order an uninterrupted
run takes) and its loss book (no read of the device per micro-batch)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel
from xstilts.data import DataSource, load_split
from xstilts.formats import get_trained_format
from xstilts.formats.base import Features
from xstilts.formats.pair import featurize_pairs
from xstilts.modeling.batch import IGNORE, Batch
from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder, load_tokenizer
from xstilts.spec import TrainingConfig
from xstilts.tasks import Split, get_task
from xstilts.training.batching import TrainingBatches, bucket_width
from xstilts.training.loop import train_multi
from xstilts.training.losses import LossBook
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


def _batches(
    feats: list[Features],
    pad: int,
    start: int,
    prefetch: int,
    widths: tuple[int, ...] | None = None,
) -> TrainingBatches:
    fmt = get_trained_format(feats[0].format)
    schedule = TaskSchedule(["snli", "qqp"], {"snli": 0.6, "qqp": 0.4}, seed=3)
    cpu = torch.device("cpu")
    return TrainingBatches(
        feats, [fmt, fmt], schedule, 8, 2, 3, start, pad, cpu, prefetch=prefetch, widths=widths
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
    book = LossBook(tasks=2, steps=2, device=torch.device("cpu"))
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


def test_bucket_width_is_the_smallest_that_holds_the_batch() -> None:
    widths = (16, 32, 64)
    assert [bucket_width(w, widths) for w in (1, 16, 17, 32, 33, 64, 65, 200)] == [
        16, 16, 32, 32, 64, 64, 65, 200,
    ]  # fmt: skip


def test_padding_a_batch_masks_every_new_position() -> None:
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    tags = torch.tensor([[IGNORE, 3, 4, IGNORE], [IGNORE, 2, IGNORE, IGNORE]])
    batch = Batch(ids, mask, labels=torch.tensor([1, 0]), tags=tags, masked=tags.clone())
    wide = batch.padded_to(7, pad_id=1)
    assert wide.width == 7
    assert wide.input_ids.tolist() == [[0, 5, 6, 2, 1, 1, 1], [0, 7, 2, 1, 1, 1, 1]]
    assert wide.attention_mask.tolist() == [[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0]]
    assert wide.tags is not None and wide.masked is not None
    assert wide.tags[:, 4:].eq(IGNORE).all() and torch.equal(wide.tags[:, :4], tags)
    assert torch.equal(wide.masked, wide.tags)
    assert wide.labels is batch.labels and wide.start is None and wide.num_choices is None
    span = Batch(ids, mask, start=torch.tensor([1, 2]), end=torch.tensor([2, 2]))
    assert span.padded_to(8, 1).start is span.start  # positions stay where they were
    assert batch.padded_to(4, 1) is batch
    with pytest.raises(ValueError, match="4 tokens wide cannot be padded to 3"):
        batch.padded_to(3, 1)


def _train(
    model_dir: Path, feats: list[Features], pad: int, work: Path, **options: object
) -> tuple[list[float], dict[str, torch.Tensor]]:
    """(losses: final, first and last tenth, per task; weights) after 6 steps from seed 0, with
    no dropout: its masks are drawn over the whole padded batch, so padding changes the draws."""
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(
        str(model_dir), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model = MultiHeadClassifier(encoder)
    model.add_head("snli", 3)
    model.add_head("qqp", 2)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    cfg = TrainingConfig.model_validate(
        {"batch_size": 8, "max_steps": 6, "learning_rate": 1e-3, **options}
    )
    r = train_multi(model, {"snli": feats[0], "qqp": feats[1]}, cfg, 0, work, pad)
    losses = [r.final_loss, r.loss_start or 0.0, r.loss_end or 0.0, *r.task_losses.values()]
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_padding_to_widths_trains_the_same_numbers(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Width buckets only add masked padding: without dropout, the run's losses and weights are
    those of the run without them, up to float rounding; every batch has one of the widths (or
    its own, past the last). cuda_graphs on a CPU warns and trains as without."""
    feats, pad = _features(tiny_model_dir, data_dir)
    widths = (24, 40)
    taken = _take(_batches(feats, pad, 0, prefetch=0, widths=widths), 24)
    natural = {max(len(feats[t].input_ids[i]) for i in rows) for t, rows, _ in taken}
    padded_widths = {ids.shape[1] for _, _, ids in taken}
    assert padded_widths == {bucket_width(w, widths) for w in natural}
    assert 24 in padded_widths and natural - {24, 40}  # some batches really were widened

    plain = _train(tiny_model_dir, feats, pad, tmp_path / "plain")
    padded = _train(tiny_model_dir, feats, pad, tmp_path / "padded", pad_to_widths=widths)
    with caplog.at_level("WARNING", logger="xstilts.training.loop"):
        graphs = _train(
            tiny_model_dir, feats, pad, tmp_path / "graphs", pad_to_widths=widths, cuda_graphs=True
        )
    assert "cuda_graphs: no CUDA device here" in caplog.text
    assert len(padded[0]) == 5
    np.testing.assert_allclose(padded[0], plain[0], rtol=1e-5, atol=1e-6)
    for name, weight in plain[1].items():
        torch.testing.assert_close(padded[1][name], weight, rtol=1e-4, atol=1e-5, msg=name)
    assert graphs[0] == padded[0]  # no graphs without CUDA: the padded run, bit for bit
    assert all(torch.equal(graphs[1][n], w) for n, w in padded[1].items())
