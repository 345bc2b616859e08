"""Readers for the raw file formats, exactly as the files are distributed.

One contract: a reader (an entry of :data:`READERS`, named by a task's ``LocalFile.reader``) turns a
file into examples of the task's format (:mod:`xstilts.data.examples`), raw label strings mapped
with ``task.label_index`` and tags checked against the task's tag set. Underneath, one parser per file
format keeps the raw strings (tags, tokens, answer texts) untouched, so that what a model is trained
and scored on is what the benchmark distributes: XTREME pair TSV, GLUE TSV, LM-BFF JSON, XTREME's
translated MNLI TSV; CoNLL-U, XTREME tagging TSV; SQuAD JSON (and its machine translations, whose
answers are realigned); CommonsenseQA JSONL, Cosmos QA CSV, HellaSwag JSONL; Tatoeba, BUCC.

Malformed input raises :class:`ValueError` naming ``path:line`` (or, for JSON documents, the path
and the position inside the document), so a bad file is found without a debugger.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from xstilts.data.examples import (
    ChoiceExample,
    Example,
    PairExample,
    QAExample,
    RetrievalCorpus,
    TaggingExample,
)
from xstilts.jsontypes import JSONObject
from xstilts.tasks.base import Task

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Sentence pairs: XTREME pair TSV (XNLI, PAWS-X), GLUE TSV, LM-BFF JSON.
# These parsers yield ``(guid, text_a, text_b, raw_label)``; the reader maps the label.
# --------------------------------------------------------------------------------------------

RawPair = tuple[str, str, str, str]

# GLUE-style TSVs name their columns differently per corpus; the first present name wins.
_GLUE_A = ("sentence1", "question1", "premise", "text_a")
_GLUE_B = ("sentence2", "question2", "hypothesis", "text_b")
_GLUE_LABEL = ("gold_label", "is_duplicate", "label")
_HF_PAWSX_HEADER = ["id", "sentence1", "sentence2", "label"]


def _first_present(header: list[str], names: tuple[str, ...], path: Path) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise ValueError(f"{path}: none of the columns {names} in header {header}")


def read_xtreme_pair_tsv(path: Path) -> Iterator[RawPair]:
    """XTREME's preprocessed ``text_a<TAB>text_b<TAB>label`` files (XNLI, PAWS-X); no header.

    Some PAWS-X test copies are Hugging Face exports with an ``id sentence1 sentence2 label`` header;
    they are recognised by that header.
    """
    with path.open(encoding="utf-8", newline="") as f:
        for i, line in enumerate(f):
            fields = line.rstrip("\r\n").split("\t")
            if i == 0 and fields == _HF_PAWSX_HEADER:
                yield from _read_hf_pawsx(f, path)
                return
            if fields == [""]:
                continue
            if len(fields) < 3:
                raise ValueError(
                    f"{path}:{i + 1}: expected 3 tab-separated fields, got {len(fields)}"
                )
            yield (f"{path.stem}-{i}", fields[0], fields[1], fields[2])


def _read_hf_pawsx(lines: Iterator[str], path: Path) -> Iterator[RawPair]:
    for line in lines:
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) >= 4:
            yield (f"{path.stem}-{fields[0]}", fields[1], fields[2], fields[3])


def read_glue_tsv(path: Path) -> Iterator[RawPair]:
    """GLUE/SNLI TSVs with a header row (MNLI ``gold_label``, QQP ``is_duplicate``, ...)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        a = _first_present(header, _GLUE_A, path)
        b = _first_present(header, _GLUE_B, path)
        y = _first_present(header, _GLUE_LABEL, path)
        for i, row in enumerate(reader):
            if len(row) <= max(a, b, y):
                continue  # a truncated row (known in a few GLUE dumps) carries no usable pair
            if row[y] == "-":
                continue  # SNLI/MNLI pairs without annotator consensus
            yield (f"{path.stem}-{i}", row[a], row[b], row[y])


def read_prompt_json(path: Path) -> Iterator[RawPair]:
    """``{"<idx>": {"text_a", "text_b", "label"}}`` as stored by LM-BFF/PowerfulPromptFT."""
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    for key, row in data.items():
        yield (f"{path.stem}-{key}", row["text_a"], row["text_b"], str(row["label"]))


# XTREME's released files carry the English pair beside its translation; the "XNLI-Translated"
# copies its own processor reads carry the translation alone.
_TRANSLATED_COLUMNS = {5: (2, 3, 4), 3: (0, 1, 2)}  # column count -> (text_a, text_b, label)


def read_xtreme_translated_pair_tsv(path: Path) -> Iterator[RawPair]:
    """XTREME's machine translations of MNLI's train set (``en-<lang>-translated.tsv``), no header.

    The released files have five columns: English premise, English hypothesis, translated premise,
    translated hypothesis, label (as tensorflow_datasets' ``xtreme_xnli`` unpacks them). XTREME's
    own processor reads three: translated premise, translated hypothesis, label. Either is read;
    the translated texts are kept. Fields are split on tabs and nothing else (``csv.QUOTE_NONE``:
    a quote is text). Labels are XNLI's spelling (``contradictory``), mapped by the task's
    ``label_aliases``. The guid is ``{path.stem}-{line index}`` (0-based), and the stem names the
    language (``en-de-translated-0``), so ids are unique across languages.
    """
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in _TRANSLATED_COLUMNS:
            raise ValueError(
                f"{path}:{number}: expected 5 tab-separated fields (English premise, English "
                "hypothesis, translated premise, translated hypothesis, label) or 3 (premise, "
                f"hypothesis, label), got {len(fields)}"
            )
        a, b, y = _TRANSLATED_COLUMNS[len(fields)]
        yield (f"{path.stem}-{number - 1}", fields[a], fields[b], fields[y].strip())


# Read text with ``newline="\n"``: only LF ends a line, so a stray CR inside a sentence cannot
# split it (which would break Tatoeba's line alignment); a trailing CR of CRLF files is stripped
# explicitly. ``utf-8-sig`` drops a byte-order mark some Windows-made copies start with.
_ENCODING = "utf-8-sig"
_NEWLINE = "\n"


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line without its CR/LF ending)`` for every line of a text file."""
    with path.open(encoding=_ENCODING, newline=_NEWLINE) as f:
        for number, line in enumerate(f, start=1):
            yield number, line.rstrip("\r\n")


# --------------------------------------------------------------------------------------------
# Tagging: UD POS (CoNLL-U) and PAN-X NER (XTREME tagging TSV)
# --------------------------------------------------------------------------------------------

_CONLLU_COLUMNS = 10
_SENT_ID = re.compile(r"^#\s*sent_id\s*=\s*(.*?)\s*$")
_CONLLU_WORD_ID = re.compile(r"^[1-9][0-9]*$")
_CONLLU_RANGE_ID = re.compile(r"^[1-9][0-9]*-[1-9][0-9]*$")
_CONLLU_EMPTY_ID = re.compile(r"^(0|[1-9][0-9]*)\.[1-9][0-9]*$")


def read_conllu(path: Path) -> Iterator[TaggingExample]:
    """One :class:`TaggingExample` per sentence of a Universal Dependencies CoNLL-U file.

    XTREME's UD-POS task tags syntactic words: ``words`` are the FORM column and ``tags`` the UPOS
    column. As in XTREME's ``udpos`` preprocessing, multiword-token range lines (ID ``1-2``, the
    surface form of a contraction such as German *zum*) and empty nodes (ID ``8.1``, enhanced-graph
    elisions) are skipped, since neither carries a UPOS tag of its own; comment lines are skipped.

    The guid is the sentence's ``# sent_id = ...`` when present (stable across UD releases and
    quotable in error reports), else ``{path.stem}-{sentence index}`` (0-based).
    """
    index = 0
    sent_id: str | None = None
    words: list[str] = []
    tags: list[str] = []

    def finish() -> TaggingExample:
        guid = sent_id if sent_id else f"{path.stem}-{index}"
        return TaggingExample(guid=guid, words=tuple(words), tags=tuple(tags))

    for number, line in _lines(path):
        if line.startswith("#"):
            if words:
                raise ValueError(
                    f"{path}:{number}: comment line inside a sentence "
                    "(missing blank line before it?)"
                )
            match = _SENT_ID.match(line)
            if match:
                sent_id = match.group(1)
            continue
        if not line.strip():
            if words:
                yield finish()
                index += 1
            # A comment block without token lines is not a sentence; its sent_id must not leak
            # into the next sentence.
            sent_id = None
            words, tags = [], []
            continue
        fields = line.split("\t")
        if len(fields) != _CONLLU_COLUMNS:
            raise ValueError(
                f"{path}:{number}: expected {_CONLLU_COLUMNS} tab-separated CoNLL-U columns, "
                f"got {len(fields)}: {line[:80]!r}"
            )
        word_id = fields[0]
        if _CONLLU_RANGE_ID.match(word_id) or _CONLLU_EMPTY_ID.match(word_id):
            continue
        if not _CONLLU_WORD_ID.match(word_id):
            raise ValueError(f"{path}:{number}: invalid CoNLL-U word ID {word_id!r}")
        words.append(fields[1])
        tags.append(fields[3])
    if words:  # the last sentence of a file that does not end with a blank line
        yield finish()


def read_tagging_tsv(path: Path) -> Iterator[TaggingExample]:
    """One :class:`TaggingExample` per sentence of XTREME's tagging TSV (PAN-X, UD-POS TSVs).

    Lines are ``token<TAB>tag``; a blank line ends a sentence. Unlabelled test files carry the
    token alone, which gives empty-string tags (the "unlabelled" marker of
    :class:`TaggingExample`). Tokens are kept exactly as written: raw XTREME downloads prefix
    tokens with ``lang:`` (``en:Paris``), and stripping that is a preprocessing decision, not the
    reader's. CRLF files are accepted.

    A sentence that mixes labelled and unlabelled lines is rejected: half-tagged sentences would
    silently train on empty tags. The guid is ``{path.stem}-{sentence index}`` (0-based).
    """
    index = 0
    words: list[str] = []
    tags: list[str] = []
    labelled: bool | None = None

    for number, line in _lines(path):
        if not line.strip():
            if words:
                yield TaggingExample(f"{path.stem}-{index}", tuple(words), tuple(tags))
                index += 1
            words, tags, labelled = [], [], None
            continue
        fields = line.split("\t")
        if len(fields) > 2:
            raise ValueError(
                f"{path}:{number}: expected 'token<TAB>tag' or 'token', got {len(fields)} "
                f"tab-separated fields: {line[:80]!r}"
            )
        token = fields[0]
        tag = fields[1] if len(fields) == 2 else ""
        if token == "":
            raise ValueError(f"{path}:{number}: empty token in {line[:80]!r}")
        line_labelled = tag != ""
        if labelled is not None and labelled != line_labelled:
            raise ValueError(
                f"{path}:{number}: sentence mixes tagged and untagged tokens ({line[:80]!r})"
            )
        labelled = line_labelled
        words.append(token)
        tags.append(tag)
    if words:
        yield TaggingExample(f"{path.stem}-{index}", tuple(words), tuple(tags))


# --------------------------------------------------------------------------------------------
# Extractive QA: SQuAD-format JSON (SQuAD v1.1/v2.0, XQuAD, MLQA, TyDiQA-GoldP)
# --------------------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    with path.open(encoding=_ENCODING) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e


def _require(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{where}: field {key!r} has type {type(value).__name__}")
    return value


def _squad_questions(path: Path) -> Iterator[tuple[str, str, JSONObject]]:
    """``(JSON position, context, question object)`` per question of a SQuAD-format file."""
    doc = _load_json(path)
    articles = _require(doc, "data", list, f"{path}")
    for a, article in enumerate(articles):
        where_a = f"{path}: data[{a}]"
        for p, paragraph in enumerate(_require(article, "paragraphs", list, where_a)):
            where_p = f"{where_a}.paragraphs[{p}]"
            context = _require(paragraph, "context", str, where_p)
            for q, qa in enumerate(_require(paragraph, "qas", list, where_p)):
                yield f"{where_p}.qas[{q}]", context, qa


def _squad_answers(qa: JSONObject, where_q: str) -> Iterator[tuple[str, str, int]]:
    """``(JSON position, text, answer_start)`` per non-blank answer of a question.

    Blank placeholders (some TyDiQA-GoldP dev copies have only these) are no gold answer: the
    question is unlabelled, and scoring says so.
    """
    for n, answer in enumerate(qa.get("answers") or []):
        where_n = f"{where_q}.answers[{n}]"
        text = _require(answer, "text", str, where_n)
        start = _require(answer, "answer_start", int, where_n)
        if text:
            yield where_n, text, start


def read_squad_json(path: Path) -> Iterator[QAExample]:
    """One :class:`QAExample` per question of a SQuAD-format JSON file.

    The layout is ``data[].paragraphs[].{context, qas[]}`` with ``qas[].{id, question, answers[]}``
    and ``answers[].{text, answer_start}``; SQuAD, XQuAD, MLQA and TyDiQA-GoldP all share it.
    SQuAD v2's ``is_impossible`` is honoured (those questions have no answers); its
    ``plausible_answers`` are not gold and are ignored. Every answer is kept, duplicates included,
    because the official evaluation takes the max over the gold list as given. Errors name the
    file and the JSON position (``data[3].paragraphs[0].qas[2]``).
    """
    for where_q, context, qa in _squad_questions(path):
        qid = _require(qa, "id", (str, int), where_q)
        question = _require(qa, "question", str, where_q)
        answers: list[str] = []
        starts: list[int] = []
        for where_n, text, start in _squad_answers(qa, where_q):
            if not 0 <= start <= len(context):
                raise ValueError(
                    f"{where_n}: answer_start {start} outside the context (length {len(context)})"
                )
            answers.append(text)
            starts.append(start)
        yield QAExample(
            guid=str(qid),
            question=question,
            context=context,
            answers=tuple(answers),
            answer_starts=tuple(starts),
            is_impossible=bool(qa.get("is_impossible", False)),
        )


def _locate_answer(context: str, text: str, start: int) -> tuple[str, int] | None:
    """The answer where it is in ``context``: at ``start`` when it is there, else the occurrence of
    its text (without surrounding spaces) nearest ``start``; None when the context lacks it."""
    if 0 <= start and context.startswith(text, start):
        return text, start
    core = text.strip()
    if not core:
        return None
    found = [m.start() for m in re.finditer(f"(?={re.escape(core)})", context)]
    if not found:
        return None
    return core, min(found, key=lambda at: abs(at - start))


def read_translated_squad_json(path: Path) -> Iterator[QAExample]:
    """:func:`read_squad_json` for machine-translated training files (XTREME's
    ``squad.translate.train.en-<lang>.json``), whose answers need not sit at their offsets.

    Translation moves an answer: its ``answer_start`` may point elsewhere in the translated
    context, or past its end. The QA featuriser trusts the offset (it trains on the span at
    ``answer_start``, whatever text is there), so each answer is moved to where its text is in
    the context (the occurrence nearest the given offset), and an answer whose text is not in the
    context is dropped. A question left with no answer is dropped (in SQuAD v1.1 it would train
    "no answer"); SQuAD v2's unanswerable questions are kept. Both counts are logged. Question ids
    are kept as the file has them: a translated question has its English question's id.
    """
    moved = dropped = total = 0
    for where_q, context, qa in _squad_questions(path):
        total += 1
        qid = _require(qa, "id", (str, int), where_q)
        question = _require(qa, "question", str, where_q)
        answers: list[str] = []
        starts: list[int] = []
        for _, text, start in _squad_answers(qa, where_q):
            located = _locate_answer(context, text, start)
            if located is None:
                continue
            text, at = located
            if at != start:
                moved += 1
            answers.append(text)
            starts.append(at)
        impossible = bool(qa.get("is_impossible", False))
        if not answers and not impossible:
            dropped += 1
            continue
        yield QAExample(str(qid), question, context, tuple(answers), tuple(starts), impossible)
    log.log(
        logging.WARNING if dropped else logging.INFO,
        "%s: %d of %d questions dropped (answer text not in the translated context); "
        "%d answers moved to where their text is",
        path,
        dropped,
        total,
        moved,
    )


# --------------------------------------------------------------------------------------------
# Multiple choice: CommonsenseQA, Cosmos QA, HellaSwag
# --------------------------------------------------------------------------------------------


def _jsonl(path: Path) -> Iterator[tuple[int, JSONObject]]:
    """``(line number, object)`` per non-blank line of a JSON-lines file."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: invalid JSON: {e.msg}") from e
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def _int_label(raw: Any, n_choices: int, where: str) -> int:
    """A gold choice index from an int or a digit string; missing/empty means unlabelled (-1)."""
    if raw is None or raw == "":
        return -1
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ValueError(f"{where}: label {raw!r} is not an integer")
    try:
        label = int(raw)
    except ValueError:
        raise ValueError(f"{where}: label {raw!r} is not an integer") from None
    if label == -1:
        return -1
    if not 0 <= label < n_choices:
        raise ValueError(f"{where}: label {label} outside 0..{n_choices - 1}")
    return label


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: {what} must be a list of strings, got {value!r:.80}")
    return tuple(value)


def read_commonsenseqa_jsonl(path: Path) -> Iterator[ChoiceExample]:
    """One :class:`ChoiceExample` per CommonsenseQA question, from either distributed layout.

    The Hugging Face export has ``question`` as a string and ``choices: {label: [], text: []}``;
    the authors' original jsonl has ``question: {stem, choices: [{label, text}]}``. Both give
    ``context`` = the question text and ``question`` = "" (CommonsenseQA has no passage, so the
    question is the first segment and each choice the second), and ``label`` = the index of
    ``answerKey`` among the choice labels (-1 when the key is missing or empty, as in the test set).
    """
    for number, row in _jsonl(path):
        where = f"{path}:{number}"
        guid = _require(row, "id", (str, int), where)
        question = _require(row, "question", (str, dict), where)
        if isinstance(question, str):
            text = question
            choices = _require(row, "choices", dict, where)
            labels = _strings(choices.get("label"), "choices.label", where)
            texts = _strings(choices.get("text"), "choices.text", where)
        else:
            text = _require(question, "stem", str, where)
            items = _require(question, "choices", list, where)
            labels = tuple(_require(c, "label", str, where) for c in items)
            texts = tuple(_require(c, "text", str, where) for c in items)
        if len(labels) != len(texts) or not texts:
            raise ValueError(f"{where}: {len(labels)} choice labels but {len(texts)} choice texts")
        key = row.get("answerKey") or ""
        if key and key not in labels:
            raise ValueError(f"{where}: answerKey {key!r} not among the choice labels {labels}")
        label = labels.index(key) if key else -1
        yield ChoiceExample(str(guid), text, "", texts, label)


_COSMOS_ANSWERS = tuple(f"answer{i}" for i in range(4))
_COSMOS_REQUIRED = ("id", "context", "question", *_COSMOS_ANSWERS)


def _cosmos_example(row: JSONObject, where: str) -> ChoiceExample:
    missing = [name for name in _COSMOS_REQUIRED if row.get(name) is None]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    choices = tuple(str(row[name]) for name in _COSMOS_ANSWERS)
    label = _int_label(row.get("label"), len(choices), where)
    return ChoiceExample(str(row["id"]), str(row["context"]), str(row["question"]), choices, label)


def read_cosmosqa_csv(path: Path) -> Iterator[ChoiceExample]:
    """One :class:`ChoiceExample` per Cosmos QA question, from the authors' CSV (or ``.jsonl``).

    The CSV has a header ``id,context,question,answer0..answer3,label``; contexts contain commas,
    quotes and line breaks, so it is parsed with :mod:`csv` (the line in error messages is the line
    where the record ends). ``label`` is absent in the test split, which gives -1. A path ending in
    ``.jsonl`` is read as the JSON-lines release with the same fields.
    """
    if path.suffix == ".jsonl":
        for number, row in _jsonl(path):
            yield _cosmos_example(row, f"{path}:{number}")
        return
    with path.open(encoding=_ENCODING, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [name for name in _COSMOS_REQUIRED if name not in header]
        if missing:
            raise ValueError(f"{path}:1: header {header} lacks column(s) {missing}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:  # DictReader puts surplus fields under the key None
                raise ValueError(f"{where}: more fields than the {len(header)} header columns")
            yield _cosmos_example(row, where)


def read_hellaswag_jsonl(path: Path) -> Iterator[ChoiceExample]:
    """One :class:`ChoiceExample` per HellaSwag item from the original jsonl release.

    As in the paper's and Hugging Face's preprocessing, ``context`` is ``ctx_a`` and ``question`` is
    ``ctx_b`` (the ending continues ``ctx_b``, so a model scores the pair (ctx_a, ctx_b + ending));
    an empty or missing ``ctx_b`` gives "". ``choices`` are the ``endings``; ``label`` is missing in
    the test split (-1). The guid is ``str(ind)``.
    """
    for number, row in _jsonl(path):
        where = f"{path}:{number}"
        ind = _require(row, "ind", (int, str), where)
        ctx_a = _require(row, "ctx_a", str, where)
        ctx_b = row.get("ctx_b") or ""
        if not isinstance(ctx_b, str):
            raise ValueError(f"{where}: field 'ctx_b' has type {type(ctx_b).__name__}")
        endings = _strings(row.get("endings"), "endings", where)
        if not endings:
            raise ValueError(f"{where}: no endings")
        label = _int_label(row.get("label"), len(endings), where)
        yield ChoiceExample(str(ind), ctx_a, ctx_b, endings, label)


# --------------------------------------------------------------------------------------------
# Retrieval: Tatoeba and BUCC 2018
# --------------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    return [line for _, line in _lines(path)]


def tatoeba_corpus(path: Path) -> RetrievalCorpus:
    """The Tatoeba corpus of one language pair; ``path`` is the non-English side.

    ``tatoeba.{xxx}-eng.{xxx}`` and ``tatoeba.{xxx}-eng.eng`` are line-aligned translations: the
    ids on both sides are the 0-based line numbers and line ``i`` is gold for line ``i``. Only line
    endings are stripped (surrounding spaces are part of the released text). Differing line counts
    mean the alignment is broken, so they raise :class:`ValueError`.
    """
    if path.suffix == ".eng":
        raise ValueError(f"{path}: pass the non-English side of the pair, not the .eng file")
    eng_path = path.with_suffix(".eng")
    if not eng_path.is_file():
        raise FileNotFoundError(f"{path}: English side {eng_path} not found")
    source = _read_lines(path)
    target = _read_lines(eng_path)
    if len(source) != len(target):
        raise ValueError(
            f"{path}: {len(source)} lines but {eng_path} has {len(target)}; "
            "the sides are not line-aligned"
        )
    ids = tuple(str(i) for i in range(len(source)))
    return RetrievalCorpus(
        guid=path.stem,
        source_ids=ids,
        source=tuple(source),
        target_ids=ids,
        target=tuple(target),
        gold=tuple((i, i) for i in ids),
    )


def read_tatoeba(path: Path) -> list[RetrievalCorpus]:
    """:func:`tatoeba_corpus` as a one-element list (the shape of a split's examples)."""
    return [tatoeba_corpus(path)]


def _read_bucc_side(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ids: list[str] = []
    sentences: list[str] = []
    seen: set[str] = set()
    for number, line in _lines(path):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0]:
            raise ValueError(
                f"{path}:{number}: expected 'id<TAB>sentence', got {len(fields)} "
                f"tab-separated field(s): {line[:80]!r}"
            )
        if fields[0] in seen:
            raise ValueError(f"{path}:{number}: duplicate sentence id {fields[0]!r}")
        seen.add(fields[0])
        ids.append(fields[0])
        sentences.append(fields[1])
    return tuple(ids), tuple(sentences)


def bucc_corpus(path: Path) -> RetrievalCorpus:
    """The BUCC 2018 corpus of one language pair and split; ``path`` is the non-English side.

    ``{lang}-en.{split}.{lang}`` and ``{lang}-en.{split}.en`` hold ``id<TAB>sentence`` lines and
    ``{lang}-en.{split}.gold`` the parallel pairs as ``src-id<TAB>en-id`` (absent for the unlabelled
    test split, which gives an empty gold set). Gold ids missing from their side are rejected:
    they would silently count as misses when scoring.
    """
    if path.suffix == ".en":
        raise ValueError(f"{path}: pass the non-English side of the pair, not the .en file")
    en_path = path.with_suffix(".en")
    if not en_path.is_file():
        raise FileNotFoundError(f"{path}: English side {en_path} not found")
    source_ids, source = _read_bucc_side(path)
    target_ids, target = _read_bucc_side(en_path)
    gold: list[tuple[str, str]] = []
    gold_path = path.with_suffix(".gold")
    if gold_path.is_file():
        known_source, known_target = set(source_ids), set(target_ids)
        for number, line in _lines(gold_path):
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(
                    f"{gold_path}:{number}: expected 'src-id<TAB>en-id', got {len(fields)} "
                    f"tab-separated field(s): {line[:80]!r}"
                )
            src, tgt = fields
            if src not in known_source:
                raise ValueError(f"{gold_path}:{number}: source id {src!r} not in {path}")
            if tgt not in known_target:
                raise ValueError(f"{gold_path}:{number}: English id {tgt!r} not in {en_path}")
            gold.append((src, tgt))
    return RetrievalCorpus(
        guid=path.stem,
        source_ids=source_ids,
        source=source,
        target_ids=target_ids,
        target=target,
        gold=tuple(gold),
    )


def read_bucc(path: Path) -> list[RetrievalCorpus]:
    """:func:`bucc_corpus` as a one-element list (the shape of a split's examples)."""
    return [bucc_corpus(path)]


# --------------------------------------------------------------------------------------------
# The contract: (path, task) -> examples of the task's format
# --------------------------------------------------------------------------------------------

Reader = Callable[[Path, Task], list[Example]]


def _pairs(parse: Callable[[Path], Iterable[RawPair]]) -> Reader:
    def read(path: Path, task: Task) -> list[Example]:
        return [PairExample(guid, a, b, task.label_index(y)) for guid, a, b, y in parse(path)]

    return read


def _tags(parse: Callable[[Path], Iterable[TaggingExample]]) -> Reader:
    def read(path: Path, task: Task) -> list[Example]:
        examples = list(parse(path))
        if task.labels:  # an open tag set (CCG) takes any tag
            valid = set(task.labels)
            for e in examples:
                bad = [t for t in e.tags if t and t not in valid]
                if bad:
                    raise ValueError(
                        f"task {task.name}: tag {bad[0]!r} in {e.guid} is not one of "
                        + ", ".join(task.labels)
                    )
        return list[Example](examples)

    return read


def _as_is(parse: Callable[[Path], Iterable[Example]]) -> Reader:
    def read(path: Path, task: Task) -> list[Example]:
        return list(parse(path))

    return read


READERS: dict[str, Reader] = {
    "xtreme_pair_tsv": _pairs(read_xtreme_pair_tsv),
    "xtreme_translated_pair_tsv": _pairs(read_xtreme_translated_pair_tsv),
    "glue_tsv": _pairs(read_glue_tsv),
    "prompt_json": _pairs(read_prompt_json),
    "conllu": _tags(read_conllu),
    "tagging_tsv": _tags(read_tagging_tsv),
    "squad_json": _as_is(read_squad_json),
    "squad_translated_json": _as_is(read_translated_squad_json),
    "commonsenseqa_jsonl": _as_is(read_commonsenseqa_jsonl),
    "cosmosqa_csv": _as_is(read_cosmosqa_csv),
    "hellaswag_jsonl": _as_is(read_hellaswag_jsonl),
    "tatoeba": _as_is(read_tatoeba),
    "bucc": _as_is(read_bucc),
}
"""Reader per name (``LocalFile.reader``): a file and its task in, the task's examples out."""
