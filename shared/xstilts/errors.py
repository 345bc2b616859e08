"""Errors a user can act on. Each says what was wrong and, where there is a closed set, the valid values."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import ClassVar


def did_you_mean(value: object, valid: Iterable[str]) -> str:
    """`` (did you mean 'qqp'?)`` for the closest valid name, or nothing when none is close."""
    close = difflib.get_close_matches(str(value).lower(), list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class XstiltsError(Exception):
    """Base class for errors that should reach the user as a clear message (CLI exit 2, HTTP 4xx).

    ``field`` names what the error is about (a spec field path such as ``data.path`` where there is
    one); the message then reads ``"<field>: <reason>"`` and ``reason`` keeps the bare reason, so an
    API can report the field without parsing the message.
    """

    #: A stage that fails with it fails at once, not retried: the error names a cause in the spec,
    #: the data or a model folder that another attempt would meet again.
    final: ClassVar[bool] = True

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class UnknownNameError(XstiltsError, ValueError):
    """A name (task, language, model, ...) that is not one of the valid values."""

    def __init__(self, field: str, value: object, valid: Iterable[str]) -> None:
        self.value = value
        self.valid = sorted(valid)
        super().__init__(
            f"unknown value {value!r}{did_you_mean(value, self.valid)}; valid values: "
            f"{', '.join(self.valid)}",
            field=field,
        )


class DataNotFoundError(XstiltsError, FileNotFoundError):
    """A task split could not be found in the configured data source. Its files were there when
    the experiment was submitted (their hashes are in its stage keys), so one missing when a
    stage runs is most likely a share not mounted on that worker, or not yet: retried."""

    final: ClassVar[bool] = False


class DataContentError(XstiltsError, ValueError):
    """A data file that is there but is not the task's data (a label outside the task's, text
    that is not UTF-8): another attempt would read the same bytes; failed at once."""


class WorkerSetupError(XstiltsError):
    """Something about the worker that runs a stage, not the spec (its working directory, say):
    another worker, or a mended one, may not have it; retried."""

    final: ClassVar[bool] = False


class StageFailedError(XstiltsError, RuntimeError):
    """A pipeline stage failed; the message carries the stage and the cause. ``retry``: the
    failed attempt left attempts, and the stage is already queued again (the caller sends it).
    Raised inside a stage (a data-parallel rank that failed, a dependency not there yet) its
    cause may pass: retried."""

    final: ClassVar[bool] = False

    def __init__(self, reason: str, *, field: str | None = None, retry: bool = False) -> None:
        super().__init__(reason, field=field)
        self.retry = retry


class StageOutOfMemoryError(StageFailedError):
    """A stage ran out of accelerator memory with the device to itself: retrying cannot help."""

    final: ClassVar[bool] = True


class StageRequeuedError(XstiltsError):
    """A stage ran out of accelerator memory beside other stages and was queued again to run
    alone; its attempt was given back."""


class CancelledError(XstiltsError):
    """The experiment was cancelled while a stage was running."""


class NotFoundError(XstiltsError, LookupError):
    """A record (an experiment) that does not exist, or that the caller may not see."""


class IdempotencyConflictError(XstiltsError):
    """An idempotency key reused with a different request body."""


class ConflictError(XstiltsError):
    """A request that the record's current state does not allow (cancelling a finished experiment)."""


class LeftRunningError(KeyboardInterrupt):
    """Ctrl-C, and the running stage's thread did not stop within its grace: the process should
    end at once, without finalising the interpreter around a thread still inside native code
    (which aborts it). Nothing is lost: the stage's lease lapses and a new run resumes it."""
