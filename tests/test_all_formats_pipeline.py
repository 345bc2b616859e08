"""Every format through the whole pipeline on the tiny model and real data: train, predict,
evaluate, export; the exported files scored by ``xstilts score`` give the stored metrics back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from xstilts.cli.tables import results_table
from xstilts.experiments.export import export_predictions
from xstilts.experiments.submissions import score_folder
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import tiny_spec


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The real data folder plus stand-ins for training files it lacks, as symlinks:
    Cosmos QA dev as train, TyDiQA's English train as SQuAD."""
    root = tmp_path_factory.mktemp("data")
    for entry in data_dir.iterdir():
        if entry.name not in ("ud", "cosmosqa"):
            (root / entry.name).symlink_to(entry)
    for treebank in (data_dir / "ud").iterdir():
        (root / "ud" / treebank.name).mkdir(parents=True)
        for f in treebank.iterdir():
            (root / "ud" / treebank.name / f.name).symlink_to(f)
    (root / "cosmosqa").mkdir()
    (root / "cosmosqa" / "valid.csv").symlink_to(data_dir / "cosmosqa" / "valid.csv")
    (root / "cosmosqa" / "train.csv").symlink_to(data_dir / "cosmosqa" / "valid.csv")
    (root / "squad").mkdir()
    (root / "squad" / "train-v1.1.json").symlink_to(data_dir / "tydiqa/tydiqa.goldp.en.train.json")
    return root


def _spec(model: Path, data: Path, target: dict, languages: list[str], **evaluation) -> dict:
    spec = tiny_spec(model, intermediate={"tasks": []})
    spec["target"] = {
        **target,
        "training": {**spec["target"]["training"], "max_train_examples": 96},
    }
    spec["evaluation"] = {
        "languages": languages,
        "max_examples_per_language": 30,
        "bootstrap_samples": 50,
        **evaluation,
    }
    spec["data"] = {"source": "local", "path": str(data)}
    return spec


CASES = {
    "panx": ({"task": "panx"}, ["en", "de", "zh"], {}),
    "udpos": ({"task": "udpos"}, ["en", "fr"], {"split": "test"}),
    "mlqa": ({"task": "mlqa"}, ["en", "zh"], {}),  # trained on squad = the overlay's TyDiQA file
    "tatoeba": ({"task": "tatoeba"}, ["de", "ru"], {}),
    "bucc2018": ({"task": "bucc2018"}, ["zh"], {"max_examples_per_language": 60}),
}
FOLDER_METRIC = {"panx": "f1", "udpos": "f1", "mlqa": "f1", "tatoeba": "accuracy", "bucc2018": "f1"}


@pytest.mark.parametrize("name", list(CASES))
def test_target_runs_and_export_scores_back(
    name: str, settings, tiny_model_dir: Path, overlay: Path, tmp_path: Path
) -> None:
    target, languages, evaluation = CASES[name]
    ws = Workspace(settings)
    result = ws.run(parse_spec(_spec(tiny_model_dir, overlay, target, languages, **evaluation)))
    kinds = [s.kind for s in result.stages]
    # Retrieval trains nothing: it reads the bare model's encoder.
    assert ("target_train" in kinds) == (name not in ("tatoeba", "bucc2018"))
    summary = result.summary
    assert summary is not None
    assert summary.languages == languages and summary.metric == FOLDER_METRIC[name]
    primary = {m.language: m for m in result.metrics if m.metric == summary.metric}
    assert set(primary) == set(languages)
    assert all(0.0 <= m.value <= 1.0 and m.n > 0 for m in primary.values())
    table = results_table(result).splitlines()
    # Retrieval of one translation: the candidates each sentence was picked from, beside its score.
    assert ("candidates" in table[1]) == (name == "tatoeba")
    if name == "tatoeba":
        de = next(line for line in table if line.startswith("de "))
        assert de.split()[-1] == str(primary["de"].n)

    prefix = "test" if evaluation.get("split") == "test" else "dev"
    written = export_predictions(
        ws.sessions, result.experiment.id, tmp_path / "pred", labels_dir=tmp_path / "gold"
    )
    assert len(written) == 2 * len(languages)
    scored = score_folder(tmp_path / "pred", tmp_path / "gold", split=prefix)[name]["languages"]
    for lang, m in primary.items():
        assert scored[lang][FOLDER_METRIC[name]] == pytest.approx(100 * m.value, abs=1e-9)
    if name == "mlqa":  # exact match is stored too, and the XTREME score is the mean of both
        em = {m.language: m.value for m in result.metrics if m.metric == "exact_match"}
        assert scored["zh"]["exact_match"] == pytest.approx(100 * em["zh"])
        means = summary.metric_means
        assert summary.xtreme_score == pytest.approx((means["f1"] + means["exact_match"]) / 2)


def test_multi_task_intermediate_across_formats(
    settings, tiny_model_dir: Path, overlay: Path
) -> None:
    """Multiple choice, extractive QA and pair classification train one encoder together; the
    encoder then feeds a tagging target."""
    spec = _spec(tiny_model_dir, overlay, {"task": "panx"}, ["en", "de"])
    training = {**spec["target"]["training"], "max_train_examples": 48}
    spec["intermediate"] = {
        "tasks": ["cosmosqa", "squad", "qqp"],
        "training": training,
        "sampling": {"strategy": "uniform"},
    }
    result = Workspace(settings).run(parse_spec(spec))
    (out,) = (settings.artifacts_dir / "stages").glob("intermediate_train-*")
    train_result = json.loads((out / "train_result.json").read_text())
    assert set(train_result["task_losses"]) == {"cosmosqa", "squad", "qqp"}
    assert train_result["sampling_probabilities"] == pytest.approx(
        {"cosmosqa": 1 / 3, "squad": 1 / 3, "qqp": 1 / 3}
    )
    heads = torch.load(out / "heads.pt", weights_only=True)
    assert {k: v["kind"] for k, v in heads.items() if not k.startswith("__")} == {
        "cosmosqa": "choice",
        "squad": "span",
        "qqp": "sequence",
    }
    assert heads["cosmosqa"]["labels"] == ["A", "B", "C", "D"]
    assert {m.language for m in result.metrics} == {"en", "de"}


def test_targets_trained_on_the_same_task_share_the_target_stage(
    settings, tiny_model_dir: Path, overlay: Path, optimizer_steps
) -> None:
    ws = Workspace(settings)
    ws.run(parse_spec(_spec(tiny_model_dir, overlay, {"task": "mlqa"}, ["en"])))
    steps = optimizer_steps[0]
    assert steps > 0
    ws.run(parse_spec(_spec(tiny_model_dir, overlay, {"task": "xquad"}, ["en", "de"])))
    assert optimizer_steps[0] == steps  # XQuAD reused MLQA's SQuAD-trained model


def test_retrieval_reads_the_intermediate_encoder_and_shares_predictions_across_seeds(
    settings, tiny_model_dir: Path, overlay: Path
) -> None:
    base = _spec(tiny_model_dir, overlay, {"task": "tatoeba"}, ["de"])
    base["seeds"] = [1, 2]
    ws = Workspace(settings)
    result = ws.run(parse_spec(base))
    # No training and nothing seed-dependent before scoring: one predict stage serves both seeds.
    predicts = [s for s in result.stages if s.kind == "predict"]
    assert len(predicts) == 2 and len({s.key for s in predicts}) == 1
    assert sorted(result.summary.seeds) == [1, 2]

    inter = dict(base, seeds=[1])
    inter["intermediate"] = {"tasks": ["qqp"], "training": base["target"]["training"]}
    with_qqp = ws.run(parse_spec(inter))
    kinds = [s.kind for s in with_qqp.stages]
    assert kinds == ["intermediate_train", "predict", "evaluate"]
    (pred,) = [s for s in with_qqp.stages if s.kind == "predict"]
    assert pred.key != predicts[0].key  # a different encoder, so different predictions


def test_ccg_from_a_user_folder_with_its_open_tag_set(
    settings, tiny_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """CCGbank is licensed: users bring token<TAB>supertag files; the tag set comes from them."""
    root = tmp_path / "data"
    root.mkdir()
    for entry in data_dir.iterdir():
        (root / entry.name).symlink_to(entry)
    sentences = [
        [("Pierre", "N/N"), ("Vinken", "N"), ("will", "(S\\NP)/(S\\NP)"), ("join", "S\\NP")],
        [("Mr.", "N/N"), ("Vinken", "N"), ("is", "(S\\NP)/NP"), ("chairman", "N")],
    ] * 20
    (root / "ccg").mkdir()
    (root / "ccg" / "train.tsv").write_text(
        "\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in sentences), encoding="utf-8"
    )
    spec = _spec(tiny_model_dir, root, {"task": "xnli"}, ["en"])
    spec["intermediate"] = {"tasks": ["ccg"], "training": spec["target"]["training"]}
    Workspace(settings).run(parse_spec(spec))
    (out,) = (settings.artifacts_dir / "stages").glob("intermediate_train-*")
    heads = torch.load(out / "heads.pt", weights_only=True)
    assert heads["ccg"]["kind"] == "token"
    assert heads["ccg"]["labels"] == sorted({t for s in sentences for _, t in s})
    assert heads["ccg"]["num_labels"] == 5
