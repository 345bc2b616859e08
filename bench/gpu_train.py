"""Training throughput on one GPU (or the CPU): our loop against Hugging Face Trainer (length-grouped
and random order), same model, MNLI pairs, batch size and steps, alternating in rounds, each run in
a fresh process; GPU utilisation sampled while each runs; one table.

The model: a local folder (`--model`, e.g. a downloaded FacebookAI/xlm-roberta-large), or a random
initialisation of XLM-R's shape (`--init xlmr-large`: 24 layers, 1024 wide, 559M parameters, the
paper's encoder; `xlmr-tiny`: 2 layers, 32 wide, a CPU smoke run) with the offline model's XLM-R
tokenizer. Runs are timed from the end of the warm-up steps. Both loops: bf16 autocast and TF32 on
CUDA, SDPA attention, fused AdamW; Trainer with 2 loader workers and pinned memory on CUDA.

    python bench/gpu_train.py --init xlmr-large --batch-size 32 --steps 60 --warmup 10 --rounds 3
    python bench/gpu_train.py --init xlmr-large --concurrent 4       # 4 of our loops at once
    python bench/gpu_train.py --init xlmr-tiny --steps 6 --warmup 2 --rounds 1   # smoke, on a CPU
    python bench/gpu_train.py --init xlmr-large --configs xstilts xstilts-widths xstilts-graphs \
        trainer-group-by-length     # width buckets and CUDA graphs (training.pad_to_widths, cuda_graphs)

Columns: examples/s and useful (unpadded) tokens/s (medians over rounds, with the range), model
FLOPs utilisation against the device's dense bf16 peak (our loop's own FLOP count, both loops
alike), the GPU's utilisation over the timed steps (nvidia-smi, median of samples every 200 ms),
peak GPU memory, the time from the start of training to the end of the first step (compilation
shows here) and the slowest timed step (a recompilation shows there). The measuring adds no host
sync to the timed steps (CUDA events; token counts kept on the device): a per-step sync would hide
the very host-boundness being measured. With `--concurrent K` the xstilts row is K processes at
once: their examples/s summed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gpu_utilisation import Utilisation
from random_model import SHAPES

CONFIGS = ("xstilts", "trainer-group-by-length", "trainer-random")
# Our loop with the GPU options (opt-in with --configs): batches padded to 4 widths up to the max
# length; those widths replayed as CUDA graphs; torch.compile, static per width.
VARIANTS = ("xstilts-widths", "xstilts-graphs", "xstilts-compile")


def loop_options(config: str, length: int) -> dict[str, Any]:
    """The training options of one of our loop's configurations."""
    widths = sorted({max(8, length * k // 4) for k in (1, 2, 3, 4)})
    return {
        "xstilts": {},
        "xstilts-widths": {"pad_to_widths": widths},
        "xstilts-graphs": {"pad_to_widths": widths, "cuda_graphs": True},
        "xstilts-compile": {"pad_to_widths": widths, "torch_compile": True},
    }[config]


def make_model(shape: str, out: Path) -> Path:
    """A random-init XLM-R of ``shape`` with the offline model's XLM-R tokenizer."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel
    from xstilts.config import Settings
    from xstilts.modeling.offline import prepare_offline_model

    cfg = XLMRobertaConfig(
        vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, **SHAPES[shape],
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = XLMRobertaModel(cfg, add_pooling_layer=False)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(prepare_offline_model(Settings().cache_dir)).save_pretrained(out)
    return out


def _pairs(steps: int, batch: int) -> list[Any]:
    from xstilts.config import Settings
    from xstilts.data import DataSource, load_split
    from xstilts.tasks import Split, get_task

    data = Path(os.environ.get("XSTILTS_DATA_DIR") or Settings().data_dir or "../shared/data")
    return load_split(get_task("mnli"), Split.TRAIN, "en", DataSource("local", data), steps * batch)


def run_one(config: str, folder: str, steps: int, warmup: int, batch: int, length: int) -> dict:
    """One timed run in this process: examples/s, useful tokens/s, MFU, peak memory, the time to
    the first step and the timed window (epoch seconds, for the GPU's utilisation).

    The measuring adds no host sync to the steps it times: each step's end is a CUDA event recorded
    on the stream (read after the last step), and its rows' useful lengths are summed on the device
    and read at the end. Inside a compiled model (the hook is traced there) nothing is counted, and
    the table takes the tokens of the same steps from the plain loop (same seed, same batches)."""
    import torch
    from xstilts.modeling.classifier import load_tokenizer
    from xstilts.training.hardware import StepFlops, device_peak, pick_device

    device = pick_device()
    cuda = device.type == "cuda"
    name, peak = device_peak(device)
    examples = _pairs(steps, batch)
    marks: list[Any] = []  # per step: a CUDA event on the stream, or the time on a CPU
    walls: list[float] = []  # per step: when the host got there (epoch seconds)
    lengths: list[list[Any]] = []  # per step: its forward passes' useful lengths (device tensors)
    pending: list[Any] = []

    def count(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        if mask is not None and module.training and not torch.compiler.is_compiling():
            pending.append(mask.sum(-1))

    def mark() -> None:
        if cuda:
            if not marks:
                torch.cuda.synchronize()  # the first step done, compilation included (untimed)
            marks.append(torch.cuda.Event(enable_timing=True))
            marks[-1].record()
        else:
            marks.append(time.perf_counter())
        walls.append(time.time())
        lengths.append(list(pending))
        pending.clear()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    if config.startswith("xstilts"):
        from xstilts.formats.pair import featurize_pairs
        from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder
        from xstilts.spec import TrainingConfig
        from xstilts.training.loop import train

        tok = load_tokenizer(folder)
        model = MultiHeadClassifier(load_encoder(folder))
        model.add_head("mnli", 3)
        encoder = model.encoder
        encoder.register_forward_pre_hook(count, with_kwargs=True)
        cfg = TrainingConfig(batch_size=batch, max_steps=steps, max_seq_length=length,
                             checkpoint_every_steps=10**6, **loop_options(config, length))  # fmt: skip
        with tempfile.TemporaryDirectory() as work:
            feats = featurize_pairs(tok, examples, length)
            started = time.time()
            train(model, "mnli", feats, cfg, 0, Path(work), tok.pad_token_id,
                  progress=lambda *_: mark())  # fmt: skip
    else:
        from transformers import (
            AutoModelForSequenceClassification,
            DataCollatorWithPadding,
            Trainer,
            TrainerCallback,
            TrainingArguments,
        )

        tok = load_tokenizer(folder)
        enc = tok([e.text_a for e in examples], [e.text_b for e in examples], truncation=True,
                  max_length=length)  # fmt: skip
        rows = [
            {"input_ids": ids, "attention_mask": m, "labels": e.label}
            for ids, m, e in zip(enc["input_ids"], enc["attention_mask"], examples, strict=True)
        ]
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)
        encoder = model.roberta
        encoder.register_forward_pre_hook(count, with_kwargs=True)

        class Clock(TrainerCallback):
            def on_step_end(self, *_: Any, **__: Any) -> None:
                mark()

        cuda = device.type == "cuda"
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out, per_device_train_batch_size=batch, max_steps=steps,
                learning_rate=2e-5, warmup_steps=max(1, steps // 10), weight_decay=0.01,
                report_to=[], save_strategy="no", logging_strategy="no", bf16=cuda, tf32=cuda,
                use_cpu=not cuda, dataloader_num_workers=2 if cuda else 0,
                dataloader_pin_memory=cuda, optim="adamw_torch_fused",
                train_sampling_strategy="group_by_length" if config.endswith("length") else "random",
            )  # fmt: skip
            trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[Clock()],
                              data_collator=DataCollatorWithPadding(tok))  # fmt: skip
            started = time.time()
            trainer.train()
    if cuda:
        torch.cuda.synchronize()
        seconds = marks[warmup - 1].elapsed_time(marks[-1]) / 1000
    else:
        seconds = marks[-1] - marks[warmup - 1]
    window = (walls[warmup - 1], time.time())
    counted = [t for step in lengths[warmup:] for t in step]
    useful = [int(n) for t in counted for n in t.tolist()] if counted else None
    return {
        "config": config,
        "device": name,
        "examples_per_s": (steps - warmup) * batch / seconds,
        "tokens_per_s": sum(useful) / seconds if useful else None,
        "mfu": StepFlops(encoder)(useful) / seconds / peak if useful and peak else None,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "first_step_s": walls[0] - started,
        "slowest_step_s": _slowest_step(marks[warmup - 1 :], cuda),
        "window": window,
    }


def _slowest_step(marks: list[Any], cuda: bool) -> float:
    """The longest of the timed steps, in seconds (a recompilation shows here)."""
    return max(a.elapsed_time(b) / 1000 if cuda else b - a for a, b in itertools.pairwise(marks))


def _launch(config: str, folder: str, args: argparse.Namespace) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--only", config, "--model", folder, "--steps",
           str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _round(config: str, folder: str, args: argparse.Namespace) -> dict:
    """One run of ``config`` (``--concurrent`` processes at once for ours), with the GPU's
    utilisation over the timed steps (from the first process's start of timing to the last's end)."""
    k = args.concurrent if config.startswith("xstilts") else 1
    util = Utilisation()
    procs = [_launch(config, folder, args) for _ in range(k)]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            sys.exit(f"{config} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    first = results[0]
    counted = all(r["tokens_per_s"] is not None for r in results)
    return {
        **first,
        "examples_per_s": sum(r["examples_per_s"] for r in results),
        "tokens_per_s": sum(r["tokens_per_s"] for r in results) if counted else None,
        "mfu": sum(r["mfu"] for r in results) if counted and first["mfu"] is not None else None,
        "peak_gib": max(r["peak_gib"] for r in results) if first["peak_gib"] is not None else None,
        "first_step_s": max(r["first_step_s"] for r in results),
        "slowest_step_s": max(r["slowest_step_s"] for r in results),
        "utilisation": util.stop(
            (min(r["window"][0] for r in results), max(r["window"][1] for r in results))
        ),
    }


def _fill_uncounted(runs: dict[str, list[dict]]) -> None:
    """A compiled run counts no tokens (see run_one); its timed steps are the plain loop's of the
    same round (same seed, same batches), so its tokens/s and MFU scale with its examples/s."""
    for config, rs in runs.items():
        for r, plain in zip(rs, runs.get("xstilts", []), strict=False):
            if config.startswith("xstilts") and r["tokens_per_s"] is None and plain["tokens_per_s"]:
                scale = r["examples_per_s"] / plain["examples_per_s"]
                r["tokens_per_s"] = plain["tokens_per_s"] * scale
                r["mfu"] = plain["mfu"] * scale if plain["mfu"] is not None else None


def _median(values: list[float | None]) -> str:
    xs = [v for v in values if v is not None]
    return f"{statistics.median(xs):,.1f}" if xs else "-"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", help="a local model folder")
    p.add_argument("--init", choices=tuple(SHAPES), help="a random-init model of this shape")
    p.add_argument("--configs", nargs="+", choices=CONFIGS + VARIANTS, default=list(CONFIGS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    p.add_argument("--rounds", type=int, default=3, help="rounds of all configurations")
    p.add_argument("--concurrent", type=int, default=1, help="our loop: K processes at once")
    p.add_argument(
        "--only", choices=CONFIGS + VARIANTS, help=argparse.SUPPRESS
    )  # one run (internal)
    args = p.parse_args()
    if not 0 < args.warmup < args.steps:
        p.error("--warmup must be at least 1 and below --steps")
    if args.only:
        print(json.dumps(run_one(args.only, args.model, args.steps, args.warmup,
                                 args.batch_size, args.max_length)))  # fmt: skip
        return
    with tempfile.TemporaryDirectory(prefix="xstilts-gpu-") as tmp:
        folder = args.model
        if folder is None:
            from xstilts.config import Settings
            from xstilts.modeling.offline import prepare_offline_model

            folder = str(
                make_model(args.init, Path(tmp) / args.init)
                if args.init
                else prepare_offline_model(Settings().cache_dir)
            )
        runs: dict[str, list[dict]] = {c: [] for c in args.configs}
        for r in range(args.rounds):
            for config in args.configs:
                runs[config].append(_round(config, folder, args))
                last = runs[config][-1]
                print(f"round {r + 1}/{args.rounds} {config:<24} {last['examples_per_s']:>9.1f} ex/s",
                      file=sys.stderr, flush=True)  # fmt: skip
    _fill_uncounted(runs)
    device = next(iter(runs.values()))[0]["device"]
    print(
        f"{args.model or args.init or 'offline model'} on {device}: MNLI, batch {args.batch_size}, "
        f"max length {args.max_length}, {args.steps} steps ({args.warmup} warm-up), "
        f"{args.rounds} alternating rounds"
        + (f"; ours x{args.concurrent} at once" if args.concurrent > 1 else "")
    )
    print("| config | examples/s (range) | useful tokens/s | MFU % | GPU busy % | peak GiB "
          "| first step s | slowest step s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for config, rs in runs.items():
        rates = [x["examples_per_s"] for x in rs]
        mfu = [100 * x["mfu"] if x["mfu"] is not None else None for x in rs]
        print(
            f"| {config}{f' x{args.concurrent}' if config.startswith('xstilts') and args.concurrent > 1 else ''} "
            f"| {statistics.median(rates):,.1f} ({min(rates):,.1f}-{max(rates):,.1f}) "
            f"| {_median([x['tokens_per_s'] for x in rs])} | {_median(mfu)} "
            f"| {_median([x['utilisation'] for x in rs])} | {_median([x['peak_gib'] for x in rs])} "
            f"| {max(x['first_step_s'] for x in rs):.1f} | {max(x['slowest_step_s'] for x in rs):.2f} |"
        )
    if "xstilts" in runs:
        for other in (c for c in runs if not c.startswith("xstilts")):
            ratios = [a["examples_per_s"] / b["examples_per_s"]
                      for a, b in zip(runs["xstilts"], runs[other], strict=True)]  # fmt: skip
            print(f"xstilts / {other}: x{statistics.median(ratios):.2f} "
                  f"(per-round ratios {min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
