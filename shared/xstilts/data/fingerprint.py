"""Content hashes of data and model files: what stage keys use to say "the same bytes".

Paths are never part of a key (the same files elsewhere give the same key); contents are. Hashing is
cached per (path, size, mtime) within a process, because every plan and every API request resolves
the same files again. Large files (model weights) are also remembered on disk in a memo folder
(``<cache_dir>/digests``), so a fresh process (an API worker after a restart) does not read half a
gigabyte before answering its first request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from xstilts.files import write_atomic

log = logging.getLogger(__name__)

_BLOCK = 1 << 22


def hash_file_into(digest: Any, path: Path) -> None:
    """Stream ``path``'s bytes into ``digest`` (a ``hashlib`` object), for hashes over several
    files such as a model folder's."""
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)


def memo_folder(cache_dir: Path) -> Path:
    """Where digests of large files are remembered across processes."""
    return Path(cache_dir).expanduser() / "digests"


def remembered(memo_dir: Path | None, stamp: object, compute: Callable[[], str]) -> str:
    """``compute()``, remembered in ``memo_dir`` under ``stamp`` (JSON-able: what the result
    depends on, such as paths, sizes and modification times). A missing or unwritable memo
    folder only means computing again."""
    if memo_dir is None:
        return compute()
    name = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:40]
    memo = memo_dir / f"{name}.txt"
    try:
        value = memo.read_text().strip()
    except OSError:
        value = ""
    if value:
        return value
    value = compute()
    try:
        write_atomic(memo, value)  # a reader sees the whole digest or none
    except OSError as e:
        log.debug("digest memo %s not written: %s", memo, e)
    return value


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """Hex sha256 of a file's content (cached while its size and modification time stay; across
    processes too when ``memo_dir`` is given)."""
    st = path.stat()
    stamp = ["file", str(path.resolve()), st.st_size, st.st_mtime_ns]
    return remembered(memo_dir, stamp, lambda: _file_sha256(path, st.st_size, st.st_mtime_ns))


@lru_cache(maxsize=256)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    hash_file_into(digest, path)
    return digest.hexdigest()


def folder_fingerprint(folder: Path, memo_dir: Path | None = None) -> str:
    """Content hash of a model folder's files (cached per file sizes and modification times,
    across processes too when ``memo_dir`` is given)."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = ["folder", str(folder.resolve()), [list(s) for s in stamp]]
    return remembered(memo_dir, key, lambda: _folder_fingerprint(folder, stamp))


@lru_cache(maxsize=64)
def _folder_fingerprint(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, size, _ in stamp:
        h.update(f"{name}:{size}\n".encode())
        hash_file_into(h, folder / name)
    return "sha256:" + h.hexdigest()
