"""Errors a user can act on. Each says what was wrong and, where there is a closed set, the valid values."""

from __future__ import annotations

from collections.abc import Iterable


class XstiltsError(Exception):
    """Base class for errors that should reach the user as a clear message (CLI exit 2, HTTP 4xx)."""


class UnknownNameError(XstiltsError, ValueError):
    """A name (task, language, model, ...) that is not one of the valid values."""

    def __init__(self, field: str, value: object, valid: Iterable[str]) -> None:
        self.field = field
        self.value = value
        self.valid = sorted(valid)
        super().__init__(f"{field}: unknown value {value!r}; valid values: {', '.join(self.valid)}")


class DataNotFoundError(XstiltsError, FileNotFoundError):
    """A task split could not be found in the configured data source."""


class StageFailedError(XstiltsError, RuntimeError):
    """A pipeline stage failed; the message carries the stage and the cause."""


class CancelledError(XstiltsError):
    """The experiment was cancelled while a stage was running."""
