"""Every XTREME target end to end on the offline model and the local data: one table.

Each target is trained on English (no intermediate task: this checks the formats, not X-STILTs)
and evaluated zero-shot in the languages the local data has. Where the local data lacks a task's
usual English training split, the spec says what stands in:

- PAWS-X trains on QQP (no English PAWS-X train file locally; same labels, ``target.train_task``);
  ``pawsx_split`` (not in the default set) instead trains on English PAWS-X dev pairs 0-999 and
  scores every language on pairs 1000-1999 (the dev sets are translations of one another, so the
  halves must not overlap), from derived files in a temporary folder;
- XQuAD and MLQA train on TyDiQA-GoldP's English train file (no SQuAD file locally);
- UDPOS trains on the UD English-EWT train treebank and is evaluated on the test treebanks;
- TyDiQA-GoldP trains on its English train file and is scored on its dev files (gold answers);
- BUCC has only zh-en locally.

    python bench/all_targets.py [--only xnli,panx] [--home DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xstilts.config import Settings
from xstilts.errors import XstiltsError
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec

TRAIN = {
    "learning_rate": 1e-4,
    "batch_size": 16,
    "epochs": 1,
    "max_train_examples": 2000,
    "max_seq_length": 128,
    "checkpoint_every_steps": 100,
}
QA_TRAIN = {**TRAIN, "max_train_examples": 1200, "max_seq_length": 192, "doc_stride": 64}
QA_EVAL = {"max_seq_length": 192, "doc_stride": 64, "max_examples_per_language": 200}

TARGETS: dict[str, dict[str, Any]] = {
    "xnli": {"target": {"task": "xnli"}, "languages": ["en", "de", "ar", "zh", "sw"]},
    "pawsx": {
        "target": {"task": "pawsx", "train_task": "qqp"},
        "languages": ["en", "de", "es", "fr", "zh"],
    },
    "pawsx_split": {
        "target": {"task": "pawsx", "training": {**TRAIN, "epochs": 3}},
        "languages": ["en", "de", "es", "fr", "zh"],
        "data": "pawsx_split",
    },
    "panx": {"target": {"task": "panx"}, "languages": ["en", "de", "ru", "hi", "zh"]},
    "udpos": {
        "target": {"task": "udpos"},
        "languages": ["en", "de", "fr", "ru", "hi", "zh"],
        "split": "test",
    },
    "xquad": {
        "target": {"task": "xquad", "train_task": "tydiqa", "training": QA_TRAIN},
        "languages": ["en", "de", "ru", "zh"],
        "evaluation": QA_EVAL,
    },
    "mlqa": {
        "target": {"task": "mlqa", "train_task": "tydiqa", "training": QA_TRAIN},
        "languages": ["en", "de", "es", "zh"],
        "evaluation": QA_EVAL,
    },
    "tydiqa": {
        "target": {"task": "tydiqa", "training": QA_TRAIN},
        "languages": ["ar", "ko", "ru"],
        "evaluation": QA_EVAL,
    },
    # The whole zh-en sample: 8,624 x 13,589 sentences, 257 gold pairs (no cap: distractors matter).
    "bucc2018": {
        "target": {"task": "bucc2018"},
        "languages": ["zh"],
        "evaluation": {"max_examples_per_language": None},
    },
    "tatoeba": {"target": {"task": "tatoeba"}, "languages": ["de", "fr", "ru", "zh", "sw"]},
}


def pawsx_split(data: Path, into: Path) -> Path:
    """``data`` with PAWS-X replaced by disjoint halves of its dev files: English pairs 0-999 as
    the train file, pairs 1000-1999 of every language as the dev files."""
    for entry in data.iterdir():
        if entry.name != "pawsx":
            (into / entry.name).symlink_to(entry)
    (into / "pawsx").mkdir()
    for dev in sorted((data / "pawsx").glob("dev-*.tsv")):
        lines = dev.read_text(encoding="utf-8").splitlines(keepends=True)
        (into / "pawsx" / dev.name).write_text("".join(lines[1000:]), encoding="utf-8")
        if dev.name == "dev-en.tsv":
            (into / "pawsx" / "train-en.tsv").write_text("".join(lines[:1000]), encoding="utf-8")
    return into


def spec_for(name: str, case: dict[str, Any]) -> dict[str, Any]:
    target = {"training": TRAIN, **case["target"]}
    evaluation = {
        "languages": case["languages"],
        "split": case.get("split", "validation"),
        "max_examples_per_language": 400,
        "bootstrap_samples": 200,
        **case.get("evaluation", {}),
    }
    return {
        "name": f"all-targets-{name}",
        "model": {"source": "offline:multilingual-e5-small", "pooling": "mean"},
        "target": target,
        "evaluation": evaluation,
        "seeds": [1],
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", help="comma-separated targets (default: all nine)")
    p.add_argument("--home", type=Path, help="workspace folder (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write all results here")
    args = p.parse_args()
    names = args.only.split(",") if args.only else [n for n in TARGETS if n != "pawsx_split"]
    env = Settings()
    home = args.home or Path(tempfile.mkdtemp(prefix="xstilts-all-targets-"))
    home.mkdir(parents=True, exist_ok=True)
    data = env.data_dir
    settings = Settings(
        home=home,
        data_dir=data,
        cache_dir=env.cache_dir,
        artifacts_dir=home / "artifacts",
        database_url=f"sqlite:///{home / 'xstilts.db'}",
    )
    ws = Workspace(settings)
    split_data = pawsx_split(env.data_dir, Path(tempfile.mkdtemp(prefix="xstilts-pawsx-")))
    results: dict[str, Any] = {}
    rows = []
    for name in names:
        t0 = time.perf_counter()
        try:
            spec = spec_for(name, TARGETS[name])
            if TARGETS[name].get("data") == "pawsx_split":
                spec["data"] = {"source": "local", "path": str(split_data)}
            res = ws.run(parse_spec(spec)).model_dump(mode="json")
        except XstiltsError as e:
            rows.append(
                (name, "-", f"not scored: {str(e).splitlines()[0][:150]}", time.perf_counter() - t0)
            )
            print(rows[-1], file=sys.stderr, flush=True)
            continue
        results[name] = res
        s = res["summary"]
        per_lang = {m["language"]: m["value"] for m in res["metrics"] if m["metric"] == s["metric"]}
        cells = " ".join(f"{lang} {100 * v:.1f}" for lang, v in per_lang.items())
        extra = ""
        if "exact_match" in s.get("metric_means", {}):
            extra = f" (EM mean {100 * s['metric_means']['exact_match']:.1f})"
        if "threshold" in s.get("metric_means", {}):
            extra = f" (threshold {s['metric_means']['threshold']:.3f})"
        if "precision" in s.get("metric_means", {}) and "threshold" not in s["metric_means"]:
            means = s["metric_means"]
            extra = f" (mean P {100 * means['precision']:.1f} R {100 * means['recall']:.1f}"
            if "token_accuracy" in means:
                extra += f", token accuracy {100 * means['token_accuracy']:.1f}"
            extra += ")"
        rows.append((name, s["metric"], cells + extra, time.perf_counter() - t0))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"\n{'target':<10}{'metric':<10}{'per language (%)':<70}{'wall s':>8}")
    for name, metric, cells, wall in rows:
        print(f"{name:<10}{metric:<10}{cells:<70}{wall:>8.0f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
