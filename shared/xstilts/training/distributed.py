"""Data parallel training within one stage: N replicas (one per GPU, or CPU processes on gloo), each
computing its share of every global batch; gradients are averaged by DistributedDataParallel.

The global batch, its order, the optimiser and the schedule are the single-process run's; each
replica's mean loss is weighted by its share of the batch's rows, so the averaged gradient is the
gradient of the global batch's mean loss. Without dropout the weights equal the single-process
run's up to the order of floating-point sums (the test checks 2 gloo processes against 1); with
dropout each replica draws its own masks, as in every data-parallel trainer.

:func:`run_replicated` starts the replicas as fresh processes (spawn), forwards rank 0's progress
to the caller, passes a cancellation on, and returns rank 0's result.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from xstilts.errors import CancelledError, StageFailedError


@dataclass(frozen=True)
class Replica:
    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, index: np.ndarray) -> tuple[np.ndarray, float]:
        """This replica's rows of a global batch, and the weight of their mean loss (rows x world
        / batch rows). A replica left without rows (a batch smaller than the world) computes one
        row at weight 0, so every replica takes part in every gradient reduction."""
        mine = np.array_split(index, self.world)[self.rank]
        if len(mine) == 0:
            return index[:1], 0.0
        return mine, len(mine) * self.world / len(index)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the replicas."""
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def any(self, flag: bool) -> bool:
        """True on every replica when it is true on any (a cancellation seen by rank 0)."""
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        dist.barrier()


ReplicaFn = Callable[
    [Replica, Any, Callable[[int, int, float, float], None], Callable[[], bool]], Any
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PARENT_CHECK_S = 1.0


def _exit_with_parent() -> None:
    """End this replica when the process that started it dies (a killed worker's replicas would
    otherwise train on, into the folder its successor resumes from, on memory nobody accounts
    for). A daemon child outlives a parent killed with SIGKILL; its parent id then changes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="xstilts-parent-watch", daemon=True).start()


def _entry(
    rank: int,
    world: int,
    port: int,
    fn: ReplicaFn,
    payload: Any,
    events: Any,
    stop: Any,
) -> None:
    _exit_with_parent()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank % torch.cuda.device_count())
    else:
        # The replicas share the cores instead of each taking all of them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
    )
    replica = Replica(rank, world)

    def progress(step: int, total: int, rate: float, loss: float = float("nan")) -> None:
        if replica.main:
            events.put(("progress", (step, total, rate, loss)))  # rate: global rows/s

    try:
        result = fn(replica, payload, progress, stop.is_set)
        if replica.main:
            events.put(("result", result))
    except CancelledError as e:
        events.put(("cancelled", str(e)))
    except BaseException:
        events.put(("error", f"replica {rank}: {traceback.format_exc()}"))
    finally:
        dist.destroy_process_group()


def run_replicated(
    world: int,
    fn: ReplicaFn,
    payload: Any,
    progress: Callable[[int, int, float, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Any:
    """Run ``fn(replica, payload, progress, should_stop)`` in ``world`` fresh processes; rank 0's
    return value comes back. A replica's failure stops the others and raises
    :class:`StageFailedError` with its traceback; a cancellation raises :class:`CancelledError`."""
    ctx = mp.get_context("spawn")
    events, stop = ctx.Queue(), ctx.Event()
    port = _free_port()
    procs = [
        ctx.Process(target=_entry, args=(r, world, port, fn, payload, events, stop), daemon=True)
        for r in range(world)
    ]
    for p in procs:
        p.start()
    result: Any = None
    got_result, failure, cancelled = False, None, None
    try:
        while True:
            # On every pass, not only when no event came for a while: rank 0 reports each step,
            # and a cancel or a lost lease must stop the replicas at the next one. (The caller's
            # check is cheap or rate-limited.)
            if should_stop is not None and not stop.is_set() and should_stop():
                stop.set()
            try:
                kind, value = events.get(timeout=0.5)
            except queue.Empty:
                if all(not p.is_alive() for p in procs):
                    break
                if any(p.exitcode not in (None, 0) for p in procs) and failure is None:
                    failure = "a replica exited with code " + ", ".join(
                        str(p.exitcode) for p in procs if p.exitcode not in (None, 0)
                    )
                    break
                continue
            if kind == "progress" and progress is not None:
                progress(*value)
            elif kind == "result":
                result, got_result = value, True
            elif kind == "cancelled":
                cancelled = value
            elif kind == "error" and failure is None:
                failure = value
                break
    finally:
        if failure is not None or cancelled is not None:
            stop.set()
        for p in procs:
            p.join(timeout=30 if failure is None else 5)
            if p.is_alive():
                p.kill()
                p.join()
    if failure is not None:
        raise StageFailedError(f"data parallel training failed: {failure}")
    if cancelled is not None:
        raise CancelledError(cancelled)
    if not got_result:
        raise StageFailedError("data parallel training ended without a result from rank 0")
    return result
