"""Write the specs that reproduce Phang et al. (2020), "English intermediate-task training improves
zero-shot cross-lingual transfer too" (AACL 2020, arXiv:2005.13013), on XLM-R Large.

One table of hyperparameters below, each value with its source, becomes:

* ``baseline.yaml`` and one ``<intermediate>.yaml`` per intermediate task (and ``multitask.yaml``),
  all with XNLI as the target;
* ``grid/<intermediate>__<target>.yaml``: the paper's full grid, (no intermediate task, each of the
  nine intermediate tasks, multi-task) x (the nine XTREME targets) = 99 specs. Cells that share an
  intermediate task plan the same intermediate stage key, so it trains once for its nine targets.

Run ``python examples/paper/make_grid.py`` to rewrite them, ``--check`` to only compare (exit 1 on a
difference). tests/test_paper_recipes.py checks that the checked-in files equal this output.

Sources (abbreviations used in the comments of every generated spec):

* [paper]  Phang et al. 2020, arXiv:2005.13013 / AACL 2020: the nine intermediate tasks, the
  multi-task setting, XLM-R Large, the nine XTREME targets (abstract). The paper's own training
  section could not be read while these recipes were written, so no value below is cited to it.
* [guide]  nyu-mll/jiant ``guides/projects/xstilts.md``: the paper's replication guide. Intermediate
  training: ``jiant/proj/simple/runscript.py run ... --model_type xlm-roberta-large
  --train_batch_size 4 --tasks mnli,squad_v1``; every other value is that runscript's default
  (``learning_rate`` 1e-5, ``num_train_epochs`` 3, ``max_seq_length`` 256, gradient accumulation 1),
  warmup 10% (``jiant/proj/main/scripts/configurator.py`` ``warmup_steps_proportion``), and several
  tasks are sampled in proportion to their sizes (same file: ``ProportionalMultiTaskSampler``).
  Target tasks: the guide's step 2 follows ``guides/benchmarks/xtreme.md``, i.e. [xtreme-jiant].
* [xtreme-jiant]  nyu-mll/jiant ``jiant/scripts/benchmarks/xtreme/subscripts/``:
  ``d_write_configs.sh`` (epochs, ``--train_batch_size 4`` with ``--gradient_accumulation_steps``
  8, or 4 for QA), ``c_tokenize_and_cache.sh`` (``--max_seq_length`` 256; 384 for XQuAD, MLQA,
  TyDiQA and SQuAD; 512 for BUCC and Tatoeba), ``jiant/scripts/postproc/xtreme/subscripts/
  e_run_models.sh`` (``--learning_rate 1e-5``), ``xtreme_runconfig_writer.py`` (warmup 0.1;
  retrieval: ``pooler_type`` mean, ``layer`` 14, "the reference implementation from the XTREME
  paper uses layer 14").
* [xtreme]  Hu et al. 2020 (XTREME) and google-research/xtreme's fine-tuning scripts: the target
  model is evaluated during training and the checkpoint best on the English dev set of the training
  task is kept (zero-shot: no target-language data selects anything).
* [jiant]  nyu-mll/jiant library defaults: AdamW weight decay 0.01 off biases and LayerNorm
  (``jiant/shared/model_setup.py``), ``max_grad_norm`` 1.0 (runscript default), SQuAD-style
  ``doc_stride`` 128, ``max_query_length`` 64, ``n_best_size`` 20, ``max_answer_length`` 30
  (``jiant/tasks/lib/templates/squad_style/core.py``).
* [hub]  FacebookAI/xlm-roberta-large on the Hugging Face hub: ``c23d21b0620b635a76227c604d44e43a9f0ee389``
  is the head of ``main`` ("Adds the tokenizer configuration file (#17)", short hash c23d21b on the
  hub's file listing; the full hash as pinned by several public projects and in a hub cache's
  snapshot folder name).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = HERE / "grid"

MODEL_SOURCE = "hf:FacebookAI/xlm-roberta-large"
MODEL_REVISION = "c23d21b0620b635a76227c604d44e43a9f0ee389"  # [hub] head of main

# The paper's nine intermediate tasks [paper], by this repository's task names.
INTERMEDIATE_TASKS = (
    "anli_plus",  # ANLI rounds 1-3 + MNLI + SNLI, one head
    "mnli",
    "qqp",
    "squad",  # SQuAD v1.1
    "squad_v2",
    "hellaswag",
    "ccg",  # CCGbank supertagging: licensed, local files only
    "cosmosqa",
    "commonsenseqa",
)
# [paper] reports a multi-task intermediate model; which tasks it mixed could not be verified. Here
# it mixes all nine but CCG: CCGbank is not on the hub and ANLI is nowhere else, so no single data
# source holds both.
MULTITASK = tuple(t for t in INTERMEDIATE_TASKS if t != "ccg")
QA_TASKS = ("squad", "squad_v2")
LOCAL_ONLY = ("ccg",)  # tasks whose data is not on the hub (their specs read a local folder)

TARGETS = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
RETRIEVAL = ("bucc2018", "tatoeba")
QA_TARGETS = ("xquad", "mlqa", "tydiqa")

# xstilts' doc_stride is the overlap of consecutive QA windows; jiant's and XTREME's doc_stride=128
# is the step between window starts (HF's legacy run_squad), an overlap of
# max_seq_length - 128 - |question| - 4 tokens. The overlap that gives jiant's step for the
# longest question (max_query_length 64) is max_seq_length - 128 - 64 - 4.
JIANT_DOC_STEP = 128
MAX_QUERY_LENGTH = 64


def overlap_for(max_seq_length: int) -> int:
    return max_seq_length - JIANT_DOC_STEP - MAX_QUERY_LENGTH - 4


@dataclass(frozen=True)
class Stage:
    """One training stage's hyperparameters and where each comes from."""

    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int
    epochs: float
    max_seq_length: int
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    qa: bool = False  # extractive QA: also doc_stride and max_query_length
    select: str | None = None  # checkpoint selection (target stages)
    sources: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "epochs": self.epochs,
            "warmup_ratio": self.warmup_ratio,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm,
            "max_seq_length": self.max_seq_length,
        }
        if self.qa:
            out["doc_stride"] = overlap_for(self.max_seq_length)
            out["max_query_length"] = MAX_QUERY_LENGTH
        if self.select is not None:
            out["select"] = self.select
        return out


_INTER_SOURCES = {
    "learning_rate": "[guide] runscript default",
    "batch_size": "[guide] --train_batch_size 4",
    "gradient_accumulation_steps": "[guide] default: effective batch 4",
    "epochs": "[guide] runscript default num_train_epochs",
    "warmup_ratio": "[guide] configurator warmup_steps_proportion",
    "weight_decay": "[jiant] model_setup.py",
    "max_grad_norm": "[jiant] runscript default",
    "max_seq_length": "[guide] runscript default, every task",
    "doc_stride": f"[jiant] step {JIANT_DOC_STEP} as an overlap, see make_grid.py",
    "max_query_length": "[jiant] squad_style default",
}


def intermediate_stage(tasks: tuple[str, ...]) -> Stage:
    """The intermediate stage: one recipe for every task [guide] (no per-task values known)."""
    return Stage(
        learning_rate=1e-5,
        batch_size=4,
        gradient_accumulation_steps=1,
        epochs=3,
        max_seq_length=256,
        qa=any(t in QA_TASKS for t in tasks),
        sources=_INTER_SOURCES,
    )


def _target(epochs: float, accumulation: int, max_seq_length: int, qa: bool = False) -> Stage:
    return Stage(
        learning_rate=1e-5,
        batch_size=4,
        gradient_accumulation_steps=accumulation,
        epochs=epochs,
        max_seq_length=max_seq_length,
        qa=qa,
        select="best_english_dev",
        sources={
            "select": "[xtreme] the checkpoint best on the English dev set, at each epoch's end",
            "learning_rate": "[xtreme-jiant] e_run_models.sh",
            "batch_size": "[xtreme-jiant] d_write_configs.sh --train_batch_size",
            "gradient_accumulation_steps": (
                f"[xtreme-jiant] d_write_configs.sh: effective batch {4 * accumulation}"
            ),
            "epochs": "[xtreme-jiant] d_write_configs.sh --epochs",
            "warmup_ratio": "[xtreme-jiant] xtreme_runconfig_writer.py",
            "weight_decay": "[jiant] model_setup.py",
            "max_grad_norm": "[jiant] runscript default",
            "max_seq_length": "[xtreme-jiant] c_tokenize_and_cache.sh",
            "doc_stride": f"[jiant] step {JIANT_DOC_STEP} as an overlap, see make_grid.py",
            "max_query_length": "[jiant] squad_style default",
        },
    )


# Target training, per target [xtreme-jiant]. XQuAD and MLQA both train on SQuAD v1.1 with the same
# values, so the planner gives them one shared target stage.
TARGET_TRAINING: dict[str, Stage] = {
    "xnli": _target(epochs=2, accumulation=8, max_seq_length=256),
    "pawsx": _target(epochs=5, accumulation=8, max_seq_length=256),
    "udpos": _target(epochs=10, accumulation=8, max_seq_length=256),
    "panx": _target(epochs=10, accumulation=8, max_seq_length=256),
    "xquad": _target(epochs=2, accumulation=4, max_seq_length=384, qa=True),
    "mlqa": _target(epochs=2, accumulation=4, max_seq_length=384, qa=True),
    "tydiqa": _target(epochs=2, accumulation=4, max_seq_length=384, qa=True),
}

# Evaluation: the sequence length each target is tokenised with [xtreme-jiant]
# c_tokenize_and_cache.sh; retrieval reads the mean of hidden layer 14 (0 = embeddings, as in
# HF's hidden_states) [xtreme-jiant] xtreme_runconfig_writer.py. BUCC's margin k=4 is this
# repository's default (LASER's margin scoring), not a value from the paper or jiant.
EVAL_MAX_SEQ_LENGTH = {
    "xnli": 256,
    "pawsx": 256,
    "udpos": 256,
    "panx": 256,
    "xquad": 384,
    "mlqa": 384,
    "tydiqa": 384,
    "bucc2018": 512,
    "tatoeba": 512,
}
RETRIEVAL_LAYER = 14
RETRIEVAL_POOLING = "mean"
QA_DECODING = {"max_answer_length": 30, "n_best_size": 20}  # [jiant] squad_style defaults
EVAL_SPLIT = "validation"  # the paper's grid compares development-set results [paper]
SEEDS = (42,)  # the paper's seeds are not known; one run per cell, as the grid tables show

# What each generated file is called and which intermediate tasks it trains.
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    **{t: (t,) for t in INTERMEDIATE_TASKS},
    "multitask": MULTITASK,
}


def _num(value: object) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return f"{value:.1f}"
        text = f"{value:.0e}" if value < 1e-3 else repr(value)
        return text.replace("e-0", "e-").replace("e-", ".0e-") if "e" in text else text
    return str(value)


def _training_block(stage: Stage, indent: str) -> list[str]:
    lines = [f"{indent}training:"]
    for key, value in stage.fields().items():
        lines.append(f"{indent}  {key}: {_num(value)}  # {stage.sources[key]}")
    return lines


def _title(variant: str) -> str:
    return "no intermediate task" if variant == "baseline" else variant


def render(variant: str, target: str) -> str:
    """The spec text of one (intermediate variant, target) cell."""
    tasks = VARIANTS[variant]
    local = any(t in LOCAL_ONLY for t in tasks)
    lines = [
        f"# Phang et al. (2020) on XLM-R Large: {_title(variant)} -> {target}.",
        "# Generated by examples/paper/make_grid.py from its hyperparameter table; edit that",
        "# script, not this file. Sources in brackets are listed in make_grid.py's docstring.",
        f"name: paper / {_title(variant)} -> {target}",
        "model:",
        f"  source: {MODEL_SOURCE}",
        f"  revision: {MODEL_REVISION}  # [hub] head of main",
        "  pooling: first  # <s>, as XLM-R's classification heads read it",
    ]
    if tasks:
        lines += ["intermediate:", f"  tasks: [{', '.join(tasks)}]"]
        lines += _training_block(intermediate_stage(tasks), "  ")
        if len(tasks) > 1:
            lines += [
                "  sampling:",
                "    strategy: proportional  # [guide] ProportionalMultiTaskSampler (no size cap)",
            ]
    lines += ["target:", f"  task: {target}"]
    if target in RETRIEVAL:
        lines[-1] += "  # retrieval: no training, the (intermediate) encoder's vectors"
    else:
        lines += _training_block(TARGET_TRAINING[target], "  ")
    lines += [
        "evaluation:",
        f"  split: {EVAL_SPLIT}  # the grid compares development sets; all languages",
        f"  max_seq_length: {EVAL_MAX_SEQ_LENGTH[target]}  # [xtreme-jiant] c_tokenize_and_cache.sh",
    ]
    if target in QA_TARGETS:
        stride = overlap_for(EVAL_MAX_SEQ_LENGTH[target])
        lines += [
            f"  doc_stride: {stride}  # [jiant] step {JIANT_DOC_STEP} as an overlap, see make_grid.py",
            f"  max_answer_length: {QA_DECODING['max_answer_length']}  # [jiant] squad_style",
            f"  n_best_size: {QA_DECODING['n_best_size']}  # [jiant] squad_style",
        ]
    if target in RETRIEVAL:
        lines += [
            f"  retrieval: {{layer: {RETRIEVAL_LAYER}, pooling: {RETRIEVAL_POOLING}, k: 4}}"
            "  # [xtreme-jiant] layer 14, mean; k: xstilts default",
        ]
    lines += [f"seeds: [{', '.join(map(str, SEEDS))}]  # the paper's seeds are not known"]
    if local:
        lines += [
            "data:",
            "  # CCGbank is licensed and not on the hub: a local folder ($XSTILTS_DATA_DIR) must hold",
            "  # ccg/{train,dev}.tsv and the target's English training and evaluation files.",
            "  source: local",
        ]
    else:
        lines += ["data:", "  source: hub  # the full datasets, as in the paper"]
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    """Every generated file (absolute path) and its content."""
    files = {HERE / f"{variant}.yaml": render(variant, "xnli") for variant in VARIANTS}
    for variant in VARIANTS:
        for target in TARGETS:
            files[GRID / f"{variant}__{target}.yaml"] = render(variant, target)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a change")
    args = parser.parse_args(argv)
    files = expected_files()
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    extra = sorted(set(GRID.glob("*.yaml")) - set(files)) if GRID.is_dir() else []
    if args.check:
        for p in stale + extra:
            print(f"out of date: {p.relative_to(HERE)}", file=sys.stderr)
        return 1 if stale or extra else 0
    GRID.mkdir(exist_ok=True)
    for p in extra:
        p.unlink()
    for p in stale:
        p.write_text(files[p])
    print(f"{len(files)} specs, {len(stale)} written, {len(extra)} removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
