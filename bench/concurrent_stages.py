"""Stages per GPU: N target-training stages one after another in one process, then N at once in N
processes, through the worker's own path (``execute_stage``: memory admission, claim, training).

Each phase has a fresh workspace (SQLite) and GPU ledger; its processes import everything and wait
at a barrier, so the wall time is the stages' own (as in a warm Celery pool), not Python start-up.
The same seeds run in both phases, so the weights can be compared too. On CUDA each process
reports its peak memory (PyTorch's reserve, and the CUDA context on top).

    python bench/concurrent_stages.py --init xlmr-tiny --stages 2 --steps 8      # CPU smoke test
    python bench/concurrent_stages.py --init xlmr-large --stages 6 --steps 60    # one H200
    python bench/concurrent_stages.py --model /models/xlm-roberta-large --stages 6

``--init`` builds a randomly initialised XLM-R of that shape (speed and memory are the pretrained
model's) with the offline model's tokenizer; ``--model`` takes a local folder. MNLI pairs from the
data folder (XNLI's English training set), so the lengths are real. Target: on one H200, six XLM-R
Large target stages at once in at most a fifth of the time they take one after another.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from random_model import SHAPES, save_random_xlmr


class _Nowhere:
    """Delivers nothing: the predict stages that become runnable are not part of the bench."""

    def send(self, stage_id: int, queue: str) -> None:
        pass


def _process(settings: dict[str, Any], stage_ids: list[int], ready: Any, go: Any, out: Any) -> None:
    import torch
    from xstilts.config import Settings
    from xstilts.db.models import Stage
    from xstilts.experiments.plan import parse_stage_spec
    from xstilts.runtime.executors import execute_stage
    from xstilts.runtime.workspace import Workspace
    from xstilts.training import loop  # noqa: F401  (imported before the clock starts)
    from xstilts.training.memory import stage_memory

    ws = Workspace(Settings(**settings), upgrade_embedded=False)
    with ws.sessions() as s:  # the first model built imports its modelling code: not the stage's
        for stage_id in stage_ids:
            row = s.get(Stage, stage_id)
            assert row is not None
            stage_memory(parse_stage_spec(row.params))
    ready.wait()
    go.wait()
    for stage_id in stage_ids:
        t0 = time.perf_counter()
        execute_stage(ws, _Nowhere(), stage_id)
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_reserved() if torch.cuda.is_initialized() else None
        out.put((os.getpid(), stage_id, seconds, peak))
    ws.close()


def _phase(settings: dict[str, Any], groups: list[list[int]]) -> tuple[float, list[tuple]]:
    """Runs each group of stage ids in a process of its own, all at once; wall seconds and one
    (pid, stage, seconds, peak bytes) per stage."""
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Barrier(len(groups) + 1), ctx.Barrier(len(groups) + 1), ctx.Queue()
    procs = [ctx.Process(target=_process, args=(settings, g, ready, go, out)) for g in groups]
    for p in procs:
        p.start()
    ready.wait()  # every process has imported everything and opened its workspace
    t0 = time.perf_counter()
    go.wait()
    rows = [out.get() for _ in range(sum(len(g) for g in groups))]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return wall, rows


def _model_folder(args: argparse.Namespace, root: Path) -> Path:
    if args.model:
        return Path(args.model).resolve()
    from transformers import AutoTokenizer
    from xstilts.config import Settings
    from xstilts.modeling.offline import prepare_offline_model

    tokenizer = prepare_offline_model(Settings().cache_dir)
    vocab = len(AutoTokenizer.from_pretrained(tokenizer))
    return save_random_xlmr(root / "models" / args.init, tokenizer, args.init, vocab)


def _max_difference(one: Path, other: Path) -> float:
    from safetensors.torch import load_file

    worst = 0.0
    for folder in sorted(one.glob("stages/target_train-*")):
        a = load_file(folder / "encoder" / "model.safetensors")
        b = load_file(other / "stages" / folder.name / "encoder" / "model.safetensors")
        for name, tensor in a.items():
            # A model saved without a pooler (make_model.py's) gets one initialised at random when
            # loaded: unused by the heads, so not trained, but different in every process.
            if not name.startswith("pooler."):
                worst = max(worst, float((tensor.float() - b[name].float()).abs().max()))
    return worst


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="a local model folder")
    source.add_argument("--init", choices=sorted(SHAPES), default="xlmr-tiny")
    p.add_argument("--stages", type=int, default=2, help="N: stages in each phase")
    p.add_argument("--steps", type=int, default=8, help="optimiser steps per stage")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument(
        "--gpu-memory-gib",
        type=float,
        help="the shared budget (XSTILTS_GPU_MEMORY_GIB); default: measured on CUDA, 64 on a CPU",
    )
    args = p.parse_args()

    import torch
    from xstilts.config import Settings
    from xstilts.experiments.plan import parse_stage_spec
    from xstilts.runtime.scheduler import mark_runnable
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import parse_spec
    from xstilts.training.memory import stage_memory

    cuda = torch.cuda.is_available()
    budget = args.gpu_memory_gib if args.gpu_memory_gib or cuda else 64.0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = _model_folder(args, root)
        data_dir = Settings().data_dir or Path(os.environ.get("XSTILTS_DATA_DIR", "../shared/data"))
        spec = parse_spec(
            {
                "name": "concurrent-stages",
                "model": {"source": f"local:{folder}"},
                "target": {
                    "task": "xnli",
                    "training": {
                        "batch_size": args.batch_size,
                        "max_seq_length": args.max_length,
                        "max_steps": args.steps,
                        "max_train_examples": args.steps * args.batch_size,
                        "checkpoint_every_steps": 10**6,
                    },
                },
                "evaluation": {"languages": ["en"]},
                "seeds": list(range(1, args.stages + 1)),
            }
        )
        results: dict[str, tuple[float, list[tuple]]] = {}
        estimate = 0.0
        for mode in ("one after another", "at once"):
            home = root / mode.replace(" ", "-")
            (home / "tmp").mkdir(parents=True)
            settings = {
                "home": home,
                "data_dir": data_dir,
                "model_roots": (folder.parent,),
                "gpu_memory_gib": budget,
            }
            ws = Workspace(Settings(**settings))
            exp_id = ws.submit(spec)
            with ws.sessions() as s:
                from xstilts.db.models import Stage

                ids = [sid for sid, _ in mark_runnable(ws.sessions, exp_id)]
                first = s.get(Stage, ids[0])
                assert first is not None
                sized = stage_memory(parse_stage_spec(first.params))
                estimate = sized.gib if sized else 0.0
            ws.close()
            os.environ["TMPDIR"] = str(home / "tmp")  # this phase's own GPU ledger
            groups = [ids] if mode == "one after another" else [[sid] for sid in ids]
            results[mode] = _phase(settings, groups)
        difference = _max_difference(
            root / "one-after-another" / "artifacts", root / "at-once" / "artifacts"
        )

    device = torch.cuda.get_device_name() if cuda else "cpu"
    print(
        f"{folder.name} on {device}: {args.stages} target stages of {args.steps} steps, batch "
        f"{args.batch_size}, max length {args.max_length}; estimate {estimate:.2f} GiB a stage, "
        f"budget {'measured' if budget is None else f'{budget:g} GiB'}"
    )
    # PyTorch's peak reserve per process; each process's CUDA context (~0.5 GiB) comes on top.
    print("| mode | processes | wall s | s per stage (mean) | speed-up | peak GiB per process |")
    print("|---|---|---|---|---|---|")
    serial = results["one after another"][0]
    for mode, (wall, rows) in results.items():
        per_stage = statistics.mean(r[2] for r in rows)
        peaks = [r[3] for r in rows if r[3] is not None]
        peak = f"{max(peaks) / 2**30:.1f}" if peaks else "-"
        processes = len({r[0] for r in rows})
        print(
            f"| {mode} | {processes} | {wall:.1f} | {per_stage:.1f} | x{serial / wall:.2f} | {peak} |"
        )
    print(f"largest weight difference between the phases: {difference:.3g}")


if __name__ == "__main__":
    main()
