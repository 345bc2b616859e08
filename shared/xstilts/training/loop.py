"""The training loop: plain PyTorch, one screen long.

Dynamic padding and length-grouped batches, AdamW with linear warm-up and decay, gradient
accumulation, bf16 autocast on CUDA, deterministic under a seed, an atomic checkpoint every N
optimiser steps and resume from it after a crash (bit-for-bit the same run as without the crash).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import torch
from torch import nn
from torch.optim.optimizer import StateDict

from xstilts.errors import CancelledError
from xstilts.files import replacing
from xstilts.formats import get_objective
from xstilts.formats.base import Features, Objective
from xstilts.modeling.classifier import MultiHeadClassifier
from xstilts.spec import TrainingConfig
from xstilts.training.batching import TrainingBatches
from xstilts.training.distributed import Replica
from xstilts.training.embedding_grad import row_gradient
from xstilts.training.hardware import pick_device
from xstilts.training.losses import LossBook, first_and_last_tenth
from xstilts.training.meter import Meter
from xstilts.training.sampling import TaskSchedule, sampling_probabilities

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOG_EVERY = 50  # optimiser steps between log lines (and reads of the loss from the device)
ProgressFn = Callable[[int, int, float, float], None]  # step, total, examples/s, loss


@dataclass(frozen=True)
class SelectionOutcome:
    """The checkpoint selection kept: its step and English dev score, and every evaluation as
    ``[step, score]``."""

    metric: str
    selected_step: int
    selected_score: float
    total_steps: int
    history: list[list[float]]


class _SelectorState(TypedDict):
    """The selection's part of a checkpoint: a resumed run selects what an uninterrupted one would."""

    history: list[list[float]]
    best_step: int | None
    best_score: float


class _Checkpoint(TypedDict, total=False):
    """What ``checkpoint.pt`` holds (``torch.save``): the training state, the step, and what the run
    was (for a reader's benefit). ``{}`` when there is no checkpoint."""

    model: dict[str, torch.Tensor]
    optimizer: StateDict
    scheduler: dict[str, object]
    rng_cpu: torch.Tensor
    rng_cuda: torch.Tensor | None
    step: int
    config: dict[str, object]
    seed: int
    tasks: list[str]
    probabilities: dict[str, float] | None
    selection: _SelectorState | None


@dataclass(frozen=True)
class TrainResult:
    steps_run: int  # optimiser steps taken by this call (0 when everything was already done)
    total_steps: int
    resumed_from_step: int
    examples_per_s: float
    final_loss: float
    num_examples: int
    # Mean training loss and number of micro-batches per task over this call's steps.
    task_losses: dict[str, float] = field(default_factory=dict)
    task_batches: dict[str, int] = field(default_factory=dict)
    # Per task, its mean loss over the first and the last tenth of its micro-batches.
    task_loss_start_end: dict[str, tuple[float, float]] = field(default_factory=dict)
    # Mean loss over the first and the last tenth of this call's steps (at least one step each):
    # a loss that did not fall says the model learnt nothing (too few steps, learning rate).
    loss_start: float | None = None
    loss_end: float | None = None
    # select: best_english_dev: which checkpoint was kept; None when the stage keeps its last model.
    selection: SelectionOutcome | None = None
    # Model FLOP/s on useful (unpadded) tokens over this call's steps, the device, and the share
    # of its dense bf16 peak (None where the peak is unknown: CPUs, GPUs not in the table).
    model_tflops: float | None = None
    device: str = "cpu"
    mfu: float | None = None


@dataclass(frozen=True)
class Selection:
    """Checkpoint selection: ``score`` evaluates the model (in eval mode) on English dev, higher is
    better; the loop calls it at ``steps`` (optimiser steps done) and keeps the best model."""

    metric: str
    score: Callable[[MultiHeadClassifier], float]


def selection_steps(total: int, steps_per_epoch: float, every: int | None) -> list[int]:
    """When to evaluate: every ``every`` optimiser steps or, by default, at each epoch's end; and
    always after the last step."""
    if every is not None:
        steps = set(range(every, total + 1, every))
    else:
        steps = {
            math.ceil(k * steps_per_epoch) for k in range(1, math.ceil(total / steps_per_epoch))
        }
    return sorted({s for s in steps if 0 < s < total} | {total})


class _Selector:
    """Tracks the best dev score; the best model's weights live in ``best-<step>.pt`` in the work
    folder, and the history in the checkpoint, so a resumed run selects what an uninterrupted one
    would."""

    def __init__(self, selection: Selection, work_dir: Path, state: _SelectorState | None) -> None:
        self.selection, self.work_dir = selection, work_dir
        state = state or {"history": [], "best_step": None, "best_score": -math.inf}
        self.history: list[list[float]] = state["history"]
        self.best_step: int | None = state["best_step"]
        self.best_score: float = state["best_score"]

    def state(self) -> _SelectorState:
        return {"history": self.history, "best_step": self.best_step, "best_score": self.best_score}

    def _file(self, step: int) -> Path:
        return self.work_dir / f"best-{step}.pt"

    def evaluate(self, model: MultiHeadClassifier, step: int) -> None:
        model.eval()
        with torch.inference_mode():
            score = self.selection.score(model)
        model.train()
        self.history.append([step, score])
        if score > self.best_score:  # ties keep the earlier model, as XTREME's scripts do
            _save_checkpoint(self._file(step), {"model": model.state_dict(), "step": step})
            self.best_step, self.best_score = step, score
        log.info(
            "step %d: English dev %s %.4f (best %.4f at step %s)",
            step,
            self.selection.metric,
            score,
            self.best_score,
            self.best_step,
        )

    def prune(self) -> None:
        """Drop all but the best model's file; called once a checkpoint records which is best."""
        for f in self.work_dir.glob("best-*.pt"):
            if f != self._file(self.best_step or 0):
                f.unlink()

    def restore_best(
        self, model: MultiHeadClassifier, device: torch.device, total_steps: int
    ) -> SelectionOutcome:
        assert self.best_step is not None, "the last step is always evaluated"
        saved = torch.load(self._file(self.best_step), map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        for stale in self.work_dir.glob("best-*.pt"):
            stale.unlink()
        return SelectionOutcome(
            self.selection.metric, self.best_step, self.best_score, total_steps, self.history
        )


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


def _training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    device: torch.device,
) -> _Checkpoint:
    """What resuming needs besides the step: weights, optimiser and schedule, random states."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
    }


def _resume(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    device: torch.device,
) -> _Checkpoint:
    """Restore :func:`_training_state` from the checkpoint at ``path``, if there is one; returns
    the checkpoint (``{}`` when none)."""
    if not path.exists():
        return {}
    ckpt: _Checkpoint = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng_cpu"])
    if device.type == "cuda" and (rng_cuda := ckpt.get("rng_cuda")) is not None:
        torch.cuda.set_rng_state(rng_cuda)
    return ckpt


def _wrapped(
    model: nn.Module, device: torch.device, replica: Replica | None, cfg: TrainingConfig
) -> tuple[nn.Module, bool]:
    """The module the steps call: the model, in DistributedDataParallel for a replica, compiled
    (``torch_compile``; ``cuda_graphs``: replayed as CUDA graphs); and whether it is compiled."""
    net = model
    if replica is not None:
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None,
            # A step trains one task's head, and the encoder's pooler (where it has one) is unused.
            find_unused_parameters=True,
        )
    graphs = cfg.cuda_graphs and device.type == "cuda"
    if cfg.cuda_graphs and not graphs:
        log.warning("cuda_graphs: no CUDA device here (%s); training without graphs", device)
    if graphs:
        # Static shapes, one captured graph per width of pad_to_widths, replayed step after step.
        net = torch.compile(net, mode="reduce-overhead", dynamic=False)  # type: ignore[assignment]
    elif cfg.torch_compile:
        # dynamic: batch sizes and padded lengths change from step to step, unless padded to widths.
        net = torch.compile(net, dynamic=cfg.pad_to_widths is None)  # type: ignore[assignment]
    return net, graphs or cfg.torch_compile


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA, where the matmuls it leaves in fp32 (heads, losses) use TF32."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@dataclass(frozen=True)
class _Plan:
    """What a run trains: its streams in order, their formats and sampling, its optimiser steps
    and the steps after which the selection evaluates."""

    tasks: list[str]
    objectives: list[Objective]
    sizes: dict[str, int]
    probabilities: dict[str, float]
    total: int
    eval_at: frozenset[int]

    @classmethod
    def of(
        cls, data: dict[str, Features], cfg: TrainingConfig, probabilities: dict[str, float] | None
    ) -> _Plan:
        sizes = {t: len(f) for t, f in data.items()}
        examples = sum(sizes.values())
        total = total_optimizer_steps(examples, cfg)
        steps_per_epoch = examples / cfg.batch_size / cfg.gradient_accumulation_steps
        return cls(
            tasks=list(data),
            objectives=[get_objective(f.format) for f in data.values()],
            sizes=sizes,
            probabilities=probabilities or sampling_probabilities(sizes),
            total=total,
            eval_at=frozenset(selection_steps(total, steps_per_epoch, cfg.eval_every_steps)),
        )

    @property
    def name(self) -> str:
        return "+".join(self.tasks)


def _save_checkpoint(path: Path, state: _Checkpoint) -> None:
    with replacing(path) as tmp:  # a crash leaves the previous checkpoint or the new one
        torch.save(state, tmp)


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
    selection: Selection | None = None,
) -> TrainResult:
    """Train ``model``'s encoder and ``task`` head on ``features``; resumes from ``work_dir``."""
    return train_multi(
        model,
        {task: features},
        cfg,
        seed,
        work_dir,
        pad_id,
        progress=progress,
        should_stop=should_stop,
        selection=selection,
    )


def train_multi(
    model: MultiHeadClassifier,
    data: dict[str, Features],
    cfg: TrainingConfig,
    seed: int,
    work_dir: Path,
    pad_id: int,
    probabilities: dict[str, float] | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    selection: Selection | None = None,
    replica: Replica | None = None,
    heads: dict[str, str] | None = None,
) -> TrainResult:
    """Train the shared encoder and one head per task; each micro-batch comes from one task (a
    stream of ``data``, feeding head ``heads[stream]``, by default the head of its name), drawn
    with ``probabilities`` (default: proportional to size). Resumes from ``work_dir``. With a
    ``selection``, the model that scores best on it (``cfg.eval_every_steps``) is the one kept;
    evaluating changes nothing in the training run itself. With a ``replica``, this process is one
    of several data-parallel replicas (:mod:`.distributed`): it computes its share of each global
    batch and only rank 0 writes checkpoints."""
    if replica is not None and selection is not None:
        raise ValueError("select: best_english_dev runs in one process (processes_per_stage: 1)")
    device = pick_device()
    torch.manual_seed(seed)
    if cfg.freeze_word_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    model.to(device)
    plan = _Plan.of(data, cfg, probabilities)
    tasks, total, accum = plan.tasks, plan.total, cfg.gradient_accumulation_steps
    optimizer, scheduler = build_optimizer(model, cfg, total)

    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / CHECKPOINT_FILE
    ckpt = _resume(ckpt_path, model, optimizer, scheduler, device)
    start = int(ckpt.get("step", 0))
    if start:
        log.info("resuming %s from step %d/%d (%s)", plan.name, start, total, ckpt_path)
    selector = None
    if selection is not None:
        selector = _Selector(selection, work_dir, ckpt.get("selection") if start else None)

    # Each task's batch order depends only on (its seed, epoch), and the task of micro-batch k only
    # on (seed, k): a resumed run replays the choices to skip exactly the batches already used.
    batches = TrainingBatches(
        [data[t] for t in tasks],
        plan.objectives,
        TaskSchedule(tasks, plan.probabilities, seed),
        cfg.batch_size,
        accum,
        seed,
        start,
        pad_id,
        device,
        replica,
        widths=cfg.pad_to_widths,
    )
    autocast = _autocast(device)
    meter = Meter(device, model.encoder)
    net, compiled = _wrapped(model, device, replica, cfg)
    model.train()
    losses = LossBook(len(tasks), total - start, device, accum)
    loss_value = float("nan")
    # The word embeddings' gradient in one buffer cleared row by row (same numbers; see module).
    # Not with DDP (it reduces gradients in autograd's hooks) nor torch.compile (inductor fuses the
    # embedding's backward itself; tracing this one would break its graph).
    row_grads = row_gradient(model.encoder, device, enabled=replica is None and not compiled)
    with row_grads as clear_embedding_grad, batches:
        for step in range(start, total):
            for micro in range(accum):
                mb = next(batches)
                task, objective = tasks[mb.task], plan.objectives[mb.task]
                # Replicas reduce gradients once per optimiser step, on its last micro-batch.
                sync = net.no_sync() if replica and micro < accum - 1 else nullcontext()  # type: ignore[operator]
                with sync:
                    with autocast:
                        logits = net(mb.batch, heads.get(task, task) if heads else task)
                    loss = objective.loss(logits, mb.batch)
                    (loss * mb.weight / accum).backward()
                if replica is None:
                    losses.add(mb.task, loss.detach(), accum)
                else:  # the mean over replicas: a collective per micro-batch, as before
                    losses.add_value(mb.task, replica.mean(loss.item() * mb.weight), accum)
                meter.count(data[task].lengths[mb.rows])
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            clear_embedding_grad()
            losses.end_step(step - start)
            done = step + 1
            if selector is not None and done in plan.eval_at:
                selector.evaluate(model, done)
            if done % cfg.checkpoint_every_steps == 0 and done < total:
                if replica is None or replica.main:
                    state = _training_state(model, optimizer, scheduler, device)
                    _save_checkpoint(ckpt_path, state | _run_facts(done, cfg, seed, plan, selector))
                    if selector is not None:
                        selector.prune()
                if replica is not None:
                    replica.barrier()  # the others resume from rank 0's checkpoint: it must be whole
            if done % LOG_EVERY == 0 or done == total:
                loss_value = losses.step_loss(step - start)  # the one read of the device
                _log_step(plan, done, loss_value, meter, losses)
            rate = meter.recent_rate()
            if progress is not None:
                progress(done, total, rate, loss_value)
            stop = should_stop is not None and should_stop()
            if replica is not None:
                stop = replica.any(stop)  # all replicas stop at the same step
            if stop:
                raise CancelledError(f"training of {plan.name} cancelled at step {done}/{total}")
    meter.stop()
    chosen = selector.restore_best(model, device, total) if selector is not None else None
    model.eval()
    return _result(plan, start, losses, meter, chosen)


def _run_facts(
    done: int, cfg: TrainingConfig, seed: int, plan: _Plan, selector: _Selector | None
) -> _Checkpoint:
    """The checkpoint's step, the selection's state, and what the run was (for a reader)."""
    return {
        "step": done,
        "config": cfg.model_dump(),
        "seed": seed,
        "tasks": plan.tasks,
        "probabilities": plan.probabilities,
        "selection": selector.state() if selector is not None else None,
    }


def _log_step(plan: _Plan, done: int, loss: float, meter: Meter, losses: LossBook) -> None:
    means = losses.task_means()
    per_task = {t: round(means[i], 4) for i, t in enumerate(plan.tasks) if i in means}
    log.info(
        "%s step %d/%d: loss %.4f, %s%s",
        plan.name,
        done,
        plan.total,
        loss,
        meter.line(),
        f"; task losses {per_task}" if len(plan.tasks) > 1 else "",
    )


def _result(
    plan: _Plan, start: int, losses: LossBook, meter: Meter, chosen: SelectionOutcome | None
) -> TrainResult:
    step_losses = losses.step_losses()
    task_means = losses.task_means()
    loss_start, loss_end = first_and_last_tenth(step_losses) if step_losses else (None, None)
    tasks = plan.tasks
    return TrainResult(
        steps_run=plan.total - start,
        total_steps=plan.total,
        resumed_from_step=start,
        examples_per_s=meter.examples_per_s(),
        final_loss=step_losses[-1] if step_losses else float("nan"),
        num_examples=sum(plan.sizes.values()),
        task_losses={t: task_means[i] for i, t in enumerate(tasks) if i in task_means},
        task_batches={t: losses.batches[i] for i, t in enumerate(tasks)},
        task_loss_start_end={tasks[i]: pair for i, pair in losses.task_start_end().items()},
        loss_start=loss_start,
        loss_end=loss_end,
        model_tflops=meter.tflops(),
        device=meter.device_name,
        mfu=meter.mfu(),
        selection=chosen,
    )
