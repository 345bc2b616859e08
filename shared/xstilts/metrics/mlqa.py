"""MLQA's F1 and exact match: SQuAD's, with MLQA's per-language answer normalisation.

Punctuation is every Unicode character of category P* plus ASCII punctuation; articles are removed
per language; Chinese is segmented into single CJK characters (and punctuation) with whitespace
tokens in between, so F1 there is character-level.
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from xstilts.errors import UnknownNameError
from xstilts.metrics import squad
from xstilts.metrics.base import ItemScores, PredictionRow, Score

if TYPE_CHECKING:
    from xstilts.tasks.base import Task

_ARTICLES: dict[str, re.Pattern[str] | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "hi": None,  # no formal articles
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    # As in MLQA's script: the definite article "ال" wherever it occurs (the "\sال^" branch can never
    # match, so in effect every occurrence is replaced).
    "ar": re.compile(r"\sال^|ال"),
    "zh": None,
}
LANGUAGES = tuple(_ARTICLES)
_MIXED_SEGMENTATION = {"zh"}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


@lru_cache(maxsize=1)
def punctuation() -> frozenset[str]:
    cats = (chr(i) for i in range(sys.maxunicode))
    return frozenset(c for c in cats if unicodedata.category(c).startswith("P")) | frozenset(
        string.punctuation
    )


def _mixed_segmentation(text: str) -> list[str]:
    punct = punctuation()
    out: list[str] = []
    pending = ""
    for ch in text:
        if _CJK.search(ch) or ch in punct:
            out.extend(pending.split())
            pending = ""
            out.append(ch)
        else:
            pending += ch
    out.extend(pending.split())
    return out


def normalize_answer(text: str, lang: str) -> str:
    if lang not in _ARTICLES:
        raise UnknownNameError("MLQA language", lang, LANGUAGES)
    punct = punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    pattern = _ARTICLES[lang]
    if pattern is not None:
        text = pattern.sub(" ", text)
    tokens = _mixed_segmentation(text) if lang in _MIXED_SEGMENTATION else text.split()
    return " ".join(t for t in tokens if t.strip())


def normalizer(lang: str) -> Callable[[str], str]:
    if lang not in _ARTICLES:
        raise UnknownNameError("MLQA language", lang, LANGUAGES)
    return lambda text: normalize_answer(text, lang)


def score_mlqa(
    task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
) -> list[Score]:
    """SQuAD's F1 and exact match over rows, with ``lang``'s MLQA normalisation."""
    return squad.score_rows(task, lang, rows, bootstrap_samples, normalizer(lang))


def items_mlqa(task: Task, lang: str, rows: Sequence[PredictionRow]) -> ItemScores:
    """Each scorable question is an item, scored with ``lang``'s MLQA normalisation."""
    return squad.question_items(task, lang, rows, normalizer(lang))
