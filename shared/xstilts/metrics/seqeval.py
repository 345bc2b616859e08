"""Entity F1 over tag sequences, exactly as ``seqeval.metrics.f1_score`` computes it.

XTREME's evaluator scores PAN-X (BIO tags) and UDPOS (plain POS tags) with seqeval's default
(conlleval-style) mode, and so do we; a test compares the two on random sequences. A tag's chunk
letter is its first character (B, I, E, S, O) and its type what follows, after a "-" if there is
one (seqeval 1.x). For POS tags such as ``NOUN`` this makes a run of identical tags one chunk;
``SCONJ`` and ``SYM`` begin with S, so each of their tokens is a chunk of its own; and ``CCONJ``
and ``SCONJ`` share the type "CONJ", so adjacent ones merge.

One difference, kept because stored metrics depend on it: seqeval scores all sentences as one
sequence joined by "O" tags, and "O" has the type "_" of a one-letter tag such as ``X``, so an ``X``
that opens a later sentence starts no chunk there. :func:`score_seqeval` scores sentence by
sentence (its bootstrap resamples sentences), where such an ``X`` is a chunk of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from xstilts.metrics.base import PredictionRow, Score
from xstilts.metrics.bootstrap import bootstrap_ratio_ci

if TYPE_CHECKING:
    from xstilts.tasks.base import Task

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


def score_seqeval(
    task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
) -> list[Score]:
    """Entity F1 of one language's rows (``prediction`` and ``label``: a sentence's tags).

    Micro entity F1 is 2 tp / (n_pred + n_gold), which is seqeval's 2 P R / (P + R); entities
    never cross sentences, so per-sentence counts give it and a cheap bootstrap over sentences.
    """
    labelled = [r for r in rows if r["label"] is not None]
    if not labelled:
        raise ValueError(f"{task.name} [{lang}]: F1 needs labelled sentences")
    for r in labelled:
        if len(r["prediction"]) != len(r["label"]):
            raise ValueError(
                f"{task.name} [{lang}] sentence {r['id']}: {len(r['prediction'])} predicted tags "
                f"for {len(r['label'])} gold tags"
            )
    tp, den = [], []
    for r in labelled:
        gold, pred = set(get_entities([r["label"]])), set(get_entities([r["prediction"]]))
        tp.append(2 * len(gold & pred))
        den.append(len(gold) + len(pred))
    value = sum(tp) / sum(den) if sum(den) else 0.0
    low, high = bootstrap_ratio_ci(np.array(tp), np.array(den), bootstrap_samples)
    return [Score("f1", value, len(labelled), low, high)]
