"""Trained stage models kept in memory between the stages of one process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xstilts.modeling.classifier import MultiHeadClassifier


class ModelCache:
    """The last loaded stage model: one target model serves every language's predict stage
    without reloading. One entry only, since a model can take gigabytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._value: tuple[MultiHeadClassifier, Any] | None = None

    def stage_model(self, path: Path) -> tuple[MultiHeadClassifier, Any]:
        from xstilts.modeling.classifier import load_stage_model

        with self._lock:
            if self._path != path or self._value is None:
                self._value = None  # free the old model before loading the next
                self._value = load_stage_model(path)
                self._path = path
            return self._value
