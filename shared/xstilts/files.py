"""Atomic file writes: a reader sees the previous file or the whole new one, never half of one.

The temporary file sits beside the target (a rename is atomic only within one file system) under a
name no other writer uses, and is removed when the write fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _process_umask() -> int:
    mask = os.umask(0o077)  # read it (the only way that works everywhere), then put it back
    os.umask(mask)
    return mask


# Read once, at import: setting the umask to read it is not atomic against other threads.
_UMASK = _process_umask()


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` only if the block completes.

    For writers that want a path rather than text (``torch.save``, say)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp makes the file 0600; the file it becomes gets the mode a plain write would give it
    # (a results file in a shared lab folder is readable as the user's umask allows).
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating its folder; return ``path``."""
    with replacing(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return path
