"""Prove a refactor preserves behaviour: one experiment per task format, run through the ``xstilts``
CLI on a tiny random model (fixed seed) and the real data, every stored metric written to JSON.

Run it on the commit before a change and on the commit after, then compare the two files:

    python bench/same_numbers.py --out before.json            # on the old commit
    python bench/same_numbers.py --out after.json             # on the new commit
    python bench/same_numbers.py --compare before.json after.json

``--demo`` also runs the two demo specs (offline model, all 15 XNLI languages; ~10 min on 2 cores).
Only the CLI is used, so the script runs unchanged on both sides of a restructuring.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from random_model import save_random_xlmr

REPO = Path(__file__).resolve().parents[1]
TRAINING = {
    "learning_rate": 1e-3,
    "batch_size": 16,
    "max_train_examples": 96,
    "max_seq_length": 64,
    "warmup_ratio": 0.1,
}


def _spec(name: str, model: Path, data: Path, target: dict[str, Any], languages: list[str],
          intermediate: list[str] | None = None, **evaluation: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "model": {"source": f"local:{model}"},
        "intermediate": {"tasks": intermediate or [], "training": TRAINING},
        "target": {**target, "training": TRAINING},
        "evaluation": {
            "languages": languages,
            "max_examples_per_language": 30,
            "max_seq_length": 64,
            "bootstrap_samples": 50,
            **evaluation,
        },
        "seeds": [3],
        "data": {"source": "local", "path": str(data)},
    }


def experiments(model: Path, data: Path) -> dict[str, dict[str, Any]]:
    return {
        "pair: qqp -> xnli": _spec("pair", model, data, {"task": "xnli"}, ["en", "de", "ar"],
                                   ["qqp"]),
        "choice+pair multi-task: cosmosqa+qqp -> pawsx (on qqp)": _spec(
            "choice", model, data, {"task": "pawsx", "train_task": "qqp"}, ["en", "de"],
            ["cosmosqa", "qqp"]),
        "tagging: panx": _spec("panx", model, data, {"task": "panx"}, ["en", "de", "zh"]),
        "tagging: udpos (test split)": _spec("udpos", model, data, {"task": "udpos"},
                                             ["en", "fr"], split="test"),
        "qa: mlqa (on tydiqa en)": _spec("mlqa", model, data,
                                         {"task": "mlqa", "train_task": "tydiqa"}, ["en", "zh"]),
        "retrieval: tatoeba": _spec("tatoeba", model, data, {"task": "tatoeba"}, ["de", "ru"]),
        "retrieval: bucc2018": _spec("bucc", model, data, {"task": "bucc2018"}, ["zh"],
                                     max_examples_per_language=60),
    }  # fmt: skip


def tiny_model(folder: Path) -> Path:
    """The test suite's tiny random XLM-R (2 layers, width 32, seed 0) with the real tokenizer."""
    if (folder / "config.json").is_file():
        return folder
    out = subprocess.run(
        [sys.executable, "-m", "xstilts.cli", "models", "prepare"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return save_random_xlmr(folder, out.stdout.strip().splitlines()[-1])


def overlay(data: Path, into: Path) -> Path:
    """The data folder plus Cosmos QA dev linked as its train file (no local train file)."""
    for entry in data.iterdir():
        if entry.name != "cosmosqa":
            (into / entry.name).symlink_to(entry)
    (into / "cosmosqa").mkdir()
    (into / "cosmosqa" / "valid.csv").symlink_to(data / "cosmosqa" / "valid.csv")
    (into / "cosmosqa" / "train.csv").symlink_to(data / "cosmosqa" / "valid.csv")
    return into


def run(spec: dict[str, Any] | Path, env: dict[str, str], work: Path) -> list[dict[str, Any]]:
    if isinstance(spec, dict):
        path = work / f"spec-{abs(hash(spec['name']))}.json"
        path.write_text(json.dumps(spec))
    else:
        path = spec
    out = work / "result.json"
    subprocess.run(
        [sys.executable, "-m", "xstilts.cli", "run", str(path), "--json", str(out), "-q"],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    rows = json.loads(out.read_text())["metrics"]
    keys = ("task", "language", "metric", "seed", "value", "n", "ci_low", "ci_high")
    return [{k: r[k] for k in keys} for r in rows]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, help="write the metrics of every experiment here")
    p.add_argument("--demo", action="store_true", help="also run examples/demo-*.yaml")
    p.add_argument("--only", help="comma-separated substrings of experiment names")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    data = Path(os.environ.get("XSTILTS_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    work = Path(tempfile.mkdtemp(prefix="xstilts-same-numbers-"))
    model = tiny_model(Path(tempfile.gettempdir()) / "xstilts-same-numbers-tiny-model")
    env = {
        **os.environ,
        "XSTILTS_HOME": str(work / "home"),
        "XSTILTS_DATA_DIR": str(data),
        # The overlay folder the specs name must lie under a data root, like any spec's data.path.
        "XSTILTS_DATA_ROOTS": os.pathsep.join([str(data), str(work / "data")]),
        "XSTILTS_MODEL_ROOTS": str(model.parent),
        "TOKENIZERS_PARALLELISM": "false",
    }
    (work / "data").mkdir()
    todo: dict[str, Any] = experiments(model, overlay(data, work / "data"))
    if args.only:
        wanted = args.only.split(",")
        todo = {k: v for k, v in todo.items() if any(w in k for w in wanted)}
    if args.demo:
        todo["demo: baseline"] = REPO / "examples" / "demo-baseline.yaml"
        todo["demo: x-stilts"] = REPO / "examples" / "demo-xstilts.yaml"
    results = {}
    for name, spec in todo.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run(spec, env, work)
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    differ = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{'only in ' + ('after' if name in b else 'before'):<16} {name}")
            continue
        same = a[name] == b[name]
        differ += not same
        print(f"{'identical' if same else 'DIFFERENT':<16} {len(b[name]):>3} metrics  {name}")
    print(f"{len(set(a) & set(b)) - differ} identical, {differ} different")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
