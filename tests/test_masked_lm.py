"""The MLM arm: packing, 80/10/10 masking on hand-made token ids, the tied LM head, the checkpoint's
head, the spec and stage key, and a real intermediate stage with MLM beside MNLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from xstilts.experiments.plan import MLM_STREAM, IntermediateStageSpec, plan_experiment
from xstilts.experiments.stage_results import TRAIN_RESULT_FILE
from xstilts.formats.masked_lm import MaskedLM, Masking, mask_tokens, pack_lines
from xstilts.modeling.batch import IGNORE, Batch
from xstilts.modeling.classifier import MaskedLMHead, checkpoint_lm_head
from xstilts.spec import SpecError, parse_spec

from tests.conftest import tiny_spec

CLS, PAD, SEP, MASK = 0, 1, 2, 3
SPECIALS = (CLS, PAD, SEP, MASK)


def masking(p: float, seed: int = 0) -> Masking:
    return Masking(probability=p, mask_id=MASK, vocab_size=50, special_ids=SPECIALS, seed=seed)


def test_lines_pack_into_rows_and_continue_across_them() -> None:
    rows = pack_lines([[5, 6, 7], [8, 9], [10, 11, 12, 13, 14]], 6, CLS, SEP)
    assert rows == [[CLS, 5, 6, 7, 8, SEP], [CLS, 9, 10, 11, 12, SEP], [CLS, 13, 14, SEP]]
    assert pack_lines([], 6, CLS, SEP) == []
    with pytest.raises(ValueError, match="no room"):
        pack_lines([[5]], 2, CLS, SEP)


def test_special_and_padding_tokens_are_never_masked() -> None:
    ids = torch.tensor([[CLS, 10, 11, 12, SEP, PAD], [CLS, 20, SEP, PAD, PAD, PAD]])
    attention = (ids != PAD).long()
    out, targets = mask_tokens(ids, attention, masking(1.0), np.random.default_rng(0))
    # p = 1: every real, non-special token is a target, holding its original id.
    assert targets.tolist() == [
        [IGNORE, 10, 11, 12, IGNORE, IGNORE],
        [IGNORE, 20, IGNORE, IGNORE, IGNORE, IGNORE],
    ]
    # What is not a target is shown as it was.
    keep = targets == IGNORE
    assert torch.equal(out[keep], ids[keep])


def test_masking_is_80_10_10_at_the_chosen_rate() -> None:
    rng = np.random.default_rng(1)
    ids = torch.from_numpy(rng.integers(4, 50, size=(400, 500)))
    ids[:, 0], ids[:, -1] = CLS, SEP
    out, targets = mask_tokens(ids, torch.ones_like(ids), masking(0.15), rng)
    chosen = targets != IGNORE
    eligible = 400 * 498
    assert abs(chosen.sum().item() / eligible - 0.15) < 0.005
    assert torch.equal(targets[chosen], ids[chosen])
    shown = out[chosen]
    as_mask = (shown == MASK).float().mean().item()
    same = (shown == ids[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.01
    # 10% unchanged, plus the random replacements that drew the same id (1 in 50).
    assert abs(same - (0.1 + 0.1 / 50)) < 0.01
    assert not chosen[:, 0].any() and not chosen[:, -1].any()


def test_a_row_without_a_chosen_token_gets_one() -> None:
    ids = torch.tensor([[CLS, 10, 11, SEP], [CLS, SEP, PAD, PAD]])
    _, targets = mask_tokens(ids, (ids != PAD).long(), masking(1e-9), np.random.default_rng(0))
    assert (targets[0] != IGNORE).sum().item() == 1  # one of its two real tokens
    assert (targets[1] == IGNORE).all()  # nothing to choose from


def test_a_batch_masks_the_same_way_when_replayed() -> None:
    rows = [[CLS, *range(10, 30), SEP] for _ in range(6)]
    from xstilts.formats.base import Features

    features = Features(MaskedLM.name, rows, extra={"masking": masking(0.3, seed=7)})
    fmt = MaskedLM()
    a = fmt.collate(features, np.array([0, 1, 2]), PAD)
    b = fmt.collate(features, np.array([0, 1, 2]), PAD)
    c = fmt.collate(features, np.array([3, 4, 5]), PAD)  # the same text, other rows
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.masked, b.masked)
    assert not torch.equal(a.masked, c.masked)


def test_the_head_is_tied_to_the_embeddings_and_scores_masked_tokens_only() -> None:
    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(50, 8)
    head = MaskedLMHead(8, 50, 0.1)
    head.tie(embeddings)
    assert "weight" not in dict(head.named_parameters())  # not registered twice
    hidden = torch.randn(2, 4, 8)
    masked = torch.tensor([[IGNORE, 12, IGNORE, IGNORE], [IGNORE, 30, 31, IGNORE]])
    batch = Batch(torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4), masked=masked)
    logits = head(hidden, batch.attention_mask, "first", batch)
    assert logits.shape == (3, 50)
    picked = hidden[masked != IGNORE]
    x = torch.nn.functional.layer_norm(
        torch.nn.functional.gelu(head.dense(picked)), (8,), head.layer_norm.weight,
        head.layer_norm.bias, 1e-5,
    )  # fmt: skip
    assert torch.allclose(logits, x @ embeddings.weight.T + head.bias, atol=1e-6)
    loss = MaskedLM().loss(logits, batch)
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([12, 30, 31]))
    assert torch.allclose(loss, expected)
    loss.backward()
    assert embeddings.weight.grad is not None and embeddings.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="LM head of 50 tokens, embeddings of 40"):
        head.tie(torch.nn.Embedding(40, 8))


@pytest.mark.parametrize("prefix", ["lm_head.", "cls.predictions."])
def test_the_checkpoints_lm_head_is_read_by_either_naming(tmp_path, prefix) -> None:
    from safetensors.torch import save_file

    names = {
        "lm_head.": ["dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias"],
        "cls.predictions.": [
            "transform.dense.weight", "transform.dense.bias", "transform.LayerNorm.weight",
            "transform.LayerNorm.bias", "bias",
        ],
    }[prefix]  # fmt: skip
    shapes = [(8, 8), (8,), (8,), (8,), (50,)]
    tensors = {
        prefix + n: torch.full(s, float(i))
        for i, (n, s) in enumerate(zip(names, shapes, strict=True))
    }
    tensors["encoder.weight"] = torch.zeros(3)
    save_file(tensors, tmp_path / "model.safetensors")
    state = checkpoint_lm_head(str(tmp_path))
    assert state is not None
    head = MaskedLMHead(8, 50, 0.1)
    head.load_state_dict(state)
    assert head.dense.bias.tolist() == [1.0] * 8 and head.bias[0].item() == 4.0
    save_file({"encoder.weight": torch.zeros(3)}, tmp_path / "model.safetensors")
    assert checkpoint_lm_head(str(tmp_path)) is None


def test_mlm_settings_are_checked_and_named() -> None:
    base = {"target": {"task": "xnli"}, "intermediate": {"tasks": ["mnli"]}}
    bad = {**base, "intermediate": {"tasks": ["mnli"], "mlm": {"languages": ["de", "xx"]}}}
    with pytest.raises(SpecError) as e:
        parse_spec(bad)
    ((where, message),) = e.value.errors
    assert (
        where == "intermediate.mlm.languages" and "'xx'" in message and "valid: af, ar" in message
    )
    hub = {**base, "intermediate": {"tasks": ["mnli"], "mlm": {}}, "data": {"source": "hub"}}
    with pytest.raises(SpecError) as e:
        parse_spec(hub)
    assert e.value.errors[0][0] == "intermediate.mlm.max_lines_per_language"
    spec = parse_spec({**base, "intermediate": {"mlm": {"languages": ["sw", "de"]}}})
    assert spec.intermediate.mlm is not None and spec.intermediate.mlm.languages == ["de", "sw"]
    assert spec.intermediate.trains and spec.intermediate.arm == ["mlm"]


def test_the_stage_key_holds_the_mlm_settings_and_data(settings, tiny_model_dir, tmp_path):
    from xstilts.data import DataSource
    from xstilts.modeling.sources import resolve_model

    def key(spec: dict, data: DataSource) -> tuple[str, IntermediateStageSpec]:
        parsed = parse_spec(spec)
        stages = plan_experiment(
            parsed, resolve_model(parsed.model, settings.model_roots, settings.cache_dir), data
        )
        (inter,) = [s for s in stages if s.role == "intermediate"]
        assert isinstance(inter.spec, IntermediateStageSpec)
        return inter.key, inter.spec

    local = DataSource("local", settings.data_dir)
    plain = tiny_spec(tiny_model_dir)
    mlm = {"languages": ["de", "en"], "max_lines_per_language": 50}
    with_mlm = tiny_spec(tiny_model_dir, intermediate={"tasks": ["qqp"], "mlm": mlm})
    k0, s0 = key(plain, local)
    k1, s1 = key(with_mlm, local)
    assert "mlm" not in s0.identity() and s0.streams() == {"qqp": "qqp"}
    assert s1.streams() == {"qqp": "qqp", MLM_STREAM: MLM_STREAM}
    assert s1.sampling is not None  # two streams: the sampler decides
    more_masking = {**mlm, "mask_probability": 0.2}
    k2, _ = key(
        tiny_spec(tiny_model_dir, intermediate={"tasks": ["qqp"], "mlm": more_masking}), local
    )
    # Other text under the same name is another stage.
    other = tmp_path / "data"
    (other / "mlm").mkdir(parents=True)
    for name in ("qqp", "mnli", "xnli"):
        (other / name).symlink_to(settings.data_dir / name)
    (other / "mlm" / "de.txt").write_text("Ein Satz.\n")
    (other / "mlm" / "en.txt").symlink_to(settings.data_dir / "mlm" / "en.txt")
    k3, _ = key(with_mlm, DataSource("local", other))
    assert len({k0, k1, k2, k3}) == 4
    (other / "mlm" / "de.txt").unlink()
    from xstilts.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match=r"mlm/de.txt under"):
        key(with_mlm, DataSource("local", other))


def test_mlm_trains_beside_mnli_in_the_intermediate_stage(settings, tiny_model_dir) -> None:
    """A real stage: MNLI and MLM in the sampler at a fixed share, each with its own head and its
    own loss, and the MLM loss falls; the tiny model has no LM head, so a new one is tied."""
    from xstilts.runtime.workspace import Workspace

    training = {
        "learning_rate": 1e-2,
        "batch_size": 8,
        "max_steps": 60,
        "max_train_examples": 64,
        "max_seq_length": 32,
        "warmup_ratio": 0.0,
    }
    mlm = {"languages": ["de", "en"], "max_lines_per_language": 40, "max_seq_length": 32}
    spec = tiny_spec(
        tiny_model_dir,
        intermediate={"tasks": ["mnli"], "training": training, "mlm": {**mlm, "share": 0.5}},
        target={"task": "xnli", "training": {**training, "max_steps": 2}},
        evaluation={"languages": ["en"], "max_examples_per_language": 20, "max_seq_length": 32},
    )
    workspace = Workspace(settings)
    result = workspace.run(parse_spec(spec))
    assert result.experiment.status == "succeeded", result.experiment.error
    (stage,) = [s for s in result.stages if s.role == "intermediate"]
    folder = workspace.store.stage_dir(stage.kind, stage.key)
    res = json.loads((folder / TRAIN_RESULT_FILE).read_text())
    assert res["sampling_probabilities"] == {"mnli": 0.5, "mlm": 0.5}
    assert set(res["task_losses"]) == {"mnli", "mlm"}
    assert res["task_batches"]["mnli"] + res["task_batches"]["mlm"] == 60
    assert res["mlm_head"] == "new"
    start, end = res["task_loss_start_end"]["mlm"]
    assert 11.0 < start < 14.0  # about ln(250k) = 12.4: a new head knows nothing
    assert end < start - 0.5
    assert any("no LM head" in w for w in result.warnings)


def test_masked_lm_is_a_training_objective_not_a_task_format() -> None:
    from xstilts.errors import UnknownNameError
    from xstilts.formats import get_format, get_objective, get_trained_format

    assert isinstance(get_objective("masked_lm"), MaskedLM)
    assert get_objective("pair_classification") is get_trained_format("pair_classification")
    with pytest.raises(UnknownNameError, match="masked_lm") as caught:
        get_format("masked_lm")
    assert "pair_classification" in str(caught.value)  # the valid names are listed
    with pytest.raises(UnknownNameError, match="retrieval"):
        get_objective("retrieval")  # retrieval trains nothing
