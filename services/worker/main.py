"""GPU worker (queue "gpu") and the reconciler's beat schedule:

celery -A services.worker.main worker -Q gpu --concurrency 1 --prefetch-multiplier 1 -O fair
celery -A services.worker.main beat
"""

from xstilts.runtime.celery_app import app

__all__ = ["app"]
