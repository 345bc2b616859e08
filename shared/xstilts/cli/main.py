"""The ``xstilts`` command line: the parser, and the modules that hold each command group.

Exit codes: 0 success, 1 a stage failed, 2 bad input (spec, task, language, path).
"""

from __future__ import annotations

import argparse
import logging
import sys

from xstilts.cli import catalog, experiments, maintenance, service, submissions
from xstilts.cli.common import EXIT_FAILED, EXIT_USAGE
from xstilts.errors import StageFailedError, XstiltsError
from xstilts.terminal import terminal_safe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xstilts",
        description="English intermediate-task training and zero-shot cross-lingual transfer (XTREME).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (experiments, catalog, service, submissions, maintenance):
        group.add_parsers(sub)
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
        # A message may quote what a user wrote (a results file, a name): escaped, never raw.
        print(f"error: {terminal_safe(str(e), keep_newlines=True)}", file=sys.stderr)
        return EXIT_FAILED if isinstance(e, StageFailedError) else EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
