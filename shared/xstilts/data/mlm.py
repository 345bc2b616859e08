"""Unlabelled text for continued masked-language-model training (the paper's MLM arm).

One text a line per language: locally ``<data folder>/mlm/<lang>.txt`` (UTF-8, the layout of
``../shared/data/mlm``), or streamed from the Hugging Face hub (:data:`HUB_TEXT`: Wikipedia, one
paragraph a line). A capped language reads a fixed random subset of its lines, in file order, the
same for every seed (as capped task data, :data:`xstilts.data.loading.CAP_SHUFFLE_SEED`); the hub
is a stream, so there the cap is the stream's first lines and is required.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xstilts.data.fingerprint import file_sha256
from xstilts.data.loading import CAP_SHUFFLE_SEED, DataSource
from xstilts.errors import DataNotFoundError
from xstilts.tasks.registry import PANX_LANGUAGES, XNLI_LANGUAGES

MLM_FOLDER = "mlm"
# Any XTREME language may be asked for (the hub has them all); the default is XNLI's fifteen,
# which is what ../shared/data/mlm holds.
MLM_LANGUAGES: tuple[str, ...] = tuple(sorted(set(PANX_LANGUAGES) | set(XNLI_LANGUAGES)))
DEFAULT_MLM_LANGUAGES: tuple[str, ...] = XNLI_LANGUAGES


@dataclass(frozen=True)
class HubText:
    """A hub dataset of plain text with one config per language."""

    dataset: str
    config: str  # {lang} is filled per language
    split: str
    column: str

    def config_for(self, lang: str) -> str:
        return self.config.format(lang=lang)


# Wikipedia as the wikimedia organisation publishes it (parquet, no loading script): one article
# a row; each non-empty line of an article (a paragraph) is one text.
HUB_TEXT = HubText("wikimedia/wikipedia", "20231101.{lang}", "train", "text")


def local_text_file(root: Path, lang: str) -> Path:
    """Where a language's text lives under a data folder; DataNotFoundError names it if absent."""
    path = root / MLM_FOLDER / f"{lang}.txt"
    if not path.is_file():
        raise DataNotFoundError(
            f"MLM text [{lang}]: no file {MLM_FOLDER}/{lang}.txt under {root} (one text a line, "
            f"UTF-8); or use data.source 'hub' for {HUB_TEXT.dataset} {HUB_TEXT.config_for(lang)}"
        )
    return path


def check_text_files(languages: Iterable[str], source: DataSource) -> None:
    """Every language's text file exists: one error naming every missing one."""
    if source.kind != "local" or source.path is None:
        return
    missing = []
    for lang in languages:
        try:
            local_text_file(source.path, lang)
        except DataNotFoundError as e:
            missing.append(str(e))
    if missing:
        raise DataNotFoundError("; ".join(missing))


def fingerprint_text(lang: str, source: DataSource) -> str:
    """Identifies the text a language reads: the file's content hash, or the hub coordinates."""
    if source.kind == "local":
        assert source.path is not None
        return f"sha256:{file_sha256(local_text_file(source.path, lang))}"
    return f"hub:{HUB_TEXT.dataset}/{HUB_TEXT.config_for(lang)}/{HUB_TEXT.split}"


def cap_lines(lines: list[str], max_lines: int | None) -> list[str]:
    """At most ``max_lines``: a fixed random subset, kept in the file's order."""
    if max_lines is None or len(lines) <= max_lines:
        return lines
    order = list(range(len(lines)))
    random.Random(CAP_SHUFFLE_SEED).shuffle(order)
    return [lines[i] for i in sorted(order[:max_lines])]


def load_text(lang: str, source: DataSource, max_lines: int | None) -> list[str]:
    """A language's texts (non-empty lines, surrounding whitespace dropped)."""
    if source.kind == "local":
        assert source.path is not None
        path = local_text_file(source.path, lang)
        with path.open(encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        texts = cap_lines([x for x in lines if x], max_lines)
    else:
        if max_lines is None:
            raise DataNotFoundError(
                "MLM text from the hub is a stream of Wikipedia: set "
                "intermediate.mlm.max_lines_per_language"
            )
        texts = _hub_lines(lang, max_lines)
    if not texts:
        raise DataNotFoundError(f"MLM text [{lang}]: {source.describe()} has no text")
    return texts


def _hub_lines(lang: str, max_lines: int) -> list[str]:
    try:
        import datasets  # optional dependency: pip install 'xstilts[hub]'
    except ImportError as e:
        raise DataNotFoundError(
            "data.source 'hub' needs the datasets package: pip install 'xstilts[hub]'"
        ) from e
    rows = datasets.load_dataset(
        HUB_TEXT.dataset, HUB_TEXT.config_for(lang), split=HUB_TEXT.split, streaming=True
    )
    return first_lines((row[HUB_TEXT.column] for row in rows), max_lines)


def first_lines(documents: Iterable[str], max_lines: int) -> list[str]:
    """The first ``max_lines`` non-empty lines of a stream of documents."""
    out: list[str] = []
    for doc in documents:
        for line in doc.splitlines():
            line = line.strip()
            if line:
                out.append(line)
                if len(out) == max_lines:
                    return out
    return out
