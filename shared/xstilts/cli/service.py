"""The service from the command line: ``serve`` (embedded API) and ``submit`` (a client)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

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


def cmd_submit(args: argparse.Namespace) -> int:
    from xstilts.api.client import Client, progress_line, running_stage
    from xstilts.cli.tables import results_table
    from xstilts.experiments.status import ExperimentState
    from xstilts.spec import load_spec

    if args.json and not args.wait:
        raise XstiltsError("--json: the metrics exist once the experiment ends; add --wait")
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
    # What the server says reaches the terminal escaped (it may not be ours).
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
        print(f"warning: {warning}")
    if args.json:
        write_json(Path(args.json), result.model_dump(mode="json"))
        print(f"results written to {args.json}")
    return EXIT_OK


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

    p = sub.add_parser("submit", help="POST a spec to a running API; --wait follows it to the end")
    p.add_argument("spec", help="path to the spec file (YAML or JSON)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="API base URL")
    p.add_argument("--api-key", help="default: $XSTILTS_API_KEY, else $XSTILTS_HOME/api-key")
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
        help="with --wait (required): write the metrics JSON to OUT",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_submit)
