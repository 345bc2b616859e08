"""Readers for the raw file formats, exactly as the files are distributed.

The pair readers here yield ``(guid, text_a, text_b, raw_label)`` (mapping raw labels to ids is the
task's job); the other formats' readers (:mod:`xstilts.data.format_readers`) yield examples.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from xstilts.data.format_readers import FORMAT_READERS

RawPair = tuple[str, str, str, str]

# GLUE-style TSVs name their columns differently per corpus; the first present name wins.
_GLUE_A = ("sentence1", "question1", "premise", "text_a")
_GLUE_B = ("sentence2", "question2", "hypothesis", "text_b")
_GLUE_LABEL = ("gold_label", "is_duplicate", "label")
_HF_PAWSX_HEADER = ["id", "sentence1", "sentence2", "label"]


def _first_present(header: list[str], names: tuple[str, ...], path: Path) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise ValueError(f"{path}: none of the columns {names} in header {header}")


def read_xtreme_pair_tsv(path: Path) -> Iterator[RawPair]:
    """XTREME's preprocessed ``text_a<TAB>text_b<TAB>label`` files (XNLI, PAWS-X); no header.

    Some PAWS-X test copies are Hugging Face exports with an ``id sentence1 sentence2 label`` header;
    they are recognised by that header.
    """
    with path.open(encoding="utf-8", newline="") as f:
        for i, line in enumerate(f):
            fields = line.rstrip("\r\n").split("\t")
            if i == 0 and fields == _HF_PAWSX_HEADER:
                yield from _read_hf_pawsx(f, path)
                return
            if fields == [""]:
                continue
            if len(fields) < 3:
                raise ValueError(
                    f"{path}:{i + 1}: expected 3 tab-separated fields, got {len(fields)}"
                )
            yield (f"{path.stem}-{i}", fields[0], fields[1], fields[2])


def _read_hf_pawsx(lines: Iterator[str], path: Path) -> Iterator[RawPair]:
    for line in lines:
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) >= 4:
            yield (f"{path.stem}-{fields[0]}", fields[1], fields[2], fields[3])


def read_glue_tsv(path: Path) -> Iterator[RawPair]:
    """GLUE/SNLI TSVs with a header row (MNLI ``gold_label``, QQP ``is_duplicate``, ...)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        a = _first_present(header, _GLUE_A, path)
        b = _first_present(header, _GLUE_B, path)
        y = _first_present(header, _GLUE_LABEL, path)
        for i, row in enumerate(reader):
            if len(row) <= max(a, b, y):
                continue  # a truncated row (known in a few GLUE dumps) carries no usable pair
            if row[y] == "-":
                continue  # SNLI/MNLI pairs without annotator consensus
            yield (f"{path.stem}-{i}", row[a], row[b], row[y])


def read_prompt_json(path: Path) -> Iterator[RawPair]:
    """``{"<idx>": {"text_a", "text_b", "label"}}`` as stored by LM-BFF/PowerfulPromptFT."""
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    for key, row in data.items():
        yield (f"{path.stem}-{key}", row["text_a"], row["text_b"], str(row["label"]))


# Pair readers yield raw tuples (the task maps labels); the other formats' readers yield examples.
READERS: dict[str, Callable[[Path], Iterable[Any]]] = {
    "xtreme_pair_tsv": read_xtreme_pair_tsv,
    "glue_tsv": read_glue_tsv,
    "prompt_json": read_prompt_json,
    **FORMAT_READERS,
}
