"""The GPU worker as deployed, whose target stages run out of GPU memory: torch's own
OutOfMemoryError, raised where CUDA would raise it, so the out-of-memory path of
xstilts.runtime.gpu_budget can be tested on a machine without a GPU.

``XSTILTS_TEST_OOM=beside_others``: a target stage runs out of memory whenever it shares its
device; ``always``: alone too. Started as ``celery -A tests.oom_worker worker ...``.
"""

import os

import xstilts.runtime.runners as runners

from services.worker.main import app

_run_spec = runners.run_spec


def _run_spec_out_of_memory(ctx, stage, spec):  # type: ignore[no-untyped-def]
    mode = os.environ["XSTILTS_TEST_OOM"]
    if spec.kind == "target_train" and (mode == "always" or not ctx.alone_on_device):
        import torch

        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated by tests/oom_worker.py)")
    return _run_spec(ctx, stage, spec)


runners.run_spec = _run_spec_out_of_memory

__all__ = ["app"]
