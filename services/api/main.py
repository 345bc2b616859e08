"""The API service's app, served by ``python -m services.api`` (``__main__.py``: the server of
``xstilts serve``, with its limits and log redaction). Celery executes stages unless
``XSTILTS_EXECUTOR=thread`` (one process, stages in a background thread, as ``xstilts serve``)."""

from __future__ import annotations

from typing import Any

from xstilts.api.app import create_app
from xstilts.config import get_settings


def celery_executor(ws: Any) -> Any:
    from xstilts.runtime.celery_app import (  # imported here: no broker needed to import us
        CeleryExecutor,
        app,
    )

    return CeleryExecutor(app)


settings = get_settings()  # a bad setting stops the service here, naming the variable
app = create_app(
    settings, executor_factory=None if settings.executor == "thread" else celery_executor
)
