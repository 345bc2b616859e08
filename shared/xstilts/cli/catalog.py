"""``xstilts tasks`` and ``xstilts models``: what the registry and the model cache hold."""

from __future__ import annotations

import argparse
import json
from typing import Any

from xstilts.cli.common import EXIT_OK
from xstilts.config import Settings


def cmd_tasks(args: argparse.Namespace) -> int:
    from xstilts.tasks import all_tasks

    tasks = all_tasks()
    if args.json:
        rows = [t.describe() for t in tasks]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table: list[tuple[str, ...]] = []
    for t in tasks:
        if t.is_target:
            role, trained = "target", t.train_task or ("-" if not t.trains else t.name)
        else:
            role, trained = "intermediate", "+".join(t.combines) or t.name
        langs = f"({len(t.languages)}) {' '.join(t.languages)}"
        table.append((t.name, t.format.value, t.metric, role, trained, langs))
    header = ("task", "format", "metric", "role", "trained on", "languages")
    widths = [max(len(r[i]) for r in [header, *table]) + 2 for i in range(len(header) - 1)]
    for row in [header, *table]:
        print("".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)) + row[-1])
    return EXIT_OK


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from xstilts.modeling.offline import prepare_offline_model

    settings = Settings()
    folder = prepare_offline_model(settings.cache_dir, force=args.force)
    print(folder)
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("tasks", help="list tasks with their format, metric and languages")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("models", help="manage models")
    msub = p.add_subparsers(dest="models_command", required=True)
    mp = msub.add_parser(
        "prepare",
        help="materialise the built-in offline model (multilingual-e5-small) into the cache",
    )
    mp.add_argument("--force", action="store_true", help="rebuild even if present")
    mp.set_defaults(func=cmd_models_prepare)
