"""Embedded mode end to end over HTTP: `xstilts serve` (SQLite, in-process executor) as a real
server process, and `xstilts submit --wait` as its client."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from xstilts.cli.main import main
from xstilts.experiments.results import ExperimentResults
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

from tests.conftest import tiny_spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_and_submit_over_http(
    settings, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    home = tmp_path / "served"
    env = {
        **os.environ,
        "XSTILTS_HOME": str(home),
        "XSTILTS_DATA_DIR": str(settings.data_dir),
        "XSTILTS_MODEL_ROOTS": str(tiny_model_dir.parent),
    }
    env.pop("XSTILTS_API_KEYS", None)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "xstilts.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert httpx.get(f"{url}/experiments").status_code == 401  # a key is needed

        data = tiny_spec(
            tiny_model_dir,
            evaluation={"languages": ["en", "fr"], "max_examples_per_language": 30},
        )
        spec_file = tmp_path / "spec.json"
        spec_file.write_text(json.dumps(data))
        out = tmp_path / "metrics.json"
        monkeypatch.setenv("XSTILTS_HOME", str(home))  # the client finds the key the server wrote
        code = main(
            ["submit", str(spec_file), "--url", url, "--wait", "--poll", "0.3", "--json", str(out)]
        )
        assert code == 0
        err = capsys.readouterr().err
        # A progress line for each stage the poller saw running (logged: one per stage, then 10 s).
        assert "[seed 1] " in err, err
        # A log gets a line when a stage starts and when its count moved, never the same twice.
        shown = [line.split("ex/s")[0].split()[:4] for line in err.splitlines() if "[seed" in line]
        assert len(shown) == len({tuple(x) for x in shown}), err
        served = json.loads(out.read_text())
        key = (home / "api-key").read_text().strip()
        listed = httpx.get(f"{url}/experiments", headers={"Authorization": f"Bearer {key}"})
        created_at = listed.json()["items"][0]["created_at"]

        # The client commands: an experiment's state, its results, and a cancel it refuses.
        exp_id, at = served["experiment"]["id"], ["--url", url]
        assert main(["status", exp_id, *at]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"experiment {exp_id} (tiny): succeeded"
        assert len(lines) == 1 + len(served["stages"])
        assert all(line.split()[4] == "succeeded" for line in lines[1:]), lines
        fetched = tmp_path / "fetched.json"
        assert main(["results", exp_id, *at, "--json", str(fetched)]) == 0
        assert [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[2:4]] == ["en", "fr"]
        assert json.loads(fetched.read_text())["metrics"] == served["metrics"]
        assert main(["cancel", exp_id, *at]) == 2  # it already succeeded: 409, said
        assert "HTTP 409" in capsys.readouterr().err
        assert main(["status", exp_id[:8], *at]) == 2
        assert "not an experiment or study id: 32 characters" in capsys.readouterr().err
        assert main(["results", "0" * 32, *at]) == 2
        assert "no experiment or study '" in capsys.readouterr().err

        # A study through the same command: its cells, then its matrix.
        study = {
            "name": "grid",
            "model": data["model"],
            "intermediate_sets": [[], ["qqp"]],
            "targets": ["xnli"],
            "intermediate": {"training": data["intermediate"]["training"]},
            "target_training": data["target"]["training"],
            "evaluation": data["evaluation"],
            "seeds": [1],
        }
        study_file, matrix_file = tmp_path / "study.yaml", tmp_path / "matrix.json"
        study_file.write_text(json.dumps(study))
        args = [
            "submit",
            str(study_file),
            *at,
            "--wait",
            "--poll",
            "0.3",
            "--json",
            str(matrix_file),
        ]
        assert main(args) == 0
        out, err = capsys.readouterr()
        matrix = json.loads(matrix_file.read_text())
        assert matrix["rows"] == ["baseline", "qqp"] and matrix["targets"] == ["xnli"]
        (base_cell,), (qqp_cell,) = matrix["cells"]
        assert base_cell["status"] == qqp_cell["status"] == "succeeded"
        assert qqp_cell["score_change"] is not None and "XTREME task score" in out
        study_id = matrix["id"]
        assert err.splitlines()[-1] == (f"study {study_id} (grid): succeeded; 2 cells: 2 succeeded")
        assert main(["status", study_id, *at]) == 0
        cells = capsys.readouterr().out.splitlines()[1:]
        assert [c.split()[:3] for c in cells] == [
            ["baseline", "xnli", "succeeded"], ["qqp", "xnli", "succeeded"],
        ]  # fmt: skip
        assert main(["results", study_id, *at]) == 0
        assert capsys.readouterr().out.rstrip() == out.rstrip().rsplit("\nresults written", 1)[0]
    finally:
        server.terminate()
        server.wait(20)

    # The key and the database are the owner's alone, from the moment they exist.
    for private in (home / "api-key", home / "xstilts.db"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    # Embedded mode's times carry their offset, as the service's do.
    assert served["stages"] and datetime.fromisoformat(created_at).utcoffset() is not None

    direct = Workspace(settings).run(parse_spec(data))
    assert [(m["language"], m["value"], m["n"]) for m in served["metrics"]] == [
        (m.language, m.value, m.n) for m in direct.metrics
    ]
    assert direct.summary is not None
    assert served["summary"]["mean"] == direct.summary.mean
    assert served["experiment"]["status"] == "succeeded"
    # The file `submit --json` wrote is the model's JSON: it parses back to the same numbers.
    assert ExperimentResults.model_validate(served).metrics == direct.metrics
