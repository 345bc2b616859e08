"""Extractive QA windows and span decoding (xstilts.formats.span) with the real XLM-R tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from xstilts.data.examples import QAExample
from xstilts.formats.span import SpanFeatures, decode_spans, featurize_spans

BIG = 100.0


@pytest.fixture(scope="module")
def tokenizer(offline_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(offline_model_dir)


def squad_examples(path: Path, every: int = 1, limit: int | None = None) -> list[QAExample]:
    out = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out.append(
                    QAExample(
                        qa["id"],
                        qa["question"],
                        paragraph["context"],
                        tuple(a["text"] for a in qa["answers"]),
                        tuple(a["answer_start"] for a in qa["answers"]),
                    )
                )
    return out[::every][:limit]


def one_hot_logits(f: SpanFeatures) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Logits that put all mass on each window's own training targets (<s> where absent)."""
    starts, ends = [], []
    for j, ids in enumerate(f.input_ids):
        s, e = np.zeros(len(ids)), np.zeros(len(ids))
        s[f.start_positions[j]] = BIG
        e[f.end_positions[j]] = BIG
        starts.append(s)
        ends.append(e)
    return starts, ends


def context_tokens(f: SpanFeatures, j: int) -> list[tuple[int, int]]:
    return [o for o in f.offsets[j] if o is not None]


# --- round trip on real data ------------------------------------------------------------------


@pytest.mark.parametrize("relpath", ["xquad/xquad.de.json", "mlqa/dev-context-ar-question-ar.json"])
def test_round_trip_real_examples(tokenizer, data_dir: Path, relpath: str) -> None:
    examples = squad_examples(data_dir / relpath, every=7, limit=60)
    f = featurize_spans(tokenizer, examples, max_length=128, doc_stride=32)

    assert len(f) > len(examples)
    assert np.bincount(f.example_index).max() > 1  # long contexts make several windows
    assert set(f.example_index.tolist()) == set(range(len(examples)))
    assert f.lengths.max() <= 128
    assert f.lengths.tolist() == [len(ids) for ids in f.input_ids]

    found: set[int] = set()
    for j in np.nonzero(f.start_positions)[0]:
        ex = examples[f.example_index[j]]
        s, e = f.start_positions[j], f.end_positions[j]
        first, last = f.offsets[j][s], f.offsets[j][e]
        gold_start = ex.answer_starts[0]
        gold_end = gold_start + len(ex.answers[0])
        # The targets are the tokens containing the answer's first and last characters.
        assert first is not None and last is not None and s <= e
        assert first[0] <= gold_start < first[1]
        assert last[0] < gold_end <= last[1]
        found.add(int(f.example_index[j]))
    assert len(found) >= 0.9 * len(examples)

    starts, ends = one_hot_logits(f)
    predicted = decode_spans(examples, f, starts, ends, max_answer_length=128)
    assert set(predicted) == {e.guid for e in examples}
    exact = 0
    for i in found:
        ex, text = examples[i], predicted[examples[i].guid]
        gold_start = ex.answer_starts[0]
        gold_end = gold_start + len(ex.answers[0])
        exact += text == ex.answers[0]
        # Anything beyond the gold text is the rest of a subword token: the decoded text is the
        # gold span widened to the tokens holding its ends, never across a space.
        a = next(
            a
            for a in range(gold_end - len(text), gold_start + 1)
            if a >= 0 and ex.context.startswith(text, a)
        )
        assert a + len(text) >= gold_end
        assert not any(c.isspace() for c in ex.context[a:gold_start])
        assert not any(c.isspace() for c in ex.context[gold_end : a + len(text)])
        assert text == text.strip()
    assert exact >= 0.85 * len(found)


def test_blank_answers_train_on_cls_and_decode_empty(tokenizer, data_dir: Path) -> None:
    # XTREME's dev files carry blank answers ({"text": "", "answer_start": 0}): no target, and ""
    # as the v2 prediction. The shared copies now have gold, so blank 40 questions here.
    examples = [
        QAExample(e.guid, e.question, e.context, (), ())
        for e in squad_examples(data_dir / "tydiqa" / "tydiqa.goldp.ar.dev.json", limit=40)
    ]
    examples.append(QAExample("v2", "Wer?", "Niemand weiß es.", (), (), is_impossible=True))
    f = featurize_spans(tokenizer, examples, max_length=128, doc_stride=32)
    assert not f.start_positions.any() and not f.end_positions.any()
    starts, ends = one_hot_logits(f)
    predicted = decode_spans(examples, f, starts, ends, allow_no_answer=True)
    assert predicted == {e.guid: "" for e in examples}


# --- windows ----------------------------------------------------------------------------------


def long_example(n_filler: int = 60) -> QAExample:
    filler = " ".join(f"Sentence number {i} is only filler text." for i in range(n_filler))
    context = filler + " The capital of France is Paris. The end."
    start = context.index("Paris")
    return QAExample("long", "What is the capital of France?", context, ("Paris",), (start,))


def test_answer_near_the_end_is_in_a_later_window(tokenizer) -> None:
    ex = long_example()
    short = QAExample("short", "Who?", "Anna went home.", ("Anna",), (0,))
    f = featurize_spans(tokenizer, [short, ex], max_length=64, doc_stride=16)

    assert f.example_index[0] == 0 and f.start_positions[0] == f.offsets[0].index((0, 4))
    windows = np.nonzero(f.example_index == 1)[0]
    assert len(windows) > 3
    assert f.lengths.max() <= 64
    with_answer = [j for j in windows if f.start_positions[j] > 0]
    assert with_answer and with_answer[0] > windows[0]
    for j in windows:
        if j < with_answer[0]:
            assert f.start_positions[j] == 0 and f.end_positions[j] == 0
    start_char = ex.answer_starts[0]
    for j in with_answer:
        s, e = f.start_positions[j], f.end_positions[j]
        assert f.offsets[j][s][0] == start_char
        assert f.offsets[j][e][1] == start_char + len("Paris")
        assert f.input_ids[j][s] != tokenizer.cls_token_id

    # Consecutive windows share doc_stride context tokens, and together cover the whole context.
    for a, b in zip(windows[:-1], windows[1:], strict=True):
        assert context_tokens(f, a)[-16:] == context_tokens(f, b)[:16]
    assert context_tokens(f, windows[0])[0][0] == 0
    assert context_tokens(f, windows[-1])[-1][1] == len(ex.context)

    starts, ends = one_hot_logits(f)
    assert decode_spans([short, ex], f, starts, ends) == {"short": "Anna", "long": "Paris"}


def test_stride_must_leave_room_for_context(tokenizer) -> None:
    with pytest.raises(ValueError, match="doc_stride"):
        featurize_spans(tokenizer, [long_example()], max_length=20, doc_stride=16)


def test_question_truncated_to_max_query_length(tokenizer) -> None:
    long_q = "  " + " ".join(f"Frage{i} nach dem Wetter" for i in range(40)) + "?"
    examples = [
        QAExample("long_q", long_q, "Es regnet heute in Berlin.", ("regnet",), (3,)),
        QAExample("short_q", "  Wie ist das Wetter?", "Es regnet heute.", ("regnet",), (3,)),
    ]
    f = featurize_spans(tokenizer, examples, max_length=128, doc_stride=32, max_query_length=16)
    assert len(f) == 2

    def question_ids(ids: list[int]) -> list[int]:
        assert ids[0] == tokenizer.cls_token_id
        return ids[1 : ids.index(tokenizer.sep_token_id)]

    alone = tokenizer(long_q.lstrip(), add_special_tokens=False)["input_ids"]
    assert len(alone) > 16
    assert question_ids(f.input_ids[0]) == alone[:16]
    stripped = tokenizer("Wie ist das Wetter?", add_special_tokens=False)["input_ids"]
    assert question_ids(f.input_ids[1]) == stripped  # leading whitespace dropped, not cut
    for j in range(2):
        assert f.offsets[j][f.start_positions[j]] == (3, 9)
        assert f.start_positions[j] == f.end_positions[j]


# --- decoding ---------------------------------------------------------------------------------

WORDS = "alpha beta gamma delta epsilon zeta eta theta"
QUESTION_TOKENS = 3  # <s> q q, then </s></s>, then the context words, then </s>


def _word_spans(text: str) -> dict[str, tuple[int, int]]:
    spans, pos = {}, 0
    for w in text.split():
        pos = text.index(w, pos)
        spans[w] = (pos, pos + len(w))
        pos += len(w)
    return spans


SPANS = _word_spans(WORDS)  # "eta" is also inside "beta": str.index would find the wrong one


def manual_features(windows: list[tuple[int, list[str]]]) -> SpanFeatures:
    """Windows over WORDS without a tokenizer: (example index, words of the context it covers)."""
    offsets: list[list[tuple[int, int] | None]] = []
    for _, words in windows:
        row: list[tuple[int, int] | None] = [None] * (QUESTION_TOKENS + 2)
        row.extend(SPANS[w] for w in words)
        offsets.append([*row, None])
    zeros = np.zeros(len(windows), dtype=np.int64)
    return SpanFeatures(
        input_ids=[[7] * len(row) for row in offsets],
        example_index=np.array([ex for ex, _ in windows], dtype=np.int64),
        offsets=offsets,
        start_positions=zeros,
        end_positions=zeros.copy(),
    )


def logits_for(f: SpanFeatures, j: int, scores: dict[str | int, float]) -> np.ndarray:
    """A logit row for window j: word -> score (its token in the window) or token index -> score."""
    row = np.zeros(len(f.offsets[j]))
    for key, value in scores.items():
        if isinstance(key, int):
            row[key] = value
        else:
            row[f.offsets[j].index(SPANS[key])] = value
    return row


EXAMPLE = QAExample("q", "?", WORDS, ("beta",), (6,))
ALL_WORDS = WORDS.split()


def decode_one(start: dict, end: dict, **kwargs) -> str:
    f = manual_features([(0, ALL_WORDS)])
    return decode_spans([EXAMPLE], f, [logits_for(f, 0, start)], [logits_for(f, 0, end)], **kwargs)[
        "q"
    ]


def test_end_before_start_is_skipped() -> None:
    # (zeta, beta) scores 20 but ends before it starts; (beta, beta) = 18 is the best valid span.
    assert decode_one({"zeta": 10, "beta": 8}, {"beta": 10, "gamma": 7}) == "beta"


def test_max_answer_length() -> None:
    start, end = {"alpha": 10, "delta": 5}, {"theta": 9.5, "epsilon": 6}
    assert decode_one(start, end) == WORDS  # 8 tokens fit in 30
    assert decode_one(start, end, max_answer_length=8) == WORDS
    # Longer than 3 tokens is refused: (delta, epsilon) = 11 beats (alpha, alpha..gamma) = 10
    # and (zeta..theta, theta) = 9.5.
    assert decode_one(start, end, max_answer_length=3) == "delta epsilon"
    assert decode_one(start, end, max_answer_length=1) == "alpha"


def test_question_and_special_tokens_are_never_answers() -> None:
    question = QUESTION_TOKENS - 1
    assert (
        decode_one({question: 50, 0: 40, "gamma": 1}, {question: 50, "delta": 1}) == "gamma delta"
    )
    # Only the n best starts/ends are paired: with 2 of them, both outside the context, no span.
    start, end = {question: 50, 1: 40, "gamma": 1}, {question: 50, 1: 40, "gamma": 1}
    assert decode_one(start, end, n_best_size=2) == ""
    assert decode_one(start, end, n_best_size=3) == "gamma"


def test_best_span_over_windows_and_examples() -> None:
    other = QAExample("other", "?", WORDS, ("eta",), (35,))
    f = manual_features([(0, ALL_WORDS[:5]), (1, ALL_WORDS), (0, ALL_WORDS[3:])])
    starts = [
        logits_for(f, 0, {"beta": 5}),
        logits_for(f, 1, {"eta": 3}),
        logits_for(f, 2, {"zeta": 6}),
    ]
    ends = [
        logits_for(f, 0, {"gamma": 5}),
        logits_for(f, 1, {"theta": 3}),
        logits_for(f, 2, {"eta": 6}),
    ]
    # Padded rows (longer than the window) are cut to the window.
    starts[1] = np.concatenate([starts[1], [99.0, 99.0]])
    assert decode_spans([EXAMPLE, other], f, starts, ends) == {
        "q": "zeta eta",
        "other": "eta theta",
    }
    with pytest.raises(ValueError):
        decode_spans([EXAMPLE, other], f, starts[:2], ends[:2])


def test_squad_v2_null_score() -> None:
    f = manual_features([(0, ALL_WORDS[:5]), (0, ALL_WORDS[3:])])

    def decode(null_a: float, null_b: float, span: float, **kwargs) -> str:
        starts = [logits_for(f, 0, {0: null_a / 2}), logits_for(f, 1, {0: null_b / 2})]
        ends = [logits_for(f, 0, {0: null_a / 2}), logits_for(f, 1, {0: null_b / 2})]
        starts[1][f.offsets[1].index(SPANS["delta"])] = span / 2
        ends[1][f.offsets[1].index(SPANS["epsilon"])] = span / 2
        return decode_spans([EXAMPLE], f, starts, ends, allow_no_answer=True, **kwargs)["q"]

    assert decode(5, 5, 3) == ""  # null beats the span
    assert decode(2, 2, 3) == "delta epsilon"  # span beats null
    # The null score is the minimum over the example's windows (run_qa): 10 in one, 2 in the other.
    assert decode(10, 2, 3) == "delta epsilon"
    assert decode(2, 10, 3) == "delta epsilon"
    # Threshold: "" only when null - best span is strictly more than it.
    assert decode(5, 5, 3, null_score_threshold=1.5) == ""
    assert decode(5, 5, 3, null_score_threshold=2.0) == "delta epsilon"
    assert decode(5, 5, 3, null_score_threshold=2.5) == "delta epsilon"
    # Without allow_no_answer the span is always taken.
    starts = [logits_for(f, 0, {0: 50}), logits_for(f, 1, {0: 50, "zeta": 1})]
    ends = [logits_for(f, 0, {0: 50}), logits_for(f, 1, {0: 50, "zeta": 1})]
    assert decode_spans([EXAMPLE], f, starts, ends)["q"] == "zeta"
