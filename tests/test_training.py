"""The training loop: determinism under a seed, and resume from a checkpoint after a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from xstilts.data import DataSource, load_split
from xstilts.errors import CancelledError
from xstilts.formats.pair import featurize_pairs as featurize
from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder, load_tokenizer
from xstilts.spec import TrainingConfig
from xstilts.tasks import Split, get_task
from xstilts.training.batching import length_grouped_batches
from xstilts.training.loop import (
    CHECKPOINT_FILE,
    Selection,
    SelectionOutcome,
    selection_steps,
    total_optimizer_steps,
    train,
    train_multi,
)
from xstilts.training.sampling import sampling_probabilities

CFG = TrainingConfig(
    learning_rate=1e-3,
    batch_size=8,
    max_seq_length=48,
    checkpoint_every_steps=4,
    max_train_examples=96,
)


def _setup(model_dir: Path, data_dir: Path):
    tok = load_tokenizer(str(model_dir))
    ex = load_split(
        get_task("snli"), Split.TRAIN, "en", DataSource("local", data_dir), CFG.max_train_examples
    )
    feats = featurize(tok, ex, CFG.max_seq_length)
    torch.manual_seed(0)
    model = MultiHeadClassifier(load_encoder(str(model_dir)))
    model.add_head("snli", 3)
    return model, feats, tok.pad_token_id


def test_prediction_batches_cap_rows_and_padded_tokens() -> None:
    from xstilts.training.batching import sorted_batches

    lengths = np.array([10, 100, 30, 100, 50, 20, 90, 40])
    batches = sorted_batches(lengths, batch_size=3, max_tokens=250)
    # Longest first: 100, 100 (a third would pad to 300 tokens), then 90, 50 (2 x 90 = 180;
    # a third: 270), then 40, 30, 20 (the row cap), then 10.
    assert [lengths[b].tolist() for b in batches] == [[100, 100], [90, 50], [40, 30, 20], [10]]
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    assert [b.tolist() for b in sorted_batches(lengths, 3)] == [[1, 3, 6], [4, 7, 2], [5, 0]]


def test_length_grouping_reduces_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, 4096)
    grouped = length_grouped_batches(lengths, 32, np.random.default_rng(1))
    assert sorted(np.concatenate(grouped).tolist()) == list(range(4096))  # every example once
    padded = sum(len(b) * lengths[b].max() for b in grouped)
    random_batches = np.array_split(rng.permutation(4096), 128)
    padded_random = sum(len(b) * lengths[b].max() for b in random_batches)
    assert padded < 0.7 * padded_random


def test_total_steps() -> None:
    assert total_optimizer_steps(100, TrainingConfig(batch_size=8)) == 13
    assert (
        total_optimizer_steps(
            100, TrainingConfig(batch_size=8, gradient_accumulation_steps=2, epochs=2)
        )
        == 13
    )
    assert total_optimizer_steps(100, TrainingConfig(batch_size=8, max_steps=5, epochs=9)) == 5


def test_resume_after_crash_equals_uninterrupted_run(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    model_a, feats, pad = _setup(tiny_model_dir, data_dir)
    res_a = train(model_a, "snli", feats, CFG, 7, tmp_path / "a", pad)
    assert res_a.total_steps == 12 and res_a.steps_run == 12 and res_a.resumed_from_step == 0
    # The loss at the start and the end: the mean of the first and of the last step (12 // 10).
    assert res_a.loss_end == pytest.approx(res_a.final_loss)
    assert res_a.loss_start is not None and res_a.loss_start != res_a.loss_end

    # Crash at step 6: the checkpoint from step 4 survives.
    model_b, _, _ = _setup(tiny_model_dir, data_dir)
    (tmp_path / "b").mkdir()
    calls = iter(range(100))
    with pytest.raises(CancelledError):
        train(
            model_b,
            "snli",
            feats,
            CFG,
            7,
            tmp_path / "b",
            pad,
            should_stop=lambda: next(calls) == 5,
        )
    assert torch.load(tmp_path / "b" / CHECKPOINT_FILE, weights_only=False)["step"] == 4

    model_c, _, _ = _setup(tiny_model_dir, data_dir)  # a fresh process would start like this
    res_c = train(model_c, "snli", feats, CFG, 7, tmp_path / "b", pad)
    assert res_c.resumed_from_step == 4 and res_c.steps_run == 8
    for (name, pa), (_, pc) in zip(
        model_a.state_dict().items(), model_c.state_dict().items(), strict=False
    ):
        assert torch.allclose(pa, pc, atol=1e-6), name
    assert res_c.final_loss == pytest.approx(res_a.final_loss, abs=1e-5)


def test_seed_changes_the_run(tiny_model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"max_steps": 3})
    m1, feats, pad = _setup(tiny_model_dir, data_dir)
    m2, _, _ = _setup(tiny_model_dir, data_dir)
    r1 = train(m1, "snli", feats, cfg, 1, tmp_path / "1", pad)
    train(m2, "snli", feats, cfg, 2, tmp_path / "2", pad)
    assert not torch.equal(m1.heads["snli"].out_proj.weight, m2.heads["snli"].out_proj.weight)
    # The result says how fast, in model FLOPs; a CPU has no table peak, so no MFU.
    assert r1.model_tflops is not None and r1.model_tflops > 0
    assert r1.device == "cpu" and r1.mfu is None


def test_frozen_word_embeddings_stay_fixed(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    m, feats, pad = _setup(tiny_model_dir, data_dir)
    before = m.encoder.get_input_embeddings().weight.detach().clone()
    layer0 = m.encoder.encoder.layer[0].attention.self.query.weight.detach().clone()
    cfg = CFG.model_copy(update={"max_steps": 2, "freeze_word_embeddings": True})
    train(m, "snli", feats, cfg, 1, tmp_path, pad)
    assert torch.equal(before, m.encoder.get_input_embeddings().weight)
    assert not torch.equal(layer0, m.encoder.encoder.layer[0].attention.self.query.weight)


def test_sampling_probabilities_hand_computed() -> None:
    sizes = {"a": 900, "b": 100}
    assert sampling_probabilities(sizes) == pytest.approx({"a": 0.9, "b": 0.1})
    # T = 2: sqrt(900) = 30, sqrt(100) = 10
    assert sampling_probabilities(sizes, "temperature", 2.0) == pytest.approx(
        {"a": 0.75, "b": 0.25}
    )
    assert sampling_probabilities(sizes, "temperature", 1.0) == pytest.approx({"a": 0.9, "b": 0.1})
    assert sampling_probabilities(sizes, "uniform") == {"a": 0.5, "b": 0.5}
    # capped at 400 first: 400 / 500 and 100 / 500
    assert sampling_probabilities(sizes, size_cap=400) == pytest.approx({"a": 0.8, "b": 0.2})
    with pytest.raises(ValueError, match="proportional, temperature, uniform"):
        sampling_probabilities(sizes, "zipf")


def _two_tasks(model_dir: Path, data_dir: Path):
    tok = load_tokenizer(str(model_dir))
    src = DataSource("local", data_dir)
    data = {
        "snli": featurize(tok, load_split(get_task("snli"), Split.TRAIN, "en", src, 64), 48),
        "qqp": featurize(tok, load_split(get_task("qqp"), Split.TRAIN, "en", src, 32), 48),
    }
    torch.manual_seed(0)
    model = MultiHeadClassifier(load_encoder(str(model_dir)))
    model.add_head("snli", 3)
    model.add_head("qqp", 2)
    return model, data, tok.pad_token_id


def test_multi_task_draws_batches_by_probability_and_resumes_exactly(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    cfg = TrainingConfig(learning_rate=1e-3, batch_size=8, max_steps=40, checkpoint_every_steps=10)
    probs = {"snli": 0.75, "qqp": 0.25}
    model_a, data, pad = _two_tasks(tiny_model_dir, data_dir)
    res = train_multi(model_a, data, cfg, 3, tmp_path / "a", pad, probabilities=probs)
    assert sum(res.task_batches.values()) == 40
    assert 20 <= res.task_batches["snli"] <= 38  # ~30 expected of 40 draws at p = 0.75
    assert set(res.task_losses) == {"snli", "qqp"}
    # Both heads and the shared encoder trained.
    model_fresh, _, _ = _two_tasks(tiny_model_dir, data_dir)
    for head in ("snli", "qqp"):
        assert not torch.equal(
            model_a.heads[head].out_proj.weight, model_fresh.heads[head].out_proj.weight
        )

    model_b, _, _ = _two_tasks(tiny_model_dir, data_dir)
    calls = iter(range(1000))
    with pytest.raises(CancelledError):
        train_multi(
            model_b,
            data,
            cfg,
            3,
            tmp_path / "b",
            pad,
            probabilities=probs,
            should_stop=lambda: next(calls) == 24,
        )
    model_c, _, _ = _two_tasks(tiny_model_dir, data_dir)
    res_c = train_multi(model_c, data, cfg, 3, tmp_path / "b", pad, probabilities=probs)
    assert res_c.resumed_from_step == 20
    for (name, pa), (_, pc) in zip(
        model_a.state_dict().items(), model_c.state_dict().items(), strict=True
    ):
        assert torch.allclose(pa, pc, atol=1e-6), name


# --- checkpoint selection on English dev -------------------------------------------------------
def test_selection_steps() -> None:
    assert selection_steps(12, 4.0, None) == [4, 8, 12]  # each epoch's end
    assert selection_steps(13, 4.25, None) == [5, 9, 13]
    assert selection_steps(12, 4.0, 5) == [5, 10, 12]  # and always the last step
    assert selection_steps(3, 12.0, None) == [3]  # max_steps inside the first epoch


class _ScriptedDev:
    """A dev score read from a script, one per call, that also snapshots the head it scored."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.heads = list(scores), []

    def __call__(self, model: MultiHeadClassifier) -> float:
        assert not model.training  # scored in eval mode (no dropout)
        self.heads.append(model.heads["snli"].out_proj.weight.detach().clone())
        return self.scores.pop(0)


SELECT = CFG.model_copy(update={"select": "best_english_dev", "eval_every_steps": 3})


def test_best_english_dev_keeps_the_best_model_and_trains_as_last_does(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    last, feats, pad = _setup(tiny_model_dir, data_dir)
    res_last = train(last, "snli", feats, CFG, 7, tmp_path / "last", pad)
    assert res_last.selection is None

    best, _, _ = _setup(tiny_model_dir, data_dir)
    dev = _ScriptedDev([0.5, 0.9, 0.9, 0.6])  # steps 3, 6, 9, 12: a tie keeps the earlier one
    res = train(
        best, "snli", feats, SELECT, 7, tmp_path / "best", pad, selection=Selection("accuracy", dev)
    )
    assert res.selection == SelectionOutcome(
        metric="accuracy",
        selected_step=6,
        selected_score=0.9,
        total_steps=12,
        history=[[3, 0.5], [6, 0.9], [9, 0.9], [12, 0.6]],
    )
    # Evaluating changed nothing in the run: the step-12 model is the one select: last keeps ...
    assert torch.equal(dev.heads[3], last.heads["snli"].out_proj.weight)
    # ... and the model kept is the step-6 one, not the last.
    assert torch.equal(best.heads["snli"].out_proj.weight, dev.heads[1])
    assert not torch.equal(dev.heads[1], dev.heads[3])
    assert not best.training
    assert not list((tmp_path / "best").glob("best-*.pt"))  # the saved best models are cleaned up


def test_best_english_dev_resumes_with_its_history(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    whole, feats, pad = _setup(tiny_model_dir, data_dir)
    scores = {3: 0.5, 6: 0.9, 9: 0.7, 12: 0.6}
    train(
        whole,
        "snli",
        feats,
        SELECT,
        7,
        tmp_path / "whole",
        pad,
        selection=Selection("f1", _ScriptedDev(list(scores.values()))),
    )

    # Crash at step 7: the checkpoint from step 4 holds the step-3 evaluation.
    crashed, _, _ = _setup(tiny_model_dir, data_dir)
    calls = iter(range(100))
    with pytest.raises(CancelledError):
        train(
            crashed,
            "snli",
            feats,
            SELECT,
            7,
            tmp_path / "b",
            pad,
            should_stop=lambda: next(calls) == 6,
            selection=Selection("f1", _ScriptedDev([scores[3], scores[6]])),
        )
    resumed, _, _ = _setup(tiny_model_dir, data_dir)
    dev = _ScriptedDev([scores[6], scores[9], scores[12]])  # step 3 is not evaluated again
    res = train(
        resumed, "snli", feats, SELECT, 7, tmp_path / "b", pad, selection=Selection("f1", dev)
    )
    assert res.resumed_from_step == 4 and not dev.scores
    assert res.selection is not None and res.selection.selected_step == 6
    assert res.selection.history == [[s, v] for s, v in scores.items()]
    for (name, a), (_, b) in zip(
        whole.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name


# --- equal to a reference: Hugging Face Trainer ------------------------------------------------
def test_loop_takes_the_steps_hf_trainer_takes(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same weights, same batches, dropout off, no warm-up: after 8 optimiser steps with weight
    decay, clipping and a linear decay, our loop and ``transformers.Trainer`` (the reference)
    moved every parameter by the same amount. What remains between them by design: batch order
    (ours groups by length) and the warm-up formula (ours never takes a step at learning rate 0);
    bench/reference_parity.py measures the whole pipelines against each other."""
    import math

    from torch.utils.data import SequentialSampler
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from xstilts.training import batching

    steps, batch = 8, 8
    tok = load_tokenizer(str(tiny_model_dir))
    ex = load_split(
        get_task("mnli"), Split.TRAIN, "en", DataSource("local", data_dir), steps * batch
    )
    feats = featurize(tok, ex, 64)
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    torch.manual_seed(0)
    ours = MultiHeadClassifier(AutoModel.from_pretrained(tiny_model_dir, **no_dropout), "first")
    ours.add_head("mnli", 3)
    ref = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=3, **no_dropout
    )
    ref.classifier.load_state_dict(ours.heads["mnli"].state_dict())  # dense, out_proj
    start = {n: p.detach().clone() for n, p in ref.named_parameters()}

    def in_order(lengths, batch_size, seed, start_epoch=0):  # type: ignore[no-untyped-def]
        while True:
            for i in range(0, len(lengths), batch_size):
                yield 0, np.arange(i, min(i + batch_size, len(lengths)))

    monkeypatch.setattr(batching, "epoch_batches", in_order)
    hyper = {"learning_rate": 5e-4, "weight_decay": 0.1, "max_grad_norm": 0.5}
    cfg = TrainingConfig(batch_size=batch, max_steps=steps, warmup_ratio=0.0, **hyper)
    train(ours, "mnli", feats, cfg, 0, tmp_path / "ours", tok.pad_token_id)

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return SequentialSampler(self.train_dataset)

    rows = [
        {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": label}
        for ids, label in zip(feats.input_ids, feats.targets["labels"], strict=True)
    ]
    args = TrainingArguments(
        output_dir=str(tmp_path / "ref"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        lr_scheduler_type="linear",
        **hyper,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    InOrder(
        model=ref, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tok)
    ).train()

    ours_params = {
        n.replace("encoder.", "roberta.", 1).replace("heads.mnli.", "classifier."): p
        for n, p in ours.named_parameters()
    }
    moved = diff = 0.0
    for name, p in ref.named_parameters():
        if "pooler" in name:
            continue  # loaded, never used by either head
        step_ref, step_ours = p.detach() - start[name], ours_params[name].detach() - start[name]
        moved += float((step_ref**2).sum())
        diff += float(((step_ours - step_ref) ** 2).sum())
    assert moved > 0
    assert math.sqrt(diff / moved) < 1e-4


def test_recent_rate_skips_warm_up_and_forgets_old_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first step (warm-up) is not in any rate; the rate covers the last `window` steps."""
    import xstilts.training.rate as rate_module

    clock = iter([10.0, 11.0, 12.0, 14.0])  # step ends: a 10 s first step, then 1, 1 and 2 s
    monkeypatch.setattr(rate_module.time, "perf_counter", lambda: next(clock))
    rate = rate_module.RecentRate(window=2)
    assert rate.update(32) == 0.0  # one step: no rate yet
    assert rate.update(64) == 32.0  # 32 examples in the 1 s since the first step ended
    assert rate.update(96) == 32.0
    assert rate.update(128) == pytest.approx(64 / 3)  # the last two steps: 64 in 3 s


def test_prediction_progress_rate_is_the_rest_at_the_token_rate(
    tiny_model_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches run longest first; the rows/s the callback gets is what the remaining (shorter)
    batches should run at: rows left x tokens/s / tokens left."""
    import itertools

    import xstilts.training.rate as rate_module
    from xstilts.training.batching import sorted_batches
    from xstilts.training.predict import predict

    ticks = itertools.count()  # every batch takes one second on this clock
    monkeypatch.setattr(rate_module.time, "perf_counter", lambda: float(next(ticks)))
    model, feats, pad_id = _setup(tiny_model_dir, data_dir)
    calls: list[tuple[int, int, float]] = []
    predict(model, "snli", feats, 8, pad_id, progress=lambda d, t, r, _: calls.append((d, t, r)))
    from xstilts.training.predict import CPU_MAX_TOKENS

    batches = sorted_batches(feats.lengths, 8, CPU_MAX_TOKENS)
    assert len(batches) >= 3
    assert [c[0] for c in calls] == list(np.cumsum([len(b) for b in batches]))
    assert calls[0][2] == 0.0  # no rate from the first (warm-up) batch alone
    cost = [len(b) * int(feats.lengths[b].max()) for b in batches]
    # After batch 2: cost[1] tokens/s; the rest is sum(cost[2:]) tokens over len(rest) rows.
    rows_left = len(feats) - len(batches[0]) - len(batches[1])
    assert calls[1][2] == pytest.approx(rows_left * cost[1] / sum(cost[2:]))
    # At the end: the mean rows/s of the stage at the token rate since the first batch.
    token_rate = sum(cost[1:]) / (len(batches) - 1)
    assert calls[-1][:2] == (len(feats), len(feats))
    assert calls[-1][2] == pytest.approx(len(feats) * token_rate / sum(cost))


def test_step_flops_by_hand_and_gpu_peaks() -> None:
    from transformers import XLMRobertaConfig, XLMRobertaModel
    from xstilts.training.hardware import StepFlops, gpu_peak_flops

    config = XLMRobertaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40, type_vocab_size=1,
    )  # fmt: skip
    # Per layer: q, k, v, o 4 x (32x32 + 32) = 4224; two LayerNorms 128; feed-forward
    # 32x64 + 64 + 64x32 + 32 = 4192: 8544. Two layers and the pooler (1056): 18144.
    flops = StepFlops(XLMRobertaModel(config))
    assert flops.dense == 18144
    # Rows of 3 and 5 tokens: 6 x 18144 x 8 tokens + 3 x 4 x 2 layers x 32 x (9 + 25).
    assert flops([3, 5]) == 870912 + 26112
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_peak_flops("NVIDIA L40S") == pytest.approx(362.1e12)
    assert gpu_peak_flops("NVIDIA L4") == 121e12
    assert gpu_peak_flops("Tesla V100-SXM2-16GB") is None  # no bf16 tensor cores


def test_row_by_row_embedding_gradient_trains_bit_for_bit_as_the_dense_one(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The word-embedding gradient kept in one buffer and cleared row by row (on the CPU) gives the
    very same weights as PyTorch's dense gradient allocated each step: with padding, gradient
    accumulation (micro-batches summed in autograd's order), clipping and weight decay on every
    row, including rows no batch touched."""
    from xstilts.training import embedding_grad, loop

    cfg = CFG.model_copy(update={"max_steps": 4, "gradient_accumulation_steps": 2})
    writes = []
    original_add = embedding_grad._RowGradient.add

    def counted(self, ids, grad_out, padding_idx):  # type: ignore[no-untyped-def]
        writes.append(int(ids.numel()))
        original_add(self, ids, grad_out, padding_idx)

    monkeypatch.setattr(embedding_grad._RowGradient, "add", counted)
    rows, feats, pad = _setup(tiny_model_dir, data_dir)
    embedding = rows.encoder.get_input_embeddings()
    train(rows, "snli", feats, cfg, 3, tmp_path / "rows", pad)
    assert len(writes) == 8  # 4 steps x 2 micro-batches went through the row buffer
    assert rows.encoder.get_input_embeddings() is embedding and embedding.weight.grad is None

    dense_only = loop.row_gradient

    def dense(encoder, device, enabled):  # type: ignore[no-untyped-def]
        return dense_only(encoder, device, enabled=False)

    monkeypatch.setattr(loop, "row_gradient", dense)
    reference, _, _ = _setup(tiny_model_dir, data_dir)
    train(reference, "snli", feats, cfg, 3, tmp_path / "dense", pad)
    assert len(writes) == 8
    for (name, a), (_, b) in zip(
        rows.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    moved = (
        embedding.weight.detach()
        - _setup(tiny_model_dir, data_dir)[0].encoder.get_input_embeddings().weight
    )
    assert bool((moved != 0).any())


def test_torch_compile_trains_the_eager_loops_weights_within_float_tolerance(
    tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """``training.torch_compile``: the loop runs the model through PyTorch inductor (varying batch
    shapes, one compilation), and with dropout off lands where the eager loop lands up to float
    rounding of the fused kernels."""
    from torch._dynamo.utils import counters
    from transformers import AutoModel

    tok = load_tokenizer(str(tiny_model_dir))
    ex = load_split(get_task("snli"), Split.TRAIN, "en", DataSource("local", data_dir), 24)
    feats = featurize(tok, ex, 48)
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    models = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = MultiHeadClassifier(AutoModel.from_pretrained(tiny_model_dir, **no_dropout))
        model.add_head("snli", 3)
        cfg = CFG.model_copy(update={"max_steps": 3, "torch_compile": compiled})
        train(model, "snli", feats, cfg, 5, tmp_path / str(compiled), tok.pad_token_id)
        models.append(model)
    assert counters["stats"]["unique_graphs"] >= 1  # inductor compiled the model
    eager, compiled_model = (m.state_dict() for m in models)
    moved = sum(float((v - eager[k]).abs().max()) for k, v in compiled_model.items())
    start = MultiHeadClassifier(AutoModel.from_pretrained(tiny_model_dir, **no_dropout))
    trained = float(
        (eager["encoder.encoder.layer.0.attention.self.query.weight"]
         - start.state_dict()["encoder.encoder.layer.0.attention.self.query.weight"]).abs().max()
    )  # fmt: skip
    assert trained > 1e-4  # the runs did move the weights
    assert moved < 1e-3, moved
