"""Token classification (UDPOS, PAN-X, CCG): a tag per word, predicted on its first sub-token.

Sentences longer than ``max_length`` sub-tokens are split into consecutive word chunks, so every
word gets a prediction (XTREME's scripts silently drop the tail of such sentences).

A sentencepiece tokenizer marks each pre-split word with a word-boundary piece; for words it cannot
join to their first character (most Chinese and Japanese words) that piece stands alone (``▁``,
``自從``). It is dropped there, so a word's first sub-token is its first real piece. Labelling the
bare ``▁`` (as XTREME's scripts do) makes every CJK word look like the same token: on the offline
model, zero-shot Chinese UDPOS F1 was 15.5 with it and 57.0 without it, PAN-X zh 10.8 and 25.4
(``bench/all_targets.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xstilts.data.examples import TaggingExample
from xstilts.formats.base import (
    Batch,
    DecodeConfig,
    FeatureConfig,
    Features,
    HeadOutputs,
    PredictionRow,
    TrainedFormat,
    check_gold_labels,
    check_predicted_labels,
    label_rows,
    pad_rows,
    submission_text,
)
from xstilts.metrics.base import TagRow, rows_of
from xstilts.modeling.batch import IGNORE
from xstilts.tasks.base import Task


class TokenClassification(TrainedFormat):
    name = "token_classification"
    head = "token"

    def labels(self, task: Task, examples: Sequence[TaggingExample]) -> tuple[str, ...]:
        if task.labels:
            return task.labels
        # An open tag set (CCG supertags): the tags seen in training, in a fixed order.
        return tuple(sorted({t for e in examples for t in e.tags if t}))

    def featurize(
        self,
        tokenizer: Any,
        examples: Sequence[TaggingExample],
        cfg: FeatureConfig,
        labels: tuple[str, ...],
    ) -> Features:
        label_id = {t: i for i, t in enumerate(labels)}
        bare = tokenizer.convert_tokens_to_ids("\u2581")  # sentencepiece's lone word boundary
        if bare == tokenizer.unk_token_id:
            bare = None
        budget = cfg.max_length - 2  # <s> and </s>
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        enc = tokenizer(
            [list(e.words) for e in examples] or [[""]],
            is_split_into_words=True,
            add_special_tokens=False,
            verbose=False,  # whole sentences may exceed the model's length; they are chunked below
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        rows: list[list[int]] = []
        targets: list[list[int]] = []
        firsts: list[list[int]] = []  # per row: position of each word's first sub-token (or -1)
        owner: list[int] = []
        first_word: list[int] = []
        for i, e in enumerate(examples):
            ids, word_ids = enc["input_ids"][i], enc.word_ids(i)
            pieces: list[list[int]] = [[] for _ in e.words]
            for tok, w in zip(ids, word_ids, strict=True):
                if w is not None:
                    pieces[w].append(tok)
            for piece in pieces:
                if len(piece) > 1 and piece[0] == bare:
                    del piece[0]
            start = 0
            while start < len(e.words) or (start == 0 and not e.words):
                row, tgt, pos, w = [cls], [IGNORE], [], start
                while w < len(e.words) and (w == start or len(row) - 1 + len(pieces[w]) <= budget):
                    piece = pieces[w][:budget]
                    pos.append(len(row) if piece else -1)
                    tag = e.tags[w] if w < len(e.tags) else ""
                    tgt.extend([label_id.get(tag, IGNORE)] + [IGNORE] * (len(piece) - 1))
                    row.extend(piece)
                    w += 1
                row.append(sep)
                tgt.append(IGNORE)
                rows.append(row)
                targets.append(tgt)
                firsts.append(pos)
                owner.append(i)
                first_word.append(start)
                start = max(w, start + 1)
        return Features(
            self.name,
            rows,
            {"tags": targets},
            np.asarray(owner, dtype=np.int64),
            {"first_positions": firsts, "first_word": first_word},
        )

    def collate(self, features: Features, index: np.ndarray, pad_id: int) -> Batch:
        ids, mask = pad_rows([features.input_ids[i] for i in index], pad_id)
        tags = torch.full(ids.shape, IGNORE, dtype=torch.long)
        for j, i in enumerate(index):
            row = features.targets["tags"][i]
            tags[j, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        return Batch(ids, mask, tags=tags)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(
            logits.float().flatten(0, 1), batch.need("tags").flatten(), ignore_index=IGNORE
        )

    def outputs(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        lengths = batch.attention_mask.sum(1).tolist()
        best = logits.argmax(-1).cpu()
        return [best[j, :n].tolist() for j, n in enumerate(lengths)]

    def decode(self, head: HeadOutputs, cfg: DecodeConfig) -> list[PredictionRow]:
        examples, features, outputs, labels = (
            head.examples,
            head.features,
            head.outputs,
            head.labels,
        )
        assert features.example_index is not None
        predicted: list[list[str]] = [[labels[0]] * len(e.words) for e in examples]
        for row, out in enumerate(outputs):
            e = int(features.example_index[row])
            w0 = features.extra["first_word"][row]
            for k, pos in enumerate(features.extra["first_positions"][row]):
                if pos >= 0:
                    predicted[e][w0 + k] = labels[out[pos]]
        return [
            {
                "id": e.guid,
                "words": list(e.words),
                "prediction": p,
                "label": list(e.tags) if e.tags and all(e.tags) else None,
            }
            for e, p in zip(examples, predicted, strict=True)
        ]

    def export(self, rows: Sequence[PredictionRow], gold: bool = False) -> tuple[str, str]:
        tagged = rows_of(rows, TagRow)
        tags = [(r["label"] or []) if gold else r["prediction"] for r in tagged]
        # XTREME's evaluator reads each non-blank line whole as a tag: tags only, no tokens.
        return self.submission_suffix, "\n".join("".join(f"{t}\n" for t in ts) for ts in tags)

    def read_submission(self, task: Task, pred_path: Path, gold_path: Path) -> list[PredictionRow]:
        gold = read_tags(gold_path)
        check_gold_labels(task, sorted({tag for sentence in gold for tag in sentence}), gold_path)
        pred, lines = _tags_and_lines(pred_path)
        flat = [tag for sentence in pred for tag in sentence]
        check_predicted_labels(task, flat, pred_path, lines=lines)
        return label_rows(pred, gold, pred_path, gold_path)


def read_tags(path: Path) -> list[list[str]]:
    """Sentences of tags; a line may be ``tag`` or ``token<TAB>tag`` (the tag is the last field)."""
    return _tags_and_lines(path)[0]


def _tags_and_lines(path: Path) -> tuple[list[list[str]], list[int]]:
    """:func:`read_tags`, and the file's line number of each tag in order (blank lines between
    sentences count, so an error can name the line a user opens the file at)."""
    sentences: list[list[str]] = []
    lines: list[int] = []
    current: list[str] = []
    for number, line in enumerate(submission_text(path).splitlines(), 1):
        if line.strip():
            current.append(line.rstrip().split("\t")[-1])
            lines.append(number)
        elif current:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences, lines
