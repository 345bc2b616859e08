"""Inference throughput over all 15 XNLI languages: our predict path against a naive loop.

Ours: per language, batches sorted by length and padded to their longest row, under inference mode.
Naive: per language in file order, every batch padded to the fixed max length, plain no_grad.
Both use the offline model with the same (untrained) classification head; predictions must agree.

    python bench/inference_throughput.py --per-language 200 --batch-size 64
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import torch
from xstilts.config import Settings
from xstilts.data import DataSource, load_split
from xstilts.formats.pair import featurize_pairs
from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder, load_tokenizer
from xstilts.modeling.offline import prepare_offline_model
from xstilts.tasks import Split, get_task
from xstilts.training.predict import predict


def naive_predict(
    model: MultiHeadClassifier, tok, examples, batch_size: int, max_length: int
) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            enc = tok(
                [e.text_a for e in chunk],
                [e.text_b for e in chunk],
                truncation=True,
                max_length=max_length,
                padding="max_length",
                return_tensors="pt",
            )
            out.append(
                model(
                    {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, "xnli"
                ).argmax(-1)
            )
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--per-language", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    args = p.parse_args()

    folder = prepare_offline_model(Settings().cache_dir)
    data = Path(
        os.environ.get("XSTILTS_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    task = get_task("xnli")
    tok = load_tokenizer(str(folder))
    torch.manual_seed(0)
    model = MultiHeadClassifier(load_encoder(str(folder)))
    model.add_head("xnli", 3)
    model.eval()
    langs = list(task.languages)
    per_lang = {
        lang: load_split(task, Split.VALIDATION, lang, DataSource("local", data), args.per_language)
        for lang in langs
    }
    total = sum(len(v) for v in per_lang.values())

    t = time.perf_counter()
    ours = {}
    for lang, ex in per_lang.items():
        feats = featurize_pairs(tok, ex, args.max_length)
        ours[lang] = predict(model, "xnli", feats, args.batch_size, tok.pad_token_id)
    t_ours = time.perf_counter() - t

    t = time.perf_counter()
    naive = {
        lang: naive_predict(model, tok, ex, args.batch_size, args.max_length)
        for lang, ex in per_lang.items()
    }
    t_naive = time.perf_counter() - t

    agree = sum(int((ours[lang] == naive[lang]).sum()) for lang in langs) / total
    print(
        f"XNLI validation, {len(langs)} languages x {args.per_language} examples = {total}, batch {args.batch_size}, max length {args.max_length}, {os.cpu_count()} cores"
    )
    print(f"{'method':<40}{'ex/s':>8}{'seconds':>9}")
    print(f"{'naive (file order, fixed-length pad)':<40}{total / t_naive:>8.1f}{t_naive:>9.1f}")
    print(f"{'xstilts (length-sorted, dynamic pad)':<40}{total / t_ours:>8.1f}{t_ours:>9.1f}")
    print(f"speed-up x{t_naive / t_ours:.2f}; predictions agree on {100 * agree:.2f}% of examples")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
