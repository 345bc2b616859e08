"""Task formats: one implementation each (see :class:`xstilts.formats.base.Format`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xstilts.formats.base import Format, TrainedFormat

FORMAT_NAMES = (
    "pair_classification",
    "token_classification",
    "extractive_qa",
    "multiple_choice",
    "retrieval",
)
_CACHE: dict[str, Format] = {}


def get_format(name: str) -> Format:
    """The format object by name (imported lazily: formats import the data layer, and it them)."""
    if name not in _CACHE:
        from xstilts.formats.choice import MultipleChoice
        from xstilts.formats.pair import PairClassification
        from xstilts.formats.qa import ExtractiveQA
        from xstilts.formats.retrieval import Retrieval
        from xstilts.formats.tagging import TokenClassification

        for f in (
            PairClassification(),
            TokenClassification(),
            ExtractiveQA(),
            MultipleChoice(),
            Retrieval(),
        ):
            _CACHE[f.name] = f
    try:
        return _CACHE[name]
    except KeyError:
        raise ValueError(f"format {name!r}: valid: {', '.join(FORMAT_NAMES)}") from None


def get_trained_format(name: str) -> TrainedFormat:
    """The format of a task that trains a head and predicts with it (all but retrieval)."""
    from xstilts.formats.base import TrainedFormat

    fmt = get_format(name)
    if not isinstance(fmt, TrainedFormat):
        raise ValueError(f"format {name!r} trains nothing: it has no head, features or outputs")
    return fmt
