"""Resolve a spec's model source to something ``from_pretrained`` can load, with a fingerprint.

``trust_remote_code`` is never enabled: a request cannot make a worker run code from the hub.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from xstilts.data.fingerprint import hash_file_into
from xstilts.errors import XstiltsError
from xstilts.spec import HF_PREFIX, LOCAL_PREFIX, OFFLINE_PREFIX, ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    name_or_path: str  # what from_pretrained receives
    revision: str | None
    fingerprint: str  # changes whenever the weights or tokenizer could change


@lru_cache(maxsize=64)
def _folder_fingerprint(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, size, _ in stamp:
        h.update(f"{name}:{size}\n".encode())
        hash_file_into(h, folder / name)
    return "sha256:" + h.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """Content hash of a model folder (cached per file sizes and mtimes within a process)."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _folder_fingerprint(folder, stamp)


def resolve_model(
    config: ModelConfig, model_roots: tuple[Path, ...], cache_dir: Path
) -> ResolvedModel:
    source = config.source
    if source.startswith(OFFLINE_PREFIX):
        from xstilts.modeling.offline import prepare_offline_model

        folder = prepare_offline_model(cache_dir)
        return ResolvedModel(str(folder), None, folder_fingerprint(folder))
    if source.startswith(HF_PREFIX):
        hub_id = source[len(HF_PREFIX) :]
        return ResolvedModel(hub_id, config.revision, f"hf:{hub_id}@{config.revision}")
    folder = Path(source[len(LOCAL_PREFIX) :]).expanduser().resolve()
    if not any(folder == root or root in folder.parents for root in model_roots):
        roots = ", ".join(str(r) for r in model_roots) or "(none: set XSTILTS_MODEL_ROOTS)"
        raise XstiltsError(
            f"{folder} is not under an allowed model root: {roots}", field="model.source"
        )
    if not (folder / "config.json").is_file():
        raise XstiltsError(
            f"{folder} is not a Hugging Face model folder (no config.json)", field="model.source"
        )
    return ResolvedModel(str(folder), None, folder_fingerprint(folder))
