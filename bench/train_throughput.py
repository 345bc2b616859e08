"""Training throughput: our loop against Hugging Face Trainer, same model, data, batch and steps.

Prints a table of examples/s, model-FLOPs utilisation (against this machine's measured fp32 matmul
peak) and peak resident memory. Each configuration runs in its own process so peak memory is its own.

    python bench/train_throughput.py --steps 12 --batch-size 32 --max-length 128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = ("xstilts", "trainer-default", "trainer-group-by-length")


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
    from xstilts.data import DataSource, load_split
    from xstilts.tasks import Split, get_task

    data = Path(
        os.environ.get("XSTILTS_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    return load_split(
        get_task("mnli"), Split.TRAIN, "en", DataSource("local", data), max_examples=n
    )


def _model_flops(model, lengths: list[int]) -> float:
    """6 x non-embedding parameters per token, plus attention scores/values (fwd + bwd = 3x fwd)."""
    cfg = model.config
    emb = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in model.parameters()) - emb
    tokens = sum(lengths)
    attention = sum(3 * 4 * cfg.num_hidden_layers * cfg.hidden_size * L * L for L in lengths)
    return 6 * dense * tokens + attention


def run_one(name: str, steps: int, batch: int, max_length: int) -> dict:
    import torch
    from xstilts.config import Settings
    from xstilts.modeling.offline import prepare_offline_model

    folder = prepare_offline_model(Settings().cache_dir)
    examples = _examples(steps * batch)
    if name == "xstilts":
        from xstilts.formats.pair import featurize_pairs
        from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder, load_tokenizer
        from xstilts.spec import TrainingConfig
        from xstilts.training.loop import train

        tok = load_tokenizer(str(folder))
        feats = featurize_pairs(tok, examples, max_length)
        torch.manual_seed(0)
        model = MultiHeadClassifier(load_encoder(str(folder)))
        model.add_head("mnli", 3)
        cfg = TrainingConfig(
            batch_size=batch,
            max_steps=steps,
            max_seq_length=max_length,
            checkpoint_every_steps=10**9,
        )
        import tempfile

        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            train(model, "mnli", feats, cfg, 0, Path(work), tok.pad_token_id)
        elapsed = time.perf_counter() - t
        flops = _model_flops(model.encoder, [len(x) for x in feats.input_ids])
    else:
        from transformers import (
            AutoModelForSequenceClassification,
            AutoTokenizer,
            DataCollatorWithPadding,
            Trainer,
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
        import tempfile

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
            )
            t = time.perf_counter()
            trainer.train()
            elapsed = time.perf_counter() - t
        flops = _model_flops(model.roberta, [len(r["input_ids"]) for r in rows])
    return {
        "config": name,
        "examples_per_s": steps * batch / elapsed,
        "seconds": elapsed,
        "model_tflops": flops / elapsed / 1e12,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument(
        "--only", choices=CONFIGS, help="run one configuration in this process (internal)"
    )
    args = p.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.steps, args.batch_size, args.max_length)))
        return
    peak = matmul_peak_gflops()
    rows = []
    for name in CONFIGS:
        cmd = [
            sys.executable,
            __file__,
            "--only",
            name,
            "--steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
            "--max-length",
            str(args.max_length),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"offline model multilingual-e5-small, MNLI subset, batch {args.batch_size}, max length {args.max_length}, {args.steps} steps, {os.cpu_count()} cores"
    )
    print(f"measured fp32 matmul peak: {peak:.1f} GFLOP/s")
    print(f"{'config':<26}{'ex/s':>8}{'seconds':>9}{'MFU %':>8}{'peak RSS GB':>13}")
    for r in rows:
        mfu = 100 * r["model_tflops"] * 1e3 / peak
        print(
            f"{r['config']:<26}{r['examples_per_s']:>8.1f}{r['seconds']:>9.1f}{mfu:>8.1f}{r['peak_rss_gb']:>13.2f}"
        )
    ours = rows[0]["examples_per_s"]
    grouped = rows[2]["examples_per_s"]
    print(f"xstilts vs grouped Trainer: {100 * (ours / grouped - 1):+.0f}%")


if __name__ == "__main__":
    main()
