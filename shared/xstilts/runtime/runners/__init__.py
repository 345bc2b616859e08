"""Runners: the work of each stage kind, given its typed spec (one module per kind: train,
predict, evaluate; :mod:`.dispatch` picks the module by kind and imports it only then, so a process
that never trains, the API or the eval worker, never imports torch)."""

from __future__ import annotations

from xstilts.runtime.runners.dispatch import run_spec

__all__ = ["run_spec"]
