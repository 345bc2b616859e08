"""``xstilts gc`` (artifacts) and ``xstilts db`` (the schema)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xstilts.cli.common import EXIT_OK, bounded, output_file, write_json
from xstilts.config import Settings
from xstilts.errors import XstiltsError


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    from xstilts.db.migrate import current, upgrade

    url = Settings().database_url
    try:
        upgrade(url, args.revision)
    except CommandError as e:  # an unknown revision, say; the message lists nothing more
        raise XstiltsError(str(e), field="revision") from None
    print(f"database at revision {current(url)}")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from xstilts.runtime.gc import collect_garbage
    from xstilts.runtime.workspace import Workspace

    settings = Settings()
    ws = Workspace(settings)  # an embedded SQLite file is created or upgraded, as by `run`
    try:
        report = collect_garbage(
            ws.sessions,
            ws.store,
            dry_run=args.dry_run,
            resumable=args.resumable,
            min_age_s=args.min_age_s,
            comparisons_max_age_days=_given(
                args.comparisons_max_age_days, settings.comparisons_max_age_days
            ),
            comparisons_max_mib=_given(args.comparisons_max_mib, settings.comparisons_max_mib),
        )
    finally:
        ws.close()
    mib = 1 << 20
    verb = "would delete" if report.dry_run else "deleted"
    print(f"{'kind':<22}{'kept':>8}{'MiB':>10}{verb:>14}{'MiB':>10}")
    for kind in sorted(set(report.kept) | set(report.deleted)):
        k, d = report.kept.get(kind), report.deleted.get(kind)
        print(
            f"{kind:<22}{k.count if k else 0:>8}{(k.bytes if k else 0) / mib:>10.1f}"
            f"{d.count if d else 0:>14}{(d.bytes if d else 0) / mib:>10.1f}"
        )
    for reason, n in sorted(report.reasons.items()):
        print(f"  {n} x {reason}")
    print(f"{verb} {report.freed_bytes / mib:.1f} MiB" + (" (dry run)" if report.dry_run else ""))
    if args.json:
        write_json(Path(args.json), report.as_json())
    return EXIT_OK


def _given(flag: float | None, setting: float) -> float:
    return setting if flag is None else flag


def _days(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 36500:
        raise argparse.ArgumentTypeError(f"days must be more than 0 and at most 36500; got {text}")
    return value


def _mib(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1_048_576:
        raise argparse.ArgumentTypeError(f"MiB must be from 0 to 1048576; got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, e.g. 30; got {text!r}") from None


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "gc",
        help="delete artifacts no stage can use: orphans, spent checkpoints, abandoned writes; "
        "and cached comparisons over the cache's limits",
        description="Delete artifacts (XSTILTS_ARTIFACTS_DIR) that no stage of the database "
        "(XSTILTS_DATABASE_URL) can use, and cached comparisons not used for a while or, least "
        "recently used first, over the cache's size; print files and bytes kept and freed per "
        "kind. Outputs of succeeded stages are always kept (later experiments reuse them, export "
        "reads them); a comparison collected is computed again when asked for.",
    )
    p.add_argument("--dry-run", action="store_true", help="count only; delete nothing")
    p.add_argument(
        "--resumable",
        action="store_true",
        help="also delete checkpoints of failed and cancelled stages (a retry then starts over)",
    )
    p.add_argument(
        "--min-age-s",
        type=bounded(0, 3650 * 86400, "--min-age-s"),
        default=3600.0,
        help="leave unfinished writes and unknown keys younger than this (default: 3600)",
    )
    p.add_argument(
        "--comparisons-max-age-days",
        type=_days,
        metavar="DAYS",
        help="delete cached comparisons not used (computed or served) for this many days "
        "(default: XSTILTS_COMPARISONS_MAX_AGE_DAYS, 30)",
    )
    p.add_argument(
        "--comparisons-max-mib",
        type=_mib,
        metavar="MIB",
        help="then delete the least recently used until the rest fit in this many MiB; 0 keeps "
        "none (default: XSTILTS_COMPARISONS_MAX_MIB, 512)",
    )
    p.add_argument("--json", metavar="OUT", type=output_file, help="also write the report as JSON")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("db", help="database schema (XSTILTS_DATABASE_URL)")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dp = dsub.add_parser("upgrade", help="apply the Alembic migrations (creates the tables if new)")
    dp.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    dp.set_defaults(func=cmd_db_upgrade)
