"""The command line: listings, bad input (exit 2, field named), a run that writes JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from xstilts.cli.main import main

from tests.conftest import tiny_spec


@pytest.fixture()
def env(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSTILTS_HOME", str(settings.home))
    monkeypatch.setenv("XSTILTS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("XSTILTS_MODEL_ROOTS", ":".join(str(r) for r in settings.model_roots))


def test_tasks_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["xnli"]["format"] == "pair_classification" and len(rows["xnli"]["languages"]) == 15
    assert rows["pawsx"]["languages"] == ["en", "de", "es", "fr", "ja", "ko", "zh"]
    assert rows["xnli"]["target"] and not rows["qqp"]["target"]
    assert {"mnli", "qqp", "snli", "anli"} <= rows.keys()
    # The paper's grid: nine XTREME targets and the nine intermediate tasks, each in its format.
    targets = {n for n, r in rows.items() if r["target"]}
    assert targets == {
        "xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba"
    }  # fmt: skip
    paper_intermediate = {
        "anli_plus", "mnli", "qqp", "squad", "squad_v2", "hellaswag", "commonsenseqa", "cosmosqa",
        "ccg",
    }  # fmt: skip
    assert paper_intermediate <= {n for n, r in rows.items() if not r["target"]}
    assert {r["format"] for r in rows.values()} == {
        "pair_classification", "token_classification", "extractive_qa", "multiple_choice",
        "retrieval",
    }  # fmt: skip
    assert len(rows["udpos"]["languages"]) == 33 and len(rows["panx"]["languages"]) == 40
    assert len(rows["tatoeba"]["languages"]) == 36 and rows["mlqa"]["metric"] == "mlqa_f1"
    assert rows["anli_plus"]["combines"] == ["anli", "mnli", "snli"]
    assert rows["xquad"]["train_task"] == "squad" and rows["xquad"]["primary_metric"] == "f1"


def test_tasks_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "xnli" in out and "pair_classification" in out and "accuracy" in out
    assert "tatoeba" in out and "retrieval" in out and "anli+mnli+snli" in out
    # Columns line up however long a metric's name is.
    lines = out.splitlines()
    role_at = {line.split()[0]: line.index(line.split()[3]) for line in lines}
    assert len(set(role_at.values())) == 1, role_at


def test_bad_spec_exits_2_naming_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        yaml.safe_dump({"target": {"task": "xnli"}, "evaluation": {"languages": ["de", "xx"]}})
    )
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "evaluation.languages" in err and "'xx'" in err and "sw" in err


def test_missing_spec_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read spec" in capsys.readouterr().err


def test_model_outside_allowed_roots_exits_2(
    env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        yaml.safe_dump({"target": {"task": "xnli"}, "model": {"source": f"local:{tmp_path}"}})
    )
    assert main(["validate", str(spec)]) == 2
    assert "not under an allowed model root" in capsys.readouterr().err


def test_run_writes_json_and_validate_lists_stages(
    env, settings, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_spec(
        tiny_model_dir,
        intermediate={"tasks": []},
        evaluation={"languages": ["en", "sw"], "max_examples_per_language": 20},
    )
    data["target"]["training"]["max_train_examples"] = 32
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(data))
    assert main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "4 stages" in out and "predict:sw" in out

    result_file = tmp_path / "out" / "r.json"
    assert main(["run", str(spec), "--json", str(result_file), "--quiet"]) == 0
    out = capsys.readouterr().out
    result = json.loads(result_file.read_text())
    assert [(m["language"], m["n"]) for m in result["metrics"]] == [("en", 20), ("sw", 20)]
    assert set(result["metrics"][0]) >= {"task", "language", "metric", "value", "n", "seed"}
    assert result["summary"]["english"] == result["metrics"][0]["value"]
    assert f"{100 * result['metrics'][1]['value']:.1f}" in out  # the table shows the sw value

    # The same home's embedded API (`xstilts serve` names its key "local") lists the run.
    import hashlib

    from fastapi.testclient import TestClient
    from xstilts.api.app import create_app

    api = settings.model_copy(update={"api_keys": {"local": hashlib.sha256(b"k").hexdigest()}})
    with TestClient(create_app(api)) as client:
        listed = client.get("/experiments", headers={"Authorization": "Bearer k"}).json()
    assert result["experiment"]["id"] in [e["id"] for e in listed["items"]]

    # Two results files of experiments in this workspace: the paired comparison (here of the
    # experiment with itself: no change anywhere, p = 1).
    assert main(["compare", str(result_file), str(result_file)]) == 0
    table = capsys.readouterr().out
    assert "non-English mean" in table and "McNemar" in table and "Holm p" in table
    sw_change = next(line for line in table.splitlines() if line.startswith("sw "))
    assert sw_change.split()[4:6] == ["+0.00", "[+0.00,"]
    # The verdict in words reads off the same numbers: nothing moved, so no clear difference.
    assert (
        "Accuracy: no intermediate task (vs no intermediate task) did not change the "
        "non-English mean accuracy (95% interval [+0.0, +0.0], p=1)" in table
    )
    assert table.count("no clear difference at this sample size") == 1
    assert "Spread:" not in table  # one non-English language has no spread to speak of
    # Report and export take the results file where they take an id.
    assert main(["report", str(result_file), str(result_file), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "did not change the non-English mean accuracy" in page
    assert main(["export", str(result_file), str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "xnli" / "dev-sw.tsv").is_file()
    assert main(["report", str(result_file), str(result_file), "x", "--out", "r"]) == 2
    capsys.readouterr()
    assert "0 of 1 non-English languages significantly higher, 0 lower" in table
    # The keys of the file are the results' keys, in the model that `compare` parses them with.
    assert set(result) == {"experiment", "metrics", "summary", "stages", "warnings"}
    assert set(result["summary"]) >= {"mean", "transfer_gap", "per_seed", "xtreme_score"}
    assert set(result["stages"][0]) == {
        "role", "seed", "kind", "key", "status", "reused", "steps_run", "attempts", "selection"
    }  # fmt: skip

    # A file of an experiment without metrics yet, as written before results were typed.
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**result, "metrics": [], "summary": {}}))
    # More than two files: side by side.
    assert main(["compare", str(result_file), str(empty), str(empty)]) == 0
    table = capsys.readouterr().out.splitlines()
    sw = next(line for line in table if line.startswith("sw "))
    assert sw.split()[1:] == [f"{100 * result['metrics'][1]['value']:.1f}", "-", "-"]
    assert next(line for line in table if line.startswith("mean (all)")).split()[-1] == "-"
    worst = next(line for line in table if line.startswith("worst language")).split()[2:]
    assert worst == [result["summary"]["worst_language"], "-", "-"]  # names it, not only its score

    # Experiments evaluated differently: said under the table, by name.
    other = tmp_path / "other.json"
    named = {**result["experiment"], "name": "other"}
    summary = {**result["summary"], "languages": ["en"]}
    rows = [dict(result["metrics"][0], n=10)]
    other.write_text(
        json.dumps({**result, "experiment": named, "metrics": rows, "summary": summary})
    )
    assert main(["compare", str(result_file), str(result_file), str(other)]) == 0
    warnings = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: the experiments were evaluated on different languages (other lacks sw): their "
        "means and spreads across languages are over different sets",
        "warning: different numbers of examples were evaluated in en: those values are not on the "
        "same examples",
    ]
    pawsx = tmp_path / "pawsx.json"
    rows = [dict(m, task="pawsx") for m in result["metrics"]]
    pawsx.write_text(json.dumps({**result, "experiment": named, "metrics": rows}))
    assert main(["compare", str(result_file), str(result_file), str(pawsx)]) == 0
    (warning,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning:")]
    name, metric = result["experiment"]["name"], result["summary"]["metric"]
    assert warning == (
        f"warning: the experiments measure different tasks or metrics ({name}: xnli ({metric}), "
        f"{name}: xnli ({metric}), other: pawsx ({metric}))"
    )
    assert main(["compare", str(result_file), str(result_file), str(result_file)]) == 0
    assert "warning:" not in capsys.readouterr().out


def test_submit_without_a_server_says_where_and_how(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No traceback and not exit 1 ("a stage failed"): the URL it tried and how to start one."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"target": {"task": "xnli"}}))
    url = f"http://127.0.0.1:{port}"
    assert main(["submit", str(spec), "--url", url, "--api-key", "k"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the xstilts API at {url}" in err and "xstilts serve" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_run_shows_a_bar_for_training_and_for_each_prediction(capsys) -> None:
    """Training counts steps with examples/s beside them; a language's prediction counts its
    examples; evaluation has no bar."""
    from types import SimpleNamespace

    from xstilts.cli.experiments import _BarReporter

    bars = _BarReporter(enabled=True)
    train = SimpleNamespace(id=1, kind="target_train")
    predict = SimpleNamespace(id=2, kind="predict")
    bars.progress(train, 10, 40, 0.0)
    bars.progress(train, 20, 40, 123.4)
    bars.progress(predict, 64, 500, float("nan"))
    bars.progress(predict, 500, 500, float("nan"))
    bars.progress(SimpleNamespace(id=3, kind="evaluate"), 1, 2, 0.0)
    bars.close()
    err = capsys.readouterr().err
    last = [part for part in err.replace("\r", "\n").splitlines() if part.strip()]
    train_lines = [x for x in last if x.lstrip().startswith("train:")]
    predict_lines = [x for x in last if x.lstrip().startswith("predict:")]
    assert "20/40" in train_lines[-1] and "123.4 ex/s" in train_lines[-1]
    assert "500/500" in predict_lines[-1] and "input/s" in predict_lines[-1]
    assert not any("1/2" in x for x in last)  # evaluation: none
    off = _BarReporter(enabled=False)
    off.progress(predict, 64, 500, float("nan"))
    assert capsys.readouterr().err == ""
