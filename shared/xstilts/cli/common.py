"""What every command shares: exit codes, atomic JSON output, quiet library logging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xstilts.files import write_atomic

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def quiet_transformers() -> None:
    """Our own progress bars say what is happening; the library's load reports are noise here."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
