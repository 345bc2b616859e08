"""Experiments in this process: ``run``, ``validate``, ``export``, ``compare``."""

from __future__ import annotations

import argparse
import resource
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from xstilts.cli.common import (
    EXIT_OK,
    bounded,
    output_file,
    output_folder,
    quiet_transformers,
    write_json,
)
from xstilts.config import LOCAL_OWNER, Settings
from xstilts.errors import XstiltsError
from xstilts.terminal import terminal_safe

if TYPE_CHECKING:
    from xstilts.runtime.workspace import Workspace


class _BarReporter:
    """A line per stage as it starts (or is found already done) and a progress bar while a
    training stage runs (step/total, examples/s, ETA) or a prediction does (examples/total), on
    stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._stage: int | None = None
        self._shown: set[tuple[str, int]] = set()
        # progress() runs in the stage's thread, watch() and close() in the caller's.
        self._lock = threading.Lock()

    def watch(self, ws: Any, exp_id: str) -> None:
        """Called while the experiment runs: announce stages that started or were reused."""
        if not self.enabled:
            return
        from xstilts.experiments.status import experiment_state

        with ws.sessions() as s:
            stages = experiment_state(s, exp_id).stages
        for st in stages:
            if (st.key, st.seed) in self._shown or st.status in ("pending", "queued"):
                continue
            self._shown.add((st.key, st.seed))
            with self._lock:
                self._close()
            # A short stage may start and end between two polls: say how it ended instead.
            state = "reused (already computed)" if st.reused else st.status
            print(
                f"[seed {st.seed}] {st.role:<14} {st.kind:<18} {state}", file=sys.stderr, flush=True
            )

    def progress(self, stage: Any, step: int, total: int, examples_per_s: float) -> None:
        """Training counts optimiser steps (examples/s beside them); prediction counts the model's
        inputs (one language's examples; a QA context too long for one window is several), so its
        own rate is inputs/s."""
        from xstilts.db.models import StageKind

        if not self.enabled or stage.kind == StageKind.EVALUATE.value:
            return
        trains = stage.kind != StageKind.PREDICT.value
        with self._lock:
            self._show(stage.id, trains, step, total, examples_per_s)

    def _show(self, stage_id: int, trains: bool, step: int, total: int, rate: float) -> None:
        if self._stage != stage_id:
            from tqdm import tqdm

            self._close()
            # Counted from the first step reported (a resumed stage starts past 0), so the first
            # rate shown is a real one; the finished bar stays, showing the last step and its rate.
            self._bar = tqdm(
                total=total,
                initial=step,
                desc="  train" if trains else "  predict",
                unit="step" if trains else "input",
                file=sys.stderr,
                leave=True,
            )
            self._stage = stage_id
        self._bar.n = step
        if trains and rate > 0:  # none until the second step (the first: warm-up)
            self._bar.set_postfix_str(f"{rate:.1f} ex/s", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._stage = None, None


def cmd_run(args: argparse.Namespace) -> int:
    from xstilts.runtime.workspace import Workspace

    quiet_transformers()
    from xstilts.cli.tables import results_table
    from xstilts.spec import load_spec

    spec = load_spec(Path(args.spec))
    reporter = _BarReporter(enabled=not args.quiet)
    ws = Workspace(Settings())
    try:
        # Owned like the embedded server's key, so `xstilts serve` on this home shows it.
        exp_id = ws.submit(spec, owner=LOCAL_OWNER)
        ws.follow(exp_id, reporter, on_poll=lambda _: reporter.watch(ws, exp_id))
        result = ws.results(exp_id)
    finally:
        reporter.close()
        ws.close()
    print(f"experiment {result.experiment.id} ({terminal_safe(spec.name)})")
    print(results_table(result))
    for warning in result.warnings:
        print(f"warning: {warning}")
    trained = sum(st.steps_run for st in result.stages if not st.reused)
    reused = sum(1 for st in result.stages if st.reused)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
    print(
        f"\nstages: {len(result.stages)} ({reused} reused); "
        f"optimiser steps this run: {trained}; peak memory {peak_gb:.1f} GB"
    )
    if args.json:
        write_json(Path(args.json), result.model_dump(mode="json"))
        print(f"results written to {args.json}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from xstilts.experiments.submit import plan
    from xstilts.spec import parse_spec, read_spec_data
    from xstilts.studies import expand, parse_study, plan_study
    from xstilts.studies.spec import set_label

    data = read_spec_data(Path(args.spec))
    if "intermediate_sets" in data:  # a study: every cell planned, stages shared across cells
        cells = expand(parse_study(data))
        planned = plan_study(cells, Settings())
        unique = {st.key for stages in planned for st in stages}
        print(f"{args.spec}: valid study; {len(cells)} cells, {len(unique)} distinct stages")
        for (tasks, target, _), stages in zip(cells, planned, strict=True):
            print(f"  {set_label(tasks)}/{target}: {len(stages)} stages")
        return EXIT_OK
    stages = plan(parse_spec(data), Settings())
    print(f"{args.spec}: valid; {len(stages)} stages")
    for st in stages:
        print(f"  seed {st.seed}  {st.role:<14} {st.kind.value:<18} {st.key[:12]}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from xstilts.experiments.export import export_predictions
    from xstilts.runtime.workspace import Workspace

    labels = Path(args.labels) if args.labels else None
    if labels is not None and labels.resolve() == Path(args.out).resolve():
        raise XstiltsError(
            f"--labels {args.labels} is OUT itself: the gold files have the predictions' names, "
            "so give another folder",
            field="labels",
        )
    ws = Workspace(Settings())
    try:
        exp_id = _experiment_id(args.experiment, ws)
        written = export_predictions(ws.sessions, exp_id, Path(args.out), args.seed, labels)
    finally:
        ws.close()
    for path in written:
        print(path)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from xstilts.cli.tables import comparison_table, paired_comparison_table

    if len(args.experiments) != 2:
        if args.json:
            raise XstiltsError(
                f"--json writes the paired comparison of two experiments; got "
                f"{len(args.experiments)} (the side-by-side table of more is printed only)",
                field="json",
            )
        print(comparison_table([_read_results(p) for p in args.experiments]))
        return EXIT_OK
    comparison = _paired(args)
    if comparison is None:  # results files of experiments this workspace does not hold
        print(comparison_table([_read_results(p) for p in args.experiments]))
        print(
            "\nnote: these experiments are not in this workspace's database, so there are no "
            "paired intervals; run 'xstilts compare' where they ran"
        )
        if args.json:
            raise XstiltsError(
                f"--json {args.json}: nothing written, there is no paired comparison here",
                field="json",
            )
        return EXIT_OK
    print(paired_comparison_table(comparison))
    if args.json:
        write_json(Path(args.json), comparison.model_dump(mode="json"))
        print(f"comparison written to {args.json}")
    return EXIT_OK


def _read_results(path: str) -> Any:
    from xstilts.experiments.results import ExperimentResults

    try:
        return ExperimentResults.model_validate_json(Path(path).read_bytes())
    except (OSError, ValidationError) as e:
        raise XstiltsError(f"cannot read {path}: {e}", field="results") from None


def _experiment_id(ref: str, ws: Workspace) -> str:
    """An id, or the first characters of one (as tables print it), or the experiment id inside a
    results file (``run``/``submit --json``)."""
    from xstilts.experiments.queries import complete_id

    if Path(ref).is_file():
        return str(_read_results(ref).experiment.id)
    if "/" in ref or ref.endswith(".json"):  # ids are hex: this was meant as a file
        raise XstiltsError(f"no results file {ref}", field="results")
    with ws.sessions() as s:
        return complete_id(s, ref)


def _paired(args: argparse.Namespace) -> Any:
    """The comparison of the two experiments (ids, or results files naming them); None when they
    are files of experiments that are not in this workspace."""
    from xstilts.comparisons import ANY_OWNER, CompareOptions, compare_experiments
    from xstilts.errors import NotFoundError
    from xstilts.runtime.workspace import Workspace

    options = CompareOptions(
        samples=args.samples, confidence=args.confidence, alpha=args.alpha, seed=args.seed
    )
    ws = Workspace(Settings())
    try:
        ids = [_experiment_id(x, ws) for x in args.experiments]
        return compare_experiments(
            ws.sessions, ws.store, ids[0], ids[1], ANY_OWNER, options, args.recompute
        )
    except NotFoundError:
        if all(Path(x).is_file() for x in args.experiments):
            return None
        raise
    finally:
        ws.close()


def cmd_study(args: argparse.Namespace) -> int:
    from xstilts.cli.tables import study_table
    from xstilts.comparisons import ANY_OWNER
    from xstilts.runtime.workspace import Workspace
    from xstilts.spec import read_spec_data
    from xstilts.studies import parse_study, study_results, submit_study

    quiet_transformers()
    study = parse_study(read_spec_data(Path(args.spec)))
    reporter = _BarReporter(enabled=not args.quiet)
    ws = Workspace(Settings())
    try:
        study_id, cells = submit_study(ws.sessions, ws.settings, study, owner=LOCAL_OWNER)
        for n, exp_id in enumerate(cells, 1):
            if not args.quiet:
                name = terminal_safe(ws.results(exp_id).experiment.name)
                print(f"[{n}/{len(cells)}] {name} ({exp_id})", file=sys.stderr, flush=True)
            ws.follow(exp_id, reporter, on_poll=lambda e: reporter.watch(ws, e))
            reporter.close()
        results = study_results(ws.sessions, ws.store, study_id, ANY_OWNER, limit=10_000)
    finally:
        reporter.close()
        ws.close()
    print(study_table(results))
    if args.json:
        write_json(Path(args.json), results.model_dump(mode="json"))
        print(f"results written to {args.json}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from xstilts.comparisons import ANY_OWNER
    from xstilts.reports import report_for, write_report
    from xstilts.runtime.workspace import Workspace

    if len(args.what) > 2:
        raise XstiltsError(
            f"report takes one experiment or study, or two experiments; got {len(args.what)}",
            field="what",
        )
    ws = Workspace(Settings())
    try:
        what = "..".join(_experiment_id(x, ws) for x in args.what)
        report = report_for(ws.sessions, ws.store, what, ANY_OWNER)
    finally:
        ws.close()
    for path in write_report(report, Path(args.out)):
        print(path)
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run an experiment spec (YAML or JSON) to the end in this process, as the service "
        "would: finished stages are reused, a stage that fails on a cause that may pass is "
        "retried, Ctrl-C cancels and the same command resumes",
    )
    p.add_argument("spec", help="path to the spec file")
    p.add_argument(
        "--json",
        metavar="OUT",
        type=output_file,
        help="also write metrics, summary and stages as JSON to OUT",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "validate",
        help="check a spec and show the stages it plans, without running; a study spec "
        "(intermediate_sets) shows its cells",
    )
    p.add_argument("spec", help="experiment or study spec file (YAML or JSON)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "export", help="write an experiment's predictions in XTREME's submission layout"
    )
    p.add_argument(
        "experiment",
        help="experiment id (printed by run/submit; its first 6+ characters do) or its results "
        "file",
    )
    p.add_argument(
        "out",
        type=output_folder,
        help="folder to write <task>/<dev|test>-<lang>.tsv (QA: .json) files into",
    )
    p.add_argument("--seed", type=int, help="which seed's predictions (default: the first)")
    p.add_argument(
        "--labels",
        metavar="DIR",
        type=output_folder,
        help="also write the gold labels in the same layout here, another folder than OUT (for "
        "xstilts score --labels)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "study",
        help="run a study (intermediate task sets x targets x seeds) in this process and print "
        "the matrix of changes over the baseline with intervals and p-values",
        description="Every cell is validated before anything runs; cells share stages, so each "
        "intermediate model trains once per seed. Running the same study again reuses every "
        "finished stage.",
    )
    p.add_argument("spec", help="study spec file (YAML or JSON): see examples/study-*.yaml")
    p.add_argument(
        "--json",
        metavar="OUT",
        type=output_file,
        help="also write the result matrix as JSON to OUT",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser(
        "report",
        help="figures (PNG and SVG) and one self-contained HTML page about an experiment, a "
        "study, or a comparison A..B",
    )
    p.add_argument(
        "what",
        nargs="+",
        help="an experiment (id, its first 6+ characters, or the results file run/submit --json "
        "wrote), a study id, or two "
        "experiments BASELINE CANDIDATE (also written BASELINE..CANDIDATE) for their comparison",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        type=output_folder,
        help="folder to write the files into",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare",
        help="is the candidate better than the baseline? Per-language changes and changes of the "
        "mean and spread across languages, each with a paired bootstrap interval and a test",
        description="Compare experiment B (candidate) with A (baseline), both succeeded in this "
        "workspace, from their stored per-example predictions: per-language changes with paired "
        "intervals, exact McNemar (accuracy, one seed a side) or paired permutation/bootstrap "
        "p-values, Holm-adjusted across languages; changes of the non-English mean, transfer gap, "
        "standard deviation, variance, range and worst language. Parallel evaluation sets (XNLI, "
        "PAWS-X, XQuAD, MLQA) are resampled item by item across languages. Several seeds: "
        "hierarchical bootstrap (seeds, then items) and Welch's t on the per-seed values. "
        "The result is cached; --recompute computes it again. Exit 2 when the two were not "
        "evaluated alike. With more than two results files: a side-by-side table.",
    )
    p.add_argument(
        "experiments",
        nargs="+",
        metavar="EXPERIMENT",
        help="baseline then candidate: experiment ids (their first 6+ characters do), or results "
        "files written by 'run --json'",
    )
    p.add_argument(
        "--json",
        metavar="OUT",
        type=output_file,
        help="also write the comparison as JSON to OUT (two experiments of this workspace)",
    )
    p.add_argument("--recompute", action="store_true", help="ignore a cached result")
    p.add_argument("--samples", type=int, default=2000, help="resamples (default 2000)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument(
        "--seed",
        type=bounded(0, 2**31 - 1, "--seed", integer=True),
        default=0,
        help="random seed of the resampling (default 0)",
    )
    p.set_defaults(func=cmd_compare)
