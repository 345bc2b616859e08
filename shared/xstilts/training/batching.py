"""Length-grouped training batches and length-sorted inference batches.

Padding is the main waste in encoder training on short, varied sentence pairs; grouping examples of
similar length into a batch and padding only to the batch's longest row removes most of it.

:class:`TrainingBatches` is the training loop's source of micro-batches: which task each comes
from, its rows (this replica's share of them), collated and on the training device, prepared in a
background thread a few batches ahead so that collation and the host-to-GPU copy overlap the
step that runs.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
import torch

if TYPE_CHECKING:
    from xstilts.formats.base import Batch, Features, Objective
    from xstilts.training.distributed import Replica
    from xstilts.training.sampling import TaskSchedule

# A training batch is drawn from a window of this many batches sorted by length: large enough that
# neighbours have similar lengths, small enough that batches still mix the whole data over an epoch.
MEGABATCH_FACTOR = 64


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffle, sort within windows of ``MEGABATCH_FACTOR`` batches, then shuffle the batches."""
    order = rng.permutation(len(lengths))
    window = batch_size * MEGABATCH_FACTOR
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(
    lengths: np.ndarray, batch_size: int, max_tokens: int | None = None
) -> list[np.ndarray]:
    """Inference batches of similar length (longest first); callers restore the original order.

    At most ``batch_size`` rows, and with ``max_tokens`` at most that many padded tokens (rows x
    the batch's first, longest row): long rows come in smaller batches, so a batch spans a
    narrower range of lengths and pads less. A row's outputs do not depend on its batch."""
    order = np.argsort(-lengths, kind="stable")
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches, start = [], 0
    while start < len(order):
        width = max(int(lengths[order[start]]), 1)
        rows = max(1, min(batch_size, max_tokens // width))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, start_epoch: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Endless (epoch, batch) stream; epoch ``e``'s order depends only on ``(seed, e)``."""
    epoch = start_epoch
    while True:
        for batch in length_grouped_batches(
            lengths, batch_size, np.random.default_rng([seed, epoch])
        ):
            yield epoch, batch
        epoch += 1


# Each task's batch stream has its own seed: seed + this x the task's position.
TASK_SEED_STRIDE = 104_729


T = TypeVar("T")


class Prefetched(Generic[T]):
    """The items of ``items``, made ``depth`` ahead in a background thread (0: on the caller's
    thread, when asked): while the caller runs one batch on the device, the next ones are collated
    and their copies to the device started. An error making an item is raised to the caller, in
    order; iterate once, and :meth:`close` (or leave the ``with`` block) when done, which stops the
    thread even where the items are endless."""

    def __init__(self, items: Iterator[T], depth: int = 2) -> None:
        self._items, self._depth = items, depth
        self._queue: queue.Queue[tuple[T | None, BaseException | None, bool]] = queue.Queue(
            max(depth, 1)
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _put(self, entry: tuple[T | None, BaseException | None, bool]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def _fill(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                self._put((item, None, False))
            self._put((None, None, True))
        except BaseException as e:  # handed to the consumer, which raises it
            self._put((None, e, False))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._depth == 0:
            return next(self._items)
        if self._thread is None:
            self._thread = threading.Thread(target=self._fill, name="collate", daemon=True)
            self._thread.start()
        item, error, ended = self._queue.get()
        if error is not None:
            raise error
        if ended:
            raise StopIteration
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class MicroBatch:
    task: int  # the task's position in the run's task list
    rows: np.ndarray  # the rows of the global batch (all replicas'), into the task's features
    weight: float  # this process's share of the global batch's mean loss
    batch: Batch  # this process's rows, collated, on the training device


class TrainingBatches:
    """The micro-batches of a training run from optimiser step ``start`` on, exactly as an
    uninterrupted run takes them: micro-batch ``k`` comes from task ``schedule.task_at(k)``, and
    each task's batches from its own endless length-grouped stream (:func:`epoch_batches`), so a
    resumed run replays the choices to skip what was used. ``prefetch`` batches are prepared ahead
    in a thread (0: on the caller's thread); iterate once, and :meth:`close` when done. With
    ``widths``, each batch is padded (masked) to the smallest of them that holds it."""

    def __init__(
        self,
        features: Sequence[Features],
        objectives: Sequence[Objective],
        schedule: TaskSchedule,
        batch_size: int,
        accumulation: int,
        seed: int,
        start_step: int,
        pad_id: int,
        device: torch.device,
        replica: Replica | None = None,
        prefetch: int = 2,
        widths: Sequence[int] | None = None,
    ) -> None:
        self.features, self.objectives, self.widths = features, objectives, widths
        self.pad_id, self.device, self.replica = pad_id, device, replica
        first = start_step * accumulation
        used = [0] * len(features)
        for k in range(first):
            used[schedule.task_at(k)] += 1
        streams = [
            itertools.islice(
                epoch_batches(f.lengths, batch_size, seed + TASK_SEED_STRIDE * i), used[i], None
            )
            for i, f in enumerate(features)
        ]
        self._order = ((schedule.task_at(k), streams) for k in itertools.count(first))
        self._ahead = Prefetched((self._make() for _ in itertools.count()), prefetch)

    def _make(self) -> MicroBatch:
        i, streams = next(self._order)
        _, rows = next(streams[i])
        mine, weight = (rows, 1.0) if self.replica is None else self.replica.share(rows)
        batch = self.objectives[i].collate(self.features[i], mine, self.pad_id)
        if self.widths:
            batch = batch.padded_to(bucket_width(batch.width, self.widths), self.pad_id)
        return MicroBatch(i, rows, weight, to_device(batch, self.device))

    def __iter__(self) -> Iterator[MicroBatch]:
        return self

    def __next__(self) -> MicroBatch:
        return next(self._ahead)

    def close(self) -> None:
        self._ahead.close()

    def __enter__(self) -> TrainingBatches:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def bucket_width(width: int, widths: Sequence[int]) -> int:
    """The smallest of the ascending ``widths`` that holds ``width``; ``width`` past the last."""
    return next((w for w in widths if w >= width), width)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch's tensors on ``device`` (:meth:`Batch.to`)."""
    return batch.to(device)
