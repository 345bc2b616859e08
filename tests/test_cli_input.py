"""Bad input to the command line and to spec files, found by an outside review: each gets exit 2
and a message that names what was wrong, at once, not a traceback or a failure after the work.
Also the spec costs that an input could blow up (repeated languages, YAML aliases)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from xstilts.api.client import Client
from xstilts.cli.main import main
from xstilts.comparisons import CompareOptions
from xstilts.errors import XstiltsError
from xstilts.spec import MAX_SPEC_DEPTH, MAX_YAML_VALUES, load_yaml, parse_spec, read_spec_data

from tests.conftest import broken_mnli_folder, tiny_spec
from tests.test_cli import env  # noqa: F401 - fixture


def _usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command; it must exit 2 (argparse's SystemExit or our return) and say why."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    assert code == 2, argv
    return capsys.readouterr().err


def test_repeated_languages_are_refused_in_linear_time() -> None:
    spec = {"target": {"task": "xnli"}, "evaluation": {"languages": ["en", "fr"] * 15_000}}
    t0 = time.perf_counter()
    with pytest.raises(XstiltsError) as e:
        parse_spec(spec)
    took = time.perf_counter() - t0
    assert "evaluation.languages" in str(e.value) and "at most 40 items" in str(e.value)
    assert took < 5, took  # was 19 s (list.count per entry); a linear check takes milliseconds
    twice = {"target": {"task": "xnli"}, "evaluation": {"languages": ["en", "fr", "en"]}}
    with pytest.raises(XstiltsError, match="listed more than once: en"):
        parse_spec(twice)


def test_yaml_aliases_are_counted_before_anything_is_built(tmp_path: Path) -> None:
    # Seven levels of ten aliases: 10**7 values from 500 bytes (was 55 s and 3.5 GB).
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    lines.append("target: {task: xnli}")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(XstiltsError) as e:
        read_spec_data(bomb)
    assert time.perf_counter() - t0 < 5
    assert "not valid YAML" in str(e.value) and f"at most {MAX_YAML_VALUES:,}" in str(e.value)
    # Aliases that expand to a sane size are a spec's own business (our examples use them).
    assert load_yaml("t: &t {epochs: 1}\na: *t\nb: {<<: *t, lr: 1}\n") == {
        "t": {"epochs": 1},
        "a": {"epochs": 1},
        "b": {"epochs": 1, "lr": 1},
    }
    with pytest.raises(yaml.YAMLError, match="refers to itself"):
        load_yaml("a: &a [*a]\n")


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("bad.yaml", b'name: "\xff"\n', "not UTF-8"),
        ("deep.json", b"[" * 5000 + b"]" * 5000, "nests deeper than"),
        ("deep.yaml", b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nests deeper than"),
        ("deep33.json", b'{"a": ' + b"[" * 32 + b"]" * 32 + b"}", "nests deeper than"),
        ("deep32.json", b'{"a": ' + b"[" * 31 + b"]" * 31 + b"}", None),
    ],
)
def test_unreadable_or_too_deep_spec_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, says: str | None
) -> None:
    path = tmp_path / name
    if says is None:  # nested exactly to the limit: read
        path.write_bytes(content)
        assert read_spec_data(path) == json.loads(content)
        return
    path.write_bytes(content)
    err = _usage(["validate", str(path)], capsys)
    assert says in err and "Traceback" not in err
    if "deeper" in says:
        assert str(MAX_SPEC_DEPTH) in err


def test_output_paths_that_cannot_be_written_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "existing"
    folder.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv, says in [
        (["gc", "--dry-run", "--json", str(folder)], "is a folder"),
        (["gc", "--dry-run", "--json", str(afile / "out.json")], "is not a folder"),
        (["run", "spec.yaml", "--json", str(folder)], "is a folder"),
        (["report", "abc", "--out", str(afile)], "is a file"),
        (["export", "abc", str(afile)], "is a file"),
        (["compare", "a", "b", "--json", str(folder)], "is a folder"),
        (["score", "--predictions", "p", "--labels", "l", "--json", str(folder)], "is a folder"),
    ]:
        err = _usage(argv, capsys)
        assert says in err, (argv, err)
    assert afile.read_text() == "x"  # nothing was written over


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["gc", "--dry-run", "--min-age-s", "-5"], "--min-age-s must be from 0"),
        (["gc", "--dry-run", "--min-age-s", "nan"], "--min-age-s must be from 0"),
        (["gc", "--dry-run", "--min-age-s=-inf"], "--min-age-s must be from 0"),
        (["serve", "--port", "70000"], "--port must be from 1 to 65535"),
        (["serve", "--port", "x"], "--port: expected a whole number"),
        (["submit", "s.yaml", "--poll", "-1"], "--poll must be from 0.1"),
        (["submit", "s.yaml", "--poll", "0"], "--poll must be from 0.1"),
        (["compare", "a", "b", "--seed", "-1"], "--seed must be from 0"),
        # Not a number, but as quick: --json without --wait wrote nothing and exited 0.
        (["submit", "s.yaml", "--json", "out.json"], "--json: the metrics exist once"),
    ],
)
def test_numbers_out_of_range_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert says in _usage(argv, capsys)


def test_compare_json_writes_or_says_why_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.json"
    err = _usage(["compare", "a", "b", "c", "--json", str(out)], capsys)
    assert "--json writes the paired comparison of two experiments; got 3" in err
    assert not out.exists()
    with pytest.raises(XstiltsError, match="seed"):
        CompareOptions(seed=-1)


def test_export_refuses_labels_into_its_own_output(
    env,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "export"
    err = _usage(["export", "abc", str(out), "--labels", str(out / ".." / "export")], capsys)
    assert "--labels" in err and "is OUT itself" in err
    assert not out.exists()


def test_validate_checks_a_study_and_lists_its_cells(
    env,  # noqa: F811
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tiny_spec(tiny_model_dir, evaluation={"languages": ["en", "de"]})
    study = {
        "name": "s",
        "model": base["model"],
        "intermediate_sets": [[], ["SNLI"]],
        "targets": ["XNLI"],
        "overrides": {"XNLI": {"evaluation": {"max_examples_per_language": 4}}},
        "intermediate": {"training": base["intermediate"]["training"]},
        "target_training": base["target"]["training"],
        "evaluation": base["evaluation"],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    # Two cells of one seed: the baseline's target and 2 predictions (+ its evaluation), and
    # SNLI's intermediate stage before the same; task names in any case.
    assert "valid study; 2 cells" in out
    assert "baseline/xnli:" in out and "snli/xnli:" in out
    study["intermediate_sets"] = [["snli"]]  # no baseline row
    path.write_text(yaml.safe_dump(study))
    err = _usage(["validate", str(path)], capsys)
    assert "intermediate_sets" in err


class _Server:
    """A real HTTP server on 127.0.0.1 that answers every request the same way."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        import http.server
        import threading

        answer = (status, body, content_type)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self) -> None:
                self.send_response(answer[0])
                self.send_header("Content-Type", answer[2])
                self.send_header("Content-Length", str(len(answer[1])))
                self.end_headers()
                self.wfile.write(answer[1])

            do_GET = do_POST = _reply  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "says"),
    [
        (200, b"<html>welcome</html>", "text/html", "did not answer as the xstilts API does"),
        (200, b'{"id": 1}', "application/json", "did not answer as the xstilts API does"),
        (400, b'["a", "list"]', "application/json", "HTTP 400: ['a', 'list']"),
        (422, b'"just text"', "application/json", "HTTP 422: just text"),
        (422, b'{"detail": [{"loc": ["body", "seeds"], "msg": "bad"}]}', "application/json",
         "HTTP 422: body.seeds: bad"),
    ],
)  # fmt: skip
def test_the_client_explains_answers_of_the_wrong_shape(
    status: int, body: bytes, content_type: str, says: str
) -> None:
    server = _Server(status, body, content_type)
    try:
        client = Client(server.url, "key", attempts=1)
        with pytest.raises(XstiltsError) as e:
            client.experiment("abc")
        assert says in str(e.value)
    finally:
        server.close()


@pytest.mark.parametrize(
    ("url", "key", "says"),
    [
        ("http://[::1", "key", "not a URL"),
        ("ftp://127.0.0.1", "key", "not an http(s) URL"),
        ("127.0.0.1:8000", "key", "not an http(s) URL"),
        ("http://127.0.0.1:8000", "clé", "printable ASCII"),
        ("http://127.0.0.1:8000", "a\nb", "printable ASCII"),
    ],
)
def test_the_client_refuses_a_bad_url_or_key_naming_it(url: str, key: str, says: str) -> None:
    with pytest.raises(XstiltsError) as e:
        Client(url, key)
    assert says in str(e.value)
    with pytest.raises(XstiltsError, match="idempotency key"):
        Client("http://127.0.0.1:1", "key").submit({}, idempotency_key="ключ")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("twice.yaml", "target: {task: xnli}\nseeds: [1]\nseeds: [2, 3]\n"),
        ("twice.json", '{"target": {"task": "xnli", "task": "pawsx"}}'),
    ],
)
def test_a_key_given_twice_is_refused_not_resolved_in_silence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    err = _usage(["validate", str(path)], capsys)
    assert "is given twice in one mapping" in err


def test_settings_paths_and_revisions_and_results_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("XSTILTS_HOME", str(afile))
    assert "XSTILTS_HOME: " in _usage(["gc", "--dry-run"], capsys)
    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path / "home"))
    err = _usage(["db", "upgrade", "bogus"], capsys)
    assert "revision: " in err and "'bogus'" in err
    err = _usage(["report", "../results/missing.json", "--out", str(tmp_path / "r")], capsys)
    assert "no results file ../results/missing.json" in err


def test_a_study_name_too_long_for_its_cells_names_the_study_field() -> None:
    from xstilts.studies import expand, parse_study

    study = {"intermediate_sets": [[], ["mnli", "qqp"]], "targets": ["xnli", "pawsx"]}
    with pytest.raises(XstiltsError) as e:
        parse_study({**study, "name": "x" * 190})
    # 190 + "/mnli+qqp/" + "pawsx": 205 characters, the longest cell's name
    assert "name: " in str(e.value) and "205 characters" in str(e.value)
    assert "shorten the name to 185" in str(e.value)
    cells = expand(parse_study({**study, "name": "x" * 185}))
    assert max(len(spec.name) for _, _, spec in cells) == 200


def _cli(
    args: list[str], home: Path, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "xstilts.cli", *args],
        env={**os.environ, "XSTILTS_HOME": str(home), **(extra or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`xstilts tasks | head -1`: the closed pipe used to end in a BrokenPipeError traceback."""
    proc = _cli(["tasks"], tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes a line
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert err == ""


def test_a_broken_pipe_that_is_not_our_output_is_an_error(tmp_path: Path) -> None:
    """Only a reader closing standard output ends the command quietly: another pipe or socket
    that breaks (a server gone mid-request) is an error with its traceback."""
    script = (
        "import sys\n"
        "from xstilts.cli import catalog\n"
        "from xstilts.cli.main import main\n"
        "def tasks(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe (a socket)')\n"
        "catalog.cmd_tasks = tasks\n"
        "sys.exit(main(['tasks']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "BrokenPipeError: [Errno 32] Broken pipe (a socket)" in (
        done.stderr
    ), done.stderr


def test_a_failed_stage_is_one_line_without_traceback_and_not_retried(
    tmp_path: Path, tiny_model_dir: Path, data_dir: Path
) -> None:
    """A training pair whose label is not the task's: the stage fails once (another attempt
    would fail the same way), logs one line, and the command ends with the error; the traceback
    stays with the stage (and -v prints it)."""
    folder = broken_mnli_folder(tmp_path, data_dir)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            tiny_spec(
                tiny_model_dir,
                intermediate={"tasks": []},
                evaluation={"languages": ["en"]},
                data={"source": "local", "path": str(folder)},
            )
        )
    )
    roots = {
        "XSTILTS_DATA_DIR": str(data_dir),
        "XSTILTS_DATA_ROOTS": str(tmp_path),
        "XSTILTS_MODEL_ROOTS": str(tiny_model_dir.parent),
    }
    proc = _cli(["run", "-q", str(spec)], tmp_path / "home", roots)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()
    lines = err.decode().splitlines()
    assert "Traceback" not in err.decode()
    assert sum("ERROR xstilts.runtime.lifecycle: stage target_train" in x for x in lines) == 1
    assert "queued for another attempt" not in err.decode()
    assert lines[-1].startswith("error: stage target_train") and "'maybe'" in lines[-1]
    assert lines[-1].endswith("(not retried: another attempt would fail the same way)")


def test_a_model_folder_without_weights_is_refused_before_anything_runs(
    tmp_path: Path, tiny_model_dir: Path, data_dir: Path
) -> None:
    """A config and a tokenizer but no weights used to fail only when the stage loaded them, once
    per attempt; it is a spec error now, exit 2, naming the field and the files it looked for."""
    model = tmp_path / "models" / "noweights"
    model.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_model_dir / name).exists():
            (model / name).write_bytes((tiny_model_dir / name).read_bytes())
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(model, intermediate={"tasks": []})))
    roots = {"XSTILTS_DATA_DIR": str(data_dir), "XSTILTS_MODEL_ROOTS": str(model.parent)}
    proc = _cli(["run", "-q", str(spec)], tmp_path / "home", roots)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err.decode()
    (line,) = err.decode().splitlines()
    assert line.startswith("error: model.source: 'local:") and "holds no model weights" in line
    assert "model.safetensors, model.safetensors.index.json, pytorch_model.bin" in line
    # Its weights written, the same folder is accepted.
    (model / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    proc = _cli(["validate", str(spec)], tmp_path / "home", roots)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


def test_an_id_prefix_stands_for_the_one_id_it_begins(settings) -> None:
    """Tables print ids cut short; a prefix of 6 or more hex characters is completed among the
    workspace's experiments and studies, and one that begins several ids is refused, naming them."""
    from xstilts.db.models import Study
    from xstilts.experiments.queries import complete_id
    from xstilts.runtime.workspace import Workspace

    ws = Workspace(settings)
    one, two = "abcdef01" + "0" * 24, "abcdef02" + "0" * 24
    with ws.sessions.begin() as s:
        s.add_all([Study(id=one, name="a", spec={}), Study(id=two, name="b", spec={})])
    with ws.sessions() as s:
        assert complete_id(s, "abcdef01") == one
        assert complete_id(s, one) == one  # whole: as given
        assert complete_id(s, "abcde") == "abcde"  # too short to stand for an id
        assert complete_id(s, "abcdef9") == "abcdef9"  # begins none: the caller says not found
        assert complete_id(s, "ABCDEF01") == "ABCDEF01"  # ids are lower-case hex
        assert complete_id(s, "abcdef_%") == "abcdef_%"  # not hex, never a LIKE pattern
        with pytest.raises(XstiltsError, match="'abcdef0' begins more than one id") as e:
            complete_id(s, "abcdef0")
    assert e.value.field == "id" and one in str(e.value) and two in str(e.value)
    assert "..." not in str(e.value)
    # Five are listed; a sixth is said to exist. Experiments' ids are completed as well.
    more = [f"abcdef{n:02d}" + "0" * 24 for n in (3, 4, 5, 6)]
    with ws.sessions.begin() as s:
        s.add_all([Study(id=x, name="c", spec={}) for x in more[:3]])
    with ws.sessions() as s, pytest.raises(XstiltsError) as e:
        complete_id(s, "abcdef0")
    assert "..." not in str(e.value) and str(e.value).count("abcdef0") == 6  # the ref + 5 ids
    with ws.sessions.begin() as s:
        s.add(Study(id=more[3], name="d", spec={}))
    with ws.sessions() as s, pytest.raises(XstiltsError) as e:
        complete_id(s, "abcdef0")
    assert str(e.value).count("abcdef0") == 6 and ", ...); give more of it" in str(e.value)
    ws.close()
