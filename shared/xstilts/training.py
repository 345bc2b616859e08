"""The training loop: plain PyTorch, one screen long.

Dynamic padding and length-grouped batches, AdamW with linear warm-up and decay, gradient
accumulation, bf16 autocast on CUDA, deterministic under a seed, an atomic checkpoint every N
optimiser steps and resume from it after a crash (bit-for-bit the same run as without the crash).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xstilts.data.batching import Features, collate, epoch_batches, sorted_batches
from xstilts.errors import CancelledError
from xstilts.modeling import MultiHeadClassifier
from xstilts.spec import TrainingConfig

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
ProgressFn = Callable[[int, int, float, float], None]  # step, total, examples/s, loss


@dataclass(frozen=True)
class TrainResult:
    steps_run: int  # optimiser steps taken by this call (0 when everything was already done)
    total_steps: int
    resumed_from_step: int
    examples_per_s: float
    final_loss: float
    num_examples: int


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def total_optimizer_steps(num_examples: int, cfg: TrainingConfig) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    batches_per_epoch = math.ceil(num_examples / cfg.batch_size)
    return max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.gradient_accumulation_steps))


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def build_optimizer(
    model: nn.Module, cfg: TrainingConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if not _no_decay(n)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params if _no_decay(n)], "weight_decay": 0.0},
    ]
    # The fused kernel updates all 117M parameters of the offline model (96M of them the word
    # embeddings) in one pass: ~0.05 s per step on 2 CPU cores against ~0.5 s for the foreach one.
    optimizer = torch.optim.AdamW(
        groups, lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=True
    )
    warmup = int(cfg.warmup_ratio * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash leaves the previous checkpoint or the new one


def train(
    model: MultiHeadClassifier,
    task: str,
    features: Features,
    cfg: TrainingConfig,
    seed: int,
    work_dir: Path,
    pad_id: int,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``model``'s encoder and ``task`` head on ``features``; resumes from ``work_dir``."""
    device = pick_device()
    torch.manual_seed(seed)
    if cfg.freeze_word_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    model.to(device)
    total = total_optimizer_steps(len(features), cfg)
    optimizer, scheduler = build_optimizer(model, cfg, total)
    accum = cfg.gradient_accumulation_steps

    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / CHECKPOINT_FILE
    start = 0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if device.type == "cuda" and ckpt.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng_cuda"])
        start = int(ckpt["step"])
        log.info("resuming %s from step %d/%d (%s)", task, start, total, ckpt_path)

    # Batch order depends only on (seed, epoch), so a resumed run skips exactly what was done.
    stream = itertools.islice(
        epoch_batches(features.lengths, cfg.batch_size, seed), start * accum, None
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    seen, loss_value, t0 = 0, float("nan"), time.perf_counter()
    for step in range(start, total):
        step_loss = 0.0
        for _ in range(accum):
            _, index = next(stream)
            ids, mask, labels = (t.to(device) for t in collate(features, index, pad_id))
            with autocast:
                logits = model(ids, mask, task)
            loss = F.cross_entropy(logits.float(), labels) / accum
            loss.backward()
            step_loss += loss.item()
            seen += len(index)
        nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = step_loss
        done = step + 1
        if done % cfg.checkpoint_every_steps == 0 and done < total:
            _save_checkpoint(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                    "step": done,
                    "config": cfg.model_dump(),
                    "seed": seed,
                    "task": task,
                },
            )
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        if progress is not None:
            progress(done, total, rate, loss_value)
        if should_stop is not None and should_stop():
            raise CancelledError(f"training of {task} cancelled at step {done}/{total}")
    elapsed = time.perf_counter() - t0
    model.eval()
    return TrainResult(
        steps_run=total - start,
        total_steps=total,
        resumed_from_step=start,
        examples_per_s=seen / elapsed if elapsed > 0 else 0.0,
        final_loss=loss_value,
        num_examples=len(features),
    )


@torch.inference_mode()
def predict(
    model: MultiHeadClassifier,
    task: str,
    features: Features,
    batch_size: int,
    pad_id: int,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Predicted label ids in the original order; batches sorted by length, padded per batch."""
    device = pick_device()
    model.to(device).eval()
    out = torch.empty(len(features), dtype=torch.long)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    done, t0 = 0, time.perf_counter()
    for index in sorted_batches(features.lengths, batch_size):
        ids, mask, _ = collate(features, index, pad_id)
        with autocast:
            logits = model(ids.to(device), mask.to(device), task)
        out[torch.as_tensor(index)] = logits.argmax(-1).cpu()
        done += len(index)
        if progress is not None:  # examples done / total; doubles as the stage's heartbeat
            progress(done, len(features), done / max(time.perf_counter() - t0, 1e-9), float("nan"))
    return out
