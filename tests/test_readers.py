"""Readers for every local file format, on the real files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest
from xstilts.data import DataSource, fingerprint_split, load_split
from xstilts.data.readers import read_glue_tsv, read_prompt_json, read_xtreme_pair_tsv
from xstilts.errors import DataNotFoundError, UnknownNameError
from xstilts.tasks import Split, get_task


def test_xnli_tsv_all_languages(data_dir: Path) -> None:
    task = get_task("xnli")
    src = DataSource("local", data_dir)
    for lang in task.languages:
        ex = load_split(task, Split.VALIDATION, lang, src)
        assert len(ex) == 2490, lang
        counts = [sum(e.label == i for e in ex) for i in range(3)]
        assert counts == [830, 830, 830], lang  # XNLI dev is balanced
    de = load_split(task, Split.VALIDATION, "de", src)
    assert de[0].text_a == "und er hat gesagt, Mama ich bin daheim."
    assert de[0].text_b == "Er rief seine Mutter an, sobald er aus dem Schulbus stieg."
    assert task.labels[de[0].label] == "neutral"


def test_pawsx_tsv(data_dir: Path) -> None:
    rows = list(read_xtreme_pair_tsv(data_dir / "pawsx" / "dev-de.tsv"))
    assert len(rows) == 2000 and rows[0][3] == "1"
    assert rows[0][1].startswith("Durch die Zusammenlegung des Four Rivers Council")


def test_pawsx_hf_export_with_header(tmp_path: Path) -> None:
    f = tmp_path / "test-de.tsv"
    f.write_text("id\tsentence1\tsentence2\tlabel\n7\tA b.\tB a.\t0\n8\tC.\tD.\t1\n")
    assert list(read_xtreme_pair_tsv(f)) == [
        ("test-de-7", "A b.", "B a.", "0"),
        ("test-de-8", "C.", "D.", "1"),
    ]


@pytest.mark.parametrize(
    ("task", "n", "counts"),
    [
        ("mnli", 8999, {"entailment": 3061, "neutral": 2980, "contradiction": 2958}),
        ("qqp", 8999, {"0": 5747, "1": 3252}),
        ("snli", 8999, {"contradiction": 3024, "neutral": 2994, "entailment": 2981}),
    ],
)
def test_prompt_json_train_sets(data_dir: Path, task: str, n: int, counts: dict[str, int]) -> None:
    t = get_task(task)
    ex = load_split(t, Split.TRAIN, "en", DataSource("local", data_dir))
    assert len(ex) == n
    assert {label: sum(e.label == t.labels.index(label) for e in ex) for label in counts} == counts


def test_prompt_json_raw(data_dir: Path) -> None:
    rows = list(read_prompt_json(data_dir / "snli" / "dev.json"))
    assert rows[0] == (
        "dev-0",
        "a man talks to a boy.",
        "A father converses with his son.",
        "neutral",
    )


@pytest.mark.parametrize(
    ("path", "first_a", "label", "n"),
    [
        ("mnli/k-shot/16-42/train.tsv", "That's all right.", "entailment", 48),
        (
            "qqp/k-shot/16-42/train.tsv",
            "Why do some people think that having a baby is a blessing?",
            "1",
            32,
        ),
        (
            "snli/k-shot/16-42/train.tsv",
            "A group of young boys in blue swimming suits attempt to jump into a pool to their swimming instructors.",
            "contradiction",
            48,
        ),  # noqa: E501
    ],
)
def test_glue_tsv(data_dir: Path, path: str, first_a: str, label: str, n: int) -> None:
    rows = list(read_glue_tsv(data_dir / path))
    assert len(rows) == n
    assert rows[0][1] == first_a and rows[0][3] == label


def test_glue_tsv_skips_no_consensus(tmp_path: Path) -> None:
    f = tmp_path / "dev.tsv"
    f.write_text("sentence1\tsentence2\tgold_label\nA.\tB.\t-\nC.\tD.\tneutral\n")
    assert [r[3] for r in read_glue_tsv(f)] == ["neutral"]


def test_cap_is_a_fixed_subset(data_dir: Path) -> None:
    t = get_task("mnli")
    src = DataSource("local", data_dir)
    a = load_split(t, Split.TRAIN, "en", src, max_examples=100)
    b = load_split(t, Split.TRAIN, "en", src, max_examples=100)
    assert len(a) == 100 and a == b
    full = load_split(t, Split.TRAIN, "en", src)
    assert a != full[:100]  # a random subset, not the file's first rows


def test_missing_split_and_language_errors(data_dir: Path, tmp_path: Path) -> None:
    src = DataSource("local", data_dir)
    with pytest.raises(UnknownNameError, match="valid values: .*de.*"):
        load_split(get_task("pawsx"), Split.VALIDATION, "xx", src)
    with pytest.raises(DataNotFoundError, match="pawsx/train-en.tsv"):
        load_split(get_task("pawsx"), Split.TRAIN, "en", src)  # not in the shared data
    with pytest.raises(DataNotFoundError, match="xnli/dev-de.tsv"):
        load_split(get_task("xnli"), Split.VALIDATION, "de", DataSource("local", tmp_path))


def test_fingerprint_is_content_hash(data_dir: Path, tmp_path: Path) -> None:
    t = get_task("xnli")
    fp = fingerprint_split(t, Split.VALIDATION, "de", DataSource("local", data_dir))
    # MANIFEST.md lists this sha256 for xnli/dev-de.tsv
    assert fp == "sha256:5a5ad525225418a96a82c595a83a93e2e3a852af01e92de92f925a61f82d8cbd"
    copy = tmp_path / "xnli"
    copy.mkdir()
    (copy / "dev-de.tsv").write_bytes((data_dir / "xnli" / "dev-de.tsv").read_bytes())
    assert fingerprint_split(t, Split.VALIDATION, "de", DataSource("local", tmp_path)) == fp
    (copy / "dev-de.tsv").write_bytes(b"a\tb\tneutral\n")
    assert fingerprint_split(t, Split.VALIDATION, "de", DataSource("local", tmp_path)) != fp


def test_hub_rows_mapping() -> None:
    from xstilts.data.hub import examples_from_hub
    from xstilts.tasks import HubSource

    hub = HubSource("facebook/xnli", "{lang}", "validation", "premise", "hypothesis")
    rows = [
        {"premise": "P1", "hypothesis": "H1", "label": 2},
        {"premise": "P2", "hypothesis": "H2", "label": -1},
    ]
    ex = examples_from_hub(get_task("xnli"), hub, rows, "de")
    assert len(ex) == 1 and ex[0].label == 2 and ex[0].text_a == "P1"


def test_digests_are_remembered_across_processes_per_size_and_mtime(tmp_path: Path) -> None:
    import hashlib
    import os

    from xstilts.data.fingerprint import file_sha256, folder_fingerprint

    memo = tmp_path / "digests"
    weights = tmp_path / "model" / "weights.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"abc" * 1000)
    expected = hashlib.sha256(b"abc" * 1000).hexdigest()
    assert file_sha256(weights, memo) == expected
    (written,) = memo.iterdir()
    assert written.read_text() == expected
    # What a new process would do: it reads the memo instead of the file (a planted value shows it).
    written.write_text("planted")
    assert file_sha256(weights, memo) == "planted"
    # A rewritten file has a new modification time and size: hashed again, never the stale memo.
    weights.write_bytes(b"abcd" * 1000)
    os.utime(weights, ns=(1, 1))
    assert file_sha256(weights, memo) == hashlib.sha256(b"abcd" * 1000).hexdigest()
    # A folder's fingerprint covers every file's name, size and bytes.
    before = folder_fingerprint(weights.parent, memo)
    (weights.parent / "config.json").write_text("{}")
    after = folder_fingerprint(weights.parent, memo)
    assert before.startswith("sha256:") and after != before
    assert folder_fingerprint(weights.parent, None) == after
    # An unwritable memo folder only means hashing each time.
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    assert file_sha256(weights, blocked / "digests") == hashlib.sha256(b"abcd" * 1000).hexdigest()
