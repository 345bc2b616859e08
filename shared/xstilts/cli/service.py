"""The service from the command line: ``serve`` (embedded API), and the client commands that
talk to a running API: ``submit`` (an experiment or a study), ``status``, ``results``, ``cancel``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xstilts.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    bounded,
    output_file,
    quiet_transformers,
    write_json,
)
from xstilts.config import LOCAL_OWNER, Settings
from xstilts.errors import XstiltsError
from xstilts.terminal import terminal_safe

if TYPE_CHECKING:
    from xstilts.api.client import Client
    from xstilts.experiments.status import ExperimentState
    from xstilts.studies.model import StudyState


def _api_key_file(settings: Settings) -> Path:
    return settings.home / "api-key"


def cmd_serve(args: argparse.Namespace) -> int:
    import faulthandler
    import hashlib
    import secrets

    from xstilts.api.app import create_app
    from xstilts.api.server import serve

    # A crash in native code (torch, a tokenizer) prints every thread's traceback, not nothing.
    if not faulthandler.is_enabled():
        faulthandler.enable()
    quiet_transformers()
    settings = Settings()
    if not settings.api_keys:
        # Embedded mode without configured keys: one local key, kept in XSTILTS_HOME for clients.
        key_file = _api_key_file(settings)
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            # Created owner-only: no moment at which another user could read it.
            fd = os.open(key_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        digest = hashlib.sha256(key_file.read_text().strip().encode()).hexdigest()
        settings = settings.model_copy(update={"api_keys": {LOCAL_OWNER: digest}})
        print(f"API key for this installation: {key_file}", file=sys.stderr)
    print(
        f"xstilts serving on http://{args.host}:{args.port} (docs at /docs); "
        f"database {settings.database_url}",
        file=sys.stderr,
        flush=True,
    )
    try:
        serve(create_app(settings), settings, host=args.host, port=args.port, log_level="warning")
    except SystemExit:
        # uvicorn exits 3 when it cannot start (the port is taken): its message and ours are
        # printed; the command fails as any other, with 1.
        return EXIT_FAILED
    return EXIT_OK


def _client(args: argparse.Namespace) -> Client:
    """A client of the API at ``--url``, with the key from ``--api-key``, ``XSTILTS_API_KEY`` or
    the file ``xstilts serve`` wrote."""
    from xstilts.api.client import Client
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
    return Client(args.url, key)


def _stage_lines(exp: ExperimentState) -> list[str]:
    """A line per stage: seed, role, kind, status, progress, attempts, and its error's first
    line. What the server says reaches the terminal escaped (it may not be ours)."""
    lines = []
    for st in exp.stages:
        p = st.progress
        done = f"{p.step}/{p.total}" if p.total else ""
        rate = f"{p.examples_per_s:.1f} ex/s" if p.examples_per_s and st.status == "running" else ""
        eta = f"ETA {p.eta_s:.0f} s" if p.eta_s and st.status == "running" else ""
        attempts = f"attempt {st.attempts}" if st.attempts > 1 else ""
        reused = "reused" if st.reused else ""
        line = "  ".join(
            x
            for x in (
                f"  seed {st.seed:<4} {st.role:<16} {st.kind:<18} {st.status:<9}",
                done,
                rate,
                eta,
                attempts,
                reused,
            )
            if x
        )
        lines.append(terminal_safe(line))
        if st.error:
            lines.append(f"    {terminal_safe(st.error)}")
    return lines


def _experiment_or_study(client: Client, ref: str) -> ExperimentState | StudyState:
    """What ``ref`` names on the server: an experiment, else a study (ids never collide)."""
    import re

    from xstilts.errors import NotFoundError

    if not re.fullmatch(r"[0-9a-f]{32}", ref):
        raise XstiltsError(
            f"{ref!r} is not an experiment or study id: 32 characters 0-9 a-f, as submit "
            "printed it",
            field="id",
        )
    try:
        return client.experiment(ref)
    except NotFoundError:
        pass
    try:
        return client.study(ref)
    except NotFoundError:
        raise XstiltsError(
            f"no experiment or study {ref!r} on {client.base_url} for this api key (ids are the "
            "32 characters submit printed)",
            field="id",
        ) from None


def _study_line(study: StudyState) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(study.counts.items()) if n)
    return terminal_safe(
        f"study {study.id} ({study.name}): {study.status}; {study.total_cells} cells: {counts}"
    )


def cmd_submit(args: argparse.Namespace) -> int:
    from xstilts.api.client import progress_line, running_stage
    from xstilts.cli.tables import results_table
    from xstilts.spec import load_spec, read_spec_data
    from xstilts.studies import parse_study

    if args.json and not args.wait:
        raise XstiltsError("--json: the metrics exist once the experiment ends; add --wait")
    # Validated here first: errors name the field at once.
    data = read_spec_data(Path(args.spec))
    if "intermediate_sets" in data:  # a study: its cells, each an experiment
        study = parse_study(data)
        client = _client(args)
        state = client.submit_study(
            study.model_dump(mode="json"), idempotency_key=args.idempotency_key
        )
        print(_study_line(state), file=sys.stderr)
        if not args.wait:
            print(terminal_safe(state.id))
            return EXIT_OK
        return _wait_study(client, state, args)
    spec = load_spec(Path(args.spec))
    client = _client(args)
    exp = client.submit(spec.model_dump(mode="json"), idempotency_key=args.idempotency_key)
    exp_id = terminal_safe(exp.id)
    print(f"experiment {exp_id} ({spec.name}): {terminal_safe(exp.status)}", file=sys.stderr)
    if not args.wait:
        print(exp_id)
        return EXIT_OK
    tty = sys.stderr.isatty()
    last_stage, last_step, last_at = [""], [""], [0.0]

    def show(e: ExperimentState) -> None:
        line, st = progress_line(e), running_stage(e)
        if not line or st is None or args.quiet:
            return
        # On a terminal one line updates in place; in a log, a line when a stage starts and then
        # at most every 10 s while its step count moves (an unchanged line is not repeated).
        stage, step = f"{st.seed}/{st.role}", str(st.progress.step)
        now = time.monotonic()
        if tty:
            print(f"\r  {line:<78}", end="", file=sys.stderr, flush=True)
        elif stage != last_stage[0] or (step != last_step[0] and now - last_at[0] >= 10):
            print(f"  {line}", file=sys.stderr, flush=True)
            last_stage[0], last_step[0], last_at[0] = stage, step, now

    result = client.wait(exp.id, on_update=show, poll_s=args.poll)
    if tty and not args.quiet:
        print(file=sys.stderr)
    print(results_table(result))
    for warning in result.warnings:
        print(f"warning: {terminal_safe(warning)}")
    if args.json:
        write_json(Path(args.json), result.model_dump(mode="json"))
        print(f"results written to {args.json}")
    return EXIT_OK


def _wait_study(client: Client, state: StudyState, args: argparse.Namespace) -> int:
    """Poll a study until every cell has ended, a line whenever its counts change; then its
    matrix. Exit 1 when a cell failed or was cancelled (the matrix shows which)."""
    from xstilts.api.client import FINAL
    from xstilts.cli.tables import study_table

    last = ""
    while state.status not in FINAL:
        line = _study_line(state)
        if line != last and not args.quiet:
            print(f"  {line}", file=sys.stderr, flush=True)
            last = line
        time.sleep(args.poll)
        state = client.study(state.id)
    print(_study_line(state), file=sys.stderr)
    results = client.study_results(state.id)
    print(study_table(results))
    if args.json:
        write_json(Path(args.json), results.model_dump(mode="json"))
        print(f"results written to {args.json}")
    return EXIT_OK if state.status == "succeeded" else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    from xstilts.studies.model import StudyState

    what = _experiment_or_study(_client(args), args.id)
    if args.json:
        write_json(Path(args.json), what.model_dump(mode="json"))
    if isinstance(what, StudyState):
        print(_study_line(what))
        for cell in what.cells:
            print(
                terminal_safe(
                    f"  {cell.row:<24} {cell.target:<10} {cell.status:<9} {cell.experiment_id}"
                )
            )
        if what.total_cells > len(what.cells):
            print(f"  ... {what.total_cells - len(what.cells)} more cells")
        return EXIT_OK
    print(terminal_safe(f"experiment {what.id} ({what.name}): {what.status}"))
    print("\n".join(_stage_lines(what)))
    if what.error:
        print(f"error: {terminal_safe(what.error)}")
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    from xstilts.cli.tables import results_table, study_table
    from xstilts.studies.model import StudyState

    client = _client(args)
    what = _experiment_or_study(client, args.id)
    if isinstance(what, StudyState):
        study = client.study_results(what.id)
        print(study_table(study))
        if args.json:
            write_json(Path(args.json), study.model_dump(mode="json"))
        return EXIT_OK
    if what.status != "succeeded":
        raise XstiltsError(
            f"experiment {what.id} is {what.status}: metrics come once it has succeeded "
            f"('xstilts status {what.id}' shows its stages)",
            field="id",
        )
    result = client.metrics(what.id)
    print(results_table(result))
    for warning in result.warnings:
        print(f"warning: {terminal_safe(warning)}")
    if args.json:
        write_json(Path(args.json), result.model_dump(mode="json"))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from xstilts.studies.model import StudyState

    client = _client(args)
    what = _experiment_or_study(client, args.id)
    if isinstance(what, StudyState):
        print(_study_line(client.cancel_study(what.id)))
        return EXIT_OK
    exp = client.cancel(what.id)
    print(terminal_safe(f"experiment {exp.id} ({exp.name}): {exp.status}"))
    return EXIT_OK


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8000", help="API base URL")
    p.add_argument("--api-key", help="default: $XSTILTS_API_KEY, else $XSTILTS_HOME/api-key")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the API in one process (embedded mode: SQLite, stages in a background thread)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=bounded(1, 65535, "--port", integer=True),
        default=8000,
        help="port to listen on (default 8000)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "submit",
        help="POST an experiment or study spec to a running API; --wait follows it to the end",
    )
    p.add_argument(
        "spec",
        help="path to the spec file (YAML or JSON); one with intermediate_sets is a study",
    )
    _client_options(p)
    p.add_argument(
        "--idempotency-key",
        help="makes a retried submit return the same experiment (and lets submit itself retry "
        "the POST after a dropped connection; GETs are always retried)",
    )
    p.add_argument("--wait", action="store_true", help="poll with progress until it ends")
    p.add_argument(
        "--poll",
        type=bounded(0.1, 3600, "--poll"),
        default=2.0,
        help="seconds between polls, 0.1 to 3600 (default 2)",
    )
    p.add_argument(
        "--json",
        metavar="OUT",
        type=output_file,
        help="with --wait (required): write the metrics JSON (a study's matrix) to OUT",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_submit)

    # The commands about one submitted experiment or study, by its id.
    by_id: tuple[tuple[str, str, Callable[[argparse.Namespace], int], str | None], ...] = (
        ("status", "an experiment's stages (or a study's cells) on a running API", cmd_status,
         "also write the state as JSON"),
        ("results", "a succeeded experiment's per-language metrics (or a study's matrix) from a "
         "running API", cmd_results, "also write the results as JSON"),
        ("cancel", "cancel an experiment or study on a running API (stages another live "
         "experiment needs go on)", cmd_cancel, None),
    )  # fmt: skip
    for name, help_text, func, json_help in by_id:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("id", help="the experiment or study id submit printed")
        _client_options(p)
        if json_help:
            p.add_argument("--json", metavar="OUT", type=output_file, help=json_help)
        p.set_defaults(func=func)
