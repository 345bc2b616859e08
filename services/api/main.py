"""The API service: ``uvicorn services.api.main:app``. Celery executes stages unless
``XSTILTS_EXECUTOR=thread`` (one process, stages in a background thread, as ``xstilts serve``)."""

from __future__ import annotations

import os
from typing import Any

from xstilts.api.app import create_app
from xstilts.config import Settings


def celery_executor(ws: Any) -> Any:
    from xstilts.runtime.celery_app import (  # imported here: no broker needed to import us
        CeleryExecutor,
        app,
    )

    return CeleryExecutor(app)


thread_mode = os.environ.get("XSTILTS_EXECUTOR", "celery") == "thread"
app = create_app(Settings.from_env(), executor_factory=None if thread_mode else celery_executor)
