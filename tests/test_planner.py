"""Stage keys: same inputs give the same key; any input that changes the output changes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from xstilts.data import DataSource
from xstilts.db.models import StageKind
from xstilts.experiments.plan import plan_experiment, stage_key
from xstilts.modeling.sources import ResolvedModel
from xstilts.spec import parse_spec

MODEL = ResolvedModel("/models/m", None, "sha256:aaa")


def _keys(data: dict, data_dir: Path, model: ResolvedModel = MODEL) -> dict[str, str]:
    spec = parse_spec(data)
    return {
        f"{p.role}/{p.seed}": p.key
        for p in plan_experiment(spec, model, DataSource("local", data_dir))
    }


BASE = {
    "model": {"source": "local:/models/m"},
    "intermediate": {"tasks": ["qqp"]},
    "target": {"task": "xnli"},
    "evaluation": {"languages": ["en", "de"]},
    "seeds": [1],
}


def _with(path: str, value: object) -> dict:
    import copy

    data = copy.deepcopy(BASE)
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return data


def test_key_is_canonical_json_hash() -> None:
    assert stage_key({"a": 1, "b": [1, 2]}) == stage_key({"b": [1, 2], "a": 1})
    assert stage_key({"a": 1}) != stage_key({"a": 1.5})
    assert len(stage_key({})) == 64


def test_plan_shape_and_order(data_dir: Path) -> None:
    plan = plan_experiment(parse_spec(BASE), MODEL, DataSource("local", data_dir))
    assert [p.kind for p in plan] == [
        StageKind.INTERMEDIATE,
        StageKind.TARGET,
        StageKind.PREDICT,
        StageKind.PREDICT,
        StageKind.EVALUATE,
    ]
    inter, target, p_en, p_de, ev = plan
    assert target.deps == (inter.key,) and p_en.deps == (target.key,)
    assert ev.deps == (p_en.key, p_de.key)
    baseline = plan_experiment(
        parse_spec(_with("intermediate.tasks", [])), MODEL, DataSource("local", data_dir)
    )
    assert [p.kind for p in baseline][0] == StageKind.TARGET and baseline[0].deps == ()


def test_same_inputs_same_keys(data_dir: Path) -> None:
    assert _keys(BASE, data_dir) == _keys(BASE, data_dir)
    # The experiment's name and the evaluation batch size do not change any output.
    assert _keys(_with("name", "other"), data_dir) == _keys(BASE, data_dir)
    assert _keys(_with("evaluation.batch_size", 7), data_dir) == _keys(BASE, data_dir)
    # An opt-in written out at its default keeps the keys of specs that never mention it.
    off = {"torch_compile": False}
    assert _keys(_with("target.training", off), data_dir) == _keys(BASE, data_dir)


@pytest.mark.parametrize(
    ("change", "value", "changed_roles"),
    [
        (
            "intermediate.training",
            {"learning_rate": 1e-4},
            {"intermediate/1", "target/1", "predict:en/1", "predict:de/1", "evaluate/1"},
        ),  # noqa: E501
        (
            "intermediate.tasks",
            ["snli"],
            {"intermediate/1", "target/1", "predict:en/1", "predict:de/1", "evaluate/1"},
        ),
        (
            "target.training",
            {"epochs": 2},
            {"target/1", "predict:en/1", "predict:de/1", "evaluate/1"},
        ),
        (
            "evaluation.max_examples_per_language",
            10,
            {"predict:en/1", "predict:de/1", "evaluate/1"},
        ),
        ("evaluation.bootstrap_samples", 10, {"evaluate/1"}),
        (
            "target.training",
            {"torch_compile": True},  # compiled kernels give other numbers
            {"target/1", "predict:en/1", "predict:de/1", "evaluate/1"},
        ),
    ],
)
def test_each_input_changes_its_stage_and_downstream(
    data_dir: Path, change: str, value: object, changed_roles: set[str]
) -> None:
    before, after = _keys(BASE, data_dir), _keys(_with(change, value), data_dir)
    assert {r for r in before if before[r] != after.get(r)} == changed_roles


def test_seed_model_and_data_change_keys(data_dir: Path, tmp_path: Path) -> None:
    base = _keys(BASE, data_dir)
    seeds = _keys(_with("seeds", [2]), data_dir)
    assert set(base.values()).isdisjoint(seeds.values())
    other_model = _keys(BASE, data_dir, ResolvedModel("/models/m", None, "sha256:bbb"))
    assert set(base.values()).isdisjoint(other_model.values())
    # Same files elsewhere: same keys. One changed file: only the stages that read it change.
    import shutil

    for sub in ("qqp", "mnli", "xnli"):
        shutil.copytree(data_dir / sub, tmp_path / sub)
    assert _keys(BASE, tmp_path) == base
    (tmp_path / "xnli" / "dev-de.tsv").write_text("a\tb\tneutral\n")
    moved = _keys(BASE, tmp_path)
    assert {r for r in base if base[r] != moved[r]} == {"predict:de/1", "evaluate/1"}


def test_multi_task_keys(data_dir: Path) -> None:
    a = _keys(_with("intermediate.tasks", ["qqp", "snli"]), data_dir)
    b = _keys(_with("intermediate.tasks", ["snli", "qqp"]), data_dir)
    assert a == b  # a set of tasks
    single = _keys(BASE, data_dir)
    assert a["intermediate/1"] != single["intermediate/1"]
    data = _with("intermediate.tasks", ["qqp", "snli"])
    data["intermediate"]["sampling"] = {"strategy": "uniform"}
    c = _keys(data, data_dir)
    assert c["intermediate/1"] != a["intermediate/1"] and c["target/1"] != a["target/1"]
    # Sampling settings do not touch a single-task stage's key.
    one = _with("intermediate.sampling", {"strategy": "uniform"})
    assert _keys(one, data_dir) == single


def test_english_dev_selection_is_part_of_the_target_key(data_dir: Path, tmp_path: Path) -> None:
    import shutil

    base = _keys(BASE, data_dir)
    best = _with("target.training", {"select": "best_english_dev"})
    keys = _keys(best, data_dir)
    # The target model differs, so everything downstream of it does; the intermediate does not.
    assert {r for r in base if base[r] != keys[r]} == {
        "target/1",
        "predict:en/1",
        "predict:de/1",
        "evaluate/1",
    }
    every = _with("target.training", {"select": "best_english_dev", "eval_every_steps": 50})
    assert _keys(every, data_dir)["target/1"] != keys["target/1"]
    plan = plan_experiment(parse_spec(best), MODEL, DataSource("local", data_dir))
    target = next(p for p in plan if p.role == "target")
    assert target.identity()["training"]["select"] == "best_english_dev"
    # The English dev data (MNLI's matched dev, for XNLI) is part of the key; nothing else is read.
    for sub in ("qqp", "mnli", "xnli"):
        shutil.copytree(data_dir / sub, tmp_path / sub)
    assert _keys(best, tmp_path) == keys
    (tmp_path / "mnli" / "dev.json").write_text(
        (tmp_path / "mnli" / "dev.json").read_text()[:-1] + " "
    )
    assert _keys(best, tmp_path)["target/1"] != keys["target/1"]
    assert _keys(BASE, tmp_path) == base  # select: last never reads the dev split


PINNED_SPECS = {
    "pair multi-task": {
        **BASE,
        "intermediate": {"tasks": ["qqp", "snli"]},
        "seeds": [1, 2],
    },
    "qa": {
        "model": {"source": "local:/models/m"},
        "target": {"task": "mlqa", "train_task": "tydiqa"},
        "evaluation": {"languages": ["en", "zh"], "doc_stride": 40},
        "seeds": [1],
    },
    "tagging": {
        "model": {"source": "local:/models/m"},
        "intermediate": {"tasks": ["mnli"]},
        "target": {"task": "udpos"},
        "evaluation": {"languages": ["en", "fr"], "split": "test"},
        "seeds": [3],
    },
    "retrieval": {
        "model": {"source": "local:/models/m", "pooling": "mean"},
        "intermediate": {"tasks": ["qqp"]},
        "target": {"task": "bucc2018"},
        "evaluation": {"languages": ["zh"], "retrieval": {"layer": 6}},
        "seeds": [1],
    },
}


@pytest.mark.parametrize("name", list(PINNED_SPECS))
def test_keys_are_pinned_across_refactors(name: str, data_dir: Path) -> None:
    """Stage keys recorded before the package renovation: a restructuring that changes a key
    silently orphans every stored result, so any change here must be deliberate (bump
    STAGE_CODE_VERSION and update tests/fixtures/stage_keys.json)."""
    import json

    pinned = json.loads((Path(__file__).parent / "fixtures" / "stage_keys.json").read_text())
    plan = plan_experiment(parse_spec(PINNED_SPECS[name]), MODEL, DataSource("local", data_dir))
    assert [f"{p.role}/{p.seed} {p.key}" for p in plan] == pinned[name]


def test_stage_specs_round_trip_through_json(data_dir: Path) -> None:
    from xstilts.experiments.plan import parse_stage_spec

    for data in PINNED_SPECS.values():
        for p in plan_experiment(parse_spec(data), MODEL, DataSource("local", data_dir)):
            spec = parse_stage_spec(json.loads(json.dumps(p.params())))
            assert spec == p.spec and type(spec) is type(p.spec)
            assert spec.kind == p.kind.value


def test_every_missing_data_file_is_named_at_once(data_dir: Path, tmp_path: Path) -> None:
    """A spec reading several absent files is told about all of them, not the first."""
    from xstilts.errors import DataNotFoundError

    (tmp_path / "panx").mkdir()
    for name in ("train-en.tsv", "dev-de.tsv"):
        (tmp_path / "panx" / name).symlink_to(data_dir / "panx" / name)
    spec = parse_spec(
        {"target": {"task": "panx"}, "evaluation": {"languages": ["de", "fr", "es"]}, "seeds": [1]}
    )
    with pytest.raises(DataNotFoundError) as e:
        plan_experiment(spec, MODEL, DataSource("local", tmp_path))
    message = str(e.value)
    assert message.startswith("2 data files are missing:")
    assert "panx validation [fr]" in message and "panx validation [es]" in message
    assert "[de]" not in message
