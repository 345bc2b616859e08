"""Entity F1 over tag sequences, exactly as ``seqeval.metrics.f1_score`` computes it.

XTREME's evaluator scores PAN-X (BIO tags) and UDPOS (plain POS tags) with seqeval's default
(conlleval-style) mode, and so do we; a test compares the two on random sequences. A tag's chunk
letter is its first character (B, I, E, S, O) and its type what follows, after a "-" if there is
one (seqeval 1.x). For POS tags such as ``NOUN`` this makes a run of identical tags one chunk;
``SCONJ`` and ``SYM`` begin with S, so each of their tokens is a chunk of its own; and ``CCONJ``
and ``SCONJ`` share the type "CONJ", so adjacent ones merge.
"""

from __future__ import annotations

from collections.abc import Sequence

Chunk = tuple[str, int, int]  # type, first token, last token (inclusive)


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


_STARTS_AFTER = {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S") or (prev_tag, tag) in _STARTS_AFTER:
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(sentences: Sequence[Sequence[str]]) -> list[Chunk]:
    """Chunks of all sentences, with token offsets into the sentences joined by an "O" each."""
    seq = [tag for sentence in sentences for tag in [*sentence, "O"]]
    chunks: list[Chunk] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate([*seq, "O"]):
        tag, type_ = label[0], label[1:].split("-", maxsplit=1)[-1] or "_"
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def f1_score(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Micro-averaged entity F1 in [0, 1]; sentences must align token for token."""
    if len(gold) != len(predicted) or any(
        len(g) != len(p) for g, p in zip(gold, predicted, strict=True)
    ):
        raise ValueError("gold and predicted tag sequences differ in length")
    true, pred = set(get_entities(gold)), set(get_entities(predicted))
    correct = len(true & pred)
    precision = correct / len(pred) if pred else 0.0
    recall = correct / len(true) if true else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
