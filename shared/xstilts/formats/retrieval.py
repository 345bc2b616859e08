"""Retrieval (BUCC 2018, Tatoeba): no training; sentences are embedded by pooling a named hidden
layer of the encoder, and translations are found by nearest neighbour search (:mod:`xstilts.formats.retrieval_search`).

Tatoeba predicts, for each non-English sentence, the index of its nearest English sentence (cosine).
BUCC mines pairs by ratio-margin scores over k nearest neighbours in both directions and keeps
those above a threshold tuned for F1 on gold pairs (the validation split's, or this split's when
scoring the validation split itself, which is all XTREME's released BUCC data allows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xstilts.data.examples import RetrievalCorpus
from xstilts.formats import retrieval_search as retrieval
from xstilts.formats.base import (
    Format,
    PredictionRow,
    label_rows,
    read_labels,
    submission_text,
)
from xstilts.metrics.base import MinedPairRow, NearestRow, rows_of
from xstilts.tasks.base import Task


@dataclass(frozen=True)
class SearchConfig:
    """How sentences are embedded and searched (the spec's ``evaluation.retrieval`` plus batch
    limits); named apart from the spec's ``RetrievalConfig``, which it is built from."""

    layer: int = -1
    pooling: str = "mean"
    k: int = 4
    batch_size: int = 64
    max_length: int = 128


class Retrieval(Format):
    """Only scoring and the submission layout are shared with the trained formats; predictions
    come from :meth:`retrieve`."""

    name = "retrieval"

    def retrieve(
        self,
        task: Task,
        encoder: Any,
        tokenizer: Any,
        corpus: RetrievalCorpus,
        cfg: SearchConfig,
        tuning: RetrievalCorpus | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[PredictionRow]:
        """Prediction rows for one language; BUCC tunes its threshold on ``tuning`` (or ``corpus``)."""

        def embed(sentences: Sequence[str]) -> np.ndarray:
            return retrieval.encode(
                encoder,
                tokenizer,
                sentences,
                cfg.layer,
                cfg.pooling,
                cfg.batch_size,
                cfg.max_length,
                progress,
            )

        if not task.mines_pairs:
            # For each source sentence, the index of its nearest English sentence (the and
            # the submission format's direction; XTREME's script searches the other way round).
            nearest = retrieval.tatoeba_predictions(embed(corpus.target), embed(corpus.source))
            translation = dict(corpus.gold)
            position = {tid: j for j, tid in enumerate(corpus.target_ids)}
            return [
                {
                    "id": sid,
                    "prediction": int(nearest[i]),
                    "label": position[translation[sid]] if sid in translation else None,
                }
                for i, sid in enumerate(corpus.source_ids)
            ]

        def mined(c: RetrievalCorpus) -> list[tuple[tuple[str, str], float]]:
            # As XTREME: mine over distinct sentence texts; a text that occurs under several ids
            # competes in mining but its pairs are dropped (it has no single id).
            src_rows, src_ids = retrieval.unify_sentences(c.source_ids, c.source)
            tgt_rows, tgt_ids = retrieval.unify_sentences(c.target_ids, c.target)
            x = embed([c.source[i] for i in src_rows])
            y = embed([c.target[i] for i in tgt_rows])
            return retrieval.bucc_mine(src_ids, x, tgt_ids, y, k=cfg.k)

        candidates = mined(corpus)
        tune = tuning if tuning is not None else corpus
        tune_candidates = candidates if tuning is None else mined(tuning)
        threshold, _ = retrieval.best_threshold(tune_candidates, set(tune.gold))
        # XTREME's bucc_extract keeps candidates scoring at or above the tuned threshold.
        predicted = {pair: s for pair, s in candidates if s >= threshold}
        gold_pairs = set(corpus.gold)
        rows: list[PredictionRow] = []
        for pair in sorted(set(predicted) | gold_pairs):
            rows.append(
                {
                    "id": f"{pair[0]}\t{pair[1]}",
                    "prediction": pair in predicted,
                    "label": pair in gold_pairs,
                    "score": predicted.get(pair),
                    "threshold": threshold if np.isfinite(threshold) else None,
                }
            )
        return rows

    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        if rows and isinstance(rows[0]["prediction"], bool):  # BUCC: the mined (or gold) pairs
            pairs = rows_of(rows, MinedPairRow)
            kept = [r["id"] for r in pairs if (r["label"] if gold else r["prediction"])]
            return self.submission_suffix, "".join(f"{pair}\n" for pair in kept)
        nearest = rows_of(rows, NearestRow)
        return self.submission_suffix, "".join(
            f"{r['label'] if gold else r['prediction']}\n" for r in nearest
        )

    def read_submission(self, task: Task, pred_path: Path, gold_path: Path) -> list[PredictionRow]:
        """BUCC: a row per pair that is mined or gold (``source-id<TAB>target-id`` lines);
        Tatoeba: line i holds the index of the English sentence retrieved for sentence i."""
        if not task.mines_pairs:
            pred, gold_index = _indices(pred_path), _indices(gold_path)
            return label_rows(pred, gold_index, pred_path, gold_path)
        mined, gold = set(_read_pairs(pred_path)), set(_read_pairs(gold_path))
        return [
            {"id": f"{s}\t{t}", "prediction": (s, t) in mined, "label": (s, t) in gold}
            for s, t in sorted(mined | gold)
        ]


def _indices(path: Path) -> list[int]:
    """Tatoeba's lines: one sentence index each."""
    lines = read_labels(path)
    for number, line in enumerate(lines, 1):
        if not line.isdigit():
            raise ValueError(f"{path}: entry {number} is {line!r}, not a sentence index")
    return [int(line) for line in lines]


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in submission_text(path).splitlines():
        if "\t" in line:
            source, target = line.split("\t")[:2]
            pairs.append((source, target))
    return pairs
