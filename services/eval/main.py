"""Eval worker (queue "eval"): predictions -> per-language metrics and cross-language statistics.

The same Celery app as the GPU worker (``services.worker.main``); only the queue differs:

celery -A services.eval.main worker -Q eval --concurrency 2
"""

from services.worker.main import app

__all__ = ["app"]
