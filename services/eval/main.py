"""Eval worker (queue "eval"): predictions -> per-language metrics and cross-language statistics.

celery -A services.eval.main worker -Q eval --concurrency 2
"""

from xstilts.runtime.celery_app import app

__all__ = ["app"]
