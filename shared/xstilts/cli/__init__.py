"""The `xstilts` command: one module per command group."""

from xstilts.cli.main import main

__all__ = ["main"]
