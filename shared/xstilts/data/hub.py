"""Task splits from the Hugging Face hub: ``datasets`` rows -> the examples of the task's format.

Each format's rows are mapped once here, by the columns its :class:`~xstilts.tasks.base.HubSource`
names (multiple choice: by the dataset's ``layout``). ``datasets`` is an optional dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xstilts.data.examples import (
    ChoiceExample,
    Example,
    PairExample,
    QAExample,
    RetrievalCorpus,
    TaggingExample,
)
from xstilts.errors import DataNotFoundError, UnknownNameError
from xstilts.jsontypes import JSONObject
from xstilts.tasks.base import HubSource, Task, TaskFormat


def load_hub_rows(hub: HubSource, task: Task, lang: str) -> Any:
    """The rows of one hub split in ``lang`` (TyDiQA's mixed-language split filtered by id)."""
    try:
        import datasets  # optional dependency: pip install 'xstilts[hub]'
    except ImportError as e:
        raise DataNotFoundError(
            "data.source 'hub' needs the datasets package: pip install 'xstilts[hub]'"
        ) from e
    config = hub.config_for(lang, task.code(lang), task.language_name(lang))
    rows = datasets.load_dataset(hub.dataset, config, split=hub.split)
    if hub.id_prefix:  # TyDiQA's hub split mixes languages; ids start with the language's name
        prefix = hub.id_prefix.format(
            lang=lang, code=task.code(lang), name=task.language_name(lang)
        )
        rows = [r for r in rows if str(r["id"]).startswith(prefix)]
    return rows


def examples_from_hub(task: Task, hub: HubSource, rows: Any, lang: str) -> list[Example]:
    """Examples of ``task``'s format from the rows of a ``datasets`` split."""
    return _BY_FORMAT[task.format](task, hub, rows, lang)


def _pairs(task: Task, hub: HubSource, rows: Any, lang: str) -> list[Example]:
    out: list[Example] = []
    for i, row in enumerate(rows):
        label = int(row[hub.label])
        if label < 0:
            continue  # SNLI/GLUE rows without a gold label
        out.append(PairExample(f"{hub.split}-{lang}-{i}", row[hub.text_a], row[hub.text_b], label))
    return out


def _tagging(task: Task, hub: HubSource, rows: Any, lang: str) -> list[Example]:
    names = _class_names(rows, hub.label) or task.labels
    return [
        TaggingExample(
            f"{hub.split}-{lang}-{i}",
            tuple(row[hub.text_a]),
            tuple(t if isinstance(t, str) else names[t] for t in row[hub.label]),
        )
        for i, row in enumerate(rows)
    ]


def _class_names(rows: Any, column: str) -> tuple[str, ...]:
    """Tag names of a ``datasets`` Sequence(ClassLabel) column, if the rows carry features."""
    feature = getattr(getattr(rows, "features", None) or {}, "get", lambda _: None)(column)
    inner = getattr(feature, "feature", None)
    return tuple(getattr(inner, "names", ()) or ())


def _qa(task: Task, hub: HubSource, rows: Any, lang: str) -> list[Example]:
    out: list[Example] = []
    for row in rows:
        answers = row["answers"]
        out.append(
            QAExample(
                str(row["id"]),
                row["question"],
                row["context"],
                tuple(answers["text"]),
                tuple(int(s) for s in answers["answer_start"]),
                is_impossible=not answers["text"],
            )
        )
    return out


def _optional_label(row: JSONObject) -> int:
    return int(row["label"]) if str(row.get("label", "")).strip() else -1


def _hellaswag(guid: str, row: JSONObject) -> ChoiceExample:
    return ChoiceExample(
        guid, row["ctx_a"], row["ctx_b"], tuple(row["endings"]), _optional_label(row)
    )


def _commonsenseqa(guid: str, row: JSONObject) -> ChoiceExample:
    keys = list(row["choices"]["label"])
    key = row.get("answerKey") or ""
    label = keys.index(key) if key in keys else -1
    return ChoiceExample(guid, row["question"], "", tuple(row["choices"]["text"]), label)


def _cosmosqa(guid: str, row: JSONObject) -> ChoiceExample:
    choices = tuple(row[f"answer{k}"] for k in range(4))
    return ChoiceExample(guid, row["context"], row["question"], choices, _optional_label(row))


# Multiple-choice datasets name their columns differently: one mapping per HubSource.layout.
CHOICE_LAYOUTS: dict[str, Callable[[str, JSONObject], ChoiceExample]] = {
    "hellaswag": _hellaswag,
    "commonsenseqa": _commonsenseqa,
    "cosmosqa": _cosmosqa,
}


def _choice(task: Task, hub: HubSource, rows: Any, lang: str) -> list[Example]:
    if hub.layout not in CHOICE_LAYOUTS:
        raise UnknownNameError(f"{hub.dataset}: multiple-choice layout", hub.layout, CHOICE_LAYOUTS)
    convert = CHOICE_LAYOUTS[hub.layout]
    return [
        convert(str(row.get("id", row.get("ind", f"{hub.split}-{i}"))), row)
        for i, row in enumerate(rows)
    ]


def _retrieval(task: Task, hub: HubSource, rows: Any, lang: str) -> list[Example]:
    # The hub's XTREME configs hold aligned pairs only (for BUCC: just the gold pairs), so the
    # corpora are their two sides and line i of one side translates line i of the other.
    source = [r[hub.text_a] for r in rows]
    target = [r[hub.text_b] for r in rows]
    ids = tuple(str(i) for i in range(len(source)))
    return [
        RetrievalCorpus(
            f"{hub.dataset}/{hub.config_for(lang)}",
            ids,
            tuple(source),
            ids,
            tuple(target),
            tuple((i, i) for i in ids),
        )
    ]


_BY_FORMAT: dict[TaskFormat, Callable[[Task, HubSource, Any, str], list[Example]]] = {
    TaskFormat.PAIR_CLASSIFICATION: _pairs,
    TaskFormat.TOKEN_CLASSIFICATION: _tagging,
    TaskFormat.EXTRACTIVE_QA: _qa,
    TaskFormat.MULTIPLE_CHOICE: _choice,
    TaskFormat.RETRIEVAL: _retrieval,
}
