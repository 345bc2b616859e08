"""Training throughput of our loop on one GPU (or the CPU): tokens/s, model-FLOPs utilisation
against the device's dense bf16 peak, peak memory.

Any encoder from a local folder (e.g. a downloaded FacebookAI/xlm-roberta-large) or the offline
model; MNLI from the data folder, so the lengths are real. Runs xstilts' training loop itself
(bf16 autocast, TF32, SDPA attention, fused AdamW, pinned non-blocking copies), timed from the end
of the warm-up steps.

    python bench/gpu_train.py --model /models/xlm-roberta-large --batch-size 32 --steps 60
    python bench/gpu_train.py --steps 6 --warmup 2          # the offline model, as a smoke test

Expected on an H100 SXM with XLM-R Large (303M non-embedding parameters; 6 x 303M = 1.82 GFLOP
per token plus 12 x 24 x 1024 x L per token of attention, ~1.86 GFLOP at L = 128): at 40% of the
989 TFLOP/s bf16 peak, about 210,000 useful tokens/s, i.e. ~4,000 MNLI pairs/s at ~52 tokens each.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", help="a local model folder (default: the offline model)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    args = p.parse_args()

    from xstilts.config import Settings
    from xstilts.data import DataSource, load_split
    from xstilts.formats.pair import featurize_pairs
    from xstilts.modeling.classifier import MultiHeadClassifier, load_encoder, load_tokenizer
    from xstilts.modeling.offline import prepare_offline_model
    from xstilts.spec import TrainingConfig
    from xstilts.tasks import Split, get_task
    from xstilts.training.hardware import StepFlops, device_peak
    from xstilts.training.loop import pick_device, train

    settings = Settings()
    folder = args.model or str(prepare_offline_model(settings.cache_dir))
    data = Path(os.environ.get("XSTILTS_DATA_DIR") or settings.data_dir or "../shared/data")
    examples = load_split(
        get_task("mnli"), Split.TRAIN, "en", DataSource("local", data),
        args.steps * args.batch_size,
    )  # fmt: skip
    tok = load_tokenizer(folder)
    features = featurize_pairs(tok, examples, args.max_length)
    torch.manual_seed(0)
    model = MultiHeadClassifier(load_encoder(folder))
    model.add_head("mnli", 3)
    flops = StepFlops(model.encoder)
    device = pick_device()
    name, peak = device_peak(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    marks: list[float] = []
    step_lengths: list[list[int]] = []
    pending: list[int] = []

    def count(module, args, kwargs):  # the rows each step computed, their real lengths
        mask = kwargs.get("attention_mask")
        if mask is not None and module.training:
            pending.extend(mask.sum(-1).tolist())

    model.encoder.register_forward_pre_hook(count, with_kwargs=True)
    cfg = TrainingConfig(
        batch_size=args.batch_size,
        max_steps=args.steps,
        max_seq_length=args.max_length,
        checkpoint_every_steps=10**6,
    )

    def progress(step: int, total: int, rate: float, loss: float) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
        step_lengths.append(list(pending))
        pending.clear()

    with tempfile.TemporaryDirectory() as work:
        result = train(model, "mnli", features, cfg, 0, Path(work), tok.pad_token_id, progress)
    timed = args.steps - args.warmup
    seconds = marks[-1] - marks[args.warmup - 1]
    lengths = [n for step in step_lengths[args.warmup :] for n in step]
    tokens = float(sum(lengths))
    model_flops = flops(lengths)
    print(
        f"{Path(folder).name} on {name}, batch {args.batch_size}, max length {args.max_length}, "
        f"{args.steps} steps ({args.warmup} warm-up), loss {result.final_loss:.3f}"
    )
    print(f"useful tokens/s       {tokens / seconds:,.0f}")
    print(f"examples/s            {timed * args.batch_size / seconds:,.1f}")
    print(f"model TFLOP/s         {model_flops / seconds / 1e12:.2f}")
    if peak:
        print(f"MFU (bf16 dense peak) {100 * model_flops / seconds / peak:.1f}%")
    else:
        print("MFU                   - (no table peak for this device)")
    if device.type == "cuda":
        print(f"peak GPU memory       {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
