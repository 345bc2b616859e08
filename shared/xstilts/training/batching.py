"""Length-grouped training batches and length-sorted inference batches.

Padding is the main waste in encoder training on short, varied sentence pairs; grouping examples of
similar length into a batch and padding only to the batch's longest row removes most of it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

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
