"""XTREME's metrics against hand-computed cases, including per-language normalisation edge cases."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest
from xstilts.errors import UnknownNameError
from xstilts.metrics import get_metric, mlqa, squad
from xstilts.metrics.retrieval import bucc_f1
from xstilts.metrics.seqeval import get_entities
from xstilts.tasks import get_task

UPOS = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()


def _qa(
    metric: str, preds: Mapping[str, str], golds: Mapping[str, list[str]], lang: str = "en"
) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent, as the official scripts print them (a question
    without a prediction scores 0)."""
    task = get_task("mlqa" if metric == "mlqa_f1" else "xquad")
    rows = [{"id": q, "prediction": preds.get(q), "label": a} for q, a in golds.items()]
    return {s.metric: 100 * s.value for s in get_metric(metric).score(task, lang, rows, 0)}


def tagging_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], metric: str = "seqeval_f1"
) -> dict[str, float]:
    """Scores of whole sentences through the registry's tagging scorer."""
    rows = [
        {"id": str(i), "prediction": list(p), "label": list(g)}
        for i, (g, p) in enumerate(zip(gold, predicted, strict=True))
    ]
    return {s.metric: s.value for s in get_metric(metric).score(get_task("panx"), "en", rows, 0)}


def f1_score(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    return tagging_scores(gold, predicted)["f1"]


# --- SQuAD (v1.1 normalisation: XQuAD, TyDiQA-GoldP) ------------------------------------------
def test_squad_normalisation() -> None:
    assert squad.normalize_answer("The  Quick, brown-fox!") == "quick brownfox"
    assert squad.normalize_answer("an apple a day") == "apple day"
    assert squad.normalize_answer("«Hola»") == "«hola»"  # v1.1 knows only ASCII punctuation


def test_squad_f1_and_em_hand_computed() -> None:
    assert squad.exact_match("the cat", "Cat.") == 1.0
    # pred [cat, sat], gold [cat, sat, down]: 2 shared, P = 1, R = 2/3, F1 = 0.8
    assert squad.token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert squad.token_f1("dog", "cat") == 0.0
    assert squad.token_f1("", "cat") == 0.0
    # repeated tokens count as a multiset: pred [a?] -> "x x y" vs "x y y": common {x:1, y:1}
    assert squad.token_f1("x x y", "x y y") == pytest.approx(2 / 3)


def test_squad_best_over_gold_answers_and_dataset_average() -> None:
    em, f1 = squad.score_question("Denver Broncos", ["Broncos", "the Denver Broncos"])
    assert (em, f1) == (1.0, 1.0)
    golds = {"q1": ["Denver Broncos"], "q2": ["1984"], "q3": ["in Paris"]}
    preds = {"q1": "Broncos", "q2": "1984"}  # q3 has no prediction: it scores 0
    out = _qa("squad_f1", preds, golds)
    # q1: EM 0, F1 = 2 * (1 * 0.5) / 1.5 = 2/3; q2: 1, 1; q3: 0, 0
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * (2 / 3 + 1) / 3)


def test_squad_v2_unanswerable() -> None:
    assert squad.score_question("", [], squad_v2=True) == (1.0, 1.0)
    assert squad.score_question("something", [], squad_v2=True) == (0.0, 0.0)
    assert squad.score_question("", ["Paris"], squad_v2=True) == (0.0, 0.0)
    with pytest.raises(ValueError, match="at least one gold answer"):
        squad.score_question("x", [])


# --- MLQA (per-language normalisation) ---------------------------------------------------------
@pytest.mark.parametrize(
    ("lang", "text", "normalised"),
    [
        ("en", "The dog, an apple.", "dog apple"),
        ("de", "Der Hund und die Katze", "hund und katze"),
        ("es", "El perro y la casa", "perro y casa"),
        ("es", "«Hola», dijo", "hola dijo"),  # Unicode punctuation (Pi/Pf) is removed
        ("vi", "của tôi là những con mèo", "tôi con mèo"),
        ("ar", "الكتاب الجديد", "كتاب جديد"),
        ("ar", "مالك", "م ك"),  # MLQA's quirk: "ال" is removed inside words too
        ("hi", "यह एक किताब है।", "यह एक किताब है"),  # danda is punctuation; no articles
        ("zh", "北京大学，很好", "北 京 大 学 很 好"),
        ("zh", "2008年奥运会 in Beijing", "2008 年 奥 运 会 in beijing"),
    ],
)
def test_mlqa_normalisation(lang: str, text: str, normalised: str) -> None:
    assert mlqa.normalize_answer(text, lang) == normalised


def test_mlqa_chinese_f1_is_character_level() -> None:
    # pred [北, 京, 大, 学], gold [北, 京]: 2 shared, P = 0.5, R = 1, F1 = 2/3
    out = _qa("mlqa_f1", {"q": "北京大学"}, {"q": ["北京"]}, "zh")
    assert out["f1"] == pytest.approx(200 / 3) and out["exact_match"] == 0.0
    # The same strings under whitespace tokenisation are one token each: F1 0.
    assert _qa("mlqa_f1", {"q": "北京大学"}, {"q": ["北京"]}, "en")["f1"] == 0.0


def test_mlqa_german_articles_change_the_score() -> None:
    assert _qa("mlqa_f1", {"q": "der Rhein"}, {"q": ["Rhein"]}, "de")["exact_match"] == 100.0
    assert _qa("mlqa_f1", {"q": "der Rhein"}, {"q": ["Rhein"]}, "en")["exact_match"] == 0.0


def test_mlqa_unknown_language_lists_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="valid values: ar, de, en, es, hi, vi, zh"):
        mlqa.normalize_answer("x", "fr")


# --- seqeval 0.0.12 tagging scores (PAN-X, UDPOS) ----------------------------------------------------------
def test_bio_entities_and_f1() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    assert get_entities(gold) == [("PER", 0, 1), ("LOC", 3, 3)]
    # 1 of 2 predicted chunks correct, 1 of 2 gold found: P = R = F1 = 0.5
    assert f1_score(gold, pred) == pytest.approx(0.5)
    assert f1_score(gold, gold) == 1.0


def test_bio_edge_cases() -> None:
    assert get_entities([["O", "I-PER", "I-PER"]]) == [("PER", 1, 2)]  # I- without B- starts one
    assert get_entities([["B-PER", "I-LOC"]]) == [("PER", 0, 0), ("LOC", 1, 1)]  # type switch
    assert get_entities([["B-PER", "B-PER"]]) == [("PER", 0, 0), ("PER", 1, 1)]
    # Sentences are joined with an "O": an entity never spans two sentences.
    assert get_entities([["B-PER"], ["I-PER"]]) == [("PER", 0, 0), ("PER", 2, 2)]


def test_udpos_scored_as_xtreme_does() -> None:
    # seqeval 0.0.12: a plain POS tag's type is the whole tag, and a run of one tag is one chunk ...
    assert get_entities([["NOUN", "NOUN", "VERB"]]) == [("NOUN", 0, 1), ("VERB", 2, 2)]
    # ... so one wrong tag in a run costs more than one token: 2 of 3 tokens right, F1 0.
    assert f1_score([["NOUN", "NOUN", "VERB"]], [["NOUN", "VERB", "VERB"]]) == 0.0
    # Tags starting with S (SCONJ, SYM) are single-token chunks.
    assert get_entities([["SCONJ", "SCONJ"]]) == [("SCONJ", 0, 0), ("SCONJ", 1, 1)]
    # SCONJ for CCONJ is wrong (seqeval >= 0.0.16 would read both as "CONJ" and count it right).
    assert f1_score([["CCONJ", "NOUN"]], [["SCONJ", "NOUN"]]) == pytest.approx(0.5)
    gold = [["DET", "NOUN", "VERB", "PUNCT"]]
    pred = [["DET", "NOUN", "NOUN", "PUNCT"]]
    # gold chunks DET, NOUN, VERB, PUNCT; pred DET, NOUN(1-2), PUNCT: 2 correct, P 2/3, R 1/2
    scores = tagging_scores(gold, pred, "seqeval_f1_token_accuracy")
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))
    assert scores["token_accuracy"] == pytest.approx(3 / 4)


def test_chunks_are_counted_in_the_sentence_where_they_start() -> None:
    """Sentences are joined by an "O" (type "O"), so an X opening a later sentence is a chunk of
    its own; per-sentence counts add up to seqeval's totals."""
    gold = [["INTJ", "VERB"], ["X", "NUM"]]
    pred = [["INTJ", "INTJ"], ["X", "NUM"]]
    # gold: INTJ, VERB, X, NUM; pred: INTJ(0-1), X, NUM; X and NUM correct.
    scores = tagging_scores(gold, pred)
    assert scores == pytest.approx({"f1": 4 / 7, "precision": 2 / 3, "recall": 1 / 2})


def test_empty_denominators_score_zero_as_seqeval_does() -> None:
    # No predicted chunk (only "O"): precision 0 (not undefined), recall 0, F1 0.
    assert tagging_scores([["B-PER", "O"]], [["O", "O"]]) == {
        "f1": 0.0,
        "precision": 0.0,
        "recall": 0.0,
    }


def _random_sentences(rng: random.Random, labels: list[str]) -> tuple[list[list[str]], ...]:
    gold = [
        [rng.choice(labels) for _ in range(rng.randint(1, 12))] for _ in range(rng.randint(1, 6))
    ]
    pred = [[t if rng.random() < 0.7 else rng.choice(labels) for t in s] for s in gold]
    return gold, pred


def test_equals_seqeval_0_0_12_on_random_sequences() -> None:
    """F1, precision, recall and token accuracy against the seqeval XTREME's evaluator ran."""
    import importlib.metadata

    import seqeval.metrics as reference

    assert importlib.metadata.version("seqeval") == "0.0.12", "scripts/setup.sh installs it"
    rng = random.Random(0)
    label_sets = {
        "bio": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"],
        "bioes": ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC"],
        "upos": UPOS,
        "mixed": [*UPOS, "O", "B-PER", "I-PER", ".", "S[dcl]\\NP", "N/N"],
    }
    for name, labels in label_sets.items():
        for _ in range(400):
            gold, pred = _random_sentences(rng, labels)
            got = tagging_scores(gold, pred, "seqeval_f1_token_accuracy")
            want = {
                "f1": reference.f1_score(gold, pred),
                "precision": reference.precision_score(gold, pred),
                "recall": reference.recall_score(gold, pred),
                "token_accuracy": reference.accuracy_score(gold, pred),
            }
            assert got == pytest.approx(want, abs=1e-12), (name, gold, pred)
    # Hand-made UPOS cases where seqeval 0.0.12 and 1.x disagree.
    for gold, pred in (
        ([["CCONJ"]], [["SCONJ"]]),
        ([["INTJ", "VERB"], ["X", "NUM"]], [["INTJ", "INTJ"], ["X", "NUM"]]),
        ([["SYM", "SYM", "NOUN"]], [["SCONJ", "SYM", "NOUN"]]),
    ):
        assert f1_score(gold, pred) == pytest.approx(reference.f1_score(gold, pred), abs=1e-12)


def test_seqeval_rejects_misaligned_sequences() -> None:
    with pytest.raises(ValueError, match="1 predicted tags for 2 gold tags"):
        f1_score([["O", "O"]], [["O"]])


# --- retrieval ---------------------------------------------------------------------------------
def test_bucc_f1_hand_computed() -> None:
    pred = [("zh-1", "en-1"), ("zh-2", "en-2"), ("zh-3", "en-9")]
    gold = [("zh-1", "en-1"), ("zh-2", "en-2"), ("zh-4", "en-4"), ("zh-5", "en-5")]
    out = bucc_f1(pred, gold)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(4 / 7)
    assert bucc_f1([], gold)["f1"] == 0.0
