"""Comparisons end to end: real tiny experiments run by the embedded executor, compared through
the API (both backends, two API keys) and the CLI, from the stored predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from xstilts.api.app import create_app
from xstilts.cli.main import main

from tests.service_fixtures import pg_url  # noqa: F401 (fixture)
from tests.test_api import A, B, _wait, api_settings, small_spec  # noqa: F401 (fixture)

LANGS = ["en", "de", "ar"]


def spec(
    model_dir: Path, name: str, intermediate: list[str], seeds: list[int], n: int = 30
) -> dict:
    data = small_spec(model_dir, name)
    data["intermediate"]["tasks"] = intermediate
    data["evaluation"].update(languages=LANGS, max_examples_per_language=n)
    data["seeds"] = seeds
    return data


def test_comparison_over_the_api(api_settings, tiny_model_dir: Path) -> None:  # noqa: F811
    with TestClient(create_app(api_settings)) as client:
        ids = {}
        for name, inter, seeds, n in (
            ("baseline", [], [1], 30),
            ("candidate", ["qqp"], [1, 2], 30),
            ("fewer", [], [1], 20),
        ):
            r = client.post(
                "/experiments", json=spec(tiny_model_dir, name, inter, seeds, n), headers=A
            )
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
        for exp_id in ids.values():
            assert _wait(client, exp_id, timeout=300)["status"] == "succeeded"

        q = f"/comparisons?baseline={ids['baseline']}&candidate={ids['candidate']}&samples=500"
        r = client.get(q, headers=A)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["resampling"] == "joint_items" and body["seeds_scheme"] == "seeds_then_items"
        assert body["multiple_comparisons"] == "holm" and not body["cached"]
        assert [row["language"] for row in body["per_language"]] == LANGS
        # The per-language values are the stored metrics: per seed, and their mean.
        metrics = {
            name: client.get(f"/experiments/{ids[name]}/metrics", headers=A).json()["metrics"]
            for name in ("baseline", "candidate")
        }
        for row in body["per_language"]:
            cand = [m["value"] for m in metrics["candidate"] if m["language"] == row["language"]]
            base = [m["value"] for m in metrics["baseline"] if m["language"] == row["language"]]
            assert row["candidate_per_seed"] == pytest.approx(cand)
            assert row["baseline_per_seed"] == pytest.approx(base)
            assert row["difference"] == pytest.approx(sum(cand) / 2 - base[0])
            assert row["ci_low"] <= row["difference"] <= row["ci_high"]
            assert row["n"] == 30 and row["test"] == "paired_bootstrap"
        stats = {s["statistic"]: s for s in body["statistics"]}
        assert set(stats) >= {"non_english_mean", "non_english_std", "transfer_gap"}
        assert any("baseline has 1 seed" in w for w in body["warnings"])

        again = client.get(q, headers=A).json()
        assert again["cached"] and again["per_language"] == body["per_language"]

        # Another key's experiments do not exist for it; ids are checked; unlike evaluations 422.
        assert client.get(q, headers=B).status_code == 404
        r = client.get("/comparisons?baseline=../etc&candidate=" + ids["baseline"], headers=A)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "baseline"]
        r = client.get(
            f"/comparisons?baseline={ids['baseline']}&candidate={ids['fewer']}", headers=A
        )
        assert r.status_code == 422, r.text
        entry = r.json()["detail"][0]
        assert entry["loc"] == ["candidate"] and "examples evaluated in en" in entry["msg"]
        assert client.get(q + "&samples=5", headers=A).status_code == 422

        # An experiment that did not succeed cannot be compared yet.
        r = client.post(
            "/experiments", json=spec(tiny_model_dir, "cancelled", ["qqp"], [3]), headers=A
        )
        cancelled = r.json()["id"]
        client.post(f"/experiments/{cancelled}/cancel", headers=A)
        _wait(client, cancelled)
        r = client.get(f"/comparisons?baseline={ids['baseline']}&candidate={cancelled}", headers=A)
        assert r.status_code == 409 and "succeeded" in r.json()["detail"]


def main_out(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 0
    return capsys.readouterr().out


def test_compare_on_the_command_line(
    settings, tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("XSTILTS_HOME", str(settings.home))
    monkeypatch.setenv("XSTILTS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("XSTILTS_MODEL_ROOTS", str(tiny_model_dir.parent))
    files = {}
    for name, inter, n in (("baseline", [], 30), ("candidate", ["qqp"], 30), ("fewer", [], 20)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(spec(tiny_model_dir, name, inter, [1], n)))
        files[name] = tmp_path / f"{name}-results.json"
        assert main(["run", str(path), "--quiet", "--json", str(files[name])]) == 0
    capsys.readouterr()

    out_json = tmp_path / "comparison.json"
    args = ["compare", str(files["baseline"]), str(files["candidate"]), "--samples", "400"]
    assert main([*args, "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    comparison = json.loads(out_json.read_text())
    assert (
        "McNemar" in table
        and "joint items" in table
        and "warning: the baseline has 1 seed" in table
    )
    de = next(r for r in comparison["per_language"] if r["language"] == "de")
    line = next(ln for ln in table.splitlines() if ln.startswith("de "))
    assert line.split()[4] == f"{100 * de['difference']:+.2f}"
    # The same again comes from the cache; --recompute computes the very same numbers.
    assert main(args) == 0 and "cached" in capsys.readouterr().out
    assert main([*args, "--recompute", "--json", str(out_json)]) == 0
    assert "cached" not in capsys.readouterr().out.splitlines()[1]  # the seeds line says so
    assert json.loads(out_json.read_text())["per_language"] == comparison["per_language"]

    # The 8 characters the table prints for each side stand for its id.
    head = next(ln for ln in table.splitlines() if " vs baseline " in ln).split()
    cand8, base8 = head[head.index("candidate") + 1], head[head.index("baseline") + 1]
    assert len(cand8) == len(base8) == 8 and cand8 != base8
    assert main(["compare", base8, cand8, "--samples", "400"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == main_out(args, capsys).splitlines()[1:]
    assert main(["compare", base8[:5], cand8, "--samples", "400"]) == 2  # too short: not an id
    assert "not found" in capsys.readouterr().err

    assert main(["compare", str(files["baseline"]), str(files["fewer"])]) == 2
    err = capsys.readouterr().err
    assert "candidate:" in err and "examples evaluated in en" in err

    # Predictions this process cannot read (a store not mounted here): a clear error, not a crash.
    from xstilts.comparisons import ANY_OWNER
    from xstilts.comparisons.sides import side_ref
    from xstilts.runtime.workspace import Workspace

    fewer = json.loads(files["fewer"].read_text())["experiment"]["id"]
    ws = Workspace(settings)
    (side_ref(ws.sessions, fewer, ANY_OWNER).predicts[0].output / "predictions.json").unlink()
    ws.close()
    assert main(["compare", fewer, fewer, "--recompute"]) == 2
    assert "cannot be read here" in capsys.readouterr().err
