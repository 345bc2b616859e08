"""Extractive question answering (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): windows in, spans out.

Featurisation and decoding follow HuggingFace's ``run_qa.py`` (XTREME's ``run_squad`` with a fast
tokenizer): the question is cut to ``max_query_length`` tokens, a long context is split into
overlapping windows of at most ``max_length`` tokens that share ``doc_stride`` context tokens, each
window is trained to point at the answer's first and last token (or at ``<s>`` when the answer is
not inside it), and at inference the best-scoring valid span over all of an example's windows wins.

One deliberate difference: the XLM-R (sentencepiece) tokenizer reports each word's offsets with the
space that its ``▁`` marker stands for, so ``run_qa`` predicts " answer". The offsets kept here are
trimmed to the token's non-space characters, so a decoded answer is the exact context substring
without surrounding whitespace. SQuAD/MLQA normalisation discards that whitespace anyway; the
scores are the same, the predictions are cleaner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from xstilts.data.examples import QAExample

# Windows that do not contain the answer (and unanswerable questions) point at <s>, as in run_qa.
CLS_INDEX = 0

Offset = tuple[int, int]


@dataclass
class SpanFeatures:
    """Tokenised windows, several per example when the context is longer than one window.

    ``offsets`` keeps, per token, its character span in the example's context and ``None`` for
    question, special and padding tokens: the decoder needs it to turn token positions back into
    text and to refuse spans outside the context.
    """

    input_ids: list[list[int]]
    example_index: np.ndarray  # int64: the example (position in the featurised sequence) per window
    offsets: list[list[Offset | None]]
    start_positions: np.ndarray  # int64: answer's first token in the window, CLS_INDEX if absent
    end_positions: np.ndarray  # int64: answer's last token in the window, CLS_INDEX if absent
    format: str = "span"

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))


def _truncate_questions(
    tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], max_query_length: int
) -> tuple[list[str], list[int]]:
    """Left-strip questions and cut them to ``max_query_length`` tokens, as text; and their lengths.

    Cutting the string (at the end of the last token kept) rather than the token ids lets one
    batched pair call produce the windows and their overflow. A unigram tokenizer may split a
    prefix differently from the whole, so a cut question is re-checked until it fits.
    """
    # Leading whitespace would be kept by the tokenizer's offsets and push the question's tokens
    # around; run_qa strips it for the same reason.
    out = [q.lstrip() for q in questions]
    lengths = [0] * len(out)
    pending = list(range(len(out)))
    while pending:
        enc = tokenizer(
            [out[i] for i in pending],
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        still_long: list[int] = []
        for i, offsets in zip(pending, enc["offset_mapping"], strict=True):
            lengths[i] = len(offsets)
            if len(offsets) <= max_query_length:
                continue
            cut = offsets[max_query_length - 1][1]
            if cut >= len(out[i]):  # zero-width tail tokens: cannot shorten further by text
                continue
            out[i] = out[i][:cut]
            still_long.append(i)
        pending = still_long
    return out, lengths


def _answer_span(example: QAExample) -> Offset | None:
    """The first answer's character span with surrounding whitespace removed; None if none.

    Trimming matches the trimmed token offsets, so an answer annotated with a leading space still
    starts on its first word rather than on the token before it.
    """
    if example.is_impossible or not example.answers or not example.answer_starts:
        return None
    text = example.answers[0]
    start = example.answer_starts[0] + (len(text) - len(text.lstrip()))
    end = example.answer_starts[0] + len(text.rstrip())
    if end <= start:
        return None
    return start, end


def _trim(context: str, start: int, end: int) -> Offset:
    """Shrink a token's span to its non-space characters (sentencepiece counts the ``▁`` space)."""
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def _label(offsets: list[Offset | None], span: Offset | None) -> tuple[int, int]:
    """Token positions of ``span`` in one window, or (CLS, CLS) if the window does not cover it.

    The start is the last context token starting at or before the answer's first character, the
    end the first context token ending at or after its last one: the tokens containing them
    (run_qa's two scans, for offsets that only grow along the context).
    """
    if span is None:
        return CLS_INDEX, CLS_INDEX
    context_tokens = [k for k, o in enumerate(offsets) if o is not None]
    if not context_tokens:
        return CLS_INDEX, CLS_INDEX
    first, last = context_tokens[0], context_tokens[-1]
    start_char, end_char = span
    first_offset, last_offset = offsets[first], offsets[last]
    assert first_offset is not None and last_offset is not None
    if not (first_offset[0] <= start_char and last_offset[1] >= end_char):
        return CLS_INDEX, CLS_INDEX
    start = first
    for k in range(first, last + 1):
        o = offsets[k]
        assert o is not None
        if o[0] > start_char:
            break
        start = k
    end = last
    for k in range(last, first - 1, -1):
        o = offsets[k]
        assert o is not None
        if o[1] < end_char:
            break
        end = k
    if end < start:
        return CLS_INDEX, CLS_INDEX
    return start, end


def featurize_spans(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[QAExample],
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> SpanFeatures:
    """Tokenise (question, context) pairs into overlapping windows with answer token positions.

    All examples go through one batched tokenizer call (``overflow_to_sample_mapping`` tells which
    example each window belongs to): on a fast tokenizer this is what keeps SQuAD's 88k questions
    to seconds. Consecutive windows of one example share ``doc_stride`` context tokens, so an
    answer cut by one window's edge is whole in the next.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("featurize_spans needs a fast tokenizer (offsets and overflow mapping)")
    if max_query_length < 1:
        raise ValueError(f"max_query_length must be at least 1, got {max_query_length}")
    if doc_stride < 0:
        raise ValueError(f"doc_stride must not be negative, got {doc_stride}")
    if not examples:
        empty = np.zeros(0, dtype=np.int64)
        return SpanFeatures([], empty, [], empty.copy(), empty.copy())

    questions, question_lengths = _truncate_questions(
        tokenizer, [e.question for e in examples], max_query_length
    )
    special = tokenizer.num_special_tokens_to_add(pair=True)
    longest = max(question_lengths)
    if longest + special + doc_stride >= max_length:
        # Each window must hold more than doc_stride context tokens after its question or the
        # windows cannot advance; the Rust tokenizer would panic (not raise) on such a batch.
        raise ValueError(
            f"max_length={max_length} leaves no room for doc_stride={doc_stride} context tokens "
            f"after a {longest}-token question and {special} special tokens"
        )
    contexts = [e.context for e in examples]
    enc = tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    sample_map = enc["overflow_to_sample_mapping"]
    spans = [_answer_span(e) for e in examples]

    n = len(enc["input_ids"])
    offsets: list[list[Offset | None]] = []
    starts = np.zeros(n, dtype=np.int64)
    ends = np.zeros(n, dtype=np.int64)
    for j in range(n):
        context = contexts[sample_map[j]]
        window: list[Offset | None] = [
            _trim(context, a, b) if sid == 1 else None
            for sid, (a, b) in zip(enc.sequence_ids(j), enc["offset_mapping"][j], strict=True)
        ]
        offsets.append(window)
        starts[j], ends[j] = _label(window, spans[sample_map[j]])
    return SpanFeatures(
        input_ids=[list(ids) for ids in enc["input_ids"]],
        example_index=np.asarray(sample_map, dtype=np.int64),
        offsets=offsets,
        start_positions=starts,
        end_positions=ends,
    )


def _best_span(
    offsets: list[Offset | None],
    start: np.ndarray,
    end: np.ndarray,
    n_best_size: int,
    max_answer_length: int,
) -> tuple[float, int, int] | None:
    """The best valid (score, start, end) among the window's top starts x top ends, or None.

    Like run_qa, only the ``n_best_size`` highest start and end logits are paired, and a pair is
    valid when both tokens are in the context, the end is not before the start and the span is at
    most ``max_answer_length`` tokens.
    """
    valid = np.fromiter((o is not None for o in offsets), dtype=bool, count=len(offsets))
    top_s = np.argsort(-start, kind="stable")[:n_best_size]
    top_e = np.argsort(-end, kind="stable")[:n_best_size]
    length = top_e[None, :] - top_s[:, None] + 1
    ok = valid[top_s][:, None] & valid[top_e][None, :] & (length >= 1)
    ok &= length <= max_answer_length
    if not ok.any():
        return None
    scores = np.where(ok, start[top_s][:, None] + end[top_e][None, :], -np.inf)
    i, k = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[i, k]), int(top_s[i]), int(top_e[k])


def decode_spans(
    examples: Sequence[QAExample],
    features: SpanFeatures,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    n_best_size: int = 20,
    max_answer_length: int = 30,
    allow_no_answer: bool = False,
    null_score_threshold: float = 0.0,
) -> dict[str, str]:
    """Each example's answer text: the best-scoring valid span over all of its windows.

    ``start_logits[i]``/``end_logits[i]`` score the tokens of window ``i`` (longer, padded rows are
    cut to the window). With ``allow_no_answer`` (SQuAD v2) the null score is ``<s>``'s start plus
    end logit, its minimum over the example's windows as in run_qa's post-processing, and "" is
    predicted when it beats the best span by more than ``null_score_threshold``. An example with no
    valid span predicts "".
    """
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise ValueError(
            f"{len(features)} windows but {len(start_logits)} start and "
            f"{len(end_logits)} end logit rows"
        )
    windows: list[list[int]] = [[] for _ in examples]
    for j, ex in enumerate(features.example_index.tolist()):
        windows[ex].append(j)

    predictions: dict[str, str] = {}
    for ex, example in enumerate(examples):
        best: tuple[float, int, int, int] | None = None  # score, window, start, end
        min_null = np.inf
        for j in windows[ex]:
            offsets = features.offsets[j]
            n = len(offsets)
            start = np.asarray(start_logits[j], dtype=np.float64).reshape(-1)
            end = np.asarray(end_logits[j], dtype=np.float64).reshape(-1)
            if len(start) < n or len(end) < n:
                raise ValueError(f"window {j} has {n} tokens but fewer logits")
            start, end = start[:n], end[:n]
            min_null = min(min_null, float(start[CLS_INDEX] + end[CLS_INDEX]))
            found = _best_span(offsets, start, end, n_best_size, max_answer_length)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], j, found[1], found[2])
        if best is None or (allow_no_answer and min_null - best[0] > null_score_threshold):
            predictions[example.guid] = ""
            continue
        _, j, s, e = best
        first, last = features.offsets[j][s], features.offsets[j][e]
        assert first is not None and last is not None
        predictions[example.guid] = example.context[first[0] : last[1]]
    return predictions
