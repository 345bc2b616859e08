"""Tagging scores exactly as XTREME's evaluator computes them: seqeval 0.0.12.

XTREME scores PAN-X (BIO tags) and UDPOS (plain UPOS tags) with ``seqeval.metrics``' ``f1_score``,
``precision_score`` and ``recall_score`` as installed when it was released, seqeval 0.0.12 (also
jiant's pin). A tag's chunk letter is its first character (B, I, E, S, O; anything else starts or
continues a chunk by type alone) and its type is what follows its last "-", or the whole tag when it
has none. So for UPOS tags:

- a run of the same tag is one chunk (``NOUN NOUN``), and a wrong tag inside a run costs the chunk;
- tags starting with S (``SCONJ``, ``SYM``) are chunks of one token each;
- every tag is its own type: ``SCONJ`` predicted for ``CCONJ`` is wrong.

seqeval 0.0.16 and later (1.x) differ: the type is what follows the first letter, so ``CCONJ``
and ``SCONJ`` are both "CONJ" and a predicted SCONJ for a gold CCONJ counts as correct. We follow
0.0.12; a test compares with a reference install of it on random and hand-made sequences.

seqeval scores all sentences as one sequence joined by "O" tags. We chunk that very sequence, then
count each chunk in the sentence where it starts (a chunk never crosses the joining "O"), which
gives exactly seqeval's totals and per-sentence counts for a bootstrap over sentences.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from xstilts.metrics.base import ItemScores, PredictionRow, Score, TagRow, rows_of
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
    """seqeval 0.0.12's chunks of the sentences joined by an "O" each (offsets into that join)."""
    seq = [tag for sentence in sentences for tag in [*sentence, "O"]]
    chunks: list[Chunk] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate([*seq, "O"]):
        tag, type_ = label[0], label.split("-")[-1]
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _per_sentence(sentences: Sequence[Sequence[str]]) -> list[set[Chunk]]:
    """The chunks of :func:`get_entities`, grouped by the sentence each starts in."""
    starts = np.cumsum([0] + [len(s) + 1 for s in sentences[:-1]]).tolist()
    out: list[set[Chunk]] = [set() for _ in sentences]
    for chunk in get_entities(sentences):
        out[bisect.bisect_right(starts, chunk[1]) - 1].add(chunk)
    return out


def score_seqeval(
    task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
) -> list[Score]:
    """Entity F1, precision and recall of one language's rows (``prediction`` and ``label``: a
    sentence's tags), as seqeval 0.0.12's micro averages; bootstrap intervals over sentences.

    F1 is 2 tp / (n_pred + n_gold), which is seqeval's 2 P R / (P + R); a score whose denominator
    is empty is 0, as in seqeval.
    """
    labelled, tp, n_gold, n_pred = _counts(task, lang, rows)
    n = len(labelled)

    def score(metric: str, num: np.ndarray, den: np.ndarray) -> Score:
        value = float(num.sum() / den.sum()) if den.sum() else 0.0
        low, high = bootstrap_ratio_ci(num, den, bootstrap_samples)
        return Score(metric, value, n, low, high)

    return [
        score("f1", 2 * tp, n_gold + n_pred),
        score("precision", tp, n_pred),
        score("recall", tp, n_gold),
    ]


def score_seqeval_and_token_accuracy(
    task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
) -> list[Score]:
    """:func:`score_seqeval`, then ``token_accuracy``: the share of tokens whose tag is right (what
    the POS-tagging literature reports; seqeval's ``accuracy_score``)."""
    labelled = _labelled(task, lang, rows)
    correct = np.array(
        [sum(p == g for p, g in zip(r.prediction, r.label, strict=True)) for r in labelled]
    )
    tokens = np.array([len(r.label) for r in labelled])
    value = float(correct.sum() / tokens.sum()) if tokens.sum() else 0.0
    low, high = bootstrap_ratio_ci(correct, tokens, bootstrap_samples)
    return [
        *score_seqeval(task, lang, rows, bootstrap_samples),
        Score("token_accuracy", value, len(labelled), low, high),
    ]


def items_seqeval(task: Task, lang: str, rows: Sequence[PredictionRow]) -> ItemScores:
    """Each sentence is an item; its entity F1 parts are 2 tp over n_pred + n_gold."""
    labelled, tp, n_gold, n_pred = _counts(task, lang, rows)
    return ItemScores(
        tuple(r.id for r in labelled),
        {"f1": (2 * tp).astype(np.float64)},
        {"f1": (n_gold + n_pred).astype(np.float64)},
    )


def _counts(
    task: Task, lang: str, rows: Sequence[PredictionRow]
) -> tuple[list[_Tagged], np.ndarray, np.ndarray, np.ndarray]:
    """The labelled sentences and each one's true positive, gold and predicted chunk counts."""
    labelled = _labelled(task, lang, rows)
    gold = _per_sentence([r.label for r in labelled])
    pred = _per_sentence([r.prediction for r in labelled])
    tp = np.array([len(g & p) for g, p in zip(gold, pred, strict=True)])
    n_gold = np.array([len(g) for g in gold])
    n_pred = np.array([len(p) for p in pred])
    return labelled, tp, n_gold, n_pred


class _Tagged(NamedTuple):
    """A labelled sentence: its predicted and gold tags, as many of each."""

    id: str
    prediction: list[str]
    label: list[str]


def _labelled(task: Task, lang: str, rows: Sequence[PredictionRow]) -> list[_Tagged]:
    labelled = [
        _Tagged(str(r["id"]), r["prediction"], r["label"])
        for r in rows_of(rows, TagRow)
        if r["label"] is not None
    ]
    if not labelled:
        raise ValueError(f"{task.name} [{lang}]: tagging scores need labelled sentences")
    for r in labelled:
        if len(r.prediction) != len(r.label):
            raise ValueError(
                f"{task.name} [{lang}] sentence {r.id}: {len(r.prediction)} predicted tags "
                f"for {len(r.label)} gold tags"
            )
    return labelled
