"""Registry entries. Adding a task of an existing format is adding an entry here, nothing else.

Entries of one family (English GLUE-style pairs, XTREME's tagging tasks, ...) share where their
files and hub columns live, so each family has a small builder below and an entry names only
what is its own."""

from __future__ import annotations

from typing import Any

from xstilts.errors import UnknownNameError
from xstilts.tasks.base import HubSource, LocalFile, Split, SplitSource, Task, TaskFormat

NLI_LABELS = ("entailment", "neutral", "contradiction")  # hub label ids 0, 1, 2 in this order
# XNLI's files (and XTREME's translations of MNLI) spell contradiction "contradictory".
XNLI_LABEL_ALIASES = {"contradictory": "contradiction"}
EN = ("en",)

# --- XTREME's language lists (two-letter codes everywhere; datasets' own names mapped below) -----
XNLI_LANGUAGES = (
    "en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur",
)  # fmt: skip
PAWSX_LANGUAGES = ("en", "de", "es", "fr", "ja", "ko", "zh")
UDPOS_LANGUAGES = (
    "af", "ar", "bg", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu", "id",
    "it", "ja", "kk", "ko", "mr", "nl", "pt", "ru", "ta", "te", "th", "tl", "tr", "ur", "vi", "yo",
    "zh",
)  # fmt: skip
PANX_LANGUAGES = (
    "af", "ar", "bg", "bn", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fr", "he", "hi", "hu",
    "id", "it", "ja", "jv", "ka", "kk", "ko", "ml", "mr", "ms", "my", "nl", "pt", "ru", "sw", "ta",
    "te", "th", "tl", "tr", "ur", "vi", "yo", "zh",
)  # fmt: skip
XQUAD_LANGUAGES = ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi")
MLQA_LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")
TYDIQA_LANGUAGES = ("en", "ar", "bn", "fi", "id", "ko", "ru", "sw", "te")
BUCC_LANGUAGES = ("de", "fr", "ru", "zh")
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin",
    "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz",
    "ko": "kor", "ml": "mal", "mr": "mar", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie",
    "zh": "cmn",
}  # fmt: skip
LANGUAGE_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
    "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh",
    "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish",
    "ur": "Urdu", "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip
TYDIQA_LANGUAGE_NAMES = {
    "en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}  # fmt: skip
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
    "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
XTREME = "google/xtreme"
# A split's name in XTREME's (and GLUE's) file names; on the hub a split is named by its value.
FILE_PREFIX = {Split.TRAIN: "train", Split.VALIDATION: "dev", Split.TEST: "test"}


# --- English intermediate tasks ----------------------------------------------------------------
# XTREME's machine translations of the English train sets (its translate-train baselines),
# released in https://console.cloud.google.com/storage/browser/xtreme_translations ; a local copy
# keeps the bucket's layout (<data>/XNLI/translate-train/..., <data>/SQuAD/translate-train/...).
XTREME_TRANSLATIONS = "https://storage.googleapis.com/xtreme_translations"
MNLI_TRANSLATE_TRAIN = SplitSource(
    local=(
        LocalFile("XNLI/translate-train/en-{lang}-translated.tsv", "xtreme_translated_pair_tsv"),
        LocalFile("mnli/translate-train/en-{lang}-translated.tsv", "xtreme_translated_pair_tsv"),
    ),
    # facebook/xnli's train split of a language is XNLI-MT 1.0's translation of MNLI (the XNLI
    # authors'), not XTREME's: a run on the hub trains on other translations than a local one.
    hub=(HubSource("facebook/xnli", "{lang}", "train", "premise", "hypothesis"),),
    languages=tuple(lang for lang in XNLI_LANGUAGES if lang != "en"),
    hint=(
        "XTREME's translation of MNLI's train set is "
        f"{XTREME_TRANSLATIONS}/XNLI/translate-train/en-{{lang}}-translated.tsv: put it in "
        "<data>/XNLI/translate-train/ (data.source 'hub' reads facebook/xnli's train split "
        "instead, which is XNLI-MT 1.0's translation, not XTREME's)."
    ),
)
SQUAD_TRANSLATE_TRAIN = SplitSource(
    local=(
        LocalFile(
            "SQuAD/translate-train/squad.translate.train.en-{lang}.json", "squad_translated_json"
        ),
        LocalFile(
            "squad/translate-train/squad.translate.train.en-{lang}.json", "squad_translated_json"
        ),
    ),
    languages=tuple(sorted((set(XQUAD_LANGUAGES) | set(MLQA_LANGUAGES)) - {"en"})),
    hint=(
        "XTREME's translation of SQuAD v1.1's train set is "
        f"{XTREME_TRANSLATIONS}/SQuAD/translate-train/squad.translate.train.en-{{lang}}.json: put "
        "it in <data>/SQuAD/translate-train/ (it is not on the Hugging Face hub)."
    ),
)


def _english_task(
    name: str,
    fmt: TaskFormat,
    metric: str,
    description: str,
    labels: tuple[str, ...] = (),
    **fields: Any,
) -> Task:
    """An English task (intermediate, or a target trained in English)."""
    return Task(
        name=name,
        format=fmt,
        labels=labels,
        languages=EN,
        metric=metric,
        description=description,
        **fields,
    )


def _glue_hub(config: str, split: str, a: str, b: str) -> HubSource:
    return HubSource("nyu-mll/glue", config, split, a, b)


def _english_pair_task(
    name: str,
    labels: tuple[str, ...],
    description: str,
    hub: tuple[HubSource, HubSource],
    dev_tsv: str = "dev.tsv",
    translations: SplitSource | None = None,
    label_aliases: dict[str, str] | None = None,
) -> Task:
    """An English GLUE-style task: local files are LM-BFF JSON subsets or the original TSVs;
    ``translations`` is its machine-translated train split, where one exists."""
    return _english_task(
        name,
        TaskFormat.PAIR_CLASSIFICATION,
        "accuracy",
        description,
        labels=labels,
        label_aliases=dict(label_aliases or {}),
        splits={
            Split.TRAIN: SplitSource(
                local=(
                    LocalFile(f"{name}/train.json", "prompt_json"),
                    LocalFile(f"{name}/train.tsv", "glue_tsv"),
                ),
                hub=(hub[0],),
            ),
            Split.VALIDATION: SplitSource(
                local=(
                    LocalFile(f"{name}/{dev_tsv}", "glue_tsv"),
                    LocalFile(f"{name}/dev.json", "prompt_json"),
                ),
                hub=(hub[1],),
            ),
            **({Split.TRANSLATE_TRAIN: translations} if translations else {}),
        },
    )


def _anli_splits() -> dict[Split, SplitSource]:
    """ANLI's three rounds concatenated per split (hub only: no local copy exists)."""
    return {
        split: SplitSource(
            hub=tuple(
                HubSource("facebook/anli", None, f"{prefix}_r{r}", "premise", "hypothesis")
                for r in (1, 2, 3)
            )
        )
        for split, prefix in ((Split.TRAIN, "train"), (Split.VALIDATION, "dev"))
    }


def _squad_like(path: str, hub: HubSource, languages: tuple[str, ...] | None = None) -> SplitSource:
    return SplitSource(local=(LocalFile(path, "squad_json"),), hub=(hub,), languages=languages)


def _squad(
    name: str,
    version: str,
    description: str,
    hub_dataset: str,
    translations: SplitSource | None = None,
) -> Task:
    """SQuAD v1.1 / v2.0: the original ``{train,dev}-v<version>.json`` files or the hub;
    ``translations`` is its machine-translated train split, where one exists."""
    return _english_task(
        name,
        TaskFormat.EXTRACTIVE_QA,
        "squad_f1",
        description,
        unanswerable_questions=version == "2.0",
        splits={
            split: _squad_like(
                f"squad/{FILE_PREFIX[split]}-v{version}.json",
                HubSource(hub_dataset, None, split.value),
            )
            for split in (Split.TRAIN, Split.VALIDATION)
        }
        | ({Split.TRANSLATE_TRAIN: translations} if translations else {}),
    )


def _english_choice_task(
    name: str, description: str, local: tuple[str, str, str], hub_dataset: str
) -> Task:
    """A multiple-choice task: local (train file, dev file, reader); hub splits in its layout."""
    train, dev, reader = local
    return _english_task(
        name,
        TaskFormat.MULTIPLE_CHOICE,
        "accuracy",
        description,
        splits={
            split: SplitSource(
                local=(LocalFile(path, reader),),
                hub=(HubSource(hub_dataset, None, split.value, layout=name),),
            )
            for split, path in ((Split.TRAIN, train), (Split.VALIDATION, dev))
        },
    )


# --- XTREME's target tasks: English trains (where a task has a train split), all languages test --
def _xtreme_task(name: str, **fields: Any) -> Task:
    """A target task, evaluated zero-shot across its languages; its folder in XTREME's submission
    layout is its name."""
    return Task(name=name, is_target=True, xtreme_name=name, **fields)


def _xtreme_pair_splits(
    name: str, hub: tuple[str, str, str], splits: tuple[Split, ...]
) -> dict[Split, SplitSource]:
    """XTREME's ``<name>/<prefix>-<lang>.tsv`` files, or the hub's (dataset, text_a, text_b)."""
    dataset, text_a, text_b = hub
    return {
        split: SplitSource(
            local=(LocalFile(f"{name}/{FILE_PREFIX[split]}-{{lang}}.tsv", "xtreme_pair_tsv"),),
            hub=(HubSource(dataset, "{lang}", split.value, text_a, text_b),),
            languages=EN if split is Split.TRAIN else None,
        )
        for split in splits
    }


def _xtreme_tagging_splits(
    name: str, hub_config: str, hub_tags: str, ud_treebanks: bool = False
) -> dict[Split, SplitSource]:
    """XTREME's ``<name>/<prefix>-<lang>.tsv`` files (``ud_treebanks``: else UD's CoNLL-U
    folders, every treebank of the language), or google/xtreme's ``hub_config``."""
    splits: dict[Split, SplitSource] = {}
    for split, prefix in FILE_PREFIX.items():
        local: tuple[LocalFile, ...] = (LocalFile(f"{name}/{prefix}-{{lang}}.tsv", "tagging_tsv"),)
        if ud_treebanks:
            local += (LocalFile(f"ud/UD_*/{{lang}}_*-ud-{prefix}.conllu", "conllu", glob=True),)
        splits[split] = SplitSource(
            local=local,
            hub=(HubSource(XTREME, hub_config, split.value, "tokens", label=hub_tags),),
            languages=EN if split is Split.TRAIN else None,
        )
    return splits


def _xtreme_retrieval(path: str, reader: str, hub_config: str, hub_split: str) -> SplitSource:
    """A retrieval split: source sentences and their English side, a local file or google/xtreme."""
    return SplitSource(
        local=(LocalFile(path, reader),),
        hub=(HubSource(XTREME, hub_config, hub_split, "source_sentence", "target_sentence"),),
    )


def _dev_is_test(source: SplitSource) -> dict[Split, SplitSource]:
    """A target with one released evaluation split: it is both validation and test."""
    return {Split.VALIDATION: source, Split.TEST: source}


def _xtreme_qa_task(
    name: str,
    languages: tuple[str, ...],
    description: str,
    splits: dict[Split, SplitSource],
    metric: str = "squad_f1",
    **fields: Any,
) -> Task:
    """XQuAD, MLQA, TyDiQA-GoldP: SQuAD-format files or google/xtreme's configs."""
    return _xtreme_task(
        name,
        format=TaskFormat.EXTRACTIVE_QA,
        labels=(),
        languages=languages,
        metric=metric,
        description=description,
        splits=splits,
        **fields,
    )


_TASKS: tuple[Task, ...] = (
    _english_pair_task(
        "mnli",
        NLI_LABELS,
        "MultiNLI: English natural language inference (3 classes).",
        (
            _glue_hub("mnli", "train", "premise", "hypothesis"),
            _glue_hub("mnli", "validation_matched", "premise", "hypothesis"),
        ),
        dev_tsv="dev_matched.tsv",
        translations=MNLI_TRANSLATE_TRAIN,
        label_aliases=XNLI_LABEL_ALIASES,
    ),
    _english_pair_task(
        "snli",
        NLI_LABELS,
        "Stanford NLI: English natural language inference over image captions.",
        (
            HubSource("stanfordnlp/snli", None, "train", "premise", "hypothesis"),
            HubSource("stanfordnlp/snli", None, "validation", "premise", "hypothesis"),
        ),
    ),
    _english_pair_task(
        "qqp",
        ("0", "1"),  # not duplicate, duplicate (GLUE's ids)
        "Quora Question Pairs: are two English questions paraphrases?",
        (
            _glue_hub("qqp", "train", "question1", "question2"),
            _glue_hub("qqp", "validation", "question1", "question2"),
        ),
    ),
    _english_task(
        "anli",
        TaskFormat.PAIR_CLASSIFICATION,
        "accuracy",
        "Adversarial NLI, rounds 1-3 together (hub only: no local copy exists).",
        labels=NLI_LABELS,
        splits=_anli_splits(),
    ),
    _xtreme_task(
        "xnli",
        format=TaskFormat.PAIR_CLASSIFICATION,
        labels=NLI_LABELS,
        languages=XNLI_LANGUAGES,
        metric="accuracy",
        description="XNLI: MNLI-style inference in 15 languages; trained on English MNLI.",
        label_aliases=XNLI_LABEL_ALIASES,
        train_task="mnli",
        parallel_items=True,
        splits=_xtreme_pair_splits(
            "xnli", ("facebook/xnli", "premise", "hypothesis"), (Split.VALIDATION, Split.TEST)
        ),
    ),
    _xtreme_task(
        "pawsx",
        format=TaskFormat.PAIR_CLASSIFICATION,
        labels=("0", "1"),  # different meaning, paraphrase
        languages=PAWSX_LANGUAGES,
        metric="accuracy",
        description="PAWS-X: adversarial paraphrase identification in 7 languages.",
        parallel_items=True,
        splits=_xtreme_pair_splits(
            "pawsx",
            ("google-research-datasets/paws-x", "sentence1", "sentence2"),
            (Split.TRAIN, Split.VALIDATION, Split.TEST),
        ),
    ),
    _english_task(
        "anli_plus",
        TaskFormat.PAIR_CLASSIFICATION,
        "accuracy",
        "ANLI+: ANLI rounds 1-3, MNLI and SNLI as one task with one head (the paper's).",
        labels=NLI_LABELS,
        combines=("anli", "mnli", "snli"),
        splits={},
    ),
    _xtreme_task(
        "udpos",
        format=TaskFormat.TOKEN_CLASSIFICATION,
        labels=UPOS_TAGS,
        languages=UDPOS_LANGUAGES,
        metric="seqeval_f1_token_accuracy",
        description=(
            "Universal Dependencies POS tagging (17 UPOS tags), XTREME's 33 languages; a language's "
            "split is all its treebanks. Local data: XTREME's udpos/ TSVs or UD's CoNLL-U folders."
        ),
        language_names=LANGUAGE_NAMES,
        splits=_xtreme_tagging_splits("udpos", "udpos.{name}", "pos_tags", ud_treebanks=True),
    ),
    _xtreme_task(
        "panx",
        format=TaskFormat.TOKEN_CLASSIFICATION,
        labels=PANX_TAGS,
        languages=PANX_LANGUAGES,
        metric="seqeval_f1",
        description="PAN-X / WikiANN named entities (PER, ORG, LOC; BIO tags), 40 languages.",
        splits=_xtreme_tagging_splits("panx", "PAN-X.{lang}", "ner_tags"),
    ),
    _english_task(
        "ccg",
        TaskFormat.TOKEN_CLASSIFICATION,  # an open label set: the supertags seen in training
        "seqeval_f1_token_accuracy",
        (
            "CCG supertagging (CCGbank is licensed: put your copy in <data>/ccg/{train,dev}.tsv, "
            "one token<TAB>supertag per line, a blank line between sentences)."
        ),
        splits={
            Split.TRAIN: SplitSource(local=(LocalFile("ccg/train.tsv", "tagging_tsv"),)),
            Split.VALIDATION: SplitSource(local=(LocalFile("ccg/dev.tsv", "tagging_tsv"),)),
        },
    ),
    _squad(
        "squad",
        "1.1",
        "SQuAD v1.1: English extractive QA (trains XQuAD and MLQA).",
        "rajpurkar/squad",
        translations=SQUAD_TRANSLATE_TRAIN,
    ),
    _squad(
        "squad_v2",
        "2.0",
        "SQuAD v2.0: SQuAD v1.1 plus unanswerable questions (no-answer predictions).",
        "rajpurkar/squad_v2",
    ),
    _xtreme_qa_task(
        "xquad",
        XQUAD_LANGUAGES,
        "XQuAD: SQuAD v1.1 dev translated into 10 languages (one split: dev = test).",
        _dev_is_test(
            _squad_like("xquad/xquad.{lang}.json", HubSource(XTREME, "XQuAD.{lang}", "validation"))
        ),
        train_task="squad",
        parallel_items=True,
    ),
    _xtreme_qa_task(
        "mlqa",
        MLQA_LANGUAGES,
        "MLQA: extractive QA in 7 languages (same-language context and question).",
        {
            split: _squad_like(
                f"mlqa/{FILE_PREFIX[split]}-context-{{lang}}-question-{{lang}}.json",
                HubSource(XTREME, "MLQA.{lang}.{lang}", split.value),
            )
            for split in (Split.VALIDATION, Split.TEST)
        },
        metric="mlqa_f1",
        train_task="squad",
        parallel_items=True,
    ),
    _xtreme_qa_task(
        "tydiqa",
        TYDIQA_LANGUAGES,
        "TyDiQA-GoldP: typologically diverse QA, 9 languages; trained on its English train.",
        {
            Split.TRAIN: _squad_like(
                "tydiqa/tydiqa.goldp.{lang}.train.json",
                HubSource(XTREME, "tydiqa", "train", id_prefix="{name}"),
                EN,
            ),
            # XTREME's TyDiQA-GoldP test is the released dev set.
            **_dev_is_test(
                _squad_like(
                    "tydiqa/tydiqa.goldp.{lang}.dev.json",
                    HubSource(XTREME, "tydiqa", "validation", id_prefix="{name}"),
                )
            ),
        },
        language_names=TYDIQA_LANGUAGE_NAMES,
    ),
    _english_choice_task(
        "hellaswag",
        "HellaSwag: pick the plausible continuation of a video caption (4 endings).",
        ("hellaswag/hellaswag_train.jsonl", "hellaswag/hellaswag_val.jsonl", "hellaswag_jsonl"),
        "Rowan/hellaswag",
    ),
    _english_choice_task(
        "commonsenseqa",
        "CommonsenseQA: 5-way multiple-choice questions on ConceptNet concepts.",
        (
            "commonsenseqa/train_rand_split.jsonl",
            "commonsenseqa/dev_rand_split.jsonl",
            "commonsenseqa_jsonl",
        ),
        "tau/commonsense_qa",
    ),
    _english_choice_task(
        "cosmosqa",
        "Cosmos QA: 4-way reading comprehension needing commonsense inference.",
        ("cosmosqa/train.csv", "cosmosqa/valid.csv", "cosmosqa_csv"),
        "allenai/cosmos_qa",
    ),
    _xtreme_task(
        "bucc2018",
        format=TaskFormat.RETRIEVAL,
        labels=(),
        languages=BUCC_LANGUAGES,
        metric="bucc_f1",
        description=(
            "BUCC 2018 bitext mining against English (no training: pooled encoder states); F1 of "
            "mined pairs, threshold tuned on the validation (sample) gold."
        ),
        mines_pairs=True,
        threshold_tuning_split=Split.VALIDATION,
        splits={
            split: _xtreme_retrieval(
                f"bucc2018/{{lang}}-en.{FILE_PREFIX[split]}.{{lang}}",
                "bucc",
                "bucc18.{lang}",
                split.value,
            )
            for split in (Split.VALIDATION, Split.TEST)
        },
    ),
    _xtreme_task(
        "tatoeba",
        format=TaskFormat.RETRIEVAL,
        labels=(),
        languages=tuple(TATOEBA_CODES),
        metric="accuracy",
        description=(
            "Tatoeba: nearest English sentence (cosine) for 36 languages, top-1 accuracy; no training. "
            "One split (validation = test)."
        ),
        language_codes=TATOEBA_CODES,
        splits=_dev_is_test(
            _xtreme_retrieval(
                "tatoeba/tatoeba.{code}-eng.{code}", "tatoeba", "tatoeba.{code}", "validation"
            )
        ),
    ),
)

REGISTRY: dict[str, Task] = {t.name: t for t in _TASKS}


def all_tasks() -> list[Task]:
    return list(_TASKS)


def get_task(name: str, field: str = "task") -> Task:
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise UnknownNameError(field, name, REGISTRY) from None


def target_task_names() -> list[str]:
    return [t.name for t in _TASKS if t.is_target]


def intermediate_task_names() -> list[str]:
    """English tasks with a training split: any of them can be an intermediate task."""
    return [t.name for t in _TASKS if not t.is_target and t.trains]


def training_task(target: Task, override: str | None = None) -> Task | None:
    """The task whose English train split trains ``target`` (XNLI trains on MNLI); None for
    retrieval, which trains nothing. ``override`` is the spec's ``target.train_task``."""
    if target.format is TaskFormat.RETRIEVAL:
        return None
    if override:
        return get_task(override, "target.train_task")
    return REGISTRY[target.train_task] if target.train_task else target


def compatible_train_tasks(target: Task) -> list[str]:
    """Tasks that can train ``target``'s head: same format, English train data, same label set."""
    return [
        t.name
        for t in _TASKS
        if t.format is target.format and t.trains and t.labels == target.labels
    ]
