"""Which runner does a stage kind's work: each kind's module is imported only when a stage of that
kind runs, so a process that never trains (the API, the eval worker) never imports torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xstilts.experiments.plan import StageSpec
    from xstilts.runtime.lifecycle import StageContext, StageOutcome, StageRef

# stage kind -> module with ``run(ctx, stage, spec) -> StageOutcome``
_MODULES = {
    "intermediate_train": "xstilts.runtime.runners.train",
    "target_train": "xstilts.runtime.runners.train",
    "predict": "xstilts.runtime.runners.predict",
    "evaluate": "xstilts.runtime.runners.evaluate",
}


def run_spec(ctx: StageContext, stage: StageRef, spec: StageSpec) -> StageOutcome:
    module = importlib.import_module(_MODULES[spec.kind])
    outcome: StageOutcome = module.run(ctx, stage, spec)
    return outcome
