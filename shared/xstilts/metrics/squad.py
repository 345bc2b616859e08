"""SQuAD F1 and exact match, as the official SQuAD v1.1 / v2.0 evaluation scripts define them.

XQuAD and TyDiQA-GoldP are scored with these (v1.1 normalisation); MLQA has its own per-language
normalisation (:mod:`xstilts.metrics.mlqa`). Scores are percentages, as the scripts print them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and English articles, collapse whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(
    prediction: str, gold: str, normalize: Callable[[str], str] = normalize_answer
) -> float:
    return float(normalize(prediction) == normalize(gold))


def token_f1(
    prediction: str,
    gold: str,
    normalize: Callable[[str], str] = normalize_answer,
    empty_matches_empty: bool = False,
) -> float:
    """Bag-of-tokens F1 of the normalised strings.

    ``empty_matches_empty`` is SQuAD v2.0's rule for unanswerable questions: when either side is
    empty, the score is 1 if both are, else 0. v1.1 has no such rule (an empty side scores 0).
    """
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    if empty_matches_empty and (not pred or not ref):
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def score_question(
    prediction: str,
    golds: Sequence[str],
    normalize: Callable[[str], str] = normalize_answer,
    squad_v2: bool = False,
) -> tuple[float, float]:
    """(EM, F1) of one prediction: the best over the gold answers (v2: no answer means ``[""]``)."""
    refs = list(golds) or ([""] if squad_v2 else [])
    if not refs:
        raise ValueError("a SQuAD v1.1 question needs at least one gold answer")
    em = max(exact_match(prediction, g, normalize) for g in refs)
    f1 = max(token_f1(prediction, g, normalize, empty_matches_empty=squad_v2) for g in refs)
    return em, f1


def evaluate(
    predictions: Mapping[str, str],
    golds: Mapping[str, Iterable[str]],
    normalize: Callable[[str], str] = normalize_answer,
    squad_v2: bool = False,
) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent over every gold question (a missing prediction scores 0)."""
    if not golds:
        raise ValueError("no gold questions to score")
    em_total = f1_total = 0.0
    for qid, answers in golds.items():
        if qid not in predictions:
            continue  # counted as 0, as the official script does
        em, f1 = score_question(predictions[qid], list(answers), normalize, squad_v2)
        em_total += em
        f1_total += f1
    n = len(golds)
    return {"exact_match": 100.0 * em_total / n, "f1": 100.0 * f1_total / n}
