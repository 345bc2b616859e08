"""GPU worker (queue "gpu") and the reconciler's beat schedule:

celery -A services.worker.main worker -Q gpu --prefetch-multiplier 1 -O fair
celery -A services.worker.main beat

The pool has XSTILTS_STAGES_PER_GPU processes (1 where the worker sees no GPU), each running one
stage on the worker's GPU as far as its memory admits them (xstilts.runtime.gpu_budget); one worker
per GPU, pinned with CUDA_VISIBLE_DEVICES.
"""

import faulthandler

from xstilts.runtime.celery_app import app

# A crash in native code (CUDA, NCCL, a tokenizer) prints every thread's traceback to stderr; forked
# pool processes inherit it.
if not faulthandler.is_enabled():
    faulthandler.enable()

__all__ = ["app"]
