"""Evaluation throughput over all 15 XNLI languages: the predict stages' path against a naive one.

Both start from a trained stage model on disk (the offline model with a 3-way head, saved as a
target stage saves it) and predict every language's validation examples:

- naive: per language, load the model, tokenise in file order padded to the fixed max length,
  predict under ``no_grad``;
- xstilts: what the predict stages of one experiment do in a worker: the model comes from the
  worker's model cache (loaded once for all languages), each language is featurised once, its
  batches sorted by length and padded to their longest row, under ``inference_mode`` with
  PyTorch's scaled-dot-product attention.

The two alternate in rounds; the table gives each one's median over the rounds with its range, the
speed-up per round, the model loads per experiment, and checks that the predictions agree.

    python bench/inference_throughput.py --per-language 400 --rounds 3
    python bench/inference_throughput.py --init xlmr-large --per-language 2490 --batch-size 256
        # on a GPU: all of XNLI's validation set (37,350 examples), the GPU's utilisation sampled
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from gpu_utilisation import Utilisation
from random_model import SHAPES, save_random_xlmr
from xstilts.config import Settings
from xstilts.data import DataSource, load_split
from xstilts.formats import get_trained_format
from xstilts.formats.base import FeatureConfig
from xstilts.modeling import classifier
from xstilts.modeling.batch import Batch
from xstilts.modeling.offline import prepare_offline_model
from xstilts.runtime.runners.cache import ModelCache
from xstilts.tasks import Split, get_task
from xstilts.training.hardware import pick_device
from xstilts.training.predict import predict

LOADS = [0]
_load = classifier.load_stage_model


def counted_load(path: Path):
    LOADS[0] += 1
    return _load(path)


classifier.load_stage_model = counted_load  # count every model load, both sides


def naive(stage: Path, per_lang: dict, batch_size: int, max_length: int) -> dict:
    out = {}
    for lang, examples in per_lang.items():
        model, tok = classifier.load_stage_model(stage)  # a stage per language, a load each
        device = pick_device()
        model.to(device).eval()
        preds = []
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        with torch.no_grad(), autocast:
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
                batch = Batch(enc["input_ids"], enc["attention_mask"]).to(device)
                preds.extend(model(batch, "mnli").argmax(-1).tolist())
        out[lang] = preds
    return out


def ours(stage: Path, per_lang: dict, batch_size: int, max_length: int) -> dict:
    models = ModelCache()  # one per worker process, shared by its predict stages
    fmt = get_trained_format("pair_classification")
    out = {}
    for lang, examples in per_lang.items():
        model, tok = models.stage_model(stage)
        features = fmt.featurize(tok, examples, FeatureConfig(max_length), model.labels["mnli"])
        out[lang] = [int(x) for x in predict(model, "mnli", features, batch_size, tok.pad_token_id)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--per-language", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="a local model folder (default: the offline model)")
    source.add_argument("--init", choices=sorted(SHAPES), help="a random-init model of this shape")
    args = p.parse_args()

    settings = Settings()
    offline = prepare_offline_model(settings.cache_dir)
    data = Path(os.environ.get("XSTILTS_DATA_DIR") or settings.data_dir or "../shared/data")
    task = get_task("xnli")
    per_lang = {
        lang: load_split(task, Split.VALIDATION, lang, DataSource("local", data), args.per_language)
        for lang in task.languages
    }
    total = sum(len(v) for v in per_lang.values())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else offline
        if args.init:
            folder = save_random_xlmr(Path(tmp) / args.init, offline, args.init, 250002)
        stage = Path(tmp) / "stage"
        torch.manual_seed(0)
        model = classifier.MultiHeadClassifier(classifier.load_encoder(str(folder)), "mean")
        model.add_head("mnli", 3, "sequence", ("entailment", "neutral", "contradiction"))
        classifier.save_stage_model(model, classifier.load_tokenizer(str(folder)), stage)
        del model
        times: dict[str, list[float]] = {"naive": [], "xstilts": []}
        busy: dict[str, list[float]] = {"naive": [], "xstilts": []}
        loads: dict[str, int] = {}
        results: dict[str, dict] = {}
        for r in range(args.rounds):
            for name, fn in (("naive", naive), ("xstilts", ours)):
                LOADS[0] = 0
                util = Utilisation()
                t = time.perf_counter()
                results[name] = fn(stage, per_lang, args.batch_size, args.max_length)
                times[name].append(time.perf_counter() - t)
                if (share := util.stop()) is not None:
                    busy[name].append(share)
                loads[name] = LOADS[0]
                print(f"round {r + 1} {name:<8}{total / times[name][-1]:>8.1f} ex/s", flush=True)
    agree = sum(
        a == b
        for lang in per_lang
        for a, b in zip(results["naive"][lang], results["xstilts"][lang], strict=True)
    )
    print(
        f"XNLI validation, {len(per_lang)} languages x {args.per_language} = {total} examples, "
        f"batch {args.batch_size}, max length {args.max_length}, {args.rounds} alternating "
        f"rounds, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )
    print(f"model: {args.model or args.init or 'offline model'}, on {pick_device()}")
    print(f"{'method':<60}{'ex/s median':>12}{'range':>14}{'model loads':>13}{'GPU busy %':>12}")
    labels = {
        "naive": "naive (load per language, file order, fixed-length pad)",
        "xstilts": "xstilts (cached model, length-sorted, dynamic pad)",
    }
    for name, ts in times.items():
        rates = [total / t for t in ts]
        print(
            f"{labels[name]:<60}{statistics.median(rates):>12.1f}"
            f"{f'{min(rates):.1f}-{max(rates):.1f}':>14}{loads[name]:>13}"
            f"{f'{statistics.median(busy[name]):.0f}' if busy[name] else '-':>12}"
        )
    ratios = [a / b for a, b in zip(times["naive"], times["xstilts"], strict=True)]
    print(
        f"speed-up x{statistics.median(ratios):.2f} (per round {min(ratios):.2f}-{max(ratios):.2f}); "
        f"predictions agree on {100 * agree / total:.2f}% of examples"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
