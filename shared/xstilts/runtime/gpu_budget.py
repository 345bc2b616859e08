"""One GPU shared by several stages at once, each in its own worker process.

A GPU worker's pool has ``XSTILTS_STAGES_PER_GPU`` processes; how many of them run a stage at the
same moment is decided by memory. Before a process claims a stage it reserves the stage's estimate
(:mod:`xstilts.training.memory`) from its GPU's budget: ``XSTILTS_GPU_MEMORY_GIB``, or 90% of the
memory the GPU had free when the first process on it asked.

The budget is a ledger, one small JSON file per GPU (``<tmp>/xstilts-gpu-budget/<host>-<gpu>.json``,
node-local), changed under an exclusive file lock by every process that shares the GPU. It has one
entry per process: its pid and start time (a reused pid is not taken for it), the memory it holds
between stages (its CUDA context and its cached model), and while it runs a stage, that stage's
reservation. Entries of processes that are gone are dropped whenever the ledger is read, so a
killed worker holds nothing.

Stages are admitted in the order they asked; a waiting stage is not overtaken:

- a stage whose estimate fits in what the others leave is admitted, and so is any stage while no
  other stage runs (an estimate may be pessimistic, and waiting then would wait for ever);
- a stage marked to run alone (it ran out of memory beside others) waits until no other stage runs,
  and no stage is admitted beside it.

A stage not admitted within ``ADMISSION_WAIT_S`` goes back to the queue unclaimed: no attempt is
spent. Nothing here imports torch until a stage on the GPU queue asks for admission.
"""

from __future__ import annotations

import fcntl
import gc
import glob
import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from xstilts.config import Settings
from xstilts.db.models import Stage
from xstilts.files import write_atomic
from xstilts.runtime.lifecycle import claimable
from xstilts.runtime.scheduler import GPU_QUEUE, queue_for

log = logging.getLogger(__name__)

GIB = 1024**3
LEDGER_DIR = "xstilts-gpu-budget"  # under the temporary folder: node-local, gone with the node
FREE_MEMORY_SHARE = 0.9  # of the GPU's free memory when its ledger starts, if no budget is set
# What a process holds on a GPU once CUDA is up, stage or not: its context (about 0.5 GiB on a
# Hopper GPU), cuBLAS workspaces and the allocator's slack.
CUDA_CONTEXT_BYTES = GIB
ADMISSION_WAIT_S = 60.0  # then the stage goes back to the queue
POLL_S = 0.25
# A waiting entry not refreshed for this long belongs to a process that stopped asking (without
# dying): it no longer holds its place in line.
STALE_WAIT_S = 30.0

State = Literal["idle", "waiting", "running"]


@dataclass
class Holder:
    """One process's entry in a GPU's ledger."""

    pid: int
    started: str  # the process's start time (Linux clock ticks since boot), "" where unknown
    held: int  # bytes it holds between stages
    state: State = "idle"
    stage: int | None = None
    reserved: int = 0  # bytes reserved for the stage it runs (or asks to run)
    alone: bool = False
    since: float = 0.0  # when it began to wait: its place in line
    seen: float = 0.0  # when it last asked

    @property
    def total(self) -> int:
        return self.held + (self.reserved if self.state == "running" else 0)


@dataclass
class Ledger:
    budget: int
    holders: list[Holder] = field(default_factory=list)


@dataclass(frozen=True)
class Admission:
    """A stage's place on its GPU."""

    reserved: int
    alone: bool  # no other stage may run beside it
    neighbours: int  # other stages running when it was admitted
    budget: int


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: starttime


def _alive(holder: Holder) -> bool:
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    return not holder.started or _start_time(holder.pid) in ("", holder.started)


class GpuBudget:
    """The ledger of one GPU, as seen by this process.

    ``budget_bytes``: a fixed budget (``XSTILTS_GPU_MEMORY_GIB``); else ``measure`` gives it when
    the ledger starts (no process holds anything on the GPU). ``context_bytes``: what this process
    will hold on the device between stages before it ever ran one (0 without CUDA).
    """

    def __init__(
        self,
        path: Path,
        context_bytes: int,
        budget_bytes: int | None,
        measure: Callable[[], int] | None = None,
    ) -> None:
        if budget_bytes is None and measure is None:
            raise ValueError("a GPU budget needs a fixed size or a way to measure it")
        self.path = path
        self.context_bytes = context_bytes
        self.budget_bytes = budget_bytes
        self.measure = measure

    @contextmanager
    def _ledger(self) -> Iterator[Ledger]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                ledger = self._read()
                yield ledger
                self._write(ledger)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> Ledger:
        try:
            raw = json.loads(self.path.read_text())
            ledger = Ledger(int(raw["budget"]), [Holder(**h) for h in raw["holders"]])
        except (OSError, ValueError, KeyError, TypeError):
            ledger = Ledger(-1)  # no ledger yet (a torn one cannot exist: it is replaced whole)
        ledger.holders = [h for h in ledger.holders if _alive(h)]
        if self.budget_bytes is not None:
            ledger.budget = self.budget_bytes
        elif not ledger.holders or ledger.budget < 0:
            assert self.measure is not None
            ledger.budget = self.measure()
        return ledger

    def _write(self, ledger: Ledger) -> None:
        body = {"budget": ledger.budget, "holders": [asdict(h) for h in ledger.holders]}
        write_atomic(self.path, json.dumps(body))

    def _mine(self, ledger: Ledger) -> Holder:
        pid = os.getpid()
        for h in ledger.holders:
            if h.pid == pid:
                return h
        holder = Holder(pid, _start_time(pid), self.context_bytes)
        ledger.holders.append(holder)
        return holder

    def holders(self) -> Ledger:
        """The ledger as it stands (live processes only)."""
        with self._ledger() as ledger:
            return ledger

    def admit(self, stage_id: int, need: int, alone: bool, wait_s: float) -> Admission | None:
        """Reserve ``need`` bytes for a stage (all that is left, ``alone``), waiting up to
        ``wait_s`` seconds for its turn; None if it did not come."""
        deadline = time.monotonic() + wait_s
        logged = False
        try:
            while True:
                with self._ledger() as ledger:
                    me = self._mine(ledger)
                    now = time.time()
                    if me.state != "waiting":
                        me.state, me.since = "waiting", now
                    me.stage, me.reserved, me.alone, me.seen = stage_id, need, alone, now
                    admission = self._decide(ledger, me, now)
                    if admission is not None:
                        me.state, me.reserved = "running", admission.reserved
                        return admission
                    if time.monotonic() >= deadline:
                        self._idle(ledger, me)
                        return None
                    if not logged:
                        self._log_wait(ledger, me)
                        logged = True
                time.sleep(POLL_S)
        except BaseException:
            self.release(None)  # do not keep a place in line for a process that stopped asking
            raise

    @staticmethod
    def _decide(ledger: Ledger, me: Holder, now: float) -> Admission | None:
        others = [h for h in ledger.holders if h.pid != me.pid]
        running = [h for h in others if h.state == "running"]
        ahead = [
            h
            for h in others
            if h.state == "waiting"
            and now - h.seen < STALE_WAIT_S
            and (h.since, h.pid) < (me.since, me.pid)
        ]
        if ahead or any(h.alone for h in running) or (me.alone and running):
            return None
        used = sum(h.total for h in others) + me.held
        if running and used + me.reserved > ledger.budget:
            return None
        reserved = max(me.reserved, ledger.budget - used) if me.alone else me.reserved
        return Admission(reserved, me.alone, len(running), ledger.budget)

    def _idle(self, ledger: Ledger, me: Holder) -> None:
        if me.held:
            me.state, me.stage, me.reserved, me.alone = "idle", None, 0, False
        else:
            ledger.holders.remove(me)

    def _log_wait(self, ledger: Ledger, me: Holder) -> None:
        others = [h for h in ledger.holders if h.pid != me.pid]
        running = sum(h.state == "running" for h in others)
        free = ledger.budget - sum(h.total for h in others) - me.held
        log.info(
            "stage %s waits for GPU memory%s: needs %.2f GiB, %.2f of %.2f GiB free, %d stage(s) "
            "running, %d waiting ahead",
            me.stage,
            " to run alone" if me.alone else "",
            me.reserved / GIB,
            free / GIB,
            ledger.budget / GIB,
            running,
            sum(h.state == "waiting" and (h.since, h.pid) < (me.since, me.pid) for h in others),
        )

    def release(self, held: int | None) -> None:
        """This process's stage ended: it now holds ``held`` bytes (None: as before the stage)."""
        with self._ledger() as ledger:
            me = next((h for h in ledger.holders if h.pid == os.getpid()), None)
            if me is None:
                return
            if held is not None:
                me.held = held
            self._idle(ledger, me)


def pool_size(settings: Settings) -> int:
    """Processes in a GPU worker's pool: ``XSTILTS_STAGES_PER_GPU`` where there is a GPU to share
    (an NVIDIA device file; or a budget set with ``XSTILTS_GPU_MEMORY_GIB``), else 1: stages at
    once on a CPU only contend for its cores (``bench/concurrent_stages.py``). Read in the
    worker's parent process, which must not touch CUDA: no torch here."""
    if settings.gpu_memory_gib is not None or glob.glob("/dev/nvidia[0-9]*"):
        return settings.stages_per_gpu
    return 1


def _file_name(host: str, gpu: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{host}-{gpu}") + ".json"


def device_budget(settings: Settings) -> GpuBudget | None:
    """The budget of this process's GPU, or None where there is nothing to share: no CUDA device
    and no ``XSTILTS_GPU_MEMORY_GIB`` (which gives a CPU a budget too, for tests). One worker
    per GPU (``CUDA_VISIBLE_DEVICES``): a process uses the current device."""
    import torch

    folder = Path(tempfile.gettempdir()) / LEDGER_DIR
    host = socket.gethostname()
    fixed = None if settings.gpu_memory_gib is None else int(settings.gpu_memory_gib * GIB)
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", ""))
        gpu = uuid or f"cuda{os.environ.get('CUDA_VISIBLE_DEVICES', '')}-{index}"

        def free() -> int:
            return int(torch.cuda.mem_get_info(index)[0] * FREE_MEMORY_SHARE)

        return GpuBudget(folder / _file_name(host, gpu), CUDA_CONTEXT_BYTES, fixed, free)
    if fixed is None:
        return None
    return GpuBudget(folder / _file_name(host, "cpu"), 0, fixed)


def held_between_stages(context_bytes: int) -> int:
    """What this process still holds on its GPU after a stage: the allocator's reserve once
    everything freeable is freed (a cached model stays), plus its CUDA context; 0 without CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return 0
    gc.collect()  # an exception's frames may still hold tensors in reference cycles
    torch.cuda.empty_cache()
    return int(torch.cuda.memory_reserved()) + context_bytes


@dataclass
class Ticket:
    """Whether a delivered stage may run in this process now, and whether it has the device to
    itself (an exclusive reservation, or nothing to share it with): then running out of memory is
    final. ``release`` gives its reservation back (a no-op without one)."""

    admitted: bool
    alone: bool
    budget: GpuBudget | None = None

    def release(self) -> None:
        if self.budget is not None:
            self.budget.release(held_between_stages(self.budget.context_bytes))
            self.budget = None


def admit_stage(
    sessions: sessionmaker[Session], settings: Settings, stage_id: int, wait_s: float | None = None
) -> Ticket:
    """Reserve a delivered stage's memory on this process's GPU before it is claimed. A stage that
    is not on the GPU queue, cannot be claimed (a duplicate delivery) or has no GPU to share is
    admitted at once and alone; one whose turn does not come within ``wait_s`` is not admitted."""
    with sessions() as s:
        row = s.execute(
            select(Stage.kind, Stage.params, Stage.run_alone).where(
                Stage.id == stage_id, claimable()
            )
        ).one_or_none()
    if row is None or queue_for(row.kind) != GPU_QUEUE:
        return Ticket(True, True)
    budget = device_budget(settings)
    if budget is None:
        return Ticket(True, True)
    from xstilts.experiments.plan import parse_stage_spec
    from xstilts.training.memory import stage_memory

    try:
        estimate = stage_memory(parse_stage_spec(row.params))
    except Exception as e:  # no config.json, say: the stage itself will fail and say why
        log.warning("no memory estimate for stage %d (%s: %s)", stage_id, type(e).__name__, e)
        estimate = None
    need = estimate.total if estimate is not None else 0
    wait = ADMISSION_WAIT_S if wait_s is None else wait_s
    admission = budget.admit(stage_id, need, row.run_alone, wait)
    if admission is None:
        log.info("stage %d was not admitted within %.0f s: back to the queue", stage_id, wait)
        return Ticket(False, False)
    log.info(
        "stage %d admitted on the GPU%s: %.2f GiB reserved of %.2f GiB, %d other stage(s) running",
        stage_id,
        " alone" if row.run_alone else "",
        admission.reserved / GIB,
        admission.budget / GIB,
        admission.neighbours,
    )
    return Ticket(True, admission.alone, budget)
