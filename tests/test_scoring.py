"""`xstilts score`: XTREME's submission layout, scored per task and language, on real label files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from xstilts.cli.main import main
from xstilts.experiments.submissions import TASKS, score_folder, score_language
from xstilts.formats.qa import read_squad_answers
from xstilts.formats.tagging import read_tags


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "pred", tmp_path / "gold"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_classification_accuracy(data_dir: Path, folders: tuple[Path, Path]) -> None:
    pred_dir, gold_dir = folders
    gold = [line.split("\t")[2] for line in (data_dir / "xnli/dev-de.tsv").read_text().splitlines()]
    wrong = {"entailment": "neutral", "neutral": "contradiction", "contradiction": "entailment"}
    pred = [wrong[y] if i < 249 else y for i, y in enumerate(gold)]  # 249 of 2490 wrong: 90%
    _write(gold_dir / "xnli/test-de.tsv", "\n".join(gold) + "\n")
    _write(pred_dir / "xnli/test-de.tsv", "\n".join(pred) + "\n")
    out = score_folder(pred_dir, gold_dir)
    assert out["xnli"]["languages"]["de"]["accuracy"] == pytest.approx(90.0)
    assert out["xnli"]["score"] == pytest.approx(90.0)


def test_tagging_f1_on_real_panx(data_dir: Path, folders: tuple[Path, Path]) -> None:
    pred_dir, gold_dir = folders
    (gold_dir / "panx").mkdir(parents=True)
    shutil.copy(data_dir / "panx/dev-de.tsv", gold_dir / "panx/test-de.tsv")  # token<TAB>tag
    sentences = read_tags(gold_dir / "panx/test-de.tsv")
    assert sentences[0][:5] == ["B-PER", "I-PER", "I-PER", "I-PER", "O"]
    tags_only = "\n\n".join("\n".join(s) for s in sentences) + "\n"
    _write(pred_dir / "panx/test-de.tsv", tags_only)
    _write(
        pred_dir / "panx/test-fr.tsv",
        "\n\n".join("\n".join("O" for _ in s) for s in sentences) + "\n",
    )
    (gold_dir / "panx/test-fr.tsv").write_bytes((gold_dir / "panx/test-de.tsv").read_bytes())
    out = score_folder(pred_dir, gold_dir)["panx"]
    # XTREME's evaluator reports F1, precision and recall (seqeval 0.0.12), in that order.
    assert out["languages"]["de"] == {"f1": 100.0, "precision": 100.0, "recall": 100.0}
    # No entity predicted: recall 0, and precision 0 (seqeval's value for an empty denominator).
    assert out["languages"]["fr"] == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert out["average"] == {"f1": 50.0, "precision": 50.0, "recall": 50.0}
    assert out["score"] == 50.0


def test_udpos_scores_as_seqeval_0_0_12(folders: tuple[Path, Path]) -> None:
    """SCONJ for CCONJ is an error (seqeval >= 0.0.16 would count it right); runs of a tag are one
    chunk. `xstilts score` reports what XTREME's evaluator does: no token accuracy."""
    pred_dir, gold_dir = folders
    gold = [["PRON", "VERB", "CCONJ", "VERB"], ["DET", "NOUN", "NOUN"]]
    pred = [["PRON", "VERB", "SCONJ", "VERB"], ["DET", "NOUN", "VERB"]]
    for folder, sentences in ((gold_dir, gold), (pred_dir, pred)):
        _write(folder / "udpos/test-en.tsv", "\n\n".join("\n".join(s) for s in sentences) + "\n")
    out = score_folder(pred_dir, gold_dir)["udpos"]["languages"]["en"]
    # gold chunks: PRON VERB CCONJ VERB | DET NOUN(1-2): 6; pred: PRON VERB SCONJ VERB | DET NOUN VERB:
    # 7; right: PRON, VERB, VERB, DET: 4. P = 4/7, R = 4/6, F1 = 8/13.
    assert out == pytest.approx({"f1": 800 / 13, "precision": 400 / 7, "recall": 400 / 6})


def test_qa_em_f1_and_task_score(data_dir: Path, folders: tuple[Path, Path]) -> None:
    pred_dir, gold_dir = folders
    (gold_dir / "xquad").mkdir(parents=True)
    shutil.copy(data_dir / "xquad/xquad.de.json", gold_dir / "xquad/test-de.json")
    golds = read_squad_answers(gold_dir / "xquad/test-de.json")
    assert len(golds) == 1190  # XQuAD: 1190 questions per language
    ids = sorted(golds)
    half = {qid: golds[qid][0] for qid in ids[:595]}  # right answers for half, nothing for the rest
    _write(pred_dir / "xquad/test-de.json", json.dumps(half))
    out = score_folder(pred_dir, gold_dir)["xquad"]
    assert out["languages"]["de"] == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(50.0)}
    assert out["score"] == pytest.approx(50.0)


def test_mlqa_uses_per_language_normalisation(
    data_dir: Path, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    pred_dir, gold_dir = folders
    (gold_dir / "mlqa").mkdir(parents=True)
    shutil.copy(data_dir / "mlqa/dev-context-zh-question-zh.json", gold_dir / "mlqa/test-zh.json")
    golds = read_squad_answers(gold_dir / "mlqa/test-zh.json")
    qid = sorted(golds)[0]
    answer = golds[qid][0]
    # Each prediction is the gold answer plus one extra CJK character: never exact, but the
    # character-level F1 is 2n / (2n + 1) for an answer of n CJK characters.
    preds = {q: a[0] + "的" for q, a in golds.items()}
    _write(pred_dir / "mlqa/test-zh.json", json.dumps(preds, ensure_ascii=False))
    out = score_folder(pred_dir, gold_dir)["mlqa"]["languages"]["zh"]
    assert out["exact_match"] < 5.0  # only answers that already end in 的 could match
    from xstilts.metrics import mlqa as mlqa_metric

    n = len(mlqa_metric.normalize_answer(answer, "zh").split())
    pred_one, gold_one = tmp_path / "p.json", tmp_path / "g.json"
    _write(pred_one, json.dumps({qid: preds[qid]}, ensure_ascii=False))
    squad_doc = {"data": [{"paragraphs": [{"qas": [{"id": qid, "answers": [{"text": answer}]}]}]}]}
    _write(gold_one, json.dumps(squad_doc, ensure_ascii=False))
    one = score_language(TASKS["mlqa"], "zh", pred_one, gold_one)
    assert one["f1"] == pytest.approx(100 * 2 * n / (2 * n + 1))
    assert 50.0 < out["f1"] < 100.0


def test_bucc_and_tatoeba(data_dir: Path, folders: tuple[Path, Path]) -> None:
    pred_dir, gold_dir = folders
    gold_pairs = (data_dir / "bucc2018/zh-en.dev.gold").read_text().splitlines()
    assert len(gold_pairs) == 257
    predicted = gold_pairs[:200] + ["zh-999999999\ten-999999999"] * 1  # 200 right, 1 wrong
    _write(gold_dir / "bucc2018/test-zh.tsv", "\n".join(gold_pairs) + "\n")
    _write(pred_dir / "bucc2018/test-zh.tsv", "\n".join(predicted) + "\n")
    _write(gold_dir / "tatoeba/test-de.tsv", "\n".join(str(i) for i in range(10)) + "\n")
    _write(
        pred_dir / "tatoeba/test-de.tsv",
        "\n".join(str(i if i < 7 else 0) for i in range(10)) + "\n",
    )
    out = score_folder(pred_dir, gold_dir)
    p, r = 200 / 201, 200 / 257
    assert out["bucc2018"]["languages"]["zh"]["f1"] == pytest.approx(100 * 2 * p * r / (p + r))
    assert out["tatoeba"]["languages"]["de"]["accuracy"] == pytest.approx(70.0)


def test_cli_score_errors_and_json(folders: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    pred_dir, gold_dir = folders
    _write(pred_dir / "xnli/test-de.tsv", "neutral\nentailment\n")
    assert main(["score", "--predictions", str(pred_dir), "--labels", str(gold_dir)]) == 2
    assert "no labels for" in capsys.readouterr().err
    _write(gold_dir / "xnli/test-de.tsv", "neutral\nneutral\nneutral\n")
    assert main(["score", "--predictions", str(pred_dir), "--labels", str(gold_dir)]) == 2
    assert "2 entries" in capsys.readouterr().err  # lengths differ: an error, not a silent score
    _write(gold_dir / "xnli/test-de.tsv", "neutral\nneutral\n")
    out = tmp_path / "s.json"
    assert (
        main(
            ["score", "--predictions", str(pred_dir), "--labels", str(gold_dir), "--json", str(out)]
        )
        == 0
    )
    assert json.loads(out.read_text())["xnli"]["languages"]["de"]["accuracy"] == 50.0
    _write(pred_dir / "nonsense/test-de.tsv", "x\n")
    assert main(["score", "--predictions", str(pred_dir), "--labels", str(gold_dir)]) == 2
    assert "valid values" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("file", "pred", "gold", "says"),
    [
        ("xnli/test-de.tsv", "neutral\n", "bogusgold\n", "label 'bogusgold' is not one of"),
        ("pawsx/test-de.tsv", "1\n", "7\n", "label '7' is not one of 0, 1"),
        ("panx/test-de.tsv", "O\n", "X-FOO\n", "label 'X-FOO' is not one of O, B-PER"),
        # Predictions too: label ids for names would score 0 in silence.
        ("xnli/test-de.tsv", "neutral\n2\n", "neutral\nneutral\n",
         "test-de.tsv: entry 2: task xnli: label '2' is not one of entailment, neutral"),
        ("panx/test-de.tsv", "O\nB-XYZ\n", "O\nO\n", "line 2: task panx: label 'B-XYZ' is not"),
        # The line a user opens the file at: blank lines between sentences count.
        ("panx/test-de.tsv", "O\n\nO\nB-XYZ\n", "O\n\nO\nO\n",
         "test-de.tsv: line 4: task panx: label 'B-XYZ' is not"),
        ("xnli/test-de.tsv", "neutral\n", b"\xffneutral\n", "not UTF-8 text"),
        ("tatoeba/test-de.tsv", "x\n", "1\n", "entry 1 is 'x', not a sentence index"),
        ("xquad/test-de.json", '{"q1": 5}', '{"data": []}', "question id -> answer text"),
        ("xquad/test-de.json", "{}", '{"data": 5}', "not SQuAD-format JSON"),
        ("xquad/test-de.json", "{}", '{"data": [{"paragraphs": [{"qas": [{"id": "q"}]}]}]}',
         "not SQuAD-format JSON"),
        ("xquad/test-de.json", "{}", "{", "not JSON"),
    ],
)  # fmt: skip
def test_malformed_files_are_named_never_scored(
    folders: tuple[Path, Path], capsys, file: str, pred: str, gold: str | bytes, says: str
) -> None:
    """A gold label or prediction outside the task's labels would score answers wrong, in
    silence; a file of the wrong shape would end in a traceback. Each is exit 2, naming the
    file."""
    pred_dir, gold_dir = folders
    _write(pred_dir / file, pred)
    (gold_dir / file).parent.mkdir(parents=True)
    (gold_dir / file).write_bytes(gold if isinstance(gold, bytes) else gold.encode())
    assert main(["score", "--predictions", str(pred_dir), "--labels", str(gold_dir)]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert file.split("/")[1] in err  # the file is named


def test_a_label_spelt_two_ways_is_one_label(folders: tuple[Path, Path]) -> None:
    """XNLI's own files spell contradiction "contradictory"; a gold file in one spelling and
    predictions in the other agree where they name the same label."""
    pred_dir, gold_dir = folders
    _write(gold_dir / "xnli/test-de.tsv", "contradictory\nneutral\ncontradiction\n")
    _write(pred_dir / "xnli/test-de.tsv", "contradiction\nneutral\ncontradictory\n")
    assert score_folder(pred_dir, gold_dir)["xnli"]["languages"]["de"]["accuracy"] == 100.0
    _write(pred_dir / "xnli/test-de.tsv", "entailment\nneutral\ncontradictory\n")
    assert score_folder(pred_dir, gold_dir)["xnli"]["languages"]["de"]["accuracy"] == pytest.approx(
        200 / 3
    )


def test_a_prediction_folder_where_a_file_belongs_is_named(
    folders: tuple[Path, Path], capsys
) -> None:
    pred_dir, gold_dir = folders
    (pred_dir / "xnli/test-de.tsv").mkdir(parents=True)
    _write(gold_dir / "xnli/test-de.tsv", "neutral\n")
    assert main(["score", "--predictions", str(pred_dir), "--labels", str(gold_dir)]) == 2
    assert "test-de.tsv is not a file" in capsys.readouterr().err


def test_export_then_score_reproduces_the_stored_metrics(
    settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from xstilts.experiments.export import export_predictions
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import parse_spec

    from tests.conftest import tiny_spec

    data = tiny_spec(
        tiny_model_dir,
        intermediate={"tasks": []},
        evaluation={"languages": ["en", "sw"], "max_examples_per_language": 40},
    )
    data["target"]["training"]["max_train_examples"] = 64
    ws = Workspace(settings)
    result = ws.run(parse_spec(data))
    out = tmp_path / "submission"
    written = export_predictions(ws.sessions, result.experiment.id, out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == [
        "xnli/dev-en.tsv",
        "xnli/dev-sw.tsv",
    ]
    # Labels for the same (capped) examples, in the same order, from the stored predictions.
    labels = tmp_path / "labels"
    for st in result.stages:
        if st.kind == "predict":
            (stage_dir,) = (settings.artifacts_dir / "stages").glob(f"predict-{st.key[:20]}")
            rows = json.loads((stage_dir / "predictions.json").read_text())
            _write(
                labels / "xnli" / f"dev-{rows['language']}.tsv",
                "".join(f"{r['label']}\n" for r in rows["rows"]),
            )
    # Exported dev files are scored as dev without being told (export writes dev-*).
    scored = score_folder(out, labels)["xnli"]["languages"]
    assert scored == score_folder(out, labels, split="dev")["xnli"]["languages"]
    for m in result.metrics:
        assert scored[m.language]["accuracy"] == pytest.approx(100 * m.value)
    from xstilts.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="it holds dev files: pass --split dev"):
        score_folder(out, labels, split="test")
    _write(out / "xnli" / "test-en.tsv", "entailment\n")
    with pytest.raises(DataNotFoundError, match="the splits dev, test; pass one of them"):
        score_folder(out, labels)
