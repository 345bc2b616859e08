"""Resolve a spec's model source to something ``from_pretrained`` can load, with a fingerprint.

``trust_remote_code`` is never enabled: a request cannot make a worker run code from the hub.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from xstilts.data.fingerprint import folder_fingerprint, memo_folder
from xstilts.errors import WorkerSetupError, XstiltsError
from xstilts.spec import HF_PREFIX, LOCAL_PREFIX, OFFLINE_PREFIX, ModelConfig, is_hub_id

log = logging.getLogger(__name__)

# The files ``from_pretrained`` loads a model's weights from (whole, or sharded with an index).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class ResolvedModel:
    name_or_path: str  # what from_pretrained receives
    revision: str | None
    fingerprint: str  # changes whenever the weights or tokenizer could change


def resolve_model(
    config: ModelConfig, model_roots: tuple[Path, ...], cache_dir: Path
) -> ResolvedModel:
    source = config.source
    if source.startswith(OFFLINE_PREFIX):
        from xstilts.modeling.offline import prepare_offline_model

        folder = prepare_offline_model(cache_dir)
        return ResolvedModel(str(folder), None, folder_fingerprint(folder, memo_folder(cache_dir)))
    if source.startswith(HF_PREFIX):
        hub_id = source[len(HF_PREFIX) :]
        if not is_hub_id(hub_id):  # the spec checks this too; a hub id must never be a path
            raise XstiltsError(f"{source!r} is not a hub repository id", field="model.source")
        return ResolvedModel(hub_id, config.revision, f"hf:{hub_id}@{config.revision}")
    # Messages name the source as given, never the folder it resolved to or the roots.
    given = source[len(LOCAL_PREFIX) :]
    if given.startswith("~"):
        # Never expanded, "~" nor "~user": whether an account exists, or where a home lies, is
        # the server's own (one message, whoever is named), and a spec names the same folder
        # wherever it runs. XSTILTS_MODEL_ROOTS, the operator's setting, may use "~".
        raise XstiltsError(
            f"{source!r}: '~' is not expanded in a spec; give the folder's absolute path, inside "
            "a folder named by XSTILTS_MODEL_ROOTS",
            field="model.source",
        )
    try:
        folder = Path(given).resolve()
    except (OSError, RuntimeError, ValueError):
        raise XstiltsError(
            f"{source!r} is not a usable folder path", field="model.source"
        ) from None
    if not any(folder == root or root in folder.parents for root in model_roots):
        why = (
            "under an allowed model root" if model_roots else "allowed: no XSTILTS_MODEL_ROOTS set"
        )
        raise XstiltsError(
            f"{source!r} is not {why}; 'local:' models must lie in a folder named by "
            "XSTILTS_MODEL_ROOTS",
            field="model.source",
        )
    try:
        is_model = (folder / "config.json").is_file()
        exists = folder.is_dir()
    except OSError:
        is_model = exists = False
    if not exists:
        raise XstiltsError(f"{source!r}: the folder does not exist", field="model.source")
    if not is_model:
        raise XstiltsError(
            f"{source!r} is not a Hugging Face model folder (no config.json)", field="model.source"
        )
    try:
        has_weights = any((folder / name).is_file() for name in WEIGHT_FILES)
    except OSError:
        has_weights = False
    if not has_weights:
        raise XstiltsError(
            f"{source!r} holds no model weights: none of {', '.join(WEIGHT_FILES)} (save the "
            "model with save_pretrained, which writes them)",
            field="model.source",
        )
    return ResolvedModel(str(folder), None, folder_fingerprint(folder, memo_folder(cache_dir)))


def loadable(name_or_path: str) -> str:
    """``name_or_path`` as ``from_pretrained`` (or ``cached_file``) may receive it: an absolute
    folder (a resolved ``local:`` or offline model, a stage's output) or a hub id that names no
    path here. Transformers tries a name as a folder first, relative to the working directory: a
    hub id such as ``models/private`` that is also a folder there would load that folder instead
    of the hub repository, outside every model root. Checked where the model is loaded, since
    the API that resolved the id runs elsewhere."""
    if os.path.isabs(name_or_path):
        return name_or_path
    if not is_hub_id(name_or_path):
        raise XstiltsError(f"{name_or_path!r} is not a hub repository id", field="model.source")
    if os.path.lexists(name_or_path):
        raise WorkerSetupError(
            f"hub id {name_or_path!r} is also a path in the worker's working directory, which "
            "transformers would load instead of the hub repository: refused (start the worker "
            "in a directory without it)",
            field="model.source",
        )
    return name_or_path
