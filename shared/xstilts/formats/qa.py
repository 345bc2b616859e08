"""Extractive QA (SQuAD v1.1/v2.0, XQuAD, MLQA, TyDiQA-GoldP): start/end logits over windows of
the context; decoding searches the n best spans across an example's windows (:mod:`.span`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xstilts.data.examples import QAExample
from xstilts.formats.base import (
    Batch,
    DecodeConfig,
    FeatureConfig,
    Features,
    PredictionRow,
    Score,
    TrainedFormat,
    pad_rows,
)
from xstilts.formats.span import decode_spans, featurize_spans
from xstilts.metrics import bootstrap_mean_ci, mlqa, squad
from xstilts.tasks.base import HubSource, Task


class ExtractiveQA(TrainedFormat):
    name = "extractive_qa"
    head = "span"

    def from_records(self, task: Task, records: Iterable[Any]) -> list[QAExample]:
        return list(records)

    def from_hub(self, task: Task, hub: HubSource, rows: Any, lang: str) -> list[QAExample]:
        out = []
        for row in rows:
            answers = row["answers"]
            out.append(
                QAExample(
                    str(row["id"]),
                    row["question"],
                    row["context"],
                    tuple(answers["text"]),
                    tuple(int(s) for s in answers["answer_start"]),
                    is_impossible=not answers["text"],
                )
            )
        return out

    def labels(self, task: Task, examples: Sequence[QAExample]) -> tuple[str, ...]:
        # A head trained with unanswerable questions (SQuAD v2) may answer "no answer".
        return ("start", "end", "no_answer") if task.name == "squad_v2" else ("start", "end")

    def featurize(
        self,
        tokenizer: Any,
        examples: Sequence[QAExample],
        cfg: FeatureConfig,
        labels: tuple[str, ...],
    ) -> Features:
        f = featurize_spans(
            tokenizer, examples, cfg.max_length, cfg.doc_stride, cfg.max_query_length
        )
        return Features(
            self.name,
            f.input_ids,
            {"start": f.start_positions, "end": f.end_positions},
            f.example_index,
            {"spans": f},
        )

    def collate(self, features: Features, index: np.ndarray, pad_id: int) -> Batch:
        ids, mask = pad_rows([features.input_ids[i] for i in index], pad_id)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "start": torch.as_tensor(features.targets["start"][index]),
            "end": torch.as_tensor(features.targets["end"][index]),
        }

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        start, end = logits.float().unbind(-1)
        return (F.cross_entropy(start, batch["start"]) + F.cross_entropy(end, batch["end"])) / 2

    def outputs(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        lengths = batch["attention_mask"].sum(1).tolist()
        x = logits.float().cpu().numpy()
        return [(x[j, :n, 0].copy(), x[j, :n, 1].copy()) for j, n in enumerate(lengths)]

    def decode(
        self,
        examples: Sequence[QAExample],
        features: Features,
        outputs: Sequence[Any],
        labels: tuple[str, ...],
        cfg: DecodeConfig,
    ) -> list[PredictionRow]:
        answers = decode_spans(
            examples,
            features.extra["spans"],
            [o[0] for o in outputs],
            [o[1] for o in outputs],
            n_best_size=cfg.n_best_size,
            max_answer_length=cfg.max_answer_length,
            allow_no_answer=labels == ("start", "end", "no_answer"),
        )
        return [
            {
                "id": e.guid,
                "question": e.question,
                "prediction": answers[e.guid],
                "label": list(e.answers),
                "answer_starts": list(e.answer_starts),
            }
            for e in examples
        ]

    def score(
        self, task: Task, lang: str, rows: Sequence[PredictionRow], bootstrap_samples: int
    ) -> list[Score]:
        normalize = mlqa.normalizer(lang) if task.metric == "mlqa_f1" else squad.normalize_answer
        squad_v2 = task.name == "squad_v2"  # only there is "no answer" a gold answer
        labelled = rows if squad_v2 else [r for r in rows if r["label"]]
        if not labelled:
            raise ValueError(
                f"{task.name} [{lang}]: none of the {len(rows)} questions has a gold answer "
                "(the data file carries blank answers), so F1/EM cannot be computed"
            )
        em, f1 = np.array(
            [
                squad.score_question(r["prediction"], r["label"], normalize, squad_v2)
                for r in labelled
            ],
            dtype=np.float64,
        ).T
        n = len(labelled)
        return [
            Score("f1", float(f1.mean()), n, *bootstrap_mean_ci(f1, bootstrap_samples)),
            Score("exact_match", float(em.mean()), n, *bootstrap_mean_ci(em, bootstrap_samples)),
        ]

    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        if not gold:
            return ".json", json.dumps({r["id"]: r["prediction"] for r in rows}, ensure_ascii=False)
        # SQuAD-format labels (contexts left out: scoring reads only ids and answer texts).
        qas = [
            {
                "id": r["id"],
                "question": r["question"],
                "answers": [
                    {"text": t, "answer_start": s}
                    for t, s in zip(r["label"], r["answer_starts"], strict=True)
                ],
            }
            for r in rows
            if r["label"]  # unanswered (blank) gold is not scorable, and not scored
        ]
        data = {
            "version": "xstilts-export",
            "data": [{"paragraphs": [{"context": "", "qas": qas}]}],
        }
        return ".json", json.dumps(data, ensure_ascii=False)
