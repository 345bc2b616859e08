"""examples/paper/: the specs that reproduce Phang et al. (2020) validate, plan without fetching
anything, carry the values of make_grid.py's table, and are exactly what make_grid.py writes."""

from __future__ import annotations

import importlib.util
import io
import sys
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType

import pytest
from xstilts.data import DataSource
from xstilts.db.models import StageKind
from xstilts.experiments.plan import PlannedStage, plan_experiment, resolve_data_source
from xstilts.modeling.sources import resolve_model
from xstilts.spec import ExperimentSpec, load_spec
from xstilts.tasks import Split, get_task
from xstilts.tasks.registry import training_task

PAPER = Path(__file__).resolve().parents[1] / "examples" / "paper"
SPECS = sorted(p for p in PAPER.rglob("*.yaml") if p.parent.name != "arms")  # the generated grid
ARMS = PAPER / "arms"  # the MLM and translated-data arms, written by hand


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"paper_{name}", PAPER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


make_grid = _load("make_grid")
budget = _load("budget")


def _placeholder_data(root: Path, spec: ExperimentSpec) -> Path:
    """A local folder with an empty stand-in for every file the spec's plan fingerprints: planning
    hashes files and reads none (CCG's specs read a local folder; CCGbank is licensed)."""
    target = get_task(spec.target.task)
    wanted = [(get_task(t), Split.TRAIN, "en") for t in spec.intermediate.tasks]
    train = training_task(target, spec.target.train_task)
    if train is not None:
        wanted.append((train, Split.TRAIN, "en"))
        if spec.target.training.select == "best_english_dev":
            wanted.append((train, Split.VALIDATION, "en"))
    wanted += [(target, Split(spec.evaluation.split), lang) for lang in spec.languages]
    for task, split, lang in wanted:
        first = task.splits[split].local[0]
        path = root / first.for_language(lang, task.code(lang), task.language_name(lang))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("placeholder\n")
    return root


def _plan(path: Path, tmp_path: Path) -> tuple[ExperimentSpec, list[PlannedStage]]:
    spec = load_spec(path)
    # An hf: source resolves to its hub id and pinned revision: nothing is downloaded, and no
    # model root or cache is needed (both point into an empty temporary folder).
    model = resolve_model(spec.model, (), tmp_path / "cache")
    local = _placeholder_data(tmp_path / "data", spec) if spec.data.source == "local" else None
    data = resolve_data_source(spec, local)
    return spec, plan_experiment(spec, model, data)


def _variant_target(path: Path) -> tuple[str, str]:
    if path.parent.name == "grid":
        variant, target = path.stem.split("__")
        return variant, target
    return path.stem, "xnli"


def test_the_set_is_complete() -> None:
    grid = sorted(p.name for p in (PAPER / "grid").glob("*.yaml"))
    variants = ["baseline", *make_grid.INTERMEDIATE_TASKS, "multitask"]
    assert len(make_grid.INTERMEDIATE_TASKS) == 9 and len(make_grid.TARGETS) == 9
    assert grid == sorted(f"{v}__{t}.yaml" for v in variants for t in make_grid.TARGETS)
    top = sorted(p.stem for p in PAPER.glob("*.yaml"))
    assert top == sorted(variants)
    assert len(SPECS) == 11 + 11 * 9


def test_files_equal_the_generator_output() -> None:
    expected = make_grid.expected_files()
    assert set(expected) == set(SPECS)
    for path, text in expected.items():
        assert path.read_text() == text, f"{path.name}: rerun examples/paper/make_grid.py"
    assert make_grid.main(["--check"]) == 0


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(PAPER)))
def test_spec_validates_and_plans(path: Path, tmp_path: Path) -> None:
    variant, target = _variant_target(path)
    spec, plan = _plan(path, tmp_path)
    tasks = make_grid.VARIANTS[variant]

    # What the table says.
    assert spec.model.source == make_grid.MODEL_SOURCE
    assert spec.model.revision == make_grid.MODEL_REVISION and len(spec.model.revision) == 40
    assert spec.target.task == target and spec.target.train_task is None
    assert spec.intermediate.tasks == sorted(tasks)
    if tasks:
        want = make_grid.intermediate_stage(tasks).fields()
        assert spec.intermediate.training.model_dump(include=set(want)) == want
        assert spec.intermediate.sampling.strategy == "proportional"
    if target in make_grid.TARGET_TRAINING:
        want = make_grid.TARGET_TRAINING[target].fields()
        assert spec.target.training.model_dump(include=set(want)) == want
    ev = spec.evaluation
    assert ev.split == "validation" and ev.languages is None
    assert ev.max_seq_length == make_grid.EVAL_MAX_SEQ_LENGTH[target]
    if target in make_grid.RETRIEVAL:
        assert (ev.retrieval.layer, ev.retrieval.pooling) == (14, "mean")
    if target in make_grid.QA_TARGETS:
        assert ev.doc_stride == make_grid.overlap_for(ev.max_seq_length) == 188
    assert spec.data.source == ("local" if "ccg" in tasks else "hub")
    assert spec.seeds == list(make_grid.SEEDS)

    # What the planner makes of it: stages in order, one prediction per language.
    kinds = Counter(p.kind for p in plan)
    assert kinds[StageKind.INTERMEDIATE] == (1 if tasks else 0)
    assert kinds[StageKind.TARGET] == (0 if target in make_grid.RETRIEVAL else 1)
    assert kinds[StageKind.PREDICT] == len(spec.languages) == len(get_task(target).languages)
    assert kinds[StageKind.EVALUATE] == 1 and plan[-1].kind is StageKind.EVALUATE
    keys = {p.key for p in plan}
    assert all(dep in keys for p in plan for dep in p.deps)
    if tasks:
        inter = plan[0].spec
        assert inter.kind == "intermediate_train" and inter.tasks == tuple(sorted(tasks))
        assert (inter.sampling is not None) == (len(tasks) > 1)
    if spec.data.source == "hub":
        assert all(p.spec.data.kind == "hub" for p in plan if hasattr(p.spec, "data"))


def test_grid_shares_stages(tmp_path: Path) -> None:
    """Cells with the same intermediate task plan one intermediate stage; XQuAD and MLQA share
    their SQuAD-trained target stage: the study trains each model once."""
    inter_keys: dict[str, set[str]] = {}
    target_keys: dict[tuple[str, str], str] = {}
    for i, path in enumerate(sorted((PAPER / "grid").glob("*.yaml"))):
        variant, target = _variant_target(path)
        _, plan = _plan(path, tmp_path / str(i))
        for p in plan:
            if p.kind is StageKind.INTERMEDIATE:
                inter_keys.setdefault(variant, set()).add(p.key)
            elif p.kind is StageKind.TARGET:
                target_keys[variant, target] = p.key
    assert set(inter_keys) == set(make_grid.VARIANTS) - {"baseline"}
    assert all(len(keys) == 1 for keys in inter_keys.values())
    assert len({k for keys in inter_keys.values() for k in keys}) == 10
    for variant in make_grid.VARIANTS:
        assert target_keys[variant, "xquad"] == target_keys[variant, "mlqa"]
    # 11 upstreams x 6 distinct target trainings (XNLI, PAWS-X, UDPOS, PAN-X, SQuAD, TyDiQA).
    assert len(set(target_keys.values())) == 11 * 6


def test_budget_counts_the_grid() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert budget.main(["--mfu", "0.4"]) == 0
    text = out.getvalue()
    assert "intermediate" in text and "GPU-hours" in text
    runs = budget.grid_runs(make_grid)
    assert sum(1 for r in runs if r.stage == "intermediate") == 10
    assert sum(1 for r in runs if r.stage == "target") == 11 * 6
    # XLM-R Large from its config: 24 layers of 12.6M, 256.5M embedding parameters.
    assert budget.NON_EMBEDDING_PARAMS == 24 * 12_596_224
    assert budget.EMBEDDING_PARAMS == 250_002 * 1024 + 514 * 1024 + 1024 + 2 * 1024
    # Doubling the utilisation halves the GPU-hours.
    flops = budget.total_flops(runs)
    assert budget.gpu_hours(flops, 312e12, 0.4) == pytest.approx(
        2 * budget.gpu_hours(flops, 312e12, 0.8)
    )


def test_local_source_needs_only_placeholders(tmp_path: Path) -> None:
    """The CCG specs plan against a folder of empty stand-ins: fingerprints, no reading."""
    _, plan = _plan(PAPER / "ccg.yaml", tmp_path)
    inter = plan[0].spec
    assert inter.tasks == ("ccg",) and inter.data.kind == "local"
    assert resolve_data_source(load_spec(PAPER / "mnli.yaml"), None) == DataSource("hub")


def test_the_arms_validate_and_plan(tmp_path: Path) -> None:
    """The MLM and translated-data arms: the grid's MNLI settings plus what each arm adds, and a
    study that holds the paper's comparison; each plans one intermediate stage with its streams."""
    from xstilts.spec import read_spec_data
    from xstilts.studies import parse_study
    from xstilts.studies.spec import expand

    mnli, _ = _plan(PAPER / "mnli.yaml", tmp_path / "a")
    for name, streams in [
        ("mnli_mlm", ["mnli", "mlm"]),
        ("mnli_translated", ["mnli"] + [f"mnli@{x}" for x in sorted(mnli.languages) if x != "en"]),
    ]:
        spec, plan = _plan(ARMS / f"{name}.yaml", tmp_path / name)
        assert spec.intermediate.training == mnli.intermediate.training
        assert spec.target == mnli.target and spec.evaluation == mnli.evaluation
        inter = plan[0].spec
        assert inter.kind == "intermediate_train" and sorted(inter.streams()) == sorted(streams)
        assert inter.sampling is not None and inter.sampling.strategy == "proportional"
    spec, _ = _plan(ARMS / "mnli_mlm.yaml", tmp_path / "again")
    assert spec.intermediate.mlm is not None and spec.intermediate.mlm.mask_probability == 0.15
    study = parse_study(read_spec_data(ARMS / "study.yaml"))
    rows = [spec.intermediate.arm for _, _, spec in expand(study)]
    assert rows == [[], ["mnli"], ["mnli", "mlm"], ["mnli@translated"]]
