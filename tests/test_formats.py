"""The task formats on their own: featurise, decode and score, with hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from xstilts.data import DataSource, load_split
from xstilts.data.examples import ChoiceExample, TaggingExample
from xstilts.errors import DataNotFoundError, UnknownNameError
from xstilts.formats import get_format
from xstilts.formats.base import DecodeConfig, FeatureConfig, HeadOutputs
from xstilts.metrics import get_metric
from xstilts.modeling.batch import IGNORE
from xstilts.tasks import Split, get_task


@pytest.fixture(scope="module")
def tokenizer(offline_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(offline_model_dir)


def _one_hot_tag_outputs(features, num_labels: int) -> list[list[int]]:
    """What a perfect tagger outputs: each row's own targets (any tag where there is none)."""
    return [[t if t != IGNORE else 0 for t in row] for row in features.targets["tags"]]


def test_tagging_labels_first_subtoken_and_round_trips(data_dir: Path, tokenizer) -> None:
    task = get_task("panx")
    fmt = get_format(task.format.value)
    examples = load_split(task, Split.VALIDATION, "de", DataSource("local", data_dir), 200)
    f = fmt.featurize(tokenizer, examples, FeatureConfig(max_length=128), task.labels)
    # Every word has exactly one labelled position: its first sub-token.
    assert sum(sum(t != IGNORE for t in row) for row in f.targets["tags"]) == sum(
        len(e.words) for e in examples
    )
    first = f.extra["first_positions"][0]
    assert f.targets["tags"][0][first[0]] == task.labels.index(examples[0].tags[0])
    outputs = _one_hot_tag_outputs(f, len(task.labels))
    rows = fmt.decode(HeadOutputs(examples, f, outputs, task.labels), DecodeConfig())
    assert [r["prediction"] for r in rows] == [list(e.tags) for e in examples]
    scores = get_metric(task.metric).score(task, "de", rows, bootstrap_samples=50)
    assert [(s.metric, s.value, s.n) for s in scores] == [
        ("f1", 1.0, 200),
        ("precision", 1.0, 200),
        ("recall", 1.0, 200),
    ]


def test_tagging_long_sentence_is_split_and_every_word_predicted(tokenizer) -> None:
    task = get_task("udpos")
    fmt = get_format(task.format.value)
    words = tuple(f"Wort{i}" for i in range(60))
    tags = tuple(task.labels[i % len(task.labels)] for i in range(60))
    ex = [TaggingExample("long", words, tags)]
    f = fmt.featurize(tokenizer, ex, FeatureConfig(max_length=24), task.labels)
    assert len(f) > 3 and all(len(r) <= 24 for r in f.input_ids)
    assert list(f.example_index) == [0] * len(f)
    outputs = _one_hot_tag_outputs(f, len(task.labels))
    rows = fmt.decode(HeadOutputs(ex, f, outputs, task.labels), DecodeConfig())
    assert tuple(rows[0]["prediction"]) == tags


def test_tagging_f1_hand_computed() -> None:
    task = get_task("panx")
    rows = [
        # gold: PER(0-1), LOC(3); predicted: PER(0-1) correct, LOC missed, ORG(2) spurious
        {
            "id": "0",
            "label": ["B-PER", "I-PER", "O", "B-LOC"],
            "prediction": ["B-PER", "I-PER", "B-ORG", "O"],
        },
        # gold ORG(0); predicted ORG(0) correct, LOC(1) spurious
        {"id": "1", "label": ["B-ORG", "O"], "prediction": ["B-ORG", "B-LOC"]},
    ]
    f1, precision, recall = get_metric(task.metric).score(task, "en", rows, bootstrap_samples=200)
    # tp 2, predicted 4, gold 3: P = 1/2, R = 2/3, F1 = 2 tp / (4 + 3) = 4/7
    assert (f1.metric, precision.metric, recall.metric) == ("f1", "precision", "recall")
    assert precision.value == pytest.approx(1 / 2) and recall.value == pytest.approx(2 / 3)
    assert f1.value == pytest.approx(4 / 7)
    for score in (f1, precision, recall):
        assert score.ci_low is not None and score.ci_low <= score.value <= score.ci_high


def test_ccg_learns_its_open_tag_set() -> None:
    task = get_task("ccg")
    fmt = get_format(task.format.value)
    ex = [TaggingExample("a", ("I", "run"), ("NP", "S\\NP")), TaggingExample("b", ("x",), ("N",))]
    assert fmt.labels(task, ex) == ("N", "NP", "S\\NP")


def test_multiple_choice_batches_choices_together(data_dir: Path, tokenizer) -> None:
    task = get_task("cosmosqa")
    fmt = get_format(task.format.value)
    examples = load_split(task, Split.VALIDATION, "en", DataSource("local", data_dir), 6)
    labels = fmt.labels(task, examples)
    assert labels == ("A", "B", "C", "D")
    f = fmt.featurize(tokenizer, examples, FeatureConfig(max_length=64), labels)
    batch = fmt.collate(f, np.arange(3), tokenizer.pad_token_id)
    assert batch.input_ids.shape[0] == 3 * 4 and batch.num_choices == 4
    assert batch.input_ids.shape[1] <= 64
    logits = torch.zeros(3, 4)
    logits[torch.arange(3), batch.labels] = 5.0
    assert fmt.loss(logits, batch) < 0.1
    rows = fmt.decode(
        HeadOutputs(examples[:3], f, fmt.outputs(logits, batch), labels), DecodeConfig()
    )
    assert [r["prediction"] for r in rows] == [r["label"] for r in rows]
    (acc,) = get_metric(task.metric).score(task, "en", rows, 0)
    assert acc.value == 1.0


def test_choice_examples_with_different_choice_counts_cannot_share_a_batch(tokenizer) -> None:
    fmt = get_format("multiple_choice")
    ex = [ChoiceExample("a", "c", "q", ("x", "y"), 0), ChoiceExample("b", "c", "q", ("x",), 0)]
    f = fmt.featurize(tokenizer, ex, FeatureConfig(), ("A", "B"))
    with pytest.raises(ValueError, match="different numbers of choices"):
        fmt.collate(f, np.arange(2), tokenizer.pad_token_id)


def test_qa_scores_hand_computed_and_mlqa_normalisation() -> None:
    xquad, mlqa = get_task("xquad"), get_task("mlqa")
    rows = [
        {"id": "1", "prediction": "the Eiffel Tower", "label": ["Eiffel Tower"]},  # EM 1 F1 1
        {"id": "2", "prediction": "in Paris France", "label": ["Paris"]},  # EM 0, F1 2*1/3*1/(4/3)
        {"id": "3", "prediction": "", "label": ["x"]},  # 0, 0
    ]
    f1, em = get_metric(xquad.metric).score(xquad, "en", rows, 0)
    assert em.value == pytest.approx(1 / 3)
    assert f1.value == pytest.approx((1 + 0.5 + 0) / 3)
    # MLQA's Chinese normalisation is character-level: 2 of 3 characters overlap.
    zh = [{"id": "1", "prediction": "北京市", "label": ["北京"]}]
    f1, em = get_metric(mlqa.metric).score(mlqa, "zh", zh, 0)
    assert em.value == 0.0 and f1.value == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_qa_refuses_to_score_blank_gold(data_dir: Path, tmp_path: Path) -> None:
    # XTREME's preprocessing blanks every dev answer to {"text": "", "answer_start": 0}; such a file
    # must be refused for scoring, not scored as 0.
    blank = _blanked_copy(data_dir / "tydiqa" / "tydiqa.goldp.ko.dev.json", tmp_path, limit=5)
    task = get_task("tydiqa")
    examples = load_split(task, Split.VALIDATION, "ko", DataSource("local", blank), 5)
    assert len(examples) == 5 and all(e.answers == () for e in examples)
    rows = [{"id": e.guid, "prediction": "x", "label": list(e.answers)} for e in examples]
    with pytest.raises(ValueError, match="none of the 5 questions has a gold answer"):
        get_metric(task.metric).score(task, "ko", rows, 0)


def _blanked_copy(path: Path, root: Path, limit: int) -> Path:
    """A data folder whose ``tydiqa/`` file is the first ``limit`` questions of ``path`` with every
    answer blanked the way XTREME's ``remove_qa_test_annotations`` does."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data["data"] = data["data"][:limit]
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["answers"] = [{"answer_start": 0, "text": ""}]
    (root / "tydiqa").mkdir(parents=True)
    (root / "tydiqa" / path.name).write_text(json.dumps(data), encoding="utf-8")
    return root


def test_tydiqa_dev_now_carries_gold(data_dir: Path) -> None:
    task = get_task("tydiqa")
    examples = load_split(task, Split.VALIDATION, "ko", DataSource("local", data_dir))
    assert len(examples) == 276 and all(e.answers for e in examples)
    rows = [{"id": e.guid, "prediction": e.answers[0], "label": list(e.answers)} for e in examples]
    scores = {s.metric: s.value for s in get_metric(task.metric).score(task, "ko", rows, 0)}
    assert scores["f1"] == 1.0 and scores["exact_match"] == 1.0


def test_bucc_and_tatoeba_scores() -> None:
    fmt = get_format("retrieval")
    bucc2018, tatoeba_task = get_task("bucc2018"), get_task("tatoeba")
    bucc = [
        {"id": "z1\te1", "prediction": True, "label": True, "threshold": 1.1},
        {"id": "z2\te9", "prediction": True, "label": False, "threshold": 1.1},
        {"id": "z3\te3", "prediction": False, "label": True, "threshold": 1.1},
    ]
    scores = {s.metric: s.value for s in get_metric(bucc2018.metric).score(bucc2018, "zh", bucc, 0)}
    assert scores == {"f1": 0.5, "precision": 0.5, "recall": 0.5, "threshold": 1.1}
    ext, text = fmt.export(bucc)
    assert (ext, text) == (".tsv", "z1\te1\nz2\te9\n")
    assert fmt.export(bucc, gold=True)[1] == "z1\te1\nz3\te3\n"
    tatoeba = [{"id": str(i), "prediction": p, "label": i} for i, p in enumerate([0, 1, 5, 3])]
    (acc,) = get_metric(tatoeba_task.metric).score(tatoeba_task, "de", tatoeba, 0)
    assert acc.value == 0.75


def test_language_codes_and_treebanks_are_mapped(data_dir: Path) -> None:
    src = DataSource("local", data_dir)
    (corpus,) = load_split(get_task("tatoeba"), Split.TEST, "de", src)  # tatoeba.deu-eng.*
    assert len(corpus.source) == 1000 and corpus.gold[0] == ("0", "0")
    assert (
        corpus.target[0]
        == (data_dir / "tatoeba/tatoeba.deu-eng.eng").read_text(encoding="utf-8").splitlines()[0]
    )
    de = load_split(get_task("udpos"), Split.TEST, "de", src)  # ud/UD_German-GSD/de_gsd-...
    assert len(de) == 977
    with pytest.raises(UnknownNameError, match="valid values: .*deu|valid values: .*de"):
        load_split(get_task("tatoeba"), Split.TEST, "deu", src)


def test_missing_local_files_and_hub_only_tasks_explain_themselves(data_dir: Path) -> None:
    src = DataSource("local", data_dir)
    with pytest.raises(DataNotFoundError, match="anli train"):
        load_split(get_task("anli_plus"), Split.TRAIN, "en", src)
    with pytest.raises(DataNotFoundError, match="ccg/train.tsv"):
        load_split(get_task("ccg"), Split.TRAIN, "en", src)
    with pytest.raises(DataNotFoundError, match="not on the Hugging Face hub"):
        load_split(get_task("ccg"), Split.TRAIN, "en", DataSource("hub"))


def test_retrieval_corpus_cap_keeps_gold_pairs(data_dir: Path) -> None:
    (c,) = load_split(
        get_task("bucc2018"), Split.VALIDATION, "zh", DataSource("local", data_dir), 100
    )
    assert len(c.source) == 100 and len(c.target) == 100 and len(c.gold) == 100
    src, tgt = set(c.source_ids), set(c.target_ids)
    assert all(s in src and t in tgt for s, t in c.gold)


def test_tagging_drops_the_bare_word_boundary_piece(tokenizer) -> None:
    """CJK words come out of sentencepiece as a lone "▁" then the word; the word is labelled."""
    task = get_task("udpos")
    fmt = get_format(task.format.value)
    ex = [TaggingExample("zh", ("自從", "2004", "年"), ("ADP", "NUM", "NOUN"))]
    f = fmt.featurize(tokenizer, ex, FeatureConfig(max_length=32), task.labels)
    tokens = tokenizer.convert_ids_to_tokens(f.input_ids[0])
    assert "\u2581" not in tokens  # every lone boundary piece here preceded a real piece
    labelled = [tokens[p] for p in f.extra["first_positions"][0]]
    assert labelled == ["自從", "\u25812004", "年"]
