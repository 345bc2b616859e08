"""``xstilts score``: predictions in XTREME's submission layout scored against labels in it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xstilts.cli.common import EXIT_OK, output_file, write_json
from xstilts.errors import XstiltsError


def cmd_score(args: argparse.Namespace) -> int:
    from xstilts.experiments.submissions import score_folder

    try:
        result = score_folder(Path(args.predictions), Path(args.labels), args.split)
    except ValueError as e:
        raise XstiltsError(str(e)) from None
    for task, body in result.items():
        metrics = list(body["average"])
        print(
            f"{task}  "
            + "  ".join(f"{m}" for m in metrics)
            + f"   (task score {body['score']:.2f})"
        )
        for lang, values in body["languages"].items():
            print(f"  {lang:<6}" + "".join(f"{values[m]:>10.2f}" for m in metrics))
        print(f"  {'avg':<6}" + "".join(f"{body['average'][m]:>10.2f}" for m in metrics))
    if args.json:
        write_json(Path(args.json), result)
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "score", help="score predictions in XTREME's submission layout against labels"
    )
    p.add_argument("--predictions", required=True, help="folder of <task>/<split>-<lang> files")
    p.add_argument("--labels", required=True, help="folder of gold files in the same layout")
    p.add_argument(
        "--split",
        default=None,
        help="file prefix to score, dev or test (default: the one split the files are of)",
    )
    p.add_argument("--json", metavar="OUT", type=output_file, help="also write the scores as JSON")
    p.set_defaults(func=cmd_score)
