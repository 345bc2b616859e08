"""Hub rows (as ``datasets`` yields them) become the same examples as the local files.

Nothing downloads here: the rows are written out as the hub's dataset cards describe them, and
``_load_hub`` is exercised with a stand-in ``datasets`` module that records what was asked for.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from xstilts.data import DataSource, load_split
from xstilts.data.examples import ChoiceExample, QAExample, TaggingExample
from xstilts.data.hub import examples_from_hub
from xstilts.tasks import Split, get_task


class _Rows(list):
    """A list of row dicts with ``features`` like a ``datasets.Dataset``."""

    def __init__(self, rows: list[dict[str, Any]], features: dict[str, Any] | None = None) -> None:
        super().__init__(rows)
        self.features = features or {}


def _class_label_sequence(names: list[str]) -> Any:
    return types.SimpleNamespace(feature=types.SimpleNamespace(names=names))


def test_tagging_rows_map_class_ids_through_the_feature_names() -> None:
    task = get_task("panx")
    hub = task.splits[Split.VALIDATION].hub[0]
    # The hub's PAN-X names are in its own order, not ours: ids must go through the names.
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"][::-1]
    rows = _Rows(
        [{"tokens": ["Anton", "Wilhelm", "."], "ner_tags": [5, 4, 6]}],
        {"ner_tags": _class_label_sequence(names)},
    )
    (ex,) = examples_from_hub(task, hub, rows, "de")
    assert ex == TaggingExample(
        "validation-de-0", ("Anton", "Wilhelm", "."), ("B-PER", "I-PER", "O")
    )


def test_qa_rows() -> None:
    task = get_task("xquad")
    hub = task.splits[Split.VALIDATION].hub[0]
    rows = [
        {
            "id": "q1",
            "context": "Paris is in France.",
            "question": "Where is Paris?",
            "answers": {"text": ["France"], "answer_start": [12]},
        },
        {"id": "q2", "context": "x", "question": "y", "answers": {"text": [], "answer_start": []}},
    ]
    a, b = examples_from_hub(task, hub, rows, "de")
    assert a == QAExample("q1", "Where is Paris?", "Paris is in France.", ("France",), (12,))
    assert b.is_impossible and b.answers == ()


@pytest.mark.parametrize(
    ("task_name", "row", "expected"),
    [
        (
            "hellaswag",
            {
                "ind": 7,
                "ctx_a": "A man",
                "ctx_b": "then he",
                "endings": ["a", "b", "c", "d"],
                "label": "2",
            },
            ChoiceExample("7", "A man", "then he", ("a", "b", "c", "d"), 2),
        ),
        (
            "commonsenseqa",
            {
                "id": "c1",
                "question": "Where?",
                "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["v", "w", "x", "y", "z"]},
                "answerKey": "D",
            },
            ChoiceExample("c1", "Where?", "", ("v", "w", "x", "y", "z"), 3),
        ),
        (
            "cosmosqa",
            {
                "id": "k",
                "context": "ctx",
                "question": "Why?",
                "answer0": "a",
                "answer1": "b",
                "answer2": "c",
                "answer3": "d",
                "label": 1,
            },
            ChoiceExample("k", "ctx", "Why?", ("a", "b", "c", "d"), 1),
        ),
    ],
)
def test_multiple_choice_rows(task_name: str, row: dict[str, Any], expected: ChoiceExample) -> None:
    task = get_task(task_name)
    hub = task.splits[Split.TRAIN].hub[0]
    assert examples_from_hub(task, hub, [row], "en") == [expected]


def test_load_split_from_the_hub_fills_configs_and_filters_tydiqa_by_language(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str | None, str]] = []

    def load_dataset(name: str, config: str | None, split: str) -> Any:
        asked.append((name, config, split))
        if name == "google/xtreme" and config == "tydiqa":
            return [
                {
                    "id": f"{lang}-{i}",
                    "context": "ab",
                    "question": "q",
                    "answers": {"text": ["a"], "answer_start": [0]},
                }
                for i, lang in enumerate(["arabic", "korean", "arabic"])
            ]
        return [{"source_sentence": "Hallo", "target_sentence": "Hello"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    ar = load_split(get_task("tydiqa"), Split.VALIDATION, "ar", DataSource("hub"))
    assert [e.guid for e in ar] == ["arabic-0", "arabic-2"]
    (corpus,) = load_split(get_task("tatoeba"), Split.TEST, "de", DataSource("hub"))
    assert corpus.source == ("Hallo",) and corpus.gold == (("0", "0"),)
    assert asked == [
        ("google/xtreme", "tydiqa", "validation"),
        ("google/xtreme", "tatoeba.deu", "validation"),  # ISO 639-3 in the config name
    ]
