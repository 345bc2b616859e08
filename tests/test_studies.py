"""Studies: a grid validated as a whole, expanded into experiments that share stages (each
intermediate model trains once per seed), the result matrix, and the API over it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from xstilts.api.app import create_app
from xstilts.cli.main import main
from xstilts.comparisons import ANY_OWNER
from xstilts.db.models import Experiment, ExperimentStage, Stage, StageKind
from xstilts.runtime.workspace import Workspace
from xstilts.spec import SpecError
from xstilts.studies import parse_study, study_results, study_state, submit_study

from tests.service_fixtures import pg_url  # noqa: F401 (fixture)
from tests.test_api import A, B, RecordingExecutor, _wait, api_settings  # noqa: F401 (fixture)

TRAINING = {
    "learning_rate": 1e-3,
    "batch_size": 16,
    "max_train_examples": 32,
    "max_seq_length": 64,
    "checkpoint_every_steps": 5,
}


def study_data(model_dir: Path, sets: list[list[str]], targets: list[str], **extra) -> dict:
    data = {
        "name": "grid",
        "model": {"source": f"local:{model_dir}"},
        "intermediate_sets": sets,
        "targets": targets,
        "intermediate": {"training": TRAINING},
        "target_training": TRAINING,
        "evaluation": {
            "languages": ["en", "de"],
            "max_examples_per_language": 20,
            "max_seq_length": 64,
            "bootstrap_samples": 0,
        },
        "seeds": [1],
    }
    data.update(extra)
    return data


def test_a_study_is_validated_as_a_whole(settings, tiny_model_dir: Path) -> None:
    with pytest.raises(SpecError) as e:
        parse_study(study_data(tiny_model_dir, [["qqp"]], ["xnli"]))
    assert e.value.errors[0][0] == "intermediate_sets" and "must include []" in e.value.errors[0][1]
    with pytest.raises(SpecError, match="listed twice"):
        parse_study(study_data(tiny_model_dir, [[], ["qqp", "snli"], ["snli", "qqp"]], ["xnli"]))
    with pytest.raises(SpecError) as e:
        parse_study(study_data(tiny_model_dir, [[], ["qqq"]], ["xnli", "pawsx"]))
    assert e.value.errors[0][0] == "intermediate_sets"
    assert "'qqq'" in e.value.errors[0][1] and "qqp" in e.value.errors[0][1]
    with pytest.raises(SpecError, match="unknown target task 'xnl'"):
        parse_study(study_data(tiny_model_dir, [[]], ["xnl"]))

    # Cells that only fail once expanded: an override's bad value (in each row of the target),
    # and a data path outside the data roots (in every cell) are all reported in one go.
    bad = study_data(
        tiny_model_dir,
        [[], ["qqp"]],
        ["xnli", "pawsx"],
        overrides={"pawsx": {"target": {"training": {"learning_rate": -1}}}},
    )
    study = parse_study(bad)
    with pytest.raises(SpecError) as e:
        submit_study(Workspace(settings).sessions, settings, study, None)
    fields = [f for f, _ in e.value.errors]
    assert fields == [
        "cells.baseline/pawsx.target.training.learning_rate",
        "cells.qqp/pawsx.target.training.learning_rate",
    ]
    outside = parse_study(
        study_data(tiny_model_dir, [[], ["qqp"]], ["xnli"], data={"path": "/etc"})
    )
    ws = Workspace(settings)
    with pytest.raises(SpecError) as e:
        submit_study(ws.sessions, settings, outside, None)
    assert [f for f, _ in e.value.errors] == [
        "cells.baseline/xnli.data.path",
        "cells.qqp/xnli.data.path",
    ]
    with ws.sessions() as s:  # nothing was stored
        assert s.scalar(select(func.count()).select_from(Experiment)) == 0


def test_a_cell_whose_stage_another_cell_queued_runs_at_once(
    settings, tiny_model_dir: Path, monkeypatch
) -> None:
    """A study's cells share their intermediate stage: once it ends, in the first cell's run, the
    other cells' stages become runnable and are sent to the executor at hand, which stops with the
    first cell and drops what it has not run. Following such a cell delivers its queued stages
    again at once; before, they waited for the reconciler's redelivery (2 minutes a cell, most of
    a 12-cell study's test time). Here the reconciler would wait an hour."""
    import time

    from xstilts.runtime import scheduler

    monkeypatch.setattr(scheduler, "REDELIVER_AFTER_S", 3600.0)
    study = parse_study(
        study_data(tiny_model_dir, [[]], ["xnli"], evaluation={"languages": ["en"]})
    )
    ws = Workspace(settings)
    _, (cell,) = submit_study(ws.sessions, settings, study, None)

    # Queued and sent to an executor that stopped before running them: nobody delivers them.
    queued = scheduler.mark_runnable(ws.sessions, cell)
    assert queued and scheduler.queued_stages(ws.sessions, cell) == queued
    started = time.monotonic()

    def not_stalled(_: str) -> None:
        assert time.monotonic() - started < 120, "the cell waits for the reconciler"

    ws.follow(cell, on_poll=not_stalled)
    assert ws.status(cell)[0] == "succeeded"
    ws.close()


def test_grid_trains_each_intermediate_model_once(
    settings, tiny_model_dir: Path, optimizer_steps: list[int], tmp_path: Path, monkeypatch, capsys
) -> None:
    """4 rows (the baseline, QQP, SNLI, both) x 3 targets: 3 intermediate trainings, not 9."""
    monkeypatch.setenv("XSTILTS_HOME", str(settings.home))
    monkeypatch.setenv("XSTILTS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("XSTILTS_MODEL_ROOTS", str(tiny_model_dir.parent))
    spec_file = tmp_path / "study.json"
    sets = [[], ["qqp"], ["snli"], ["snli", "qqp"]]  # a set: its row is "qqp+snli"
    # UD's German treebank has a test file only: the override moves udpos's cells to it.
    data = study_data(
        tiny_model_dir,
        sets,
        ["xnli", "panx", "udpos"],
        overrides={"udpos": {"evaluation": {"split": "test"}}},
    )
    spec_file.write_text(json.dumps(data))
    out = tmp_path / "matrix.json"
    assert main(["study", str(spec_file), "--quiet", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "XTREME task score" in table and "qqp+snli" in table

    ws = Workspace(settings)
    with ws.sessions() as s:
        (study_id,) = s.scalars(select(Experiment.study_id).distinct()).all()
        inter = s.execute(
            select(Stage.id, Stage.steps_run, func.count(ExperimentStage.id))
            .join(ExperimentStage, ExperimentStage.stage_id == Stage.id)
            .where(Stage.kind == StageKind.INTERMEDIATE.value)
            .group_by(Stage.id, Stage.steps_run)
        ).all()
        trained = s.scalars(
            select(Stage.steps_run).where(
                Stage.kind.in_([StageKind.INTERMEDIATE.value, StageKind.TARGET.value])
            )
        ).all()
    assert len(inter) == 3  # qqp, snli, qqp+snli: each one stage...
    assert all(links == 3 for _, _, links in inter)  # ...that serves all three targets
    assert len(trained) == 3 + 12
    assert optimizer_steps[0] == sum(trained)  # nothing trained twice

    results = json.loads(out.read_text())
    assert results["rows"] == ["baseline", "qqp", "snli", "qqp+snli"]
    assert results["targets"] == ["xnli", "panx", "udpos"]
    for r, row in enumerate(results["cells"]):
        for cell in row:
            assert cell["status"] == "succeeded" and cell["xtreme_score"] is not None
            if r == 0:
                assert cell["score_change"] is None
            else:
                change = cell["score_change"]
                assert change["ci_low"] <= change["difference"] <= change["ci_high"]
                assert change["difference"] == pytest.approx(
                    cell["xtreme_score"] - results["cells"][0][row.index(cell)]["xtreme_score"]
                )
                assert cell["non_english_std_change"] is None  # one non-English language
    state = study_state(ws.sessions, study_id, ANY_OWNER, limit=5, offset=10)
    assert state.status == "succeeded" and state.total_cells == 12 and len(state.cells) == 2
    assert state.counts == {"succeeded": 12}
    page = study_results(ws.sessions, ws.store, study_id, ANY_OWNER, limit=2, offset=2)
    assert [c[0].row for c in page.cells] == ["snli", "qqp+snli"] and page.total_rows == 4
    ws.close()


def test_studies_over_the_api(api_settings, tiny_model_dir: Path) -> None:  # noqa: F811
    data = study_data(
        tiny_model_dir,
        [[], ["qqp"]],
        ["xnli"],
        evaluation={
            "languages": ["en", "de", "ar"],
            "max_examples_per_language": 20,
            "max_seq_length": 64,
            "bootstrap_samples": 0,
        },
    )
    with TestClient(create_app(api_settings)) as client:
        r = client.post("/studies", json=data, headers=A)
        assert r.status_code == 201, r.text
        study = r.json()
        assert r.headers["Location"] == f"/studies/{study['id']}"
        assert study["total_cells"] == 2 and study["rows"] == ["baseline", "qqp"]
        for cell in study["cells"]:
            assert _wait(client, cell["experiment_id"], timeout=300)["status"] == "succeeded"
        state = client.get(f"/studies/{study['id']}", headers=A).json()
        assert state["status"] == "succeeded" and state["counts"] == {"succeeded": 2}

        r = client.get(f"/studies/{study['id']}/results", headers=A)
        assert r.status_code == 200, r.text
        matrix = r.json()
        base, cand = matrix["cells"][0][0], matrix["cells"][1][0]
        assert base["score_change"] is None
        std = cand["non_english_std_change"]
        assert std["statistic"] == "non_english_std" and std["p_value"] is not None
        assert std["difference"] == pytest.approx(cand["non_english_std"] - base["non_english_std"])
        comparison = client.get(
            f"/comparisons?baseline={base['experiment_id']}&candidate={cand['experiment_id']}",
            headers=A,
        ).json()
        assert comparison["cached"]  # the matrix computed it
        page = client.get(f"/studies/{study['id']}/results?limit=1&offset=1", headers=A).json()
        assert [row[0]["row"] for row in page["cells"]] == ["qqp"] and page["total_rows"] == 2

        assert client.get(f"/studies/{study['id']}", headers=B).status_code == 404
        assert client.get(f"/studies/{study['id']}/results", headers=B).status_code == 404
        assert client.get("/studies/not-an-id", headers=A).status_code == 422
        r = client.post("/studies", json={**data, "intermediate_sets": [["qqp"]]}, headers=A)
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["intermediate_sets"]
        r = client.post(
            "/studies",
            json={**data, "overrides": {"xnli": {"evaluation": {"languages": ["xx"]}}}},
            headers=A,
        )
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"][:2] == ["cells", "baseline/xnli"]


def test_cancelling_a_study_cancels_its_cells(api_settings, tiny_model_dir: Path) -> None:  # noqa: F811
    data = study_data(tiny_model_dir, [[], ["qqp"], ["snli"]], ["xnli", "panx"])
    with TestClient(create_app(api_settings, executor_factory=RecordingExecutor)) as client:
        study = client.post("/studies", json=data, headers=A).json()
        assert study["status"] == "running" and study["total_cells"] == 6
        assert client.post(f"/studies/{study['id']}/cancel", headers=B).status_code == 404
        r = client.post(f"/studies/{study['id']}/cancel", headers=A)
        assert r.status_code == 202
        assert r.json()["status"] == "cancelled" and r.json()["counts"] == {"cancelled": 6}
