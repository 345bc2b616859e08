"""Where a training step's time goes: torch's profiler over our loop on the offline model.

Profiles steps 2..N of a run (step 1 is warm-up) and prints the operations with the most self time
(forward, backward and optimiser together), then the time split into forward+loss, backward,
gradient clipping, optimiser step and the rest, measured with the same clock around each part.

    python bench/profile_train.py --steps 8 --top 25
    python bench/profile_train.py --dense-grad   # as before training/embedding_grad.py
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--top", type=int, default=25)
    p.add_argument(
        "--dense-grad",
        action="store_true",
        help="PyTorch's dense word-embedding gradient, allocated each step (the loop before)",
    )
    args = p.parse_args()

    from xstilts.config import Settings
    from xstilts.data import DataSource, load_split
    from xstilts.formats import get_trained_format
    from xstilts.formats.pair import featurize_pairs
    from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder, load_tokenizer
    from xstilts.modeling.offline import prepare_offline_model
    from xstilts.spec import TrainingConfig
    from xstilts.tasks import Split, get_task
    from xstilts.training.batching import epoch_batches, to_device
    from xstilts.training.embedding_grad import row_gradient
    from xstilts.training.loop import build_optimizer

    settings = Settings()
    folder = prepare_offline_model(settings.cache_dir)
    data = Path(os.environ.get("XSTILTS_DATA_DIR") or settings.data_dir or "../shared/data")
    examples = load_split(
        get_task("mnli"), Split.TRAIN, "en", DataSource("local", data), args.steps * args.batch_size
    )
    tok = load_tokenizer(str(folder))
    feats = featurize_pairs(tok, examples, args.max_length)
    torch.manual_seed(0)
    model = MultiHeadClassifier(load_encoder(str(folder)))
    model.add_head("mnli", 3)
    model.train()
    cfg = TrainingConfig(batch_size=args.batch_size, max_steps=args.steps)
    optimizer, scheduler = build_optimizer(model, cfg, args.steps)
    fmt = get_trained_format(feats.format)
    device = torch.device("cpu")
    batches = epoch_batches(feats.lengths, args.batch_size, 0)
    parts: dict[str, float] = defaultdict(float)

    def step(record: bool) -> None:
        _, index = next(batches)
        marks = [time.perf_counter()]
        batch = to_device(fmt.collate(feats, index, tok.pad_token_id), device)
        loss = fmt.loss(model(batch, "mnli"), batch)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        marks.append(time.perf_counter())
        optimizer.step()
        scheduler.step()
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        clear_embedding_grad()
        marks.append(time.perf_counter())
        if record:
            for name, a, b in zip(
                ("forward+loss", "backward", "clip_grad_norm", "optimizer+scheduler", "zero_grad"),
                marks,
                marks[1:],
                strict=False,
            ):
                parts[name] += b - a

    rows = row_gradient(model.encoder, device, enabled=not args.dense_grad)
    with rows as clear_embedding_grad:
        step(record=False)  # warm-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps - 1):
                step(record=True)
    print(
        f"offline multilingual-e5-small, MNLI, batch {args.batch_size}, max length "
        f"{args.max_length}, steps 2-{args.steps}, {torch.get_num_threads()} threads, "
        f"{'dense' if args.dense_grad else 'row-wise'} word-embedding gradient"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    total = sum(parts.values())
    print(f"{'part':<22}{'s/step':>8}{'share':>8}")
    for name, seconds in parts.items():
        print(f"{name:<22}{seconds / (args.steps - 1):>8.3f}{100 * seconds / total:>7.1f}%")


if __name__ == "__main__":
    main()
