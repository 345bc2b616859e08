"""The ``xstilts`` command line.

Exit codes: 0 success, 1 a stage failed, 2 bad input (spec, task, language, path).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

from xstilts.config import Settings
from xstilts.errors import XstiltsError

log = logging.getLogger("xstilts")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # never leave a half-written results file


class _BarReporter:
    """A line per stage as it starts (or is found already done) and a progress bar while a
    training stage runs (step/total, examples/s, ETA), on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._stage: int | None = None
        self._shown: set[tuple[int, int]] = set()

    def watch(self, ws: Any, exp_id: str) -> None:
        """Called while the experiment runs: announce stages that started or were reused."""
        if not self.enabled:
            return
        from sqlalchemy import select

        from xstilts.db.models import ExperimentStage, Stage

        with ws.sessions() as s:
            rows = s.execute(
                select(ExperimentStage.role, ExperimentStage.seed, ExperimentStage.reused, Stage)
                .join(Stage, Stage.id == ExperimentStage.stage_id)
                .where(ExperimentStage.experiment_id == exp_id)
                .order_by(ExperimentStage.position)
            ).all()
        for role, seed, reused, stage in rows:
            if (stage.id, seed) in self._shown or stage.status in ("pending", "queued"):
                continue
            if stage.status != "running" and not reused:
                continue
            self._shown.add((stage.id, seed))
            self.close()
            state = "reused (already computed)" if reused else "running"
            print(f"[seed {seed}] {role:<14} {stage.kind:<18} {state}", file=sys.stderr, flush=True)

    def progress(self, stage: Any, step: int, total: int, examples_per_s: float) -> None:
        if not self.enabled or stage.kind not in ("intermediate_train", "target_train"):
            return
        from tqdm import tqdm

        if self._stage != stage.id:
            self.close()
            self._bar = tqdm(total=total, desc="  train", unit="step", file=sys.stderr, leave=False)
            self._stage = stage.id
        self._bar.n = step
        self._bar.set_postfix_str(f"{examples_per_s:.1f} ex/s", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._stage = None, None


def _quiet_transformers() -> None:
    """Our own progress bars say what is happening; the library's load reports are noise here."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def cmd_run(args: argparse.Namespace) -> int:
    from xstilts.runtime.workspace import Workspace

    _quiet_transformers()
    from xstilts.cli.tables import results_table
    from xstilts.spec import load_spec

    spec = load_spec(Path(args.spec))
    reporter = _BarReporter(enabled=not args.quiet)
    ws = Workspace(Settings())
    try:
        exp_id = ws.submit(spec)
        ws.follow(exp_id, reporter, on_poll=lambda _: reporter.watch(ws, exp_id))
        result = ws.results(exp_id)
    finally:
        reporter.close()
        ws.close()
    print(f"experiment {result.experiment.id} ({spec.name})")
    print(results_table(result))
    trained = sum(st.steps_run for st in result.stages if not st.reused)
    reused = sum(1 for st in result.stages if st.reused)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
    print(
        f"\nstages: {len(result.stages)} ({reused} reused); "
        f"optimiser steps this run: {trained}; peak memory {peak_gb:.1f} GB"
    )
    if args.json:
        _write_json(Path(args.json), result.model_dump(mode="json"))
        print(f"results written to {args.json}")
    return EXIT_OK


def cmd_tasks(args: argparse.Namespace) -> int:
    from xstilts.tasks import all_tasks

    tasks = all_tasks()
    if args.json:
        rows = [t.describe() for t in tasks]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(f"{'task':<15}{'format':<22}{'metric':<12}{'role':<14}{'trained on':<16}languages")
    for t in tasks:
        if t.is_target:
            role, trained = "target", t.train_task or ("-" if not t.trains else t.name)
        else:
            role, trained = "intermediate", "+".join(t.combines) or t.name
        langs = f"({len(t.languages)}) {' '.join(t.languages)}"
        print(f"{t.name:<15}{t.format.value:<22}{t.metric:<12}{role:<14}{trained:<16}{langs}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from xstilts.experiments.submit import plan
    from xstilts.spec import load_spec

    spec = load_spec(Path(args.spec))
    stages = plan(spec, Settings())
    print(f"{args.spec}: valid; {len(stages)} stages")
    for st in stages:
        print(f"  seed {st.seed}  {st.role:<14} {st.kind.value:<18} {st.key[:12]}")
    return EXIT_OK


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from xstilts.modeling.offline import prepare_offline_model

    settings = Settings()
    folder = prepare_offline_model(settings.cache_dir, force=args.force)
    print(folder)
    return EXIT_OK


def _api_key_file(settings: Settings) -> Path:
    return settings.home / "api-key"


def cmd_serve(args: argparse.Namespace) -> int:
    import hashlib
    import secrets

    import uvicorn

    from xstilts.api.app import create_app

    _quiet_transformers()
    settings = Settings()
    if not settings.api_keys:
        # Embedded mode without configured keys: one local key, kept in XSTILTS_HOME for clients.
        key_file = _api_key_file(settings)
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(24))
            key_file.chmod(0o600)
        digest = hashlib.sha256(key_file.read_text().strip().encode()).hexdigest()
        settings = settings.model_copy(update={"api_keys": {"local": digest}})
        print(f"API key for this installation: {key_file}", file=sys.stderr)
    print(
        f"xstilts serving on http://{args.host}:{args.port} (docs at /docs); "
        f"database {settings.database_url}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from xstilts.api.client import Client, progress_line
    from xstilts.cli.tables import results_table
    from xstilts.experiments.status import ExperimentState
    from xstilts.spec import load_spec

    spec = load_spec(Path(args.spec))  # validate locally first: errors name the field at once
    from xstilts.config import ClientSettings

    configured = ClientSettings().api_key
    key = args.api_key or (configured.get_secret_value() if configured else None)
    if not key:
        key_file = _api_key_file(Settings())
        if not key_file.exists():
            raise XstiltsError(
                "api key: pass --api-key, set XSTILTS_API_KEY, or run 'xstilts serve' once "
                f"(it writes {key_file})"
            )
        key = key_file.read_text().strip()
    client = Client(args.url, key)
    exp = client.submit(spec.model_dump(mode="json"), idempotency_key=args.idempotency_key)
    print(f"experiment {exp.id} ({spec.name}): {exp.status}", file=sys.stderr, flush=True)
    if not args.wait:
        print(exp.id)
        return EXIT_OK
    tty = sys.stderr.isatty()
    last_role, last_at = [""], [0.0]

    def show(e: ExperimentState) -> None:
        line = progress_line(e)
        if not line or args.quiet:
            return
        # On a terminal one line updates in place; in a log, a line per stage and every 10 s.
        role = line.split("]", 1)[1].split()[0]
        now = time.monotonic()
        if tty:
            print(f"\r  {line:<78}", end="", file=sys.stderr, flush=True)
        elif role != last_role[0] or now - last_at[0] >= 10:
            print(f"  {line}", file=sys.stderr, flush=True)
            last_at[0] = now
        last_role[0] = role

    result = client.wait(exp.id, on_update=show, poll_s=args.poll)
    if tty and not args.quiet:
        print(file=sys.stderr)
    print(results_table(result))
    if args.json:
        _write_json(Path(args.json), result.model_dump(mode="json"))
        print(f"results written to {args.json}")
    return EXIT_OK


def cmd_score(args: argparse.Namespace) -> int:
    from xstilts.experiments.score import score_folder

    try:
        result = score_folder(Path(args.predictions), Path(args.labels), args.split)
    except ValueError as e:
        raise XstiltsError(str(e)) from None
    for task, body in result.items():
        metrics = list(body["average"])
        print(
            f"{task}  "
            + "  ".join(f"{m}" for m in metrics)
            + f"   (task score {body['score']:.2f})"
        )
        for lang, values in body["languages"].items():
            print(f"  {lang:<6}" + "".join(f"{values[m]:>10.2f}" for m in metrics))
        print(f"  {'avg':<6}" + "".join(f"{body['average'][m]:>10.2f}" for m in metrics))
    if args.json:
        _write_json(Path(args.json), result)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from xstilts.experiments.export import export_predictions
    from xstilts.runtime.workspace import Workspace

    ws = Workspace(Settings())
    labels = Path(args.labels) if args.labels else None
    for path in export_predictions(ws.sessions, args.experiment, Path(args.out), args.seed, labels):
        print(path)
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from xstilts.db.migrate import current, upgrade

    url = Settings().database_url
    upgrade(url, args.revision)
    print(f"database at revision {current(url)}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from xstilts.cli.tables import comparison_table
    from xstilts.experiments.results import ExperimentResults

    results = []
    for p in args.results:
        try:
            results.append(ExperimentResults.model_validate_json(Path(p).read_bytes()))
        except (OSError, ValidationError) as e:
            raise XstiltsError(f"results: cannot read {p}: {e}") from None
    print(comparison_table(results))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xstilts",
        description="English intermediate-task training and zero-shot cross-lingual transfer (XTREME).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run", help="run an experiment spec (YAML or JSON) to the end; finished stages are reused"
    )
    p.add_argument("spec", help="path to the spec file")
    p.add_argument(
        "--json", metavar="OUT", help="also write metrics, summary and stages as JSON to OUT"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "validate", help="check a spec and show the stages it plans, without running"
    )
    p.add_argument("spec")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("tasks", help="list tasks with their format, metric and languages")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("models", help="manage models")
    msub = p.add_subparsers(dest="models_command", required=True)
    mp = msub.add_parser(
        "prepare",
        help="materialise the built-in offline model (multilingual-e5-small) into the cache",
    )
    mp.add_argument("--force", action="store_true", help="rebuild even if present")
    mp.set_defaults(func=cmd_models_prepare)

    p = sub.add_parser(
        "serve",
        help="run the API in one process (embedded mode: SQLite, stages in a background thread)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("submit", help="POST a spec to a running API; --wait follows it to the end")
    p.add_argument("spec", help="path to the spec file (YAML or JSON)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="API base URL")
    p.add_argument("--api-key", help="default: $XSTILTS_API_KEY, else $XSTILTS_HOME/api-key")
    p.add_argument("--idempotency-key", help="makes a retried submit return the same experiment")
    p.add_argument("--wait", action="store_true", help="poll with progress until it ends")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between polls (default 2)")
    p.add_argument("--json", metavar="OUT", help="with --wait: write the metrics JSON to OUT")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "export", help="write an experiment's predictions in XTREME's submission layout"
    )
    p.add_argument("experiment", help="experiment id (printed by run/submit)")
    p.add_argument(
        "out", help="folder to write <task>/<dev|test>-<lang>.tsv (QA: .json) files into"
    )
    p.add_argument("--seed", type=int, help="which seed's predictions (default: the first)")
    p.add_argument(
        "--labels",
        metavar="DIR",
        help="also write the gold labels in the same layout here (for xstilts score --labels)",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "score", help="score predictions in XTREME's submission layout against labels"
    )
    p.add_argument("--predictions", required=True, help="folder of <task>/<split>-<lang> files")
    p.add_argument("--labels", required=True, help="folder of gold files in the same layout")
    p.add_argument("--split", default="test", help="file prefix to score (default: test)")
    p.add_argument("--json", metavar="OUT", help="also write the scores as JSON")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("db", help="database schema (XSTILTS_DATABASE_URL)")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dp = dsub.add_parser("upgrade", help="apply the Alembic migrations (creates the tables if new)")
    dp.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    dp.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser(
        "compare", help="side-by-side table of results files written by 'run --json'"
    )
    p.add_argument("results", nargs="+", help="results JSON files")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except XstiltsError as e:
        from xstilts.errors import StageFailedError

        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED if isinstance(e, StageFailedError) else EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
