"""The paper's other arms in a study: rows ``[mnli, mlm]`` and ``[mnli@translated]`` expand into
cells with MLM and translated copies, are validated with named errors, and run as one grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from xstilts.db.models import Experiment, Stage, StageKind
from xstilts.runtime.workspace import Workspace
from xstilts.spec import SpecError, parse_spec
from xstilts.studies import parse_study, study_results, submit_study
from xstilts.studies.spec import expand
from xstilts.tasks import Split, get_task

from tests.test_studies import TRAINING, study_data


def test_rows_name_mlm_and_translated_copies(tiny_model_dir: Path) -> None:
    study = parse_study(
        study_data(
            tiny_model_dir,
            [[], ["MNLI"], ["mlm", "mnli"], ["mnli@translated"], ["mlm"]],
            ["xnli"],
            intermediate={"training": TRAINING, "mlm": {"max_lines_per_language": 20}},
            translated_languages={"mnli": ["fr", "de"]},
        )
    )
    assert study.intermediate_sets == [[], ["mnli"], ["mnli", "mlm"], ["mnli@translated"], ["mlm"]]
    cells = {" ".join(row): spec for row, _, spec in expand(study)}
    assert cells[""].intermediate.mlm is None and not cells[""].intermediate.trains
    assert cells["mnli"].intermediate.mlm is None and cells["mnli"].intermediate.translated == {}
    with_mlm = cells["mnli mlm"].intermediate
    assert with_mlm.tasks == ["mnli"] and with_mlm.mlm is not None
    assert with_mlm.mlm.max_lines_per_language == 20 and with_mlm.arm == ["mnli", "mlm"]
    translated = cells["mnli@translated"].intermediate
    assert translated.translated == {"mnli": ["de", "fr"]} and translated.mlm is None
    assert cells["mlm"].intermediate.tasks == [] and cells["mlm"].intermediate.trains
    assert cells["mnli mlm"].name == "grid/mnli+mlm/xnli"

    # Without translated_languages a translated row takes every language the task offers.
    plain = parse_study(study_data(tiny_model_dir, [[], ["mnli@translated"]], ["xnli"]))
    ((_, _, _), (_, _, spec)) = expand(plain)
    offered = get_task("mnli").split_languages(Split.TRANSLATE_TRAIN)
    assert spec.intermediate.translated == {"mnli": sorted(offered)} and len(offered) == 14


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"intermediate_sets": [[], ["mlm", "mlm"]]}, "intermediate_sets", "listed twice"),
        ({"intermediate_sets": [[], ["qqp@translated"]]}, "intermediate_sets", "'qqp@translated'"),
        ({"intermediate_sets": [[], ["mnli", "mnli@translated"]]}, "intermediate_sets", "twice"),
        ({"intermediate": {"mlm": {}}}, "(spec)", "no row of intermediate_sets has mlm"),
        ({"translated_languages": {"mnli": ["de"]}}, "(spec)", "no row of intermediate_sets"),
        (
            {"overrides": {"xnli": {"intermediate": {"mlm": {}}}}},
            "overrides.xnli.intermediate.mlm",
            "grid sets this field",
        ),
    ],
)
def test_bad_rows_are_refused_by_name(tiny_model_dir: Path, change, field, words) -> None:
    data = {**study_data(tiny_model_dir, [[], ["mnli"]], ["xnli"]), **change}
    with pytest.raises(SpecError) as e:
        parse_study(data)
    ((where, message),) = e.value.errors
    assert where == field and words in message, e.value.errors


def test_translated_copies_are_checked_in_an_experiment_spec() -> None:
    base = {"target": {"task": "xnli"}}
    for tasks, translated, words in [
        (["mnli"], {"snli": ["de"]}, "not one of intermediate.tasks (mnli)"),
        (["mnli", "snli"], {"snli": ["de"]}, "no translated training data; valid: mnli, squad"),
        (["mnli"], {"mnli": ["de", "xx"]}, "no translations of mnli into 'xx'; valid: fr, es, de"),
        (["mnli"], {"mnli": ["de", "de"]}, "listed twice"),
    ]:
        with pytest.raises(SpecError) as e:
            parse_spec({**base, "intermediate": {"tasks": tasks, "translated": translated}})
        assert words in e.value.errors[0][1], e.value.errors
        assert e.value.errors[0][0].startswith("intermediate.translated")
    spec = parse_spec(
        {**base, "intermediate": {"tasks": ["mnli"], "translated": {"mnli": ["fr", "de"]}}}
    )
    assert spec.intermediate.translated == {"mnli": ["de", "fr"]}
    assert spec.intermediate.arm == ["mnli@translated"]


def test_a_study_of_the_mlm_arm_runs_as_one_grid(settings, tiny_model_dir: Path) -> None:
    """Baseline, MNLI and MNLI + MLM -> XNLI: the MLM row trains its own intermediate stage and
    gets the usual matrix entries (score, change over the baseline with an interval)."""
    data = study_data(
        tiny_model_dir,
        [[], ["mnli"], ["mnli", "mlm"]],
        ["xnli"],
        intermediate={
            "training": {**TRAINING, "max_steps": 6},
            "mlm": {"languages": ["de", "en"], "max_lines_per_language": 20, "share": 0.5},
        },
        target_training={**TRAINING, "max_steps": 3},
    )
    study = parse_study(data)
    ws = Workspace(settings)
    study_id, _ = submit_study(ws.sessions, settings, study, None)
    for cell_id in _cell_ids(ws, study_id):
        ws.follow(cell_id)
    page = study_results(ws.sessions, ws.store, study_id, None)
    rows = [c[0].row for c in page.cells]
    assert rows == ["baseline", "mnli", "mnli+mlm"]
    mlm_cell = page.cells[2][0]
    assert mlm_cell.status == "succeeded" and mlm_cell.xtreme_score is not None
    change = mlm_cell.score_change
    assert change is not None and change.ci_low <= change.difference <= change.ci_high
    assert change.difference == pytest.approx(mlm_cell.xtreme_score - page.cells[0][0].xtreme_score)
    # The MNLI row and the MNLI + MLM row train different intermediate stages, on one target.
    with ws.sessions() as s:
        inter = s.scalars(select(Stage.key).where(Stage.kind == StageKind.INTERMEDIATE.value)).all()
        target_steps = s.scalars(
            select(Stage.steps_run).where(Stage.kind == StageKind.TARGET.value)
        ).all()
    assert len(inter) == 2 and sorted(target_steps) == [3, 3, 3]
    ws.close()


def _cell_ids(ws: Workspace, study_id: str) -> list[str]:
    with ws.sessions() as s:
        return list(s.scalars(select(Experiment.id).where(Experiment.study_id == study_id)))


def _translated_folder(root: Path, data_dir: Path, rows: int = 48) -> Path:
    """The real MNLI and XNLI files, and a translate-train file in XTREME's 5-column layout whose
    "translations" are real German XNLI pairs (what matters here is the layout and the path)."""
    folder = root / "translated-data"
    folder.mkdir()
    for name in ("mnli", "xnli"):
        (folder / name).symlink_to(data_dir / name)
    german = (data_dir / "xnli" / "dev-de.tsv").read_text(encoding="utf-8").splitlines()[:rows]
    lines = []
    for line in german:
        premise, hypothesis, label = line.split("\t")
        label = "contradictory" if label == "contradiction" else label
        lines.append(
            f"An English premise .\tAn English hypothesis .\t{premise}\t{hypothesis}\t{label}"
        )
    (folder / "XNLI" / "translate-train").mkdir(parents=True)
    path = folder / "XNLI" / "translate-train" / "en-de-translated.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_translated_copies_train_the_tasks_one_head(settings, tiny_model_dir, tmp_path) -> None:
    """mnli + mnli@de: two streams in the sampler (by size), one MNLI head, its own stage key;
    a missing translation file is named with where to get it, before anything is stored."""
    import torch
    from xstilts.errors import DataNotFoundError
    from xstilts.experiments.stage_results import TRAIN_RESULT_FILE
    from xstilts.modeling.classifier import HEADS_FILE

    from tests.conftest import tiny_spec

    folder = _translated_folder(tmp_path, settings.data_dir)
    training = {**TRAINING, "max_train_examples": 64, "max_steps": 8}
    spec = tiny_spec(
        tiny_model_dir,
        intermediate={"tasks": ["mnli"], "training": training, "translated": {"mnli": ["de"]}},
        target={"task": "xnli", "training": {**training, "max_steps": 2}},
        evaluation={
            "languages": ["en", "de"],
            "max_examples_per_language": 20,
            "max_seq_length": 64,
        },
        data={"path": str(folder)},
    )
    ws = Workspace(settings)
    result = ws.run(parse_spec(spec))
    assert result.experiment.status == "succeeded", result.experiment.error
    (stage,) = [s for s in result.stages if s.role == "intermediate"]
    out = ws.store.stage_dir(stage.kind, stage.key)
    res = __import__("json").loads((out / TRAIN_RESULT_FILE).read_text())
    assert res["sampling_probabilities"] == {
        "mnli": pytest.approx(64 / 112),
        "mnli@de": pytest.approx(48 / 112),
    }
    assert res["task_batches"]["mnli"] + res["task_batches"]["mnli@de"] == 8
    assert res["task_batches"]["mnli@de"] > 0
    heads = torch.load(out / HEADS_FILE, weights_only=True)
    assert sorted(k for k in heads if not k.startswith("__")) == ["mnli"]
    plain = ws.run(parse_spec({**spec, "intermediate": {"tasks": ["mnli"], "training": training}}))
    (other,) = [s for s in plain.stages if s.role == "intermediate"]
    assert other.key != stage.key

    missing = {
        **spec,
        "intermediate": {**spec["intermediate"], "translated": {"mnli": ["de", "fr"]}},
    }
    with pytest.raises(DataNotFoundError) as e:
        ws.submit(parse_spec(missing))
    assert "XNLI/translate-train/en-fr-translated.tsv" in str(e.value)
    assert "storage.googleapis.com/xtreme_translations" in str(e.value)
    ws.close()
