"""Score predictions in XTREME's submission layout against labels in the same layout.

``<dir>/<task>/<split>-<lang>.tsv`` holds one label per line (classification), one tag per line with
a blank line between sentences (tagging), ``source-id<TAB>target-id`` pairs (BUCC) or the index of
the retrieved English sentence (Tatoeba); QA predictions are ``<split>-<lang>.json``
(``{question id: answer text}``) and QA labels SQuAD-format JSON. Scores are percentages, per
language and averaged over languages, as XTREME's evaluator reports them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xstilts.errors import DataNotFoundError, UnknownNameError
from xstilts.metrics import mlqa, squad
from xstilts.metrics.retrieval import bucc_f1, tatoeba_accuracy
from xstilts.metrics.seqeval import f1_score
from xstilts.tasks import Task, TaskFormat, all_tasks

# The submission folders are the registry's XTREME tasks; each is read by its format.
TASKS: dict[str, Task] = {t.xtreme_name: t for t in all_tasks() if t.xtreme_name}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def read_labels(path: Path) -> list[str]:
    return [line.strip() for line in _lines(path) if line.strip()]


def read_tags(path: Path) -> list[list[str]]:
    """Sentences of tags; a line may be ``tag`` or ``token<TAB>tag`` (the tag is the last field)."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for line in _lines(path):
        if line.strip():
            current.append(line.rstrip().split("\t")[-1])
        elif current:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def read_pairs(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")[:2]) for line in _lines(path) if "\t" in line]  # type: ignore[misc]


def read_squad_answers(path: Path) -> dict[str, list[str]]:
    """``{question id: [gold answer texts]}`` from a SQuAD-format JSON file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        qa["id"]: [a["text"] for a in qa["answers"]]
        for article in data["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }


def _score_language(task: Task, lang: str, pred: Path, gold: Path) -> dict[str, float]:
    fmt = task.format
    if fmt is TaskFormat.PAIR_CLASSIFICATION:
        p, g = read_labels(pred), read_labels(gold)
        _same_length(p, g, pred, gold)
        return {"accuracy": 100.0 * sum(a == b for a, b in zip(p, g, strict=True)) / len(g)}
    if fmt is TaskFormat.TOKEN_CLASSIFICATION:
        pt, gt = read_tags(pred), read_tags(gold)
        _same_length(pt, gt, pred, gold)
        return {"f1": 100.0 * f1_score(gt, pt)}
    if fmt is TaskFormat.EXTRACTIVE_QA:
        predictions = json.loads(pred.read_text(encoding="utf-8"))
        golds = read_squad_answers(gold)
        if task.metric == "mlqa_f1":
            return mlqa.evaluate(predictions, golds, lang)
        return squad.evaluate(predictions, golds)
    if task.metric == "bucc_f1":
        return {"f1": 100.0 * bucc_f1(read_pairs(pred), read_pairs(gold))["f1"]}
    p, g = read_labels(pred), read_labels(gold)
    _same_length(p, g, pred, gold)
    return {"accuracy": 100.0 * tatoeba_accuracy([int(x) for x in p], [int(x) for x in g])}


def _same_length(pred: list[Any], gold: list[Any], pred_path: Path, gold_path: Path) -> None:
    if len(pred) != len(gold):
        raise ValueError(f"{pred_path}: {len(pred)} entries, but {gold_path} has {len(gold)}")


_NAME = re.compile(r"^(?P<split>[a-z]+)-(?P<lang>[A-Za-z_]+)\.(?P<ext>tsv|json)$")


def score_folder(predictions: Path, labels: Path, split: str = "test") -> dict[str, Any]:
    """Every ``<task>/<split>-<lang>`` prediction file that has a labels file, per task and language.

    Returns ``{task: {"languages": {lang: {metric: value}}, "average": {metric: value},
    "score": value}}`` where ``score`` is XTREME's task score (QA: the mean of F1 and EM).
    """
    if not predictions.is_dir():
        raise DataNotFoundError(f"--predictions: {predictions} is not a folder")
    out: dict[str, Any] = {}
    for task_dir in sorted(p for p in predictions.iterdir() if p.is_dir()):
        if task_dir.name not in TASKS:
            raise UnknownNameError("task folder", task_dir.name, TASKS)
        task = TASKS[task_dir.name]
        qa = task.format is TaskFormat.EXTRACTIVE_QA
        per_lang: dict[str, dict[str, float]] = {}
        for pred in sorted(task_dir.iterdir()):
            m = _NAME.match(pred.name)
            if not m or m["split"] != split:
                continue
            lang = m["lang"]
            gold = labels / task_dir.name / f"{split}-{lang}.{'json' if qa else 'tsv'}"
            if not gold.is_file():
                raise DataNotFoundError(f"no labels for {pred}: expected {gold}")
            per_lang[lang] = _score_language(task, lang, pred, gold)
        if per_lang:
            out[task_dir.name] = {"languages": per_lang, **_averages(qa, per_lang.values())}
    if not out:
        raise DataNotFoundError(
            f"--predictions: no <task>/{split}-<lang> files under {predictions}"
        )
    return out


def _averages(qa: bool, scores: Iterable[dict[str, float]]) -> dict[str, Any]:
    rows = list(scores)
    average = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    if qa:
        score = (average["f1"] + average["exact_match"]) / 2
    else:
        score = next(iter(average.values()))
    return {"average": average, "score": score}
