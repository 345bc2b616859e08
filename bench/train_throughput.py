"""Training throughput: our loop against Hugging Face Trainer, same model, data, batch size and steps,
measured fairly on a shared machine.

The configurations alternate in rounds (A, B, C, A, B, C, ...), each run in a fresh process (so its
peak memory is its own and no run inherits another's warm caches). A run is timed from the end of
its first optimiser step (warm-up) to the end of its last, so process start, model loading and
tokenisation are left out. The table gives each configuration's median over the rounds with its
range, model-FLOPs utilisation against this machine's fp32 matmul peak (measured before and after)
on useful (unpadded) tokens and on the padded tokens actually computed, and the ratio of xstilts to
each Trainer configuration: the median of the per-round ratios with a bootstrap 95% interval.

    python bench/train_throughput.py --steps 12 --rounds 5
    python bench/train_throughput.py --steps 100 --rounds 3 --json bench/results/train_throughput-100.json
    python bench/train_throughput.py --configs xstilts xstilts-dense-grad   # the row-wise gradient's gain
    python bench/train_throughput.py --configs xstilts --baseline 2cb281d     # our loop, then and now

``--baseline REF`` adds our loop as the code of git revision REF has it (a temporary worktree first
on PYTHONPATH), alternating with the others.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS = ("xstilts", "trainer-default", "trainer-group-by-length", "xstilts-dense-grad")
# Not run by default: xstilts-dense-grad, our loop with PyTorch's dense embedding gradient.
DEFAULT_CONFIGS = CONFIGS[:3]


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _examples(n: int):
    from xstilts.config import Settings
    from xstilts.data import DataSource, load_split
    from xstilts.tasks import Split, get_task

    data = Path(os.environ.get("XSTILTS_DATA_DIR") or Settings().data_dir or "../shared/data")
    return load_split(
        get_task("mnli"), Split.TRAIN, "en", DataSource("local", data), max_examples=n
    )


class StepLog:
    """What each optimiser step computed (useful and padded tokens, attention terms) and when it
    ended; filled by a forward pre-hook on the encoder and the step callback of either loop."""

    def __init__(self, encoder) -> None:
        from xstilts.training.hardware import StepFlops

        self._flops = StepFlops(encoder)  # the loop's own count, for both loops alike
        self.pending = {"useful": 0.0, "padded": 0.0, "examples": 0}
        self.steps: list[dict] = []
        encoder.register_forward_pre_hook(self._forward, with_kwargs=True)

    def _forward(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is None or not module.training:
            return
        lengths = mask.sum(-1).tolist()
        width = mask.shape[-1]
        self.pending["useful"] += self._flops(lengths)
        self.pending["padded"] += self._flops([width] * len(lengths))
        self.pending["examples"] += len(lengths)

    def step_end(self) -> None:
        self.steps.append({**self.pending, "t": time.perf_counter()})
        self.pending = {"useful": 0.0, "padded": 0.0, "examples": 0}

    def summary(self) -> dict:
        timed = self.steps[1:]  # from the end of the first (warm-up) step
        seconds = timed[-1]["t"] - self.steps[0]["t"]
        return {
            "timed_steps": len(timed),
            "seconds": seconds,
            "examples_per_s": sum(s["examples"] for s in timed) / seconds,
            "useful_gflops": sum(s["useful"] for s in timed) / seconds / 1e9,
            "padded_gflops": sum(s["padded"] for s in timed) / seconds / 1e9,
        }


def run_one(name: str, steps: int, batch: int, max_length: int) -> dict:
    import torch
    from xstilts.config import Settings
    from xstilts.modeling.offline import prepare_offline_model

    folder = prepare_offline_model(Settings().cache_dir)
    examples = _examples(steps * batch)
    if name.startswith("xstilts"):
        from xstilts.formats.pair import featurize_pairs
        from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder, load_tokenizer
        from xstilts.spec import TrainingConfig
        from xstilts.training.loop import train

        tok = load_tokenizer(str(folder))
        feats = featurize_pairs(tok, examples, max_length)
        torch.manual_seed(0)
        model = MultiHeadClassifier(load_encoder(str(folder)))
        model.add_head("mnli", 3)
        log = StepLog(model.encoder)
        train_cfg = TrainingConfig(
            batch_size=batch,
            max_steps=steps,
            max_seq_length=max_length,
            checkpoint_every_steps=10**6,
        )
        if name == "xstilts-dense-grad":  # the loop before training/embedding_grad.py
            from xstilts.training import loop

            dense = loop.row_gradient
            loop.row_gradient = lambda encoder, device, enabled: dense(encoder, device, False)
        with tempfile.TemporaryDirectory() as work:
            train(
                model,
                "mnli",
                feats,
                train_cfg,
                0,
                Path(work),
                tok.pad_token_id,
                progress=lambda *_: log.step_end(),
            )
    else:
        from transformers import (
            AutoModelForSequenceClassification,
            AutoTokenizer,
            DataCollatorWithPadding,
            Trainer,
            TrainerCallback,
            TrainingArguments,
        )

        tok = AutoTokenizer.from_pretrained(folder)
        enc = tok(
            [e.text_a for e in examples],
            [e.text_b for e in examples],
            truncation=True,
            max_length=max_length,
        )
        rows = [
            {"input_ids": ids, "attention_mask": m, "labels": e.label}
            for ids, m, e in zip(enc["input_ids"], enc["attention_mask"], examples, strict=False)
        ]
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)
        log = StepLog(model.roberta)

        class Steps(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                log.step_end()

        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out,
                per_device_train_batch_size=batch,
                max_steps=steps,
                learning_rate=2e-5,
                warmup_steps=max(1, steps // 10),
                weight_decay=0.01,
                report_to=[],
                save_strategy="no",
                logging_strategy="no",
                use_cpu=True,
                dataloader_num_workers=0,
                train_sampling_strategy="group_by_length"
                if name.endswith("group-by-length")
                else "random",
            )
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=rows,
                data_collator=DataCollatorWithPadding(tok),
                callbacks=[Steps()],
            )
            trainer.train()
    return {
        "config": name,
        **log.summary(),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def _bootstrap_median(values: list[float], samples: int = 10_000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x = np.asarray(values)
    meds = np.median(x[rng.integers(0, len(x), (samples, len(x)))], axis=1)
    return float(np.quantile(meds, 0.025)), float(np.quantile(meds, 0.975))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=12, help="optimiser steps per run (default 12)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of all configurations")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(DEFAULT_CONFIGS))
    p.add_argument("--json", metavar="OUT", help="also write every run and the summary here")
    p.add_argument("--baseline", metavar="REF", help="also our loop at this git revision")
    p.add_argument("--only", choices=CONFIGS, help=argparse.SUPPRESS)  # one run (internal)
    args = p.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.steps, args.batch_size, args.max_length)))
        return
    peaks = [matmul_peak_gflops()]
    configs = list(args.configs)
    env = {c: dict(os.environ) for c in configs}
    tree = None
    if args.baseline:
        tree = Path(tempfile.mkdtemp(prefix="xstilts-baseline-"))
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline],
                       cwd=Path(__file__).resolve().parents[1], check=True,
                       capture_output=True)  # fmt: skip
        name = f"xstilts@{args.baseline}"
        configs.append(name)
        env[name] = {**os.environ, "PYTHONPATH": str(tree / "shared")}
    runs: dict[str, list[dict]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for name in configs:
            only = "xstilts" if name.startswith("xstilts@") else name
            cmd = [sys.executable, __file__, "--only", only, "--steps", str(args.steps)]
            cmd += ["--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env[name])
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stderr}")
            out = done.stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
            last = runs[name][-1]
            print(
                f"round {r + 1}/{args.rounds} {name:<26}{last['examples_per_s']:>7.1f} ex/s",
                file=sys.stderr,
                flush=True,
            )
    peaks.append(matmul_peak_gflops())
    peak = statistics.median(peaks)
    if tree is not None:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)],
                       cwd=Path(__file__).resolve().parents[1], check=False)  # fmt: skip

    print(
        f"offline multilingual-e5-small, MNLI, batch {args.batch_size}, max length "
        f"{args.max_length}, {args.steps} steps (timed from the end of step 1), {args.rounds} "
        f"alternating rounds, {os.cpu_count()} cores"
    )
    print(f"fp32 matmul peak: {peaks[0]:.1f} GFLOP/s before, {peaks[1]:.1f} after")
    print(
        f"{'config':<26}{'ex/s median':>12}{'range':>16}{'MFU useful %':>14}"
        f"{'MFU padded %':>14}{'peak RSS GB':>13}"
    )
    summary: dict[str, dict] = {}
    for name, rs in runs.items():
        rates = [x["examples_per_s"] for x in rs]
        useful = statistics.median(x["useful_gflops"] for x in rs)
        padded = statistics.median(x["padded_gflops"] for x in rs)
        summary[name] = {
            "examples_per_s_median": statistics.median(rates),
            "examples_per_s_range": [min(rates), max(rates)],
            "mfu_useful": useful / peak,
            "mfu_padded": padded / peak,
            "peak_rss_gb": max(x["peak_rss_gb"] for x in rs),
        }
        s = summary[name]
        print(
            f"{name:<26}{s['examples_per_s_median']:>12.1f}"
            f"{f'{min(rates):.1f}-{max(rates):.1f}':>16}{100 * s['mfu_useful']:>14.1f}"
            f"{100 * s['mfu_padded']:>14.1f}{s['peak_rss_gb']:>13.2f}"
        )
    ratios = {}
    if "xstilts" in runs:
        for other in (c for c in runs if c != "xstilts"):
            per_round = [
                a["examples_per_s"] / b["examples_per_s"]
                for a, b in zip(runs["xstilts"], runs[other], strict=True)
            ]
            low, high = _bootstrap_median(per_round)
            ratios[other] = {"median": statistics.median(per_round), "ci": [low, high]}
            print(
                f"xstilts / {other}: x{statistics.median(per_round):.2f} "
                f"[{low:.2f}, {high:.2f}] (median of per-round ratios, bootstrap 95%)"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "peaks_gflops": peaks,
                    "runs": runs,
                    "summary": summary,
                    "ratios": ratios,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
