"""One example type per task format; readers produce them, formats featurise them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairExample:
    """One sentence pair. ``label`` indexes the task's label tuple; -1 means unlabelled."""

    guid: str
    text_a: str
    text_b: str
    label: int


@dataclass(frozen=True)
class TaggingExample:
    """A sentence as words with one tag per word (raw tag strings; empty tags: unlabelled)."""

    guid: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class QAExample:
    """An extractive question: the answer is a span of ``context``.

    ``answers`` are the gold texts and ``answer_starts`` their character offsets in the context
    (the first one is the training target); no answers with ``is_impossible`` is SQuAD v2's
    unanswerable question.
    """

    guid: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    is_impossible: bool = False


@dataclass(frozen=True)
class ChoiceExample:
    """Multiple choice: each choice is scored as the pair (context, question + choice)."""

    guid: str
    context: str
    question: str
    choices: tuple[str, ...]
    label: int  # index into choices; -1 unlabelled


@dataclass(frozen=True)
class RetrievalCorpus:
    """Two sides to align and the gold alignment as (source id, target id) pairs.

    Tatoeba: the source sentences (non-English) and their English translations, line-aligned.
    BUCC: the source-language and English corpora, and the gold parallel pairs among them.
    """

    guid: str
    source_ids: tuple[str, ...]
    source: tuple[str, ...]
    target_ids: tuple[str, ...]
    target: tuple[str, ...]
    gold: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.source)


Example = PairExample | TaggingExample | QAExample | ChoiceExample | RetrievalCorpus
