"""What every command shares: exit codes, atomic JSON output, argument types that refuse a bad
value at once (exit 2, naming it), quiet library logging."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.files import write_atomic

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def write_json(path: Path, data: Any) -> None:
    try:
        write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    except OSError as e:
        raise XstiltsError(f"cannot write {path}: {e.strerror or e}", field="json") from None


def output_file(text: str) -> Path:
    """A file the command writes (``--json OUT``): refused before any work when it cannot be one
    (an existing folder, a path under a file, a folder we may not write), not after hours of it."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of a file to write")
    _writable_under(text, path.absolute().parent)
    return path


def output_folder(text: str) -> Path:
    """A folder the command writes files into (``--out DIR``), checked like :func:`output_file`."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder to write into")
    _writable_under(text, path.absolute())
    return path


def _writable_under(text: str, folder: Path) -> None:
    """``folder``, or the nearest folder above it that exists, is one we may write in (the rest
    is created)."""
    for above in [folder, *folder.parents]:
        if not os.path.lexists(above):
            continue
        if not above.is_dir():
            raise argparse.ArgumentTypeError(f"cannot write {text}: {above} is not a folder")
        if not os.access(above, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"cannot write {text}: {above} is not writable")
        return


def bounded(low: float, high: float, what: str, integer: bool = False) -> Any:
    """An argparse type: a finite number from ``low`` to ``high`` (an integer if ``integer``)."""

    def parse(text: str) -> float | int:
        try:
            value: float | int = int(text) if integer else float(text)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise argparse.ArgumentTypeError(f"{what}: expected {kind}; got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{what} must be from {low:g} to {high:g}; got {text}")
        return value

    return parse


def quiet_transformers() -> None:
    """Our own progress bars say what is happening; the library's load reports are noise here."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
