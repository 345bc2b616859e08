from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairExample:
    """One sentence pair. ``label`` indexes the task's label tuple; -1 means unlabelled."""

    guid: str
    text_a: str
    text_b: str
    label: int
