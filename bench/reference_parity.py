"""Zero-shot XNLI parity: xstilts' target stage against Hugging Face ``Trainer`` on identical data.

Both sides fine-tune the offline ``multilingual-e5-small`` on the same English MNLI pairs (all 8,999
of the local ``mnli/train.json`` by default) with the same hyperparameters (1 epoch, learning rate
3e-5, batch 32, warm-up 10%, weight decay 0.01 off biases and LayerNorm, gradient clipping 1.0, max
length 128, ``<s>`` pooling) and score the very same XNLI validation examples per language: the
fixed seeded subset that ``evaluation.max_examples_per_language`` picks (``load_split``'s cap), read
back by guid on both sides.

- xstilts: the library pipeline, unchanged: ``Workspace.run`` of a spec (offline model, pooling
  ``first``, target ``xnli``) in a fresh temporary ``XSTILTS_HOME``; per-example predictions come
  from the predict stages' ``predictions.json``.
- Hugging Face: ``AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)`` (labels
  in xstilts' NLI order, entailment/neutral/contradiction), ``Trainer`` with ``use_cpu``, the seed
  set before the head is created, and ``trainer.predict`` on the same examples.

Runs alternate (xstilts seed 1, HF seed 1, xstilts seed 2, ...), each in its own process. The table
gives per-language accuracy averaged over seeds, the non-English means and the mean difference over
the non-English languages with paired bootstrap 95% intervals (per-example correctness averaged over
seeds; evaluation examples resampled with the same indices for both sides, once independently within
each language and once with the same lines in every language, since XNLI's dev files are
line-aligned translations and the cap keeps the same lines in each: the second is the honest one and
decides "parity holds"). Both cover evaluation-sample noise only; the per-run non-English means
show the run-to-run spread.

Candidate causes of a gap can be toggled on the xstilts side (monkeypatched in the run's process
only, the library is not changed): ``--xstilts-head-init hf`` (head weights normal(0, 0.02), zero
biases, as ``transformers`` initialises them), ``--xstilts-order random`` (a plain random permutation
per epoch instead of length-grouped batches), ``--xstilts-schedule hf`` (``transformers``' linear
warm-up: lr 0 at the first step, ceil(10%) warm-up steps); and on the Hugging Face side:
``--hf-order group_by_length`` and ``--hf-head-init torch`` (PyTorch's default ``nn.Linear`` init,
as xstilts' head).

    python bench/reference_parity.py --quick                     # smoke: 320 pairs, 50 examples, 1 seed
    python bench/reference_parity.py --json /tmp/parity.json     # the full comparison (hours, below)
    python bench/reference_parity.py --xstilts-order random --seeds 1 2 --json /tmp/order.json
    python bench/reference_parity.py --analyse /tmp/parity.json  # re-print the tables of a saved run

On 2 CPU cores one xstilts run (282 steps, 7,500 predictions) takes ~20-35 min and one Trainer run
about twice that (random batches carry ~2.2x the tokens of length-grouped ones), so the default six
runs take 2.5-5 hours. ``--json`` is written after every run and a rerun with the same file and
options skips the runs already in it. Each xstilts run's workspace is deleted afterwards unless
``PARITY_KEEP_HOME=1`` is set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LANGUAGES = (
    "en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh",
)  # fmt: skip
HYPER = {
    "learning_rate": 3e-5,
    "batch_size": 32,
    "epochs": 1,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "max_seq_length": 128,
}
EVAL_BATCH = 128


def _data_dir() -> Path:
    env = os.environ.get("XSTILTS_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _load(task: str, split: str, lang: str, cap: int | None) -> list[Any]:
    from xstilts.data import DataSource, load_split
    from xstilts.tasks import Split, get_task

    return load_split(get_task(task), Split(split), lang, DataSource("local", _data_dir()), cap)


# --------------------------------------------------------------------------------------------
# Toggles: monkeypatches applied inside one run's process.
# --------------------------------------------------------------------------------------------


def _hf_init_(module: Any, std: float = 0.02) -> None:
    """``transformers``' init of a classification head: Linear weights normal(0, std), zero bias."""
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight.data.normal_(mean=0.0, std=std)
            if m.bias is not None:
                m.bias.data.zero_()


def _patch_xstilts(cfg: dict[str, Any]) -> None:
    import xstilts.training.batching as batching
    import xstilts.training.loop as loop
    from xstilts.modeling import classifier

    if cfg["xstilts_head_init"] == "hf":
        original_init = classifier.SequenceHead.__init__

        def init(self: Any, hidden_size: int, num_labels: int, dropout: float) -> None:
            original_init(self, hidden_size, num_labels, dropout)
            _hf_init_(self)

        classifier.SequenceHead.__init__ = init  # type: ignore[method-assign]

    if cfg["xstilts_order"] == "random":

        def random_batches(lengths: np.ndarray, batch_size: int, seed: int, start_epoch: int = 0):
            epoch = start_epoch
            while True:
                order = np.random.default_rng([seed, epoch]).permutation(len(lengths))
                for i in range(0, len(order), batch_size):
                    yield epoch, order[i : i + batch_size]
                epoch += 1

        batching.epoch_batches = random_batches  # type: ignore[assignment]

    if cfg["xstilts_schedule"] == "hf":
        import torch
        from transformers import get_linear_schedule_with_warmup

        def build_optimizer(model: Any, tcfg: Any, total_steps: int) -> Any:
            params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            groups = [
                {
                    "params": [p for n, p in params if not loop._no_decay(n)],
                    "weight_decay": tcfg.weight_decay,
                },
                {"params": [p for n, p in params if loop._no_decay(n)], "weight_decay": 0.0},
            ]
            opt = torch.optim.AdamW(groups, lr=tcfg.learning_rate, eps=1e-8, fused=True)
            warmup = math.ceil(tcfg.warmup_ratio * total_steps)
            return opt, get_linear_schedule_with_warmup(opt, warmup, total_steps)

        loop.build_optimizer = build_optimizer  # type: ignore[assignment]


# --------------------------------------------------------------------------------------------
# One run (in its own process).
# --------------------------------------------------------------------------------------------


def run_xstilts(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """The library's own pipeline: submit a spec to a fresh workspace, read the predictions."""
    from xstilts.config import Settings
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import parse_spec

    _patch_xstilts(cfg)
    home = Path(tempfile.mkdtemp(prefix="xstilts-parity-"))
    env = Settings()
    settings = Settings(
        home=home,
        data_dir=_data_dir(),
        cache_dir=env.cache_dir,
        artifacts_dir=home / "artifacts",
        database_url=f"sqlite:///{home / 'xstilts.db'}",
    )
    training = {
        **HYPER,
        "max_train_examples": cfg["train_examples"],
        "checkpoint_every_steps": 10_000_000,  # the spec's bound: no checkpoint in one epoch
    }
    spec = {
        "name": f"reference-parity-seed{seed}",
        "model": {"source": "offline:multilingual-e5-small", "pooling": "first"},
        "target": {"task": "xnli", "training": training},
        "evaluation": {
            "languages": cfg["languages"],
            "split": "validation",
            "max_examples_per_language": cfg["eval_examples"],
            "max_seq_length": HYPER["max_seq_length"],
            "batch_size": EVAL_BATCH,
            "bootstrap_samples": 0,
        },
        "seeds": [seed],
        "data": {"source": "local", "path": str(_data_dir())},
    }
    ws = Workspace(settings)
    t0 = time.perf_counter()
    res = ws.run(parse_spec(spec))
    wall = time.perf_counter() - t0
    per_lang: dict[str, dict[str, Any]] = {}
    train_info: dict[str, Any] = {}
    for st in res.stages:
        out = ws.store.stage_dir(st.kind, st.key)
        if st.kind == "target_train":
            info = json.loads((out / "train_result.json").read_text())
            train_info = {k: info[k] for k in ("total_steps", "final_loss", "num_examples")}
            train_info["mean_loss"] = next(iter(info["task_losses"].values()))
        if st.kind != "predict":
            continue
        data = json.loads((out / "predictions.json").read_text())
        rows = data["rows"]
        per_lang[data["language"]] = {
            "guids": [r["id"] for r in rows],
            "correct": [int(r["prediction"] == r["label"]) for r in rows],
        }
    ws.close()
    if not os.environ.get("PARITY_KEEP_HOME"):  # the trained model alone is ~0.5 GB
        shutil.rmtree(home, ignore_errors=True)
    return {"wall_s": wall, "train": train_info, "languages": per_lang}


def run_hf(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from xstilts.config import Settings
    from xstilts.modeling.offline import prepare_offline_model
    from xstilts.tasks import get_task

    folder = prepare_offline_model(Settings().cache_dir)
    labels = get_task("xnli").labels  # xstilts' order; examples carry indices into it
    assert get_task("mnli").labels == labels
    tok = AutoTokenizer.from_pretrained(folder)
    max_len = HYPER["max_seq_length"]

    def rows(examples: list[Any]) -> list[dict[str, Any]]:
        enc = tok(
            [e.text_a for e in examples],
            [e.text_b for e in examples],
            truncation=True,
            max_length=max_len,
        )
        return [
            {"input_ids": ids, "attention_mask": m, "labels": e.label}
            for ids, m, e in zip(enc["input_ids"], enc["attention_mask"], examples, strict=True)
        ]

    train_rows = rows(_load("mnli", "train", "en", cfg["train_examples"]))
    set_seed(seed)  # the fresh head's initialisation is part of the seeded run, as in xstilts
    model = AutoModelForSequenceClassification.from_pretrained(
        folder,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    if cfg["hf_head_init"] == "torch":
        torch.manual_seed(seed)
        for m in model.classifier.modules():
            if isinstance(m, torch.nn.Linear):
                m.reset_parameters()
    out = tempfile.mkdtemp(prefix="hf-parity-")
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=HYPER["batch_size"],
        per_device_eval_batch_size=EVAL_BATCH,
        num_train_epochs=HYPER["epochs"],
        learning_rate=HYPER["learning_rate"],
        warmup_steps=HYPER[
            "warmup_ratio"
        ],  # below 1: a ratio (transformers 5 dropped warmup_ratio)
        weight_decay=HYPER["weight_decay"],
        max_grad_norm=HYPER["max_grad_norm"],
        lr_scheduler_type="linear",
        seed=seed,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        train_sampling_strategy=cfg["hf_order"],
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train_rows, data_collator=DataCollatorWithPadding(tok)
    )
    t0 = time.perf_counter()
    result = trainer.train()
    # transformers 5 samples *evaluation* batches by length too under group_by_length, and
    # trainer.predict then returns predictions in that order, not the dataset's: predict with
    # sequential batches (the order below is ours, and is undone afterwards).
    trainer.args.train_sampling_strategy = "random"
    probe = rows(_load("xnli", "validation", "en", 2))
    assert isinstance(trainer._get_eval_sampler(probe), torch.utils.data.SequentialSampler)
    per_lang: dict[str, dict[str, Any]] = {}
    for lang in cfg["languages"]:
        examples = _load("xnli", "validation", lang, cfg["eval_examples"])
        # Length-sorted (less padding, as xstilts predicts), then back in the examples' order.
        order = sorted(
            range(len(examples)), key=lambda i: -len(examples[i].text_a + examples[i].text_b)
        )
        sorted_pred = trainer.predict(rows([examples[i] for i in order])).predictions.argmax(-1)
        pred = np.empty(len(examples), dtype=np.int64)
        pred[order] = sorted_pred
        per_lang[lang] = {
            "guids": [e.guid for e in examples],
            "correct": [int(p == e.label) for p, e in zip(pred.tolist(), examples, strict=True)],
        }
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    train_info = {
        "total_steps": result.global_step,
        "mean_loss": result.training_loss,  # mean over the run's steps
        "num_examples": len(train_rows),
    }
    return {"wall_s": wall, "train": train_info, "languages": per_lang}


# --------------------------------------------------------------------------------------------
# Analysis.
# --------------------------------------------------------------------------------------------


def correctness(runs: list[dict[str, Any]], impl: str, lang: str) -> np.ndarray:
    """Per-example correctness averaged over ``impl``'s seeds (seeds x examples -> examples)."""
    mats = [r["languages"][lang]["correct"] for r in runs if r["impl"] == impl]
    return np.asarray(mats, dtype=float).mean(0)


def analyse(result: dict[str, Any], samples: int, seed: int = 0) -> dict[str, Any]:
    runs = result["runs"]
    langs = result["config"]["languages"]
    # The two sides must have scored the very same examples, in the same order.
    for lang in langs:
        guid_lists = {tuple(r["languages"][lang]["guids"]) for r in runs}
        if len(guid_lists) != 1:
            raise SystemExit(f"{lang}: the runs scored different examples")
    lines = {
        tuple(g.rsplit("-", 1)[1] for g in runs[0]["languages"][lang]["guids"]) for lang in langs
    }
    if len(lines) != 1:
        raise SystemExit("the languages were scored on different lines of the dev files")
    table = {}
    for lang in langs:
        x, h = correctness(runs, "xstilts", lang), correctness(runs, "hf", lang)
        table[lang] = (100 * x.mean(), 100 * h.mean())
    others = [lang for lang in langs if lang != "en"] or langs
    # Per-example difference (seed-averaged correctness, xstilts - HF): languages x examples.
    d = np.stack(
        [correctness(runs, "xstilts", lang) - correctness(runs, "hf", lang) for lang in others]
    )
    rng = np.random.default_rng(seed)
    # Within each language independently (the same indices for both sides) ...
    independent = np.zeros(samples)
    for row in d:
        independent += row[rng.integers(0, len(row), size=(samples, len(row)))].mean(1)
    independent *= 100 / len(others)
    # ... and jointly: XNLI's dev files are line-aligned translations and the cap picks the same
    # lines in every language, so one draw of positions resamples the same items everywhere.
    joint = 100 * d[:, rng.integers(0, d.shape[1], size=(samples, d.shape[1]))].mean(2).mean(0)
    x_mean = float(np.mean([table[lang][0] for lang in others]))
    h_mean = float(np.mean([table[lang][1] for lang in others]))
    lo, hi = np.percentile(independent, [2.5, 97.5])
    jlo, jhi = np.percentile(joint, [2.5, 97.5])
    per_seed = {}
    for r in runs:
        acc = [100 * np.mean(r["languages"][lang]["correct"]) for lang in others]
        per_seed[f"{r['impl']} seed {r['seed']}"] = (float(np.mean(acc)), r["wall_s"], r["train"])
    return {
        "table": table,
        "non_english": others,
        "xstilts_mean": x_mean,
        "hf_mean": h_mean,
        "diff": x_mean - h_mean,
        "ci": (float(lo), float(hi)),
        "ci_joint": (float(jlo), float(jhi)),
        "per_seed": per_seed,
        "samples": samples,
    }


def print_report(result: dict[str, Any], a: dict[str, Any]) -> None:
    cfg = result["config"]
    n_eval = len(result["runs"][0]["languages"][cfg["languages"][0]]["correct"])
    seeds = sorted({r["seed"] for r in result["runs"]})
    toggles = ", ".join(f"{k}={cfg[k]}" for k in sorted(cfg) if k.startswith(("xstilts_", "hf_")))
    print(
        f"XNLI validation, {n_eval} examples a language (the same on both sides); "
        f"{result['runs'][0]['train'].get('num_examples')} MNLI pairs; seeds {seeds}; {toggles}"
    )
    print(f"{'lang':<6}{'xstilts':>9}{'HF':>9}{'diff':>8}")
    for lang, (x, h) in a["table"].items():
        print(f"{lang:<6}{x:>9.2f}{h:>9.2f}{x - h:>+8.2f}")
    print(f"{'non-en':<6}{a['xstilts_mean']:>9.2f}{a['hf_mean']:>9.2f}{a['diff']:>+8.2f}")
    print(
        f"mean difference over non-English languages {a['diff']:+.2f} points; paired bootstrap 95% "
        f"intervals ({a['samples']} resamples): examples resampled within each language "
        f"[{a['ci'][0]:+.2f}, {a['ci'][1]:+.2f}]; the same lines in every language "
        f"[{a['ci_joint'][0]:+.2f}, {a['ci_joint'][1]:+.2f}]"
    )
    print(
        "\nper run: non-English mean accuracy, wall s (train + predict), steps, mean training loss"
    )
    for name, (acc, wall, train) in a["per_seed"].items():
        print(
            f"  {name:<18}{acc:>7.2f}{wall:>8.0f} s  steps {train.get('total_steps')}"
            f"  loss {train.get('mean_loss', float('nan')):.4f}"
        )
    ok = a["ci_joint"][0] <= 0 <= a["ci_joint"][1] or abs(a["diff"]) < 1
    print(
        f"\nparity {'holds' if ok else 'NOT shown'}: mean difference {a['diff']:+.2f} points "
        "(wanted: the same-lines interval covers 0 or |difference| < 1)"
    )


def print_one_side(result: dict[str, Any]) -> None:
    """Per-run accuracies of a result that has runs of one implementation only (so far)."""
    langs = result["config"]["languages"]
    runs = result["runs"]
    print(f"{'lang':<6}" + "".join(f"{r['impl'] + ' ' + str(r['seed']):>12}" for r in runs))
    for lang in langs:
        cells = "".join(f"{100 * np.mean(r['languages'][lang]['correct']):>12.2f}" for r in runs)
        print(f"{lang:<6}{cells}")
    others = [lang for lang in langs if lang != "en"] or langs
    means = [np.mean([100 * np.mean(r["languages"][x]["correct"]) for x in others]) for r in runs]
    print(f"{'non-en':<6}" + "".join(f"{m:>12.2f}" for m in means))
    print("wall s" + "".join(f"{r['wall_s']:>12.0f}" for r in runs))


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--train-examples", type=int, default=8999, help="MNLI pairs (cap)")
    p.add_argument("--eval-examples", type=int, default=500, help="XNLI examples a language")
    p.add_argument("--languages", nargs="+", default=list(LANGUAGES))
    p.add_argument("--quick", action="store_true", help="320 pairs, 50 examples, seed 1")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--json", type=Path, help="save every run's per-example correctness here")
    p.add_argument("--analyse", type=Path, metavar="JSON", help="re-print a saved --json result")
    p.add_argument("--only", choices=("xstilts", "hf"), help="run only this side")
    p.add_argument("--xstilts-head-init", choices=("torch", "hf"), default="torch")
    p.add_argument("--xstilts-order", choices=("grouped", "random"), default="grouped")
    p.add_argument("--xstilts-schedule", choices=("xstilts", "hf"), default="xstilts")
    p.add_argument("--hf-head-init", choices=("hf", "torch"), default="hf")
    p.add_argument("--hf-order", choices=("random", "group_by_length"), default="random")
    p.add_argument("--run-one", nargs=3, metavar=("IMPL", "SEED", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.analyse:
        result = json.loads(args.analyse.read_text())
        if len({r["impl"] for r in result["runs"]}) == 2:
            print_report(result, analyse(result, args.bootstrap))
        else:
            print_one_side(result)
        return 0
    if args.quick:
        args.seeds, args.train_examples, args.eval_examples = args.seeds[:1], 320, 50
    cfg = {
        "train_examples": args.train_examples,
        "eval_examples": args.eval_examples,
        "languages": args.languages,
        "hyper": HYPER,
        "xstilts_head_init": args.xstilts_head_init,
        "xstilts_order": args.xstilts_order,
        "xstilts_schedule": args.xstilts_schedule,
        "hf_head_init": args.hf_head_init,
        "hf_order": args.hf_order,
    }
    if args.run_one:
        impl, seed, out = args.run_one
        fn = run_xstilts if impl == "xstilts" else run_hf
        res = fn(json.loads(os.environ["PARITY_CONFIG"]), int(seed))
        Path(out).write_text(json.dumps({"impl": impl, "seed": int(seed), **res}))
        return 0

    impls = [args.only] if args.only else ["xstilts", "hf"]
    result: dict[str, Any] = {"config": cfg, "runs": []}
    if args.json and args.json.exists():  # resume: keep the runs already saved with this config
        saved = json.loads(args.json.read_text())
        if saved["config"] == cfg:
            result = saved
    done = {(r["impl"], r["seed"]) for r in result["runs"]}
    env = {**os.environ, "PARITY_CONFIG": json.dumps(cfg), "TOKENIZERS_PARALLELISM": "false"}
    for seed in args.seeds:
        for impl in impls:  # alternating: xstilts s1, HF s1, xstilts s2, ...
            if (impl, seed) in done:
                print(f"{impl} seed {seed}: already in {args.json}", file=sys.stderr)
                continue
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                t0 = time.perf_counter()
                cmd = [sys.executable, __file__, "--run-one", impl, str(seed), f.name]
                subprocess.run(cmd, check=True, env=env)
                run = json.loads(Path(f.name).read_text())
            run["process_s"] = time.perf_counter() - t0
            result["runs"].append(run)
            acc = np.mean([np.mean(v["correct"]) for v in run["languages"].values()])
            print(
                f"{impl} seed {seed}: {run['process_s']:.0f} s, mean accuracy {100 * acc:.2f}",
                file=sys.stderr,
                flush=True,
            )
            if args.json:
                args.json.write_text(json.dumps(result))
    if len({r["impl"] for r in result["runs"]}) == 2:
        print_report(result, analyse(result, args.bootstrap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
