"""Spec validation: each bad field is named, with the valid values for tasks and languages."""

from __future__ import annotations

from pathlib import Path

import pytest
from xstilts.spec import SpecError, load_spec, parse_spec


def _errors(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as e:
        parse_spec(data)
    return dict(e.value.errors)


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec({"target": {"task": "XNLI"}})
    assert spec.target.task == "xnli"
    assert spec.intermediate.tasks == []  # the baseline
    assert spec.model.source == "offline:multilingual-e5-small"
    assert spec.languages[0] == "en" and len(spec.languages) == 15
    assert spec.seeds == [42]


def test_unknown_target_lists_valid_tasks() -> None:
    errors = _errors({"target": {"task": "xnlx"}})
    assert "xnli" in errors["target.task"] and "pawsx" in errors["target.task"]


def test_unknown_intermediate_task_lists_valid_ones() -> None:
    errors = _errors({"target": {"task": "xnli"}, "intermediate": {"tasks": ["hellaswagx"]}})
    assert "intermediate.tasks" in errors
    assert "mnli" in errors["intermediate.tasks"] and "qqp" in errors["intermediate.tasks"]


def test_unknown_language_names_field_and_valid_languages() -> None:
    errors = _errors({"target": {"task": "pawsx"}, "evaluation": {"languages": ["de", "xx"]}})
    msg = errors["evaluation.languages"]
    assert "'xx'" in msg and "ja, ko, zh" in msg


def test_extra_fields_are_rejected_everywhere() -> None:
    errors = _errors({"target": {"task": "xnli", "training": {"lr": 1e-5}}, "colour": "red"})
    assert "colour" in errors and "target.training.lr" in errors


def test_out_of_range_hyperparameters() -> None:
    errors = _errors(
        {"target": {"task": "xnli", "training": {"batch_size": 0, "learning_rate": -1}}}
    )
    assert "target.training.batch_size" in errors and "target.training.learning_rate" in errors


def test_hub_model_needs_pinned_revision() -> None:
    errors = _errors(
        {"target": {"task": "xnli"}, "model": {"source": "hf:FacebookAI/xlm-roberta-large"}}
    )
    assert "revision" in errors["model.revision"]
    spec = parse_spec(
        {
            "target": {"task": "xnli"},
            "model": {"source": "hf:FacebookAI/xlm-roberta-large", "revision": "abc123"},
        }
    )
    assert spec.model.revision == "abc123"


def test_bad_model_source_scheme() -> None:
    errors = _errors({"target": {"task": "xnli"}, "model": {"source": "s3://bucket/model"}})
    assert "offline:" in errors["model.source"] and "hf:" in errors["model.source"]


def test_multi_task_is_a_sorted_set_of_tasks() -> None:
    spec = parse_spec(
        {"target": {"task": "xnli"}, "intermediate": {"tasks": ["SNLI", "mnli", "qqp"]}}
    )
    assert spec.intermediate.tasks == ["mnli", "qqp", "snli"]
    assert spec.intermediate.sampling.strategy == "proportional"
    errors = _errors({"target": {"task": "xnli"}, "intermediate": {"tasks": ["qqp", "QQP"]}})
    assert "twice" in errors["intermediate.tasks"]
    errors = _errors(
        {
            "target": {"task": "xnli"},
            "intermediate": {"tasks": ["qqp"], "sampling": {"strategy": "zipf"}},
        }
    )
    assert "proportional" in errors["intermediate.sampling.strategy"]


def test_duplicate_seeds_rejected() -> None:
    errors = _errors({"target": {"task": "xnli"}, "seeds": [1, 1]})
    assert "seeds" in errors


def test_yaml_and_json_files(tmp_path: Path) -> None:
    y = tmp_path / "s.yaml"
    y.write_text("target:\n  task: pawsx\nevaluation:\n  languages: [en, de]\n")
    assert load_spec(y).languages == ["en", "de"]
    j = tmp_path / "s.json"
    j.write_text('{"target": {"task": "xnli"}, "seeds": [1, 2]}')
    assert load_spec(j).seeds == [1, 2]
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: [unclosed\n")
    with pytest.raises(Exception, match="not valid YAML"):
        load_spec(bad)


def test_target_train_task_must_match_format_and_labels() -> None:
    assert parse_spec({"target": {"task": "pawsx", "train_task": "QQP"}}).target.train_task == "qqp"
    errors = _errors({"target": {"task": "pawsx", "train_task": "mnli"}})
    assert (
        "qqp" in errors["target.train_task"] and "cannot train pawsx" in errors["target.train_task"]
    )
    errors = _errors({"target": {"task": "tatoeba", "train_task": "squad"}})
    assert "trains nothing" in errors["target.train_task"]


def test_qa_windows_must_fit_and_name_the_field() -> None:
    errors = _errors(
        {
            "target": {"task": "xquad", "training": {"max_seq_length": 96, "doc_stride": 40}},
            "evaluation": {"max_seq_length": 96, "doc_stride": 30},
        }
    )
    # 96 - 64 (question) - 4 (special tokens) = 28 tokens of context per window
    assert (
        "must be below" in errors["target.training.doc_stride"]
        and "= 28" in errors["target.training.doc_stride"]
    )
    assert "= 28" in errors["evaluation.doc_stride"]
    ok = parse_spec(
        {"target": {"task": "xquad", "training": {"max_seq_length": 96, "doc_stride": 20}}}
    )
    assert ok.target.training.doc_stride == 20


def test_retrieval_settings_are_explicit_fields() -> None:
    spec = parse_spec({"target": {"task": "bucc2018"}})
    assert (spec.evaluation.retrieval.layer, spec.evaluation.retrieval.pooling) == (-1, "mean")
    errors = _errors(
        {"target": {"task": "tatoeba"}, "evaluation": {"retrieval": {"pooling": "max"}}}
    )
    assert "evaluation.retrieval.pooling" in errors


def test_example_specs_are_valid() -> None:
    from xstilts.spec import load_spec, read_spec_data
    from xstilts.studies import expand, parse_study

    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))
    assert len(examples) >= 4
    for path in examples:
        if path.name.startswith("study-"):  # a study: every cell must be a valid spec
            assert expand(parse_study(read_spec_data(path)))
        else:
            load_spec(path)  # raises SpecError naming the field


def test_checkpoint_selection_fields_name_themselves() -> None:
    spec = parse_spec({"target": {"task": "xnli", "training": {"select": "best_english_dev"}}})
    assert spec.target.training.select == "best_english_dev"
    assert parse_spec({"target": {"task": "xnli"}}).target.training.select == "last"
    bad = _errors({"target": {"task": "xnli", "training": {"select": "best"}}})
    assert "'last' or 'best_english_dev'" in bad["target.training.select"]
    # An interval without selection would silently do nothing: refused, naming the field.
    bad = _errors({"target": {"task": "xnli", "training": {"eval_every_steps": 10}}})
    assert "needs select: best_english_dev" in bad["target.training.eval_every_steps"]
    bad = _errors({"target": {"task": "xnli", "training": {"dev_max_examples": 10}}})
    assert "needs select: best_english_dev" in bad["target.training.dev_max_examples"]
    # Intermediate stages keep their last model.
    inter = {"tasks": ["qqp"], "training": {"select": "best_english_dev"}}
    bad = _errors({"target": {"task": "xnli"}, "intermediate": inter})
    assert "valid: last" in bad["intermediate.training.select"]


def test_every_problem_at_once_with_the_closest_valid_name() -> None:
    from xstilts.spec import SpecError, parse_spec

    with pytest.raises(SpecError) as e:
        parse_spec(
            {
                "target": {"task": "xnli", "trainig": {}},
                "intermediate": {"tasks": ["qqq"]},
                "seedz": [1],
            }
        )
    errors = dict(e.value.errors)
    assert errors["target.trainig"].startswith("unknown field 'trainig' (did you mean 'training'?)")
    assert "valid fields here: task, training, train_task" in errors["target.trainig"]
    assert "(did you mean 'qqp'?)" in errors["intermediate.tasks"]
    assert "(did you mean 'seeds'?)" in errors["seedz"]

    with pytest.raises(SpecError) as e:
        parse_spec({"target": {"task": "xnli"}, "evaluation": {"languages": ["de", "xx", "deu"]}})
    ((field, message),) = e.value.errors
    assert field == "evaluation.languages"
    assert "unknown languages 'xx', 'deu' (did you mean 'de'?)" in message


def test_language_errors_show_beside_other_errors() -> None:
    """pydantic skips the cross-field languages check when a field fails; both still show."""
    from xstilts.spec import SpecError, parse_spec

    with pytest.raises(SpecError) as e:
        parse_spec(
            {
                "target": {"task": "xnli", "training": {"learning_rate": -1}},
                "evaluation": {"languages": ["de", "xx"]},
            }
        )
    fields = [f for f, _ in e.value.errors]
    assert fields == ["target.training.learning_rate", "evaluation.languages"]
