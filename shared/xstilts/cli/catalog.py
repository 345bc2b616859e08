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
    print(f"{'task':<15}{'format':<22}{'metric':<12}{'role':<14}{'trained on':<16}languages")
    for t in tasks:
        if t.is_target:
            role, trained = "target", t.train_task or ("-" if not t.trains else t.name)
        else:
            role, trained = "intermediate", "+".join(t.combines) or t.name
        langs = f"({len(t.languages)}) {' '.join(t.languages)}"
        print(f"{t.name:<15}{t.format.value:<22}{t.metric:<12}{role:<14}{trained:<16}{langs}")
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
