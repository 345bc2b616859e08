"""Readers for the tagging, QA, multiple-choice and retrieval formats, on the real files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from xstilts.data.examples import (
    ChoiceExample,
    PairExample,
    QAExample,
    RetrievalCorpus,
    TaggingExample,
)
from xstilts.data.readers import (
    READERS,
    bucc_corpus,
    read_bucc,
    read_commonsenseqa_jsonl,
    read_conllu,
    read_cosmosqa_csv,
    read_hellaswag_jsonl,
    read_squad_json,
    read_tagging_tsv,
    read_tatoeba,
    tatoeba_corpus,
)


def _at(path: Path, line: int) -> str:
    """The ``path:line`` prefix of an error message, as a regular expression."""
    return re.escape(f"{path}:{line}")


# --------------------------------------------------------------------------------------------
# CoNLL-U
# --------------------------------------------------------------------------------------------


def _scan_conllu(path: Path) -> tuple[int, int, int]:
    """Independent count: (sentences, all token lines, range/empty-node token lines)."""
    sentences = token_lines = skipped = 0
    in_sentence = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            in_sentence = False
            continue
        if line.startswith("#"):
            continue
        if not in_sentence:
            sentences += 1
            in_sentence = True
        token_lines += 1
        first = line.split("\t", 1)[0]
        if "-" in first or "." in first:
            skipped += 1
    return sentences, token_lines, skipped


def test_conllu_english_ewt_dev(data_dir: Path) -> None:
    path = data_dir / "ud" / "UD_English-EWT" / "en_ewt-ud-dev.conllu"
    sentences = list(read_conllu(path))
    n_sent, token_lines, skipped = _scan_conllu(path)
    assert len(sentences) == n_sent == 2001
    assert skipped == 359 + 4  # multiword ranges + empty nodes (grep -c on the file)
    assert sum(len(s.words) for s in sentences) == token_lines - skipped
    assert all(len(s.words) == len(s.tags) > 0 for s in sentences)
    first = sentences[0]
    assert first.guid == "weblog-blogspot.com_nominations_20041117172713_ENG_20041117_172713-0001"
    assert first.words == ("From", "the", "AP", "comes", "this", "story", ":")
    assert first.tags == ("ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT")
    # Range line "11-12 Iran's" is dropped, its syntactic words kept.
    iran = next(s for s in sentences if "Iran" in s.words and "’s" in s.words)
    assert "Iran’s" not in iran.words
    i = iran.words.index("Iran")
    assert iran.words[i : i + 2] == ("Iran", "’s") and iran.tags[i : i + 2] == ("PROPN", "PART")
    # Empty nodes (8.1 "write", 11.1 "_") are not words.
    assert len({s.guid for s in sentences}) == 2001
    upos = {t for s in sentences for t in s.tags}
    assert upos <= {
        "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
    }  # fmt: skip


def test_conllu_german_gsd_test(data_dir: Path) -> None:
    path = data_dir / "ud" / "UD_German-GSD" / "de_gsd-ud-test.conllu"
    sentences = list(read_conllu(path))
    n_sent, token_lines, skipped = _scan_conllu(path)
    assert len(sentences) == n_sent == 977
    assert sum(len(s.words) for s in sentences) == token_lines - skipped
    first = sentences[0]
    assert first.guid == "test-s1"
    assert first.words == (
        "Der", "Hauptgang", "war", "in", "Ordnung", ",", "aber", "alles", "andere", "als",
        "umwerfend", ".",
    )  # fmt: skip
    assert first.tags == (
        "DET", "NOUN", "AUX", "ADP", "NOUN", "PUNCT", "CCONJ", "DET", "DET", "ADP", "ADJ", "PUNCT",
    )  # fmt: skip
    # Sentence 2 has the contraction "im" (19-20) = "in" + "dem": the range line is skipped.
    second = sentences[1]
    assert second.guid == "test-s2"
    assert "im" not in second.words
    k = second.words.index("selben")
    assert second.words[k - 2 : k + 2] == ("in", "dem", "selben", "Jahr")
    assert second.tags[k - 2 : k + 2] == ("ADP", "DET", "DET", "NOUN")


@pytest.mark.parametrize(
    "name", ["UD_Chinese-GSD", "UD_Hindi-PUD", "UD_Japanese-GSD", "UD_French-GSD", "UD_Greek-GDT"]
)
def test_conllu_other_treebanks_match_independent_count(data_dir: Path, name: str) -> None:
    (path,) = (data_dir / "ud" / name).glob("*.conllu")
    sentences = list(read_conllu(path))
    n_sent, token_lines, skipped = _scan_conllu(path)
    assert len(sentences) == n_sent
    assert sum(len(s.words) for s in sentences) == token_lines - skipped


def test_conllu_without_sent_id_uses_stem_and_index(tmp_path: Path) -> None:
    f = tmp_path / "tiny.conllu"
    f.write_text(
        "# text = A b\n1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n2\tb\tb\tNOUN\t_\t_\t1\tx\t_\t_\n\n"
        "1-2\tzum\t_\t_\t_\t_\t_\t_\t_\t_\r\n1\tzu\tzu\tADP\t_\t_\t0\troot\t_\t_\r\n"
        "2\tdem\tder\tDET\t_\t_\t1\tx\t_\t_\r\n2.1\tE\te\tVERB\t_\t_\t_\t_\t1:x\t_\r\n",
        encoding="utf-8",
        newline="",
    )
    assert list(read_conllu(f)) == [
        TaggingExample("tiny-0", ("A", "b"), ("DET", "NOUN")),
        TaggingExample("tiny-1", ("zu", "dem"), ("ADP", "DET")),
    ]


def test_conllu_too_few_columns_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.conllu"
    f.write_text(
        "# sent_id = s1\n1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n2\tb\tb\tNOUN\n\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match=_at(f, 3) + r": expected 10 tab-separated"):
        list(read_conllu(f))


def test_conllu_bad_word_id(tmp_path: Path) -> None:
    f = tmp_path / "bad.conllu"
    f.write_text("x\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    with pytest.raises(ValueError, match=_at(f, 1) + r": invalid CoNLL-U word ID 'x'"):
        list(read_conllu(f))


# --------------------------------------------------------------------------------------------
# Tagging TSV (PAN-X)
# --------------------------------------------------------------------------------------------


def _count_blocks(path: Path) -> tuple[int, int]:
    """Independent count: (blank-separated non-empty blocks, non-blank lines)."""
    text = path.read_text(encoding="utf-8")
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return len(blocks), len(lines)


def test_panx_dev_de(data_dir: Path) -> None:
    path = data_dir / "panx" / "dev-de.tsv"
    sentences = list(read_tagging_tsv(path))
    n_blocks, n_lines = _count_blocks(path)
    assert len(sentences) == n_blocks == 10000
    assert sum(len(s.words) for s in sentences) == n_lines
    first = sentences[0]
    assert first.guid == "dev-de-0"
    assert first.words == ("Anton", "Wilhelm", "von", "Zuccalmaglio", ".")
    assert first.tags == ("B-PER", "I-PER", "I-PER", "I-PER", "O")
    assert sentences[-1].guid == f"dev-de-{n_blocks - 1}"
    tags = {t for s in sentences for t in s.tags}
    assert tags == {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"}


def test_panx_all_files_parse(data_dir: Path) -> None:
    for path in sorted((data_dir / "panx").glob("*.tsv")):
        sentences = list(read_tagging_tsv(path))
        assert len(sentences) == _count_blocks(path)[0], path.name
        assert all(s.words and all(s.tags) for s in sentences), path.name


def test_tagging_tsv_single_column_crlf_and_prefixes_kept(tmp_path: Path) -> None:
    f = tmp_path / "test-en.tsv"
    f.write_bytes(b"en:Paris\r\nis\r\n\r\n\r\nen:Nice\r\n")
    assert list(read_tagging_tsv(f)) == [
        TaggingExample("test-en-0", ("en:Paris", "is"), ("", "")),
        TaggingExample("test-en-1", ("en:Nice",), ("",)),
    ]
    g = tmp_path / "dev-xx.tsv"
    g.write_bytes(b"en:Paris\tB-LOC\r\n.\tO\r\n")
    assert list(read_tagging_tsv(g)) == [
        TaggingExample("dev-xx-0", ("en:Paris", "."), ("B-LOC", "O"))
    ]


def test_tagging_tsv_malformed(tmp_path: Path) -> None:
    f = tmp_path / "bad.tsv"
    f.write_text("a\tO\n\nb\tO\textra\n", encoding="utf-8")
    with pytest.raises(ValueError, match=_at(f, 3) + r": expected 'token<TAB>tag'"):
        list(read_tagging_tsv(f))
    g = tmp_path / "mixed.tsv"
    g.write_text("a\tO\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=_at(g, 2) + r": sentence mixes tagged and untagged"):
        list(read_tagging_tsv(g))


# --------------------------------------------------------------------------------------------
# SQuAD-format JSON
# --------------------------------------------------------------------------------------------


def _count_qas(path: Path) -> int:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return sum(len(p["qas"]) for a in doc["data"] for p in a["paragraphs"])


def test_xquad_de(data_dir: Path) -> None:
    examples = list(read_squad_json(data_dir / "xquad" / "xquad.de.json"))
    assert len(examples) == 1190
    assert len({e.guid for e in examples}) == 1190
    assert all(isinstance(e, QAExample) and not e.is_impossible for e in examples)
    assert all(e.answers and len(e.answers) == len(e.answer_starts) for e in examples)
    for e in examples:
        for text, start in zip(e.answers, e.answer_starts, strict=True):
            assert e.context[start : start + len(text)] == text, e.guid


def test_tydiqa_and_mlqa_counts(data_dir: Path) -> None:
    tydi = data_dir / "tydiqa" / "tydiqa.goldp.en.train.json"
    assert sum(1 for _ in read_squad_json(tydi)) == _count_qas(tydi) == 3696
    mlqa = data_dir / "mlqa" / "dev-context-en-question-en.json"
    examples = list(read_squad_json(mlqa))
    assert len(examples) == _count_qas(mlqa) == 1148
    for e in examples:
        for text, start in zip(e.answers, e.answer_starts, strict=True):
            assert e.context[start : start + len(text)] == text, e.guid


def test_squad_v2_impossible_and_duplicates(tmp_path: Path) -> None:
    doc = {
        "version": "v2.0",
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "Paris is in France.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Where is Paris?",
                                "answers": [
                                    {"text": "France", "answer_start": 12},
                                    {"text": "France", "answer_start": 12},
                                ],
                                "is_impossible": False,
                            },
                            {
                                "id": "q2",
                                "question": "Where is Rome?",
                                "answers": [],
                                "plausible_answers": [{"text": "France", "answer_start": 12}],
                                "is_impossible": True,
                            },
                        ],
                    }
                ],
            }
        ],
    }
    f = tmp_path / "v2.json"
    f.write_text(json.dumps(doc), encoding="utf-8")
    assert list(read_squad_json(f)) == [
        QAExample("q1", "Where is Paris?", "Paris is in France.", ("France",) * 2, (12, 12)),
        QAExample("q2", "Where is Rome?", "Paris is in France.", (), (), is_impossible=True),
    ]


def test_squad_malformed(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "q"}]}]}]}')
    where = re.escape(f"{f}: data[0].paragraphs[0].qas[0]: missing field 'question'")
    with pytest.raises(ValueError, match=where):
        list(read_squad_json(f))
    g = tmp_path / "broken.json"
    g.write_text('{"data": [\n{"paragraphs": ]}')
    with pytest.raises(ValueError, match=_at(g, 2) + r": invalid JSON"):
        list(read_squad_json(g))


# --------------------------------------------------------------------------------------------
# Multiple choice
# --------------------------------------------------------------------------------------------


def test_commonsenseqa_hf_export(data_dir: Path) -> None:
    path = data_dir / "commonsenseqa" / "dev_rand_split.jsonl"
    examples = list(read_commonsenseqa_jsonl(path))
    assert len(examples) == 1221
    assert all(len(e.choices) == 5 and 0 <= e.label < 5 for e in examples)
    first = examples[0]
    assert first.guid == "1afa02df02c908a558b4036e80242fac"
    assert first.context.startswith("A revolving door is convenient for two direction travel")
    assert first.question == ""
    assert first.label == 0 and first.choices[first.label] == "bank"
    # Labels agree with answerKey read independently.
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [e.label for e in examples] == ["ABCDE".index(r["answerKey"]) for r in rows]


def test_commonsenseqa_original_layout_and_unlabelled(tmp_path: Path) -> None:
    f = tmp_path / "test_rand_split.jsonl"
    rows = [
        {
            "id": "x1",
            "question": {
                "stem": "Where?",
                "choices": [{"label": "A", "text": "here"}, {"label": "B", "text": "there"}],
            },
            "answerKey": "B",
        },
        {"id": "x2", "question": {"stem": "What?", "choices": [{"label": "A", "text": "it"}]}},
        {"id": "x3", "question": "Q", "choices": {"label": ["A"], "text": ["a"]}, "answerKey": ""},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert list(read_commonsenseqa_jsonl(f)) == [
        ChoiceExample("x1", "Where?", "", ("here", "there"), 1),
        ChoiceExample("x2", "What?", "", ("it",), -1),
        ChoiceExample("x3", "Q", "", ("a",), -1),
    ]
    g = tmp_path / "bad.jsonl"
    g.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[0], "answerKey": "Z"}) + "\n")
    with pytest.raises(ValueError, match=_at(g, 2) + r": answerKey 'Z' not among"):
        list(read_commonsenseqa_jsonl(g))


def test_cosmosqa_valid_csv(data_dir: Path) -> None:
    examples = list(read_cosmosqa_csv(data_dir / "cosmosqa" / "valid.csv"))
    assert len(examples) == 2985
    assert all(len(e.choices) == 4 and 0 <= e.label < 4 for e in examples)
    first = examples[0]
    assert first.label == 1
    assert first.choices[1] == "He wants to get married to a different person ."
    assert first.question == "Why is this person asking about divorce ?"
    assert first.context.startswith("Do i need to go for a legal divorce ? I wanted to marry")
    assert first.guid.startswith("3BFF0DJK8XA7YNK4QYIGCOG1A95STE##")
    assert len({e.guid for e in examples}) == 2985


def test_cosmosqa_unlabelled_csv_jsonl_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "test.csv"
    f.write_text(
        'id,context,question,answer0,answer1,answer2,answer3\nq1,"A, ""quoted""\nctx",Q?,a,b,c,d\n',
        encoding="utf-8",
    )
    assert list(read_cosmosqa_csv(f)) == [
        ChoiceExample("q1", 'A, "quoted"\nctx', "Q?", ("a", "b", "c", "d"), -1)
    ]
    j = tmp_path / "test.jsonl"
    row = {"id": "q2", "context": "C", "question": "Q", "answer0": "a", "answer1": "b"}
    j.write_text(json.dumps({**row, "answer2": "c", "answer3": "d", "label": 3}) + "\n")
    assert list(read_cosmosqa_csv(j)) == [ChoiceExample("q2", "C", "Q", ("a", "b", "c", "d"), 3)]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,context,question,answer0,answer1,answer2,answer3,label\nq,c,q,a,b,c,d,7\n")
    with pytest.raises(ValueError, match=_at(bad, 2) + r": label 7 outside 0..3"):
        list(read_cosmosqa_csv(bad))
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps(row) + "\n")
    missing = re.escape(": missing field(s) ['answer2', 'answer3']")
    with pytest.raises(ValueError, match=_at(short, 1) + missing):
        list(read_cosmosqa_csv(short))


def test_hellaswag_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "hellaswag_val.jsonl"
    rows = [
        {
            "ind": 24,
            "activity_label": "Roof shingle removal",
            "ctx_a": "A man is sitting on a roof.",
            "ctx_b": "he",
            "ctx": "A man is sitting on a roof. he",
            "split": "val",
            "split_type": "indomain",
            "endings": ["is using wrap.", "is ripping level tiles off.", "holds a rubik.", "x."],
            "source_id": "activitynet~v_-JhWjGDPHMY",
            "label": 3,
        },
        {
            "ind": 92,
            "activity_label": "Baking cookies",
            "ctx_a": "Mix the dough.",
            "ctx_b": "",
            "ctx": "Mix the dough.",
            "split": "test",
            "endings": ["a", "b", "c", "d"],
        },
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert list(read_hellaswag_jsonl(f)) == [
        ChoiceExample(
            "24",
            "A man is sitting on a roof.",
            "he",
            ("is using wrap.", "is ripping level tiles off.", "holds a rubik.", "x."),
            3,
        ),
        ChoiceExample("92", "Mix the dough.", "", ("a", "b", "c", "d"), -1),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[1]) + "\n{not json\n")
    with pytest.raises(ValueError, match=_at(bad, 2) + r": invalid JSON"):
        list(read_hellaswag_jsonl(bad))
    bad.write_text(json.dumps({**rows[0], "label": 4}) + "\n")
    with pytest.raises(ValueError, match=_at(bad, 1) + r": label 4 outside 0..3"):
        list(read_hellaswag_jsonl(bad))


# --------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------


def test_tatoeba_deu_and_swh(data_dir: Path) -> None:
    deu_path = data_dir / "tatoeba" / "tatoeba.deu-eng.deu"
    (deu,) = read_tatoeba(deu_path)
    assert isinstance(deu, RetrievalCorpus)
    assert len(deu) == len(deu.target) == 1000
    assert deu.source_ids == deu.target_ids == tuple(str(i) for i in range(1000))
    assert deu.gold == tuple((str(i), str(i)) for i in range(1000))
    # Line i of each side, read independently.
    de_lines = deu_path.read_text(encoding="utf-8").split("\n")
    en_lines = deu_path.with_suffix(".eng").read_text(encoding="utf-8").split("\n")
    assert de_lines[-1] == en_lines[-1] == ""  # both end with a newline
    assert deu.source == tuple(de_lines[:-1]) and deu.target == tuple(en_lines[:-1])
    assert deu.source[0] == "Maria sagte, sie wisse nicht, wo Tom sei."
    assert deu.target[0] == "Mary said she didn't know where Tom was."
    swh = tatoeba_corpus(data_dir / "tatoeba" / "tatoeba.swh-eng.swh")
    assert len(swh) == len(swh.target) == len(swh.gold) == 390


def test_tatoeba_all_pairs_aligned(data_dir: Path) -> None:
    for path in sorted((data_dir / "tatoeba").glob("tatoeba.*-eng.*")):
        if path.suffix == ".eng":
            continue
        corpus = tatoeba_corpus(path)
        assert len(corpus.source) == len(corpus.target) == len(corpus.gold) > 0, path.name


def test_tatoeba_misaligned_and_wrong_side(tmp_path: Path) -> None:
    src = tmp_path / "tatoeba.xxx-eng.xxx"
    src.write_text("a\nb\n", encoding="utf-8")
    src.with_suffix(".eng").write_text("A\n", encoding="utf-8")
    with pytest.raises(ValueError, match="2 lines but .* has 1"):
        read_tatoeba(src)
    with pytest.raises(ValueError, match="non-English side"):
        read_tatoeba(src.with_suffix(".eng"))
    # Only line endings are stripped; a lone CR inside a line does not split it.
    src.write_bytes(b" a \r\nb\rc\n")
    src.with_suffix(".eng").write_bytes(b"A\nB\n")
    assert tatoeba_corpus(src).source == (" a ", "b\rc")


def test_bucc_zh_en_dev(data_dir: Path) -> None:
    path = data_dir / "bucc2018" / "zh-en.dev.zh"
    (corpus,) = read_bucc(path)
    assert len(corpus.source_ids) == len(corpus.source) == 8624
    assert len(corpus.target_ids) == len(corpus.target) == 13589
    assert len(corpus.gold) == 257
    assert corpus.source_ids[0] == "zh-000000001"
    assert corpus.source[0].startswith("辽宁省，简称辽")
    assert corpus.target_ids[0] == "en-000000001"
    assert corpus.target[0].startswith("Coalition strategy relied on establishing")
    assert corpus.gold[0] == ("zh-000000057", "en-000008530")
    src, tgt = set(corpus.source_ids), set(corpus.target_ids)
    assert all(s in src and t in tgt for s, t in corpus.gold)
    assert all(s.startswith("zh-") for s, _ in corpus.gold)
    assert all(t.startswith("en-") for _, t in corpus.gold)


def test_bucc_without_gold_and_errors(tmp_path: Path) -> None:
    src = tmp_path / "de-en.test.de"
    src.write_text("de-1\tHallo\nde-2\tWelt\n", encoding="utf-8")
    src.with_suffix(".en").write_text("en-1\tHello\n", encoding="utf-8")
    corpus = bucc_corpus(src)
    assert corpus.source_ids == ("de-1", "de-2") and corpus.target == ("Hello",)
    assert corpus.gold == ()
    gold = src.with_suffix(".gold")
    gold.write_text("de-1\ten-1\nde-2\ten-9\n", encoding="utf-8")
    with pytest.raises(ValueError, match=_at(gold, 2) + r": English id 'en-9' not in"):
        bucc_corpus(src)
    gold.unlink()
    src.write_text("de-1\tHallo\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=_at(src, 2) + r": expected 'id<TAB>sentence'"):
        bucc_corpus(src)


def test_readers_registry_one_contract(data_dir: Path) -> None:
    """Every reader takes (path, task) and returns the task's examples."""
    from xstilts.tasks import get_task

    assert set(READERS) == {
        "xtreme_pair_tsv", "glue_tsv", "prompt_json",
        "conllu", "tagging_tsv", "squad_json", "commonsenseqa_jsonl", "cosmosqa_csv",
        "hellaswag_jsonl", "tatoeba", "bucc", "xtreme_translated_pair_tsv", "squad_translated_json",
    }  # fmt: skip
    first = READERS["tagging_tsv"](data_dir / "panx" / "dev-de.tsv", get_task("panx"))[0]
    assert isinstance(first, TaggingExample) and first.words[0] == "Anton"
    (corpus,) = READERS["bucc"](data_dir / "bucc2018" / "zh-en.dev.zh", get_task("bucc2018"))
    assert isinstance(corpus, RetrievalCorpus) and len(corpus.gold) == 257
    pair = READERS["xtreme_pair_tsv"](data_dir / "xnli" / "dev-de.tsv", get_task("xnli"))[0]
    assert isinstance(pair, PairExample) and 0 <= pair.label < 3


def test_tagging_reader_refuses_tags_outside_the_task_set(tmp_path: Path) -> None:
    from xstilts.tasks import get_task

    path = tmp_path / "t.tsv"
    path.write_text("Paris\tB-CITY\n", encoding="utf-8")
    with pytest.raises(ValueError, match="tag 'B-CITY' in t-0 is not one of O, B-PER"):
        READERS["tagging_tsv"](path, get_task("panx"))
    # An open tag set (CCG) takes the tags it finds.
    (ex,) = READERS["tagging_tsv"](path, get_task("ccg"))
    assert isinstance(ex, TaggingExample) and ex.tags == ("B-CITY",)
