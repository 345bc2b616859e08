"""The API service: ``python -m services.api --host 0.0.0.0 --port 8000``.

The same server as ``xstilts serve`` (:func:`xstilts.api.server.serve`: header timeout, connection
limits, ``?api_key=`` redacted in the access log, start and stop logged at WARNING), at INFO with
an access log.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging

from xstilts.api.server import serve
from xstilts.config import SettingsError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.api",
        description="The xstilts API service; settings come from XSTILTS_* variables (README).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    args = parser.parse_args(argv)
    # A crash in native code prints every thread's traceback to stderr instead of nothing.
    if not faulthandler.is_enabled():
        faulthandler.enable()
    # Our own lines as `xstilts serve` writes them; uvicorn's (and its access log) its own way.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Imported after the parser: --help needs no settings; a bad setting stops start-up here.
    try:
        from services.api.main import app, settings
    except SettingsError as e:
        parser.exit(2, f"error: {e}\n")

    serve(app, settings, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
