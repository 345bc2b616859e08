"""Load a task split in one language from a local folder or the hub, as the format's examples."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xstilts.data.examples import RetrievalCorpus
from xstilts.data.fingerprint import file_sha256
from xstilts.data.hub import examples_from_hub, load_hub_rows
from xstilts.data.readers import READERS
from xstilts.errors import DataContentError, DataNotFoundError, UnknownNameError
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


def _fill(candidate: LocalFile, task: Task, lang: str) -> str:
    return candidate.for_language(lang, task.code(lang), task.language_name(lang))


def _with_hint(message: str, task: Task, split: Split, lang: str) -> str:
    """``message`` and, where the split says where its files come from, that sentence."""
    hint = task.splits[split].hint_for(lang, task.code(lang), task.language_name(lang))
    return f"{message}. {hint}" if hint else message


def resolve_local_files(
    task: Task, split: Split, lang: str, root: Path
) -> tuple[list[Path], LocalFile]:
    """The files of the first candidate that exists under ``root`` (a pattern may match several)."""
    _check_language(task, split, lang)
    candidates = task.splits[split].local
    for candidate in candidates:
        pattern = _fill(candidate, task, lang)
        if candidate.glob:
            paths = sorted(p for p in root.glob(pattern) if p.is_file())
            if paths:
                return paths, candidate
        elif (root / pattern).is_file():
            return [root / pattern], candidate
    tried = ", ".join(_fill(c, task, lang) for c in candidates) or "(no local files for this split)"
    raise DataNotFoundError(
        _with_hint(
            f"{task.name} {split.value} [{lang}]: no file found under {root}; looked for: {tried}",
            task,
            split,
            lang,
        )
    )


def _combined(task: Task) -> list[Task]:
    from xstilts.tasks.registry import get_task  # the registry imports nothing from here

    return [get_task(name) for name in task.combines]


def fingerprint_split(task: Task, split: Split, lang: str, source: DataSource) -> str:
    """Identifies the exact data a split reads: the files' content hashes, or the hub coordinates."""
    if task.combines:
        return "+".join(fingerprint_split(t, split, lang, source) for t in _combined(task))
    if source.kind == "local":
        assert source.path is not None
        paths, _ = resolve_local_files(task, split, lang, source.path)
        return ",".join(f"sha256:{file_sha256(path)}" for path in paths)
    parts = [
        f"{h.dataset}/{h.config_for(lang, task.code(lang), task.language_name(lang))}/{h.split}"
        for h in _hub_sources(task, split, lang)
    ]
    return "hub:" + ",".join(parts)


def _hub_sources(task: Task, split: Split, lang: str) -> tuple[HubSource, ...]:
    """The split's hub parts; a split that is not on the hub is refused with where to get it,
    when planning (the fingerprint) as when loading."""
    _check_language(task, split, lang)
    if not task.splits[split].hub:
        raise DataNotFoundError(
            _with_hint(
                f"{task.name} {split.value} [{lang}]: not on the Hugging Face hub; use "
                "data.source 'local' with the files described in `xstilts tasks`",
                task,
                split,
                lang,
            )
        )
    return task.splits[split].hub


def _cap(examples: list[Any], max_examples: int | None) -> list[Any]:
    if max_examples is None:
        return examples
    if examples and isinstance(examples[0], RetrievalCorpus):
        return [_cap_corpus(c, max_examples) for c in examples]
    if len(examples) <= max_examples:
        return examples
    order = list(range(len(examples)))
    random.Random(CAP_SHUFFLE_SEED).shuffle(order)
    keep = sorted(order[:max_examples])
    return [examples[i] for i in keep]


def _cap_corpus(c: RetrievalCorpus, max_sentences: int) -> RetrievalCorpus:
    """At most ``max_sentences`` per side: gold pairs first (a fixed random subset of them), then
    a fixed random subset of the other sentences as distractors."""
    if len(c.source) <= max_sentences and len(c.target) <= max_sentences:
        return c
    rng = random.Random(CAP_SHUFFLE_SEED)
    gold = list(c.gold)
    rng.shuffle(gold)
    gold = gold[:max_sentences]

    def side(
        ids: tuple[str, ...], texts: tuple[str, ...], wanted: set[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        others = [i for i, x in enumerate(ids) if x not in wanted]
        rng.shuffle(others)
        keep = {i for i, x in enumerate(ids) if x in wanted}
        keep.update(others[: max(0, max_sentences - len(keep))])
        order = sorted(keep)
        return tuple(ids[i] for i in order), tuple(texts[i] for i in order)

    src_ids, src = side(c.source_ids, c.source, {s for s, _ in gold})
    tgt_ids, tgt = side(c.target_ids, c.target, {t for _, t in gold})
    return RetrievalCorpus(c.guid, src_ids, src, tgt_ids, tgt, tuple(gold))


def load_split(
    task: Task,
    split: Split,
    lang: str,
    source: DataSource,
    max_examples: int | None = None,
) -> list[Any]:
    """All examples of ``task``'s ``split`` in ``lang`` (capped to a fixed subset), in the type of
    the task's format (:mod:`xstilts.data.examples`)."""
    if task.combines:
        examples: list[Any] = []
        for part in _combined(task):
            examples.extend(load_split(part, split, lang, source))
        return _cap(examples, max_examples)
    if source.kind == "local":
        assert source.path is not None
        paths, candidate = resolve_local_files(task, split, lang, source.path)
        examples = []
        for path in paths:
            try:
                examples.extend(READERS[candidate.reader](path, task))
            except ValueError as e:
                raise DataContentError(f"{path}: {e}") from e
            log.debug("read %s", path)
    else:
        examples = []
        for hub in _hub_sources(task, split, lang):
            examples.extend(examples_from_hub(task, hub, load_hub_rows(hub, task, lang), lang))
    if not examples:
        raise DataNotFoundError(f"{task.name} {split.value} [{lang}]: {source.describe()} is empty")
    return _cap(examples, max_examples)
