"""The format registry: every task format by name, and every training objective (the trained
formats and the MLM arm's masked LM)."""

from __future__ import annotations

from xstilts.errors import UnknownNameError
from xstilts.formats.base import Format, Objective, TrainedFormat
from xstilts.formats.choice import MultipleChoice
from xstilts.formats.masked_lm import MaskedLM
from xstilts.formats.pair import PairClassification
from xstilts.formats.qa import ExtractiveQA
from xstilts.formats.retrieval import Retrieval
from xstilts.formats.tagging import TokenClassification

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        PairClassification(),
        TokenClassification(),
        ExtractiveQA(),
        MultipleChoice(),
        Retrieval(),
    )
}
# What a training stream can be: a trained format, or the MLM arm's objective (no task's format).
OBJECTIVES: dict[str, Objective] = {
    **{name: f for name, f in FORMATS.items() if isinstance(f, TrainedFormat)},
    MaskedLM.name: MaskedLM(),
}


def get_format(name: str) -> Format:
    """The format object by name (a task's ``format.value``)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownNameError("format", name, FORMATS) from None


def get_trained_format(name: str) -> TrainedFormat:
    """The format of a task that trains a head and predicts with it (all but retrieval)."""
    fmt = get_format(name)
    if not isinstance(fmt, TrainedFormat):
        raise ValueError(f"format {name!r} trains nothing: it has no head, features or outputs")
    return fmt


def get_objective(name: str) -> Objective:
    """What the training loop trains a stream of ``Features.format`` ``name`` with."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise UnknownNameError("training objective", name, OBJECTIVES) from None
