"""GPU worker (queue "gpu") and the reconciler's beat schedule:

celery -A services.worker.main worker -Q gpu --concurrency 1 --prefetch-multiplier 1 -O fair
celery -A services.worker.main beat
"""

import faulthandler

from xstilts.runtime.celery_app import app

# A crash in native code (CUDA, NCCL, a tokenizer) prints every thread's traceback to stderr; forked
# pool processes inherit it.
if not faulthandler.is_enabled():
    faulthandler.enable()

__all__ = ["app"]
