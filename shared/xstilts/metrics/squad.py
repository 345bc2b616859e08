"""SQuAD F1 and exact match, as the official SQuAD v1.1 / v2.0 evaluation scripts define them.

XQuAD and TyDiQA-GoldP are scored with these (v1.1 normalisation); MLQA has its own per-language
normalisation (:mod:`xstilts.metrics.mlqa`). Scores are in [0, 1]; the scripts print percentages.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from xstilts.metrics.base import AnswerRow, ItemScores, PredictionRow, Score, rows_of, unit_items
from xstilts.metrics.bootstrap import bootstrap_mean_ci

if TYPE_CHECKING:
    from xstilts.tasks.base import Task

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


def score_rows(
    task: Task,
    lang: str,
    rows: Sequence[PredictionRow],
    bootstrap_samples: int,
    normalize: Callable[[str], str] = normalize_answer,
) -> list[Score]:
    """F1 and exact match (in [0, 1]) of one language's rows, each with a bootstrap interval.

    A row's ``label`` is its list of gold answers; a question without one is not scorable and left
    out, except where the task has unanswerable questions (SQuAD v2), where "no answer" is the gold.
    A ``prediction`` of None (no answer submitted for the question) scores 0, as in the official
    script.
    """
    labelled, em, f1 = _question_scores(task, lang, rows, normalize)
    n = len(labelled)
    return [
        Score("f1", float(f1.mean()), n, *bootstrap_mean_ci(f1, bootstrap_samples)),
        Score("exact_match", float(em.mean()), n, *bootstrap_mean_ci(em, bootstrap_samples)),
    ]


def score_squad(
    task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
) -> list[Score]:
    """SQuAD v1.1/v2.0 normalisation (XQuAD, TyDiQA-GoldP, SQuAD)."""
    return score_rows(task, lang, rows, bootstrap_samples)


def items_squad(task: Task, lang: str, rows: Sequence[PredictionRow]) -> ItemScores:
    """Each scorable question is an item with its F1 and exact match."""
    return question_items(task, lang, rows)


def question_items(
    task: Task,
    lang: str,
    rows: Sequence[PredictionRow],
    normalize: Callable[[str], str] = normalize_answer,
) -> ItemScores:
    labelled, em, f1 = _question_scores(task, lang, rows, normalize)
    return unit_items([str(r["id"]) for r in labelled], {"f1": f1, "exact_match": em})


def _question_scores(
    task: Task,
    lang: str,
    rows: Sequence[PredictionRow],
    normalize: Callable[[str], str],
) -> tuple[Sequence[AnswerRow], np.ndarray, np.ndarray]:
    """The scorable questions and their exact match and F1."""
    squad_v2 = task.unanswerable_questions
    answers = rows_of(rows, AnswerRow)
    labelled = answers if squad_v2 else [r for r in answers if r["label"]]
    if not labelled:
        raise ValueError(
            f"{task.name} [{lang}]: none of the {len(rows)} questions has a gold answer "
            "(the data file carries blank answers), so F1/EM cannot be computed"
        )
    em, f1 = np.array(
        [
            (0.0, 0.0)
            if r["prediction"] is None
            else score_question(r["prediction"], r["label"], normalize, squad_v2)
            for r in labelled
        ],
        dtype=np.float64,
    ).T
    return labelled, em, f1
