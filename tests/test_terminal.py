"""Text a user wrote, on its way to a terminal: the specs refuse the characters a terminal acts on
(naming the field and the class), and the command line shows each one escaped, so a record stored
before the refusal, or a results file a user passes, never reaches the terminal raw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from xstilts.cli.main import main
from xstilts.cli.tables import comparison_table
from xstilts.runtime.workspace import Workspace
from xstilts.spec import STORED, ExperimentSpec, SpecError, parse_spec
from xstilts.studies import parse_study
from xstilts.terminal import terminal_safe, unsafe_character

from tests.conftest import tiny_spec

C0 = "control characters (such as NUL or a line break)"
C1 = "C1 control characters (U+0080 to U+009F"
SEPARATORS = "line and paragraph separators (U+2028, U+2029)"
BIDI = "bidirectional embedding, override and isolate characters"
UNSAFE = [
    ("\x85", C1, "U+0085"),  # NEL: a line break to some terminals
    ("\x9b", C1, "U+009B"),  # CSI: starts an escape sequence
    ("\u2028", SEPARATORS, "U+2028"),
    ("\u202e", BIDI, "U+202E"),  # right-to-left override
    ("\u2066", BIDI, "U+2066"),  # left-to-right isolate
    ("\x1b", C0, "U+001B"),  # ESC, refused before as now
]


@pytest.mark.parametrize(("char", "kind", "code"), UNSAFE)
def test_specs_refuse_each_class_naming_the_field(char: str, kind: str, code: str) -> None:
    bad = f"exp{char}eriment"
    for data, field in (
        ({"name": bad, "target": {"task": "xnli"}}, "name"),
        ({"target": {"task": "xnli"}, "model": {"source": f"local:/m{char}"}}, "model.source"),
        ({"target": {"task": "xnli"}, "data": {"path": f"x{char}"}}, "data.path"),
    ):
        with pytest.raises(SpecError) as e:
            parse_spec(data)
        ((where, message),) = e.value.errors
        assert where == field and kind in message and code in message, (field, message)

    with pytest.raises(SpecError) as e:
        parse_study({"name": bad, "intermediate_sets": [[]], "targets": ["xnli"]})
    ((where, message),) = e.value.errors
    assert where == "name" and kind in message and f"{code} at character 4" in message
    # Strings inside a study's lists and mappings are checked too.
    with pytest.raises(SpecError) as e:
        parse_study(
            {
                "intermediate_sets": [[]],
                "targets": ["xnli"],
                "overrides": {"xnli": {"data": {"path": f"x{char}"}}},
            }
        )
    assert [(w, kind in m) for w, m in e.value.errors] == [("overrides", True)]


def test_other_scripts_and_marks_are_allowed() -> None:
    # Hebrew, Arabic (its own right-to-left text needs no override), accents, CJK, emoji.
    name = "ניסוי تجربة Ünïcødé 実験 🙂"
    assert unsafe_character(name) is None and terminal_safe(name) == name
    assert parse_spec({"name": name, "target": {"task": "xnli"}}).name == name


def test_a_spec_stored_before_the_refusal_stays_readable() -> None:
    data = {"name": "old\u202erecord", "target": {"task": "xnli"}}
    with pytest.raises(ValueError, match="bidirectional"):
        ExperimentSpec.model_validate(data)
    assert ExperimentSpec.model_validate(data, context=STORED).name == "old\u202erecord"


def test_terminal_safe_escapes_each_class_visibly() -> None:
    text = "a\x1bb\x7fc\x85d\x9be\u2028f\u2029g\u202ah\u202ei\u2066j\u2069k\nl"
    assert terminal_safe(text) == (
        "a\\x1bb\\x7fc\\x85d\\x9be\\u2028f\\u2029g\\u202ah\\u202ei\\u2066j\\u2069k\\x0al"
    )
    # A message of several lines keeps its line breaks, and only those.
    assert terminal_safe("one\u202e\ntwo\r", keep_newlines=True) == "one\\u202e\ntwo\\x0d"
    assert unsafe_character("ok") is None


def _results_file(path: Path, exp_id: str, name: str) -> Path:
    body = {
        "experiment": {"id": exp_id, "name": name, "status": "succeeded", "error": None},
        "metrics": [],
        "summary": {},
        "stages": [],
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_compare_prints_names_from_results_files_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path))
    a = _results_file(tmp_path / "a.json", "a" * 32, "baseline\u202e1v")
    b = _results_file(tmp_path / "b.json", "b" * 32, "cand\u2066\x9b2J")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\u202e\u2066\x9b"), out
    head = out.splitlines()[0].split()
    assert head == ["baseline\\u202e1v", "cand\\u2066\\x9b2J", "delta"]

    # An error message that quotes what a user typed is escaped too.
    assert main(["compare", "x\u202e", str(b)]) == 2
    err = capsys.readouterr().err
    assert "\u202e" not in err and "x\\u202e" in err


def test_a_stored_name_is_printed_escaped(settings, tiny_model_dir: Path) -> None:
    # A record stored before the spec refused these characters: readable, and shown escaped.
    data = tiny_spec(tiny_model_dir, name="old\u202erecord", intermediate={"tasks": []})
    ws = Workspace(settings)
    exp_id = ws.submit(ExperimentSpec.model_validate(data, context=STORED))
    results = ws.results(exp_id)
    ws.close()
    assert results.experiment.name == "old\u202erecord"
    table = comparison_table([results, results])
    assert "\u202e" not in table and "old\\u202erecord" in table
