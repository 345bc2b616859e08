"""XTREME's metrics against hand-computed cases, including per-language normalisation edge cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from xstilts.errors import UnknownNameError
from xstilts.metrics import get_metric, mlqa, squad
from xstilts.metrics.retrieval import bucc_f1
from xstilts.metrics.seqeval import get_entities
from xstilts.tasks import get_task


def _qa(
    metric: str, preds: Mapping[str, str], golds: Mapping[str, list[str]], lang: str = "en"
) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent, as the official scripts print them (a question
    without a prediction scores 0)."""
    task = get_task("mlqa" if metric == "mlqa_f1" else "xquad")
    rows = [{"id": q, "prediction": preds.get(q), "label": a} for q, a in golds.items()]
    return {s.metric: 100 * s.value for s in get_metric(metric).score(task, lang, rows, 0)}


def f1_score(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Entity F1 of whole sentences through the registry's seqeval scorer."""
    rows = [
        {"id": str(i), "prediction": list(p), "label": list(g)}
        for i, (g, p) in enumerate(zip(gold, predicted, strict=True))
    ]
    (score,) = get_metric("seqeval_f1").score(get_task("panx"), "en", rows, 0)
    return score.value


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


# --- seqeval entity F1 (PAN-X, UDPOS) ----------------------------------------------------------
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
    # Plain POS tags: a run of the same tag is one chunk (types are the tag after its first letter) ...
    assert get_entities([["NOUN", "NOUN", "VERB"]]) == [("OUN", 0, 1), ("ERB", 2, 2)]
    # ... so one wrong tag in a run costs more than one token: 2 of 3 tokens right, F1 0.
    assert f1_score([["NOUN", "NOUN", "VERB"]], [["NOUN", "VERB", "VERB"]]) == 0.0
    # Tags starting with S (SCONJ, SYM) are single-token chunks.
    assert [c[1:] for c in get_entities([["SCONJ", "SCONJ"]])] == [(0, 0), (1, 1)]
    gold = [["DET", "NOUN", "VERB", "PUNCT"]]
    pred = [["DET", "NOUN", "NOUN", "PUNCT"]]
    # gold chunks DET, NOUN, VERB, PUNCT; pred DET, NOUN(1-2), PUNCT: 2 correct, P 2/3, R 1/2
    assert f1_score(gold, pred) == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))


def _x_opens_a_later_sentence(sentences: list[list[str]]) -> bool:
    return any(s[0] == "X" for s in sentences[1:])


def test_equals_the_seqeval_package_on_random_sequences() -> None:
    import random
    import warnings

    seqeval = pytest.importorskip("seqeval.metrics")
    rng = random.Random(0)
    bio = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    upos = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
    compared = 0
    for labels in (bio, upos):
        for _ in range(300):
            gold = [
                [rng.choice(labels) for _ in range(rng.randint(1, 12))]
                for _ in range(rng.randint(1, 5))
            ]
            pred = [[t if rng.random() < 0.7 else rng.choice(labels) for t in s] for s in gold]
            if _x_opens_a_later_sentence(gold) or _x_opens_a_later_sentence(pred):
                continue  # the known difference: test_sentence_initial_x_differs_from_seqeval
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # seqeval warns that POS tags are not NE tags
                expected = seqeval.f1_score(gold, pred)
            assert f1_score(gold, pred) == pytest.approx(expected, abs=1e-12), (gold, pred)
            compared += 1
    assert compared > 500


def test_sentence_initial_x_differs_from_seqeval() -> None:
    """seqeval joins sentences with an "O", whose type is "_" like X's, so an X that opens a
    later sentence starts no chunk and the chunk it closes begins in the previous sentence. The
    evaluate stage scores sentence by sentence (its bootstrap resamples sentences), so there such
    an X is a chunk of its own. Stored metrics depend on this: it is pinned, not "fixed"."""
    gold = [["INTJ", "VERB"], ["X", "NUM"]]
    pred = [["INTJ", "INTJ"], ["X", "NUM"]]
    # Per sentence: 1: gold NTJ, ERB; pred NTJ(0-1): 0 correct. 2: X, NUM both: 2 correct.
    # 2 tp / (n_pred + n_gold) = 2 * 2 / (3 + 4).
    assert f1_score(gold, pred) == pytest.approx(4 / 7)
    # seqeval (XTREME's evaluator): gold _(1-3), pred _(0-3) differ; 1 of 3 / 1 of 4 correct.
    import warnings

    seqeval = pytest.importorskip("seqeval.metrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert seqeval.f1_score(gold, pred) == pytest.approx(2 / 7)


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
