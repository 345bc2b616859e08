"""Score predictions in XTREME's submission layout against labels in the same layout.

``<dir>/<task>/<split>-<lang>.<suffix>`` holds one label per line (classification), one tag per line
with a blank line between sentences (tagging), ``source-id<TAB>target-id`` pairs (BUCC) or the
index of the retrieved English sentence (Tatoeba); QA predictions are ``{question id: answer text}``
JSON and QA labels SQuAD-format JSON. Each task's format reads its files back into prediction rows,
which are scored exactly as the evaluate stage scores them (the task's metric). Scores are
percentages, per language and averaged over languages, as XTREME's evaluator reports them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypedDict

from xstilts.errors import DataNotFoundError, UnknownNameError
from xstilts.formats import get_format
from xstilts.metrics import get_metric
from xstilts.tasks import Task, all_tasks

# The submission folders are the registry's XTREME tasks; each is read by its format.
TASKS: dict[str, Task] = {t.xtreme_name: t for t in all_tasks() if t.xtreme_name}

_NAME = re.compile(r"^(?P<split>[a-z]+)-(?P<lang>[A-Za-z_]+)\.(?P<ext>tsv|json)$")


def score_language(task: Task, lang: str, pred: Path, gold: Path) -> dict[str, float]:
    """The metrics XTREME's evaluator reports for one language, in percent."""
    fmt = get_format(task.format.value)
    rows = fmt.read_submission(task, pred, gold)
    metric = get_metric(task.metric)
    scores = {s.metric: 100.0 * s.value for s in metric.score(task, lang, rows, 0)}
    return {name: scores[name] for name in metric.reported}


class TaskScores(TypedDict):
    """One task's scores, in percent: per language, averaged over languages, and XTREME's task
    score (QA: the mean of F1 and exact match)."""

    languages: dict[str, dict[str, float]]
    average: dict[str, float]
    score: float


def score_folder(
    predictions: Path, labels: Path, split: str | None = None
) -> dict[str, TaskScores]:
    """Every ``<task>/<split>-<lang>`` prediction file that has a labels file, per task and language.
    ``split`` None: the one split the files are of (``export`` of a validation run writes ``dev``).

    Returns each task's :class:`TaskScores` by its folder name.
    """
    if not predictions.is_dir():
        raise DataNotFoundError(f"--predictions: {predictions} is not a folder")
    present = sorted(
        {
            m["split"]
            for task_dir in predictions.iterdir()
            if task_dir.is_dir()
            for f in task_dir.iterdir()
            if (m := _NAME.match(f.name))
        }
    )
    if split is None:
        if len(present) > 1:
            raise DataNotFoundError(
                f"--split: the predictions hold the splits {', '.join(present)}; "
                f"pass one of them (--split {present[0]})"
            )
        split = present[0] if present else "test"
    out: dict[str, TaskScores] = {}
    for task_dir in sorted(p for p in predictions.iterdir() if p.is_dir()):
        if task_dir.name not in TASKS:
            raise UnknownNameError("task folder", task_dir.name, TASKS)
        task = TASKS[task_dir.name]
        suffix = get_format(task.format.value).submission_suffix
        per_lang: dict[str, dict[str, float]] = {}
        for pred in sorted(task_dir.iterdir()):
            m = _NAME.match(pred.name)
            if not m or m["split"] != split:
                continue
            lang = m["lang"]
            if not pred.is_file():
                raise DataNotFoundError(f"{pred} is not a file")
            gold = labels / task_dir.name / f"{split}-{lang}{suffix}"
            if not gold.is_file():
                raise DataNotFoundError(f"no labels for {pred}: expected {gold}")
            per_lang[lang] = score_language(task, lang, pred, gold)
        if per_lang:
            out[task_dir.name] = _task_scores(task, per_lang)
    if not out:
        found = (
            f"; it holds {', '.join(present)} files: pass --split {present[0]}" if present else ""
        )
        raise DataNotFoundError(
            f"--predictions: no <task>/{split}-<lang> files under {predictions}{found}"
        )
    return out


def _task_scores(task: Task, per_lang: dict[str, dict[str, float]]) -> TaskScores:
    rows = list(per_lang.values())
    average = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    score = get_metric(task.metric).task_score(average)
    return {"languages": per_lang, "average": average, "score": score}
