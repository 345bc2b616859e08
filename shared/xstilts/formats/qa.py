"""Extractive QA (SQuAD v1.1/v2.0, XQuAD, MLQA, TyDiQA-GoldP): start/end logits over windows of
the context; decoding searches the n best spans across an example's windows (:mod:`.span`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
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
    HeadOutputs,
    PredictionRow,
    TrainedFormat,
    pad_rows,
    submission_text,
)
from xstilts.formats.span import decode_spans, featurize_spans
from xstilts.metrics.base import AnswerRow, rows_of
from xstilts.tasks.base import Task


class ExtractiveQA(TrainedFormat):
    name = "extractive_qa"
    head = "span"
    submission_suffix = ".json"

    def labels(self, task: Task, examples: Sequence[QAExample]) -> tuple[str, ...]:
        # A head trained with unanswerable questions (SQuAD v2) may answer "no answer".
        return ("start", "end", "no_answer") if task.unanswerable_questions else ("start", "end")

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
        return Batch(
            ids,
            mask,
            start=torch.as_tensor(features.targets["start"][index]),
            end=torch.as_tensor(features.targets["end"][index]),
        )

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        start, end = logits.float().unbind(-1)
        return (
            F.cross_entropy(start, batch.need("start")) + F.cross_entropy(end, batch.need("end"))
        ) / 2

    def outputs(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        lengths = batch.attention_mask.sum(1).tolist()
        x = logits.float().cpu().numpy()
        return [(x[j, :n, 0].copy(), x[j, :n, 1].copy()) for j, n in enumerate(lengths)]

    def decode(self, head: HeadOutputs, cfg: DecodeConfig) -> list[PredictionRow]:
        examples, features, outputs, labels = (
            head.examples,
            head.features,
            head.outputs,
            head.labels,
        )
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

    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        answers = rows_of(rows, AnswerRow)
        if not gold:
            predictions = {r["id"]: r["prediction"] for r in answers}
            return self.submission_suffix, json.dumps(predictions, ensure_ascii=False)
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
            for r in answers
            if r["label"]  # unanswered (blank) gold is not scorable, and not scored
        ]
        data = {
            "version": "xstilts-export",
            "data": [{"paragraphs": [{"context": "", "qas": qas}]}],
        }
        return self.submission_suffix, json.dumps(data, ensure_ascii=False)

    def read_submission(self, task: Task, pred_path: Path, gold_path: Path) -> list[PredictionRow]:
        """A row per gold question; one the predictions file does not answer has the prediction
        None, which scores 0 (as in the official script)."""
        predictions = _json(pred_path)
        if not isinstance(predictions, dict) or not all(
            isinstance(answer, str) for answer in predictions.values()
        ):
            raise ValueError(f"{pred_path}: expected a JSON object of question id -> answer text")
        return [
            {"id": qid, "prediction": predictions.get(qid), "label": answers}
            for qid, answers in read_squad_answers(gold_path).items()
        ]


def read_squad_answers(path: Path) -> dict[str, list[str]]:
    """``{question id: [gold answer texts]}`` from a SQuAD-format JSON file."""
    data = _json(path)
    try:
        answers = {
            qa["id"]: [a["text"] for a in qa["answers"]]
            for article in data["data"]
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        }
    except (KeyError, TypeError, IndexError):
        answers = None
    if answers is None or not all(isinstance(t, str) for texts in answers.values() for t in texts):
        raise ValueError(
            f"{path}: not SQuAD-format JSON (data[].paragraphs[].qas[] with an id and "
            "answers[].text strings)"
        )
    return answers


def _json(path: Path) -> Any:
    try:
        return json.loads(submission_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
