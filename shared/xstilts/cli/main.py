"""The ``xstilts`` command line: the parser, and the modules that hold each command group.

Exit codes: 0 success, 1 a stage failed, 2 bad input (spec, task, language, path), 130 interrupted
(Ctrl-C), 141 the reader of the output went away (a closed pipe).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from xstilts.cli import catalog, experiments, maintenance, service, submissions
from xstilts.cli.common import EXIT_FAILED, EXIT_USAGE
from xstilts.errors import LeftRunningError, StageFailedError, XstiltsError
from xstilts.terminal import terminal_safe

STAGE_LOGGER = "xstilts.runtime.lifecycle"  # logs a failed stage, whose traceback it stores
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell tool killed by a closed pipe exits with
EXIT_INTERRUPTED = 130  # 128 + SIGINT


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


class _NoTraceback(logging.Formatter):
    """Log lines without the tracebacks of failed stages, which are stored with the stage (the
    results and `GET /experiments/{id}` show them; ``-v`` prints them too). Other tracebacks,
    stored nowhere else, are kept."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.name == STAGE_LOGGER:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(record)


def _reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (poll says POLLERR)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor (captured), or no poll here
        return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if args.verbose else _NoTraceback(fmt))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, handlers=[handler]
    )
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return code
    except BrokenPipeError:
        if not _reader_gone():
            raise  # another pipe or socket broke: an error, not the end of our output
        # The reader went away (`xstilts tasks | head -1`): stop quietly, as a shell tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except XstiltsError as e:
        # A message may quote what a user wrote (a results file, a name): escaped, never raw.
        print(f"error: {terminal_safe(str(e), keep_newlines=True)}", file=sys.stderr)
        return EXIT_FAILED if isinstance(e, StageFailedError) else EXIT_USAGE
    except KeyboardInterrupt as e:
        if not isinstance(e, LeftRunningError):
            print("interrupted; run the same command again to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        # A stage's thread is still inside torch: Python shut down around it aborts (exit 134,
        # "terminate called without an active exception"). End here, whatever the streams do
        # (a `| tee` that Ctrl-C closed too).
        try:
            with contextlib.suppress(OSError, ValueError):
                print("interrupted; run the same command again to resume", file=sys.stderr)
                sys.stdout.flush()
                sys.stderr.flush()
        finally:
            os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
