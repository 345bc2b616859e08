"""Content hashes of data and model files: what stage keys use to say "the same bytes".

Paths are never part of a key (the same files elsewhere give the same key); contents are. Hashing is
cached per (path, size, mtime) within a process, because every plan and every API request resolves
the same files again.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

_BLOCK = 1 << 22


def hash_file_into(digest: Any, path: Path) -> None:
    """Stream ``path``'s bytes into ``digest`` (a ``hashlib`` object), for hashes over several
    files such as a model folder's."""
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's content (cached while its size and modification time stay)."""
    st = path.stat()
    return _file_sha256(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    hash_file_into(digest, path)
    return digest.hexdigest()
