"""Each format's submission files read back into the rows they were exported from, and score the
same: `xstilts score` and the evaluate stage share one scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from xstilts.formats import get_format
from xstilts.metrics import get_metric
from xstilts.tasks import get_task

LABELS = ["entailment", "neutral", "contradiction"]
CASES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "xnli": (
        "de",
        [
            {"id": f"x{i}", "prediction": LABELS[i % 3], "label": LABELS[i // 2 % 3]}
            for i in range(9)
        ],
    ),
    "hellaswag": (
        "en",
        [{"id": f"h{i}", "prediction": "ABCD"[i % 4], "label": "ABCD"[i % 3]} for i in range(7)],
    ),
    "panx": (
        "fr",
        [
            {
                "id": "s0",
                "words": ["a", "b"],
                "prediction": ["B-PER", "I-PER"],
                "label": ["B-PER", "O"],
            },
            {"id": "s1", "words": ["c"], "prediction": ["O"], "label": ["B-LOC"]},
            {
                "id": "s2",
                "words": ["d", "e"],
                "prediction": ["B-ORG", "O"],
                "label": ["B-ORG", "O"],
            },
        ],
    ),
    "mlqa": (
        "zh",
        [
            {
                "id": "q1",
                "question": "?",
                "prediction": "北京大学",
                "label": ["北京"],
                "answer_starts": [0],
            },
            {
                "id": "q2",
                "question": "?",
                "prediction": "上海",
                "label": ["上海", "上海市"],
                "answer_starts": [3, 3],
            },
        ],
    ),
    "tatoeba": (
        "de",
        [{"id": str(i), "prediction": (i * 7) % 5, "label": i} for i in range(5)],
    ),
    "bucc2018": (
        "zh",
        [
            {"id": "zh-1\ten-1", "prediction": True, "label": True},
            {"id": "zh-2\ten-7", "prediction": True, "label": False},
            {"id": "zh-3\ten-3", "prediction": False, "label": True},
        ],
    ),
}


def _export(rows: list[dict[str, Any]], fmt: Any, folder: Path, gold: bool) -> Path:
    ext, text = fmt.export(rows, gold=gold)
    path = folder / f"{'gold' if gold else 'pred'}{ext}"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_read_submission_round_trip(name: str, tmp_path: Path) -> None:
    task = get_task(name)
    lang, rows = CASES[name]
    fmt = get_format(task.format.value)
    pred, gold = _export(rows, fmt, tmp_path, False), _export(rows, fmt, tmp_path, True)
    assert pred.suffix == gold.suffix == fmt.submission_suffix
    back = fmt.read_submission(task, pred, gold)
    fields = ("prediction", "label")
    if task.format.value in ("extractive_qa", "retrieval") and task.name != "tatoeba":
        fields = ("id", "prediction", "label")  # these files carry the ids
    assert [{k: r[k] for k in fields} for r in back] == [{k: r[k] for k in fields} for r in rows]
    metric = get_metric(task.metric)
    assert metric.score(task, lang, back, 0) == metric.score(task, lang, rows, 0)


def test_bucc_rows_from_files_score_f1_without_a_threshold(tmp_path: Path) -> None:
    task = get_task("bucc2018")
    lang, rows = CASES["bucc2018"]
    fmt = get_format("retrieval")
    back = fmt.read_submission(
        task, _export(rows, fmt, tmp_path, False), _export(rows, fmt, tmp_path, True)
    )
    scores = {s.metric: s.value for s in get_metric(task.metric).score(task, lang, back, 0)}
    # 2 mined, 2 gold, 1 in both: P = R = F1 = 1/2; the files carry no threshold.
    assert scores == {"f1": 0.5, "precision": 0.5, "recall": 0.5}


def test_a_question_without_a_prediction_scores_zero(tmp_path: Path) -> None:
    task = get_task("xquad")
    fmt = get_format("extractive_qa")
    rows = [
        {
            "id": "q1",
            "question": "?",
            "prediction": "Paris",
            "label": ["Paris"],
            "answer_starts": [0],
        },
        {"id": "q2", "question": "?", "prediction": "the", "label": ["the"], "answer_starts": [0]},
    ]
    pred = tmp_path / "pred.json"
    pred.write_text('{"q1": "Paris"}', encoding="utf-8")  # q2 unanswered
    back = fmt.read_submission(task, pred, _export(rows, fmt, tmp_path, True))
    assert back[1]["prediction"] is None
    f1, em = get_metric(task.metric).score(task, "en", back, 0)
    # "the" normalises to "": an empty answer would match it exactly; no answer scores 0.
    assert (f1.value, em.value, em.n) == (0.5, 0.5, 2)


def test_misaligned_files_are_an_error(tmp_path: Path) -> None:
    task = get_task("xnli")
    fmt = get_format("pair_classification")
    (tmp_path / "p.tsv").write_text("neutral\n", encoding="utf-8")
    (tmp_path / "g.tsv").write_text("neutral\nneutral\n", encoding="utf-8")
    with pytest.raises(ValueError, match="1 entries, but .* has 2"):
        fmt.read_submission(task, tmp_path / "p.tsv", tmp_path / "g.tsv")
