"""Eval worker (queue "eval"): predictions -> per-language metrics and cross-language statistics.

The same Celery app as the GPU worker (``services.worker.main``); only the queue differs:

celery -A services.eval.main worker -Q eval --concurrency 2
"""

import faulthandler

from services.worker.main import app

# Enabled by the import above too; said here so that this entry point reads complete.
if not faulthandler.is_enabled():
    faulthandler.enable()

__all__ = ["app"]
