"""Task formats: one implementation each (see :class:`xstilts.formats.base.Format`).

Adding a format is writing its module and adding its object to :data:`FORMATS`
(:mod:`.registry`).
"""

from __future__ import annotations

from xstilts.formats.base import Format, Objective, TrainedFormat
from xstilts.formats.registry import (
    FORMATS,
    OBJECTIVES,
    get_format,
    get_objective,
    get_trained_format,
)

__all__ = [
    "FORMATS",
    "OBJECTIVES",
    "Format",
    "Objective",
    "TrainedFormat",
    "get_format",
    "get_objective",
    "get_trained_format",
]
