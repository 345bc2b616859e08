"""The memory estimate of a stage (xstilts.training.memory) against numbers counted by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from xstilts.experiments.submit import plan
from xstilts.spec import parse_spec
from xstilts.training.memory import (
    GIB,
    model_size,
    prediction_memory,
    stage_memory,
    training_memory,
)

from tests.conftest import tiny_spec


def _config_folder(root: Path, **shape: int) -> Path:
    from transformers import XLMRobertaConfig

    folder = root / "config-only"
    XLMRobertaConfig(type_vocab_size=1, **shape).save_pretrained(folder)  # no weights at all
    return folder


SMALL = {
    "vocab_size": 1000,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 130,
}
# By hand: embeddings 1000 x 32 words + 130 x 32 positions + 1 x 32 types + LayerNorm 2 x 32
SMALL_EMBEDDINGS = 32_000 + 4_160 + 32 + 64  # 36,256
# a layer: Q, K, V, O 4 x (32 x 32 + 32); LayerNorm 64; FFN 32 x 64 + 64 and 64 x 32 + 32; LN 64
SMALL_LAYER = 4_224 + 64 + 2_112 + 2_080 + 64  # 8,544
SMALL_PARAMS = SMALL_EMBEDDINGS + 2 * SMALL_LAYER + (32 * 32 + 32)  # + the pooler: 54,400


def test_model_size_is_counted_from_the_config_alone(tmp_path: Path) -> None:
    size = model_size(str(_config_folder(tmp_path, **SMALL)))
    assert size.parameters == SMALL_PARAMS == 54_400
    assert size.embedding_parameters == SMALL_EMBEDDINGS
    assert size.word_embedding_parameters == 32_000
    assert size.dense_parameters == 18_144
    assert (size.hidden, size.layers) == (32, 2)


def test_training_and_prediction_estimates_by_hand(tmp_path: Path) -> None:
    size = model_size(str(_config_folder(tmp_path, **SMALL)))
    train = training_memory(size, batch_size=16, max_seq_length=64)
    assert train.weights == 4 * 54_400 + 2 * 18_144  # fp32 weights + autocast's bf16 copies
    assert train.gradients == 4 * 54_400
    assert train.optimizer == 8 * 54_400  # AdamW: two fp32 moments
    assert train.activations == 64 * 16 * 64 * 32 * 2  # bytes x rows x length x hidden x layers
    assert train.total == 253_888 + 217_600 + 435_200 + 4_194_304
    frozen = training_memory(size, 16, 64, freeze_word_embeddings=True)
    assert (frozen.gradients, frozen.optimizer) == (4 * 22_400, 8 * 22_400)
    assert frozen.weights == train.weights

    pred = prediction_memory(size, batch_size=128, max_seq_length=128)
    assert (pred.weights, pred.gradients, pred.optimizer) == (253_888, 0, 0)
    assert pred.activations == 32 * 128 * 128 * 32  # one layer's working set
    capped = prediction_memory(size, batch_size=4096, max_seq_length=512)
    assert capped.activations == 32 * 65_536 * 32  # predict batches hold at most 65,536 tokens
    retrieval = prediction_memory(size, 128, 128, retrieval=True)
    assert retrieval.activations == (32 + 4 * 3) * 128 * 128 * 32  # + 3 fp32 hidden states


def test_xlmr_large_target_stage(tmp_path: Path) -> None:
    """XLM-R Large's 559,890,432 parameters (303,358,976 outside the embeddings) at batch 32 and
    128 tokens: 14.91 GiB, so seven such stages (and their CUDA contexts) fit the 90% of an
    H200's 140 GiB that a worker shares."""
    large = {
        "vocab_size": 250_002,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "max_position_embeddings": 514,
    }
    size = model_size(str(_config_folder(tmp_path, **large)))
    assert (size.parameters, size.dense_parameters) == (559_890_432, 303_358_976)
    stage = training_memory(size, 32, 128)
    assert stage.total == 16 * 559_890_432 + 2 * 303_358_976 + 64 * 32 * 128 * 1024 * 24
    assert stage.gib == pytest.approx(14.908, abs=1e-3)
    assert int(0.9 * 140 * GIB // (stage.total + GIB)) == 7


def test_stage_memory_of_planned_stages(settings, tiny_model_dir: Path) -> None:
    spec = parse_spec(tiny_spec(tiny_model_dir, intermediate={"tasks": []}))
    by_kind = {p.spec.kind: p.spec for p in plan(spec, settings)}
    size = model_size(str(tiny_model_dir))
    assert size.parameters == 8_035_872  # 250,037 x 32 words: nearly all of the tiny model
    assert stage_memory(by_kind["target_train"]) == training_memory(size, 16, 64)
    assert stage_memory(by_kind["predict"]) == prediction_memory(size, 128, 64)
    assert stage_memory(by_kind["evaluate"]) is None  # the eval queue: no accelerator
