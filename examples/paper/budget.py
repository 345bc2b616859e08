"""How much compute the full grid of examples/paper/grid needs, from XLM-R Large's configuration and
the datasets' sizes: an estimate to plan hardware with, not a measurement.

Model FLOPs (Kaplan et al. 2020, "Scaling laws for neural language models", section 2.1): a forward
pass costs 2 N + 2 n_layer n_ctx d_model FLOPs per token, N the non-embedding parameters (embedding
lookups multiply nothing); training (forward + backward) three times that: 6 N + 6 n_layer n_ctx
d_model. Tokens are an UPPER BOUND: every sequence counted at its stage's max_seq_length (real
batches are shorter: xstilts batches by length and pads per batch), one window per QA example
(``--qa-windows`` scales that), and, for evaluation, set sizes rounded up where noted. The heads
(a linear layer per task) and the optimizer step are left out: under 1% here.

GPU-hours = FLOPs / (peak FLOP/s x utilisation) / 3600, at the peak and utilisation given on the
command line: by default bf16 dense peaks of 312 TFLOP/s (A100 SXM) and 989 TFLOP/s (H100 SXM), at
an ASSUMED 40% model-FLOPs utilisation. Neither is measured here.

    python examples/paper/budget.py [--mfu 0.4] [--gpu A100=312] [--gpu H100=989] [--seeds 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# --- XLM-R Large (FacebookAI/xlm-roberta-large config.json at the pinned revision) ---------------
LAYERS = 24
HIDDEN = 1024
FFN = 4096  # intermediate_size
VOCAB = 250_002
POSITIONS = 514  # max_position_embeddings
TYPE_VOCAB = 1

_LINEAR = HIDDEN * HIDDEN + HIDDEN  # weight + bias
PER_LAYER = (
    4 * _LINEAR  # query, key, value, attention output
    + (HIDDEN * FFN + FFN)  # FFN in
    + (FFN * HIDDEN + HIDDEN)  # FFN out
    + 2 * 2 * HIDDEN  # two LayerNorms (weight + bias)
)
NON_EMBEDDING_PARAMS = LAYERS * PER_LAYER  # 302,309,376
EMBEDDING_PARAMS = (VOCAB + POSITIONS + TYPE_VOCAB) * HIDDEN + 2 * HIDDEN  # + embedding LayerNorm
POOLER_PARAMS = _LINEAR  # XLMRobertaModel's pooler (unused by xstilts' heads)
TOTAL_PARAMS = NON_EMBEDDING_PARAMS + EMBEDDING_PARAMS + POOLER_PARAMS  # ~560M

# --- English training sets (examples) ------------------------------------------------------------
# (count, source). "card": the dataset's Hugging Face card (dataset_info num_examples); "unverified":
# not checked while writing this, from the dataset's paper.
TRAIN_EXAMPLES: dict[str, tuple[int, str]] = {
    "mnli": (392_702, "card nyu-mll/glue mnli train"),
    "snli": (550_152, "card stanfordnlp/snli train"),
    "anli": (16_946 + 45_460 + 100_459, "unverified: Nie et al. 2020, rounds 1-3 train"),
    "qqp": (363_846, "card nyu-mll/glue qqp train"),
    "squad": (87_599, "card rajpurkar/squad train"),
    "squad_v2": (130_319, "SQuAD 2.0 paper Table 2 (quoted); card not checked"),
    "hellaswag": (39_905, "card Rowan/hellaswag train"),
    "ccg": (39_604, "unverified: CCGbank sections 02-21 sentences"),
    "cosmosqa": (25_262, "card allenai/cosmos_qa train"),
    "commonsenseqa": (9_741, "card tau/commonsense_qa train"),
    "pawsx": (49_401, "card google/xtreme PAWS-X.en train"),
    "udpos": (21_253, "card google/xtreme udpos.English train"),
    "panx": (20_000, "card google/xtreme PAN-X.en train"),
    "tydiqa": (3_696, "XTREME Table 1 / local tydiqa.goldp.en.train.json (3,696 questions)"),
}
COMBINED = {"anli_plus": ("anli", "mnli", "snli")}
# Multiple choice encodes one sequence per answer choice.
CHOICES = {"hellaswag": 4, "cosmosqa": 4, "commonsenseqa": 5}

# --- Evaluation sets (validation split, all languages; sequences encoded) ------------------------
EVAL_SEQUENCES: dict[str, tuple[int, str]] = {
    "xnli": (15 * 2_490, "card google/xtreme XNLI validation 37,350"),
    "pawsx": (7 * 2_000, "card: 2,000 per language"),
    "udpos": (33 * 10_000, "upper bound assumed: <= 10,000 sentences per language"),
    "panx": (250_300 + 3 * 10_000, "37 languages counted in shared/data; 3 more at <= 10,000"),
    "xquad": (11 * 1_190, "card: 1,190 per language"),
    "mlqa": (7 * 1_148, "upper bound: 7 x English's 1,148 (card)"),
    "tydiqa": (5_077, "card google/xtreme tydiqa validation, 9 languages"),
    "bucc2018": (4 * 50_000, "upper bound assumed: <= 50,000 sentences per pair (zh: 22,213)"),
    "tatoeba": (36 * 2 * 1_000, "card: 1,000 pairs per language, both sides encoded"),
}


@dataclass(frozen=True)
class Run:
    stage: str  # "intermediate", "target" or "predict"
    name: str
    sequences: int  # examples x epochs (training) or sequences encoded (prediction)
    seq_len: int

    @property
    def tokens(self) -> float:
        return float(self.sequences) * self.seq_len

    @property
    def flops(self) -> float:
        factor = 2 if self.stage == "predict" else 6
        per_token = factor * (NON_EMBEDDING_PARAMS + LAYERS * self.seq_len * HIDDEN)
        return per_token * self.tokens


def train_examples(task: str) -> int:
    """Training sequences of one epoch: examples, times the choices of a multiple-choice task."""
    return sum(TRAIN_EXAMPLES[t][0] * CHOICES.get(t, 1) for t in COMBINED.get(task, (task,)))


def _load_make_grid() -> ModuleType:
    path = Path(__file__).resolve().parent / "make_grid.py"
    spec = importlib.util.spec_from_file_location("paper_make_grid", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def grid_runs(mg: ModuleType, seeds: int = 1, qa_windows: float = 1.0) -> list[Run]:
    """Every distinct stage of the grid, as the planner shares them: each intermediate model once,
    each (upstream, target training) once (XQuAD and MLQA share SQuAD), every prediction set."""
    runs: list[Run] = []
    upstreams = list(mg.VARIANTS)  # "baseline" (the pretrained encoder) and 10 intermediate ones
    for _ in range(seeds):
        for variant, tasks in mg.VARIANTS.items():
            if not tasks:
                continue
            stage = mg.intermediate_stage(tasks)
            n = sum(train_examples(t) * (qa_windows if t in mg.QA_TASKS else 1) for t in tasks)
            runs.append(Run("intermediate", variant, int(n * stage.epochs), stage.max_seq_length))
        trainings = {"squad" if t in ("xquad", "mlqa") else t: t for t in mg.TARGET_TRAINING}
        for upstream in upstreams:
            for train_task, target in trainings.items():
                stage = mg.TARGET_TRAINING[target]
                data = "mnli" if train_task == "xnli" else train_task
                n = train_examples(data) * (qa_windows if stage.qa else 1)
                name = f"{upstream} -> {train_task}"
                runs.append(Run("target", name, int(n * stage.epochs), stage.max_seq_length))
            for target in mg.TARGETS:
                n = EVAL_SEQUENCES[target][0] * (qa_windows if target in mg.QA_TARGETS else 1)
                seq = mg.EVAL_MAX_SEQ_LENGTH[target]
                runs.append(Run("predict", f"{upstream} -> {target}", int(n), seq))
    return runs


def total_flops(runs: list[Run]) -> float:
    return sum(r.flops for r in runs)


def gpu_hours(flops: float, peak: float, mfu: float) -> float:
    return flops / (peak * mfu) / 3600


def _gpu(text: str) -> tuple[str, float]:
    name, _, tflops = text.partition("=")
    if not tflops:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=TFLOPS, e.g. A100=312")
    return name, float(tflops) * 1e12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed utilisation (0-1]")
    parser.add_argument(
        "--gpu",
        type=_gpu,
        action="append",
        help="NAME=peak dense TFLOP/s, repeatable (default: A100=312 H100=989, bf16)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds per cell (the grid: 1)")
    parser.add_argument("--qa-windows", type=float, default=1.0, help="windows per QA example")
    args = parser.parse_args(argv)
    gpus = args.gpu or [("A100", 312e12), ("H100", 989e12)]
    if not 0 < args.mfu <= 1:
        parser.error("--mfu must be in (0, 1]")

    runs = grid_runs(_load_make_grid(), args.seeds, args.qa_windows)
    print(
        f"XLM-R Large: {LAYERS} layers, d={HIDDEN}, {NON_EMBEDDING_PARAMS / 1e6:.1f}M non-embedding"
        f" + {EMBEDDING_PARAMS / 1e6:.1f}M embedding (+ {POOLER_PARAMS / 1e6:.1f}M pooler)"
        f" = {TOTAL_PARAMS / 1e6:.1f}M parameters"
    )
    print(
        f"Assumed utilisation {args.mfu:.0%} of "
        + ", ".join(f"{n} {p / 1e12:.0f} TFLOP/s" for n, p in gpus)
        + f"; {args.seeds} seed(s); {args.qa_windows} window(s) per QA example\n"
    )
    head = ["stage", "runs", "sequences", "tokens (upper bound)", "PFLOP"]
    head += [f"{n} GPU-hours" for n, _ in gpus]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    total = 0.0
    for stage in ("intermediate", "target", "predict"):
        rs = [r for r in runs if r.stage == stage]
        flops = total_flops(rs)
        total += flops
        row = [stage, str(len(rs)), f"{sum(r.sequences for r in rs):,}"]
        row += [f"{sum(r.tokens for r in rs):.3g}", f"{flops / 1e15:,.0f}"]
        row += [f"{gpu_hours(flops, p, args.mfu):,.0f}" for _, p in gpus]
        print("| " + " | ".join(row) + " |")
    row = ["total", str(len(runs)), "", f"{sum(r.tokens for r in runs):.3g}"]
    row += [f"{total / 1e15:,.0f}"] + [f"{gpu_hours(total, p, args.mfu):,.0f}" for _, p in gpus]
    print("| " + " | ".join(row) + " |")

    longest = max((r for r in runs if r.stage != "predict"), key=lambda r: r.flops)
    print(
        f"\nLongest single run: {longest.stage} {longest.name}, "
        + ", ".join(f"{gpu_hours(longest.flops, p, args.mfu):,.1f} h on one {n}" for n, p in gpus)
        + " (a chain: intermediate, then target, then predict, runs in sequence)"
    )
    state = 16 * TOTAL_PARAMS / 2**30
    print(
        f"Memory: weights, gradients and AdamW moments in fp32 are 16 B/parameter = {state:.1f} GiB"
        " before activations (micro-batch 4 x 256-512 tokens): one 40-80 GB GPU per run."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
