"""Layering: the data layer and the metrics import nothing from the formats (nor torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import xstilts


def _modules_after_import(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    # The repository root too: services/ is importable from there, as in the images.
    paths = [str(Path(xstilts.__file__).parents[1]), str(Path(__file__).parents[1])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout)


def test_data_loading_imports_no_format() -> None:
    loaded = _modules_after_import("xstilts.data.loading")
    assert "xstilts.data.readers" in loaded and "xstilts.data.hub" in loaded
    assert [m for m in loaded if m.startswith("xstilts.formats")] == []
    assert "torch" not in loaded


def test_metrics_import_neither_formats_nor_torch() -> None:
    loaded = _modules_after_import("xstilts.metrics")
    assert [m for m in loaded if m.startswith("xstilts.formats")] == []
    assert "torch" not in loaded


def test_api_app_and_eval_worker_do_not_import_torch() -> None:
    # The API and the eval worker run on CPU machines without the training stack's weight: the
    # runners that train or predict are loaded only when a stage of that kind runs.
    for module in ("xstilts.api.app", "services.eval.main", "services.worker.main"):
        loaded = _modules_after_import(module)
        assert "xstilts.runtime.lifecycle" in loaded or module == "xstilts.api.app"
        assert "torch" not in loaded and "transformers" not in loaded, module
        # The model cache and the dispatch by kind may be loaded; no runner is.
        runners = {m for m in loaded if m.startswith("xstilts.runtime.runners.")}
        assert runners <= {"xstilts.runtime.runners.cache", "xstilts.runtime.runners.dispatch"}, (
            module
        )
