"""Load a task split in one language from a local folder or the hub, as :class:`PairExample` s."""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from xstilts.data.examples import PairExample
from xstilts.data.readers import READERS
from xstilts.errors import DataNotFoundError, UnknownNameError
from xstilts.tasks.base import HubSource, LocalFile, Split, Task

log = logging.getLogger(__name__)

# Capped training sets are a fixed random subset (not the file's first rows, which are often sorted
# by genre or source) and the same for every training seed, so seeds vary only the training run.
CAP_SHUFFLE_SEED = 0


@dataclass(frozen=True)
class DataSource:
    kind: Literal["local", "hub"]
    path: Path | None = None  # the data folder for "local"

    def describe(self) -> str:
        return f"local folder {self.path}" if self.kind == "local" else "the Hugging Face hub"


def _check_language(task: Task, split: Split, lang: str) -> None:
    if split not in task.splits:
        raise UnknownNameError(f"{task.name} split", split.value, [s.value for s in task.splits])
    valid = task.split_languages(split)
    if lang not in valid:
        raise UnknownNameError(f"{task.name} {split.value} language", lang, valid)


def resolve_local_file(task: Task, split: Split, lang: str, root: Path) -> tuple[Path, LocalFile]:
    """The first candidate file of a split that exists under ``root``."""
    _check_language(task, split, lang)
    candidates = task.splits[split].local
    for candidate in candidates:
        path = root / candidate.for_language(lang)
        if path.is_file():
            return path, candidate
    tried = ", ".join(c.for_language(lang) for c in candidates) or "(no local files for this split)"
    raise DataNotFoundError(
        f"{task.name} {split.value} [{lang}]: no file found under {root}; looked for: {tried}"
    )


@lru_cache(maxsize=256)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_split(task: Task, split: Split, lang: str, source: DataSource) -> str:
    """Identifies the exact data a split reads: the file's content hash, or the hub coordinates."""
    if source.kind == "local":
        assert source.path is not None
        path, _ = resolve_local_file(task, split, lang, source.path)
        st = path.stat()
        return f"sha256:{_file_sha256(path, st.st_size, st.st_mtime_ns)}"
    _check_language(task, split, lang)
    parts = [f"{h.dataset}/{h.config_for(lang)}/{h.split}" for h in task.splits[split].hub]
    return "hub:" + ",".join(parts)


def _cap(examples: list[PairExample], max_examples: int | None) -> list[PairExample]:
    if max_examples is None or len(examples) <= max_examples:
        return examples
    order = list(range(len(examples)))
    random.Random(CAP_SHUFFLE_SEED).shuffle(order)
    keep = sorted(order[:max_examples])
    return [examples[i] for i in keep]


def load_split(
    task: Task,
    split: Split,
    lang: str,
    source: DataSource,
    max_examples: int | None = None,
) -> list[PairExample]:
    """All labelled examples of ``task``'s ``split`` in ``lang`` (capped to a fixed subset)."""
    if source.kind == "local":
        assert source.path is not None
        path, candidate = resolve_local_file(task, split, lang, source.path)
        examples = [
            PairExample(guid, a, b, task.label_index(y))
            for guid, a, b, y in READERS[candidate.reader](path)
        ]
        log.debug("read %d examples from %s", len(examples), path)
    else:
        _check_language(task, split, lang)
        examples = []
        for hub in task.splits[split].hub:
            examples.extend(_load_hub(hub, lang))
    if not examples:
        raise DataNotFoundError(f"{task.name} {split.value} [{lang}]: {source.describe()} is empty")
    return _cap(examples, max_examples)


def hub_rows_to_examples(rows: Any, hub: HubSource, lang: str) -> list[PairExample]:
    """Map hub rows (integer labels in the task's label order) to examples; drops label -1."""
    out = []
    for i, row in enumerate(rows):
        label = int(row[hub.label])
        if label < 0:
            continue  # SNLI/GLUE rows without a gold label
        out.append(PairExample(f"{hub.split}-{lang}-{i}", row[hub.text_a], row[hub.text_b], label))
    return out


def _load_hub(hub: HubSource, lang: str) -> list[PairExample]:
    try:
        import datasets  # optional dependency: pip install 'xstilts[hub]'
    except ImportError as e:
        raise DataNotFoundError(
            "data.source 'hub' needs the datasets package: pip install 'xstilts[hub]'"
        ) from e
    rows = datasets.load_dataset(hub.dataset, hub.config_for(lang), split=hub.split)
    return hub_rows_to_examples(rows, hub, lang)
