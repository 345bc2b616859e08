"""MNLI's and SQuAD's machine-translated train splits (XTREME's translate-train), read from files in
the layouts XTREME releases, and facebook/xnli's rows. Nothing here touches the network."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
from xstilts.data import DataSource, fingerprint_split, load_split
from xstilts.data.examples import PairExample, QAExample
from xstilts.data.hub import examples_from_hub
from xstilts.errors import DataContentError, DataNotFoundError, UnknownNameError
from xstilts.tasks import Split, get_task

XNLI_NON_ENGLISH = (
    "fr",
    "es",
    "de",
    "el",
    "bg",
    "ru",
    "tr",
    "ar",
    "vi",
    "th",
    "zh",
    "hi",
    "sw",
    "ur",
)
SQUAD_TRANSLATED = ("ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh")

# XTREME's released layout: English premise, English hypothesis, translation of each, label.
FIVE_COLUMNS = (
    "The cat sat .\tA cat is sitting .\tDie Katze saß.\tEine Katze sitzt.\tentailment\n"
    "\n"  # a blank line is skipped, and the line index still counts it
    'He said "no" .\tHe agreed .\tEr sagte "nein".\tEr stimmte zu.\tcontradictory\n'
    "It rained .\tThe game was cancelled .\tEs regnete.\tDas Spiel fiel aus.\tneutral\r\n"
)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def test_the_splits_languages_and_what_else_stays() -> None:
    mnli, squad = get_task("mnli"), get_task("squad")
    assert mnli.split_languages(Split.TRANSLATE_TRAIN) == XNLI_NON_ENGLISH
    assert squad.split_languages(Split.TRANSLATE_TRAIN) == SQUAD_TRANSLATED
    assert [s.value for s in mnli.splits] == ["train", "validation", "translate_train"]
    assert mnli.describe()["splits"] == ["train", "validation", "translate_train"]
    assert (mnli.version, squad.version) == (1, 1)
    # English train stays English; SQuAD v2.0 gains no translations.
    assert mnli.split_languages(Split.TRAIN) == ("en",)
    assert Split.TRANSLATE_TRAIN not in get_task("squad_v2").splits


def test_five_column_tsv_keeps_the_translation_and_maps_contradictory(tmp_path: Path) -> None:
    _write(tmp_path / "XNLI" / "translate-train" / "en-de-translated.tsv", FIVE_COLUMNS)
    examples = load_split(
        get_task("mnli"), Split.TRANSLATE_TRAIN, "de", DataSource("local", tmp_path), 10
    )
    assert examples == [
        PairExample("en-de-translated-0", "Die Katze saß.", "Eine Katze sitzt.", 0),
        PairExample("en-de-translated-2", 'Er sagte "nein".', "Er stimmte zu.", 2),
        PairExample("en-de-translated-3", "Es regnete.", "Das Spiel fiel aus.", 1),
    ]


def test_three_column_tsv_from_the_second_folder(tmp_path: Path) -> None:
    """XTREME's processor layout (premise, hypothesis, label), found under mnli/translate-train."""
    _write(
        tmp_path / "mnli" / "translate-train" / "en-fr-translated.tsv",
        "Le chat dort.\tUn animal dort.\tentailment \nIl pleut.\tIl fait beau.\tcontradictory\n",
    )
    src = DataSource("local", tmp_path)
    examples = load_split(get_task("mnli"), Split.TRANSLATE_TRAIN, "fr", src)
    assert examples == [
        PairExample("en-fr-translated-0", "Le chat dort.", "Un animal dort.", 0),
        PairExample("en-fr-translated-1", "Il pleut.", "Il fait beau.", 2),
    ]


def test_the_first_candidate_wins_and_the_fingerprint_is_its_content(tmp_path: Path) -> None:
    first = _write(tmp_path / "XNLI" / "translate-train" / "en-de-translated.tsv", FIVE_COLUMNS)
    _write(tmp_path / "mnli" / "translate-train" / "en-de-translated.tsv", "a\tb\tneutral\n")
    src = DataSource("local", tmp_path)
    task = get_task("mnli")
    assert len(load_split(task, Split.TRANSLATE_TRAIN, "de", src)) == 3
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert fingerprint_split(task, Split.TRANSLATE_TRAIN, "de", src) == f"sha256:{digest}"


def test_a_bad_column_count_names_the_line_and_the_counts_accepted(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "XNLI" / "translate-train" / "en-es-translated.tsv",
        "a\tb\tc\td\tneutral\na\tb\tc\tneutral\n",
    )
    with pytest.raises(DataContentError) as error:
        load_split(get_task("mnli"), Split.TRANSLATE_TRAIN, "es", DataSource("local", tmp_path))
    message = str(error.value)
    assert f"{path}:2: expected 5 tab-separated fields" in message
    assert "or 3 (premise, hypothesis, label), got 4" in message


def test_an_unknown_label_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "XNLI" / "translate-train" / "en-es-translated.tsv", "a\tb\tmaybe\n")
    with pytest.raises(DataContentError, match="label 'maybe' is not one of entailment"):
        load_split(get_task("mnli"), Split.TRANSLATE_TRAIN, "es", DataSource("local", tmp_path))


def test_missing_files_are_named_with_where_to_get_them(tmp_path: Path) -> None:
    src = DataSource("local", tmp_path)
    with pytest.raises(DataNotFoundError) as error:
        load_split(get_task("mnli"), Split.TRANSLATE_TRAIN, "sw", src)
    assert str(error.value) == (
        f"mnli translate_train [sw]: no file found under {tmp_path}; looked for: "
        "XNLI/translate-train/en-sw-translated.tsv, mnli/translate-train/en-sw-translated.tsv. "
        "XTREME's translation of MNLI's train set is https://storage.googleapis.com/"
        "xtreme_translations/XNLI/translate-train/en-sw-translated.tsv: put it in "
        "<data>/XNLI/translate-train/ (data.source 'hub' reads facebook/xnli's train split "
        "instead, which is XNLI-MT 1.0's translation, not XTREME's)."
    )
    with pytest.raises(DataNotFoundError) as error:
        fingerprint_split(get_task("squad"), Split.TRANSLATE_TRAIN, "th", src)
    assert str(error.value) == (
        f"squad translate_train [th]: no file found under {tmp_path}; looked for: "
        "SQuAD/translate-train/squad.translate.train.en-th.json, "
        "squad/translate-train/squad.translate.train.en-th.json. "
        "XTREME's translation of SQuAD v1.1's train set is https://storage.googleapis.com/"
        "xtreme_translations/SQuAD/translate-train/squad.translate.train.en-th.json: put it in "
        "<data>/SQuAD/translate-train/ (it is not on the Hugging Face hub)."
    )


def test_squad_translations_are_not_on_the_hub_and_say_where_they_are() -> None:
    for refuse in (load_split, fingerprint_split):
        with pytest.raises(DataNotFoundError) as error:
            refuse(get_task("squad"), Split.TRANSLATE_TRAIN, "de", DataSource("hub"))
        message = str(error.value)
        assert message.startswith("squad translate_train [de]: not on the Hugging Face hub")
        assert message.endswith(
            "/SQuAD/translate-train/squad.translate.train.en-de.json: put it in "
            "<data>/SQuAD/translate-train/ (it is not on the Hugging Face hub)."
        )


def test_unknown_language_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError) as error:
        load_split(get_task("mnli"), Split.TRANSLATE_TRAIN, "en", DataSource("local", tmp_path))
    assert error.value.valid == sorted(XNLI_NON_ENGLISH)
    assert "mnli translate_train language: unknown value 'en'" in str(error.value)
    with pytest.raises(UnknownNameError, match=re.escape(", ".join(SQUAD_TRANSLATED))):
        load_split(get_task("squad"), Split.TRANSLATE_TRAIN, "fr", DataSource("hub"))
    with pytest.raises(UnknownNameError, match="valid values: train, validation"):
        load_split(get_task("snli"), Split.TRANSLATE_TRAIN, "de", DataSource("hub"))


CONTEXT = "Berlin ist die Hauptstadt. Die Hauptstadt hat 3,6 Millionen Einwohner."


def _squad_doc() -> dict[str, object]:
    qas = [
        # In place: kept as is.
        {
            "id": "q-ok",
            "question": "Was ist Berlin?",
            "answers": [{"text": "die Hauptstadt", "answer_start": 11}],
        },
        # The translation moved the answer: found at 46 (the occurrence nearest 40).
        {
            "id": "q-moved",
            "question": "Wie viele?",
            "answers": [{"text": "3,6 Millionen", "answer_start": 40}],
        },
        # The offset is past the end; the text (spaces stripped) is at 15 and 31, nearer 31.
        {
            "id": "q-past",
            "question": "Welche?",
            "answers": [{"text": " Hauptstadt ", "answer_start": 500}],
        },
        # The translated answer is not in the translated context: the question is dropped.
        {
            "id": "q-lost",
            "question": "Wer?",
            "answers": [{"text": "der Kanzler", "answer_start": 0}],
        },
    ]
    return {
        "version": "1.1",
        "data": [{"title": "Berlin", "paragraphs": [{"context": CONTEXT, "qas": qas}]}],
    }


def test_translated_squad_answers_are_realigned_or_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "SQuAD" / "translate-train" / "squad.translate.train.en-de.json"
    _write(path, json.dumps(_squad_doc(), ensure_ascii=False))
    task, src = get_task("squad"), DataSource("local", tmp_path)
    with caplog.at_level(logging.INFO, logger="xstilts.data.readers"):
        examples = load_split(task, Split.TRANSLATE_TRAIN, "de", src)
    assert examples == [
        QAExample("q-ok", "Was ist Berlin?", CONTEXT, ("die Hauptstadt",), (11,)),
        QAExample("q-moved", "Wie viele?", CONTEXT, ("3,6 Millionen",), (46,)),
        QAExample("q-past", "Welche?", CONTEXT, ("Hauptstadt",), (31,)),
    ]
    for e in examples:  # what the featuriser trains on is the answer's text
        assert e.context[e.answer_starts[0] :].startswith(e.answers[0])
    (record,) = [r for r in caplog.records if r.name == "xstilts.data.readers"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"{path}: 1 of 4 questions dropped (answer text not in the translated context); "
        "2 answers moved to where their text is"
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert fingerprint_split(task, Split.TRANSLATE_TRAIN, "de", src) == f"sha256:{digest}"
    assert len(load_split(task, Split.TRANSLATE_TRAIN, "de", src, max_examples=2)) == 2


def test_english_squad_files_still_refuse_an_offset_outside_the_context(tmp_path: Path) -> None:
    """Only the translated reader realigns: an English file with a bad offset is a broken file."""
    _write(tmp_path / "squad" / "train-v1.1.json", json.dumps(_squad_doc()))
    with pytest.raises(DataContentError, match=r"answers\[0\]: answer_start 500 outside"):
        load_split(get_task("squad"), Split.TRAIN, "en", DataSource("local", tmp_path))


def test_facebook_xnli_rows_map_to_pairs() -> None:
    task = get_task("mnli")
    (hub,) = task.splits[Split.TRANSLATE_TRAIN].hub
    assert (hub.dataset, hub.config_for("de"), hub.split) == ("facebook/xnli", "de", "train")
    rows = [
        {"premise": "Die Katze saß.", "hypothesis": "Eine Katze sitzt.", "label": 0},
        {"premise": "Es regnete.", "hypothesis": "Es war trocken.", "label": 2},
        {"premise": "Er kam.", "hypothesis": "Er kam spät.", "label": 1},
    ]
    assert examples_from_hub(task, hub, rows, "de") == [
        PairExample("train-de-0", "Die Katze saß.", "Eine Katze sitzt.", 0),
        PairExample("train-de-1", "Es regnete.", "Es war trocken.", 2),
        PairExample("train-de-2", "Er kam.", "Er kam spät.", 1),
    ]
    fp = fingerprint_split(task, Split.TRANSLATE_TRAIN, "de", DataSource("hub"))
    assert fp == "hub:facebook/xnli/de/train"
