"""Reports: figures and the HTML page of a study, a comparison and an experiment, through the CLI
and the API (a browser's ?api_key=), and the study page rendered by headless Chromium."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from fastapi.testclient import TestClient
from xstilts.api.app import create_app
from xstilts.cli.main import main

from tests.test_studies import study_data

KEY, OTHER = "report-key-1", "other-key-2"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _screenshot(page: Path, out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1200,2400", f"--screenshot={out}", page.as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def test_study_comparison_and_experiment_reports(
    settings, tiny_model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    api_settings = settings.model_copy(
        update={"api_keys": {"me": _sha(KEY), "someone": _sha(OTHER)}}
    )
    data = study_data(
        tiny_model_dir,
        [[], ["qqp"]],
        ["xnli"],
        evaluation={
            "languages": ["en", "de", "ar", "sw"],
            "max_examples_per_language": 30,
            "max_seq_length": 64,
            "bootstrap_samples": 100,
        },
        seeds=[1, 2],
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    with TestClient(create_app(api_settings)) as client:
        study = client.post("/studies", json=data, headers=headers).json()
        for cell in study["cells"]:
            assert _wait_owned(client, cell["experiment_id"], headers)["status"] == "succeeded"
        base, cand = (c["experiment_id"] for c in study["cells"])
        sid = study["id"]

        r = client.get(f"/studies/{sid}/report?api_key={KEY}")  # a browser: no header
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert "script-src" not in r.headers["content-security-policy"]
        page = r.text
        matrix = client.get(f"/studies/{sid}/results", headers=headers).json()
        std = matrix["cells"][1][0]["non_english_std_change"]
        assert f"{100 * std['difference']:+.2f}" in page  # the table carries the figure's numbers
        assert page.count("<svg") == 2 and "hatched" in page  # heatmap and xnli's spread
        assert client.get(f"/studies/{sid}/report?api_key={OTHER}").status_code == 404
        assert client.get(f"/studies/{sid}/report").status_code == 401
        assert client.get(f"/studies/{sid}/report?api_key=wrong").status_code == 401

        r = client.get(f"/comparisons/report?baseline={base}&candidate={cand}", headers=headers)
        assert r.status_code == 200 and r.text.count("<svg") == 3
        comparison = client.get(
            f"/comparisons?baseline={base}&candidate={cand}", headers=headers
        ).json()
        for row in comparison["per_language"]:
            assert f"{100 * row['difference']:+.2f}" in r.text
        r = client.get(f"/experiments/{cand}/report?api_key={KEY}")
        assert r.status_code == 200 and r.text.count("<svg") == 2
        assert client.get(f"/experiments/{cand}/report?api_key={OTHER}").status_code == 404

    # The CLI writes the same pages and each figure as PNG and SVG.
    monkeypatch.setenv("XSTILTS_HOME", str(settings.home))
    monkeypatch.setenv("XSTILTS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("XSTILTS_MODEL_ROOTS", str(tiny_model_dir.parent))
    out = tmp_path / "report"
    assert main(["report", sid, "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "grid.png", "grid.svg", "index.html", "spread_xnli.png", "spread_xnli.svg",
    ]  # fmt: skip
    assert (out / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", f"{base}..{cand}", "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "per_language_change.svg").exists()
    assert main(["report", cand, "--out", str(tmp_path / "exp")]) == 0
    assert main(["report", "0" * 32, "--out", str(tmp_path / "none")]) == 2
    capsys.readouterr()

    # Rendered by a real browser: the page is not blank and the figures are there.
    shot = tmp_path / "shot.png"
    _screenshot(out / "index.html", shot)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[1] == 1200
    grey = pixels[..., :3].mean(axis=2)
    assert (grey < 0.5).mean() > 0.005  # text and figure ink, not an empty page
    assert np.unique((grey * 255).astype(int)).size > 50  # the heatmap's shades among them


def _wait_owned(client: TestClient, exp_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + 300
    while True:
        body = client.get(f"/experiments/{exp_id}", headers=headers).json()
        if body["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_a_figure_of_many_seeds_stays_within_its_size_cap() -> None:
    """The spread figure is a column per seed: 3 experiments of 64 seeds would be 194 inches
    wide (25,000 pixels); it is drawn within MAX_INCHES, its columns closer, every seed kept."""
    import struct

    from xstilts.reports.figures import MAX_INCHES, spread

    groups = [(f"arm {g}", {seed: [0.5, 0.6, 0.7] for seed in range(64)}) for g in range(3)]
    drawn = spread(groups, "many seeds")
    width, height = struct.unpack(">II", drawn.png[16:24])  # the PNG header's IHDR
    assert drawn.png[:8] == b"\x89PNG\r\n\x1a\n"
    assert width == round(MAX_INCHES * 130) and height == round(4.2 * 130)
    assert drawn.svg.count("seed 63") == 3  # every column is still labelled
    small = spread([("arm", {1: [0.5, 0.6]})], "one seed")
    assert struct.unpack(">II", small.png[16:24])[0] == 5 * 130  # small figures as before


def test_the_heatmap_scale_keeps_small_changes_pale() -> None:
    """A lone +0.2 points used to span the whole colour scale (±0.2): drawn as bright as the
    largest effect there could be. The scale now ends at the largest change or the floor."""
    from xstilts.reports.figures import SCORE_SCALE_POINTS, colour_limit

    assert colour_limit(np.array([[0.2]]), SCORE_SCALE_POINTS) == 5.0
    assert colour_limit(np.array([[0.2, -7.5], [np.nan, 1.0]]), SCORE_SCALE_POINTS) == 7.5
    assert colour_limit(np.array([[np.nan]]), 2.0) == 2.0  # nothing available yet
