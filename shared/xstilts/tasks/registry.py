"""Registry entries. Adding a task of an existing format is adding an entry here, nothing else."""

from __future__ import annotations

from xstilts.errors import UnknownNameError
from xstilts.tasks.base import HubSource, LocalFile, Split, SplitSource, Task, TaskFormat

NLI_LABELS = ("entailment", "neutral", "contradiction")  # hub label ids 0, 1, 2 in this order

XNLI_LANGUAGES = (
    "en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur",
)  # fmt: skip
PAWSX_LANGUAGES = ("en", "de", "es", "fr", "ja", "ko", "zh")
EN = ("en",)


def _glue_hub(config: str, split: str, a: str, b: str) -> HubSource:
    return HubSource("nyu-mll/glue", config, split, a, b)


def _english_pair_task(
    name: str,
    labels: tuple[str, ...],
    description: str,
    hub: tuple[HubSource, HubSource],
    dev_tsv: str = "dev.tsv",
) -> Task:
    """An English GLUE-style task: local files are LM-BFF JSON subsets or the original TSVs."""
    return Task(
        name=name,
        format=TaskFormat.PAIR_CLASSIFICATION,
        labels=labels,
        languages=EN,
        metric="accuracy",
        description=description,
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
        },
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
    Task(
        name="anli",
        format=TaskFormat.PAIR_CLASSIFICATION,
        labels=NLI_LABELS,
        languages=EN,
        metric="accuracy",
        description="Adversarial NLI, rounds 1-3 together (hub only: no local copy exists).",
        splits={
            Split.TRAIN: SplitSource(
                hub=tuple(
                    HubSource("facebook/anli", None, f"train_r{r}", "premise", "hypothesis")
                    for r in (1, 2, 3)
                )
            ),
            Split.VALIDATION: SplitSource(
                hub=tuple(
                    HubSource("facebook/anli", None, f"dev_r{r}", "premise", "hypothesis")
                    for r in (1, 2, 3)
                )
            ),
        },
    ),
    Task(
        name="xnli",
        format=TaskFormat.PAIR_CLASSIFICATION,
        labels=NLI_LABELS,
        languages=XNLI_LANGUAGES,
        metric="accuracy",
        description="XNLI: MNLI-style inference in 15 languages; trained on English MNLI.",
        label_aliases={"contradictory": "contradiction"},
        is_target=True,
        train_task="mnli",
        splits={
            Split.VALIDATION: SplitSource(
                local=(LocalFile("xnli/dev-{lang}.tsv", "xtreme_pair_tsv"),),
                hub=(HubSource("facebook/xnli", "{lang}", "validation", "premise", "hypothesis"),),
            ),
            Split.TEST: SplitSource(
                local=(LocalFile("xnli/test-{lang}.tsv", "xtreme_pair_tsv"),),
                hub=(HubSource("facebook/xnli", "{lang}", "test", "premise", "hypothesis"),),
            ),
        },
    ),
    Task(
        name="pawsx",
        format=TaskFormat.PAIR_CLASSIFICATION,
        labels=("0", "1"),  # different meaning, paraphrase
        languages=PAWSX_LANGUAGES,
        metric="accuracy",
        description="PAWS-X: adversarial paraphrase identification in 7 languages.",
        is_target=True,
        splits={
            Split.TRAIN: SplitSource(
                local=(LocalFile("pawsx/train-{lang}.tsv", "xtreme_pair_tsv"),),
                hub=(
                    HubSource(
                        "google-research-datasets/paws-x",
                        "{lang}",
                        "train",
                        "sentence1",
                        "sentence2",
                    ),
                ),
                languages=EN,
            ),
            Split.VALIDATION: SplitSource(
                local=(LocalFile("pawsx/dev-{lang}.tsv", "xtreme_pair_tsv"),),
                hub=(
                    HubSource(
                        "google-research-datasets/paws-x",
                        "{lang}",
                        "validation",
                        "sentence1",
                        "sentence2",
                    ),
                ),
            ),
            Split.TEST: SplitSource(
                local=(LocalFile("pawsx/test-{lang}.tsv", "xtreme_pair_tsv"),),
                hub=(
                    HubSource(
                        "google-research-datasets/paws-x",
                        "{lang}",
                        "test",
                        "sentence1",
                        "sentence2",
                    ),
                ),
            ),
        },
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
    return [t.name for t in _TASKS if not t.is_target and Split.TRAIN in t.splits]


def training_task(target: Task) -> Task:
    """The task whose English train split trains ``target`` (XNLI trains on MNLI)."""
    return REGISTRY[target.train_task] if target.train_task else target
