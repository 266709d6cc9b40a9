"""`hmi export`: a recorded range to CSV or Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hmi.cli.common import EXIT_CONFIG, EXIT_OK, Subparsers, add_range_args, open_recording


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("export", help="export a time range of a historian (file or database) to CSV or Parquet")
    add_range_args(p)
    p.add_argument("--tags", help="comma-separated tag names (default: all)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--out", metavar="FILE", help="output file (default: DB-export.FORMAT here)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from hmi.historian.export import ExportError, export
    from hmi.historian.reader import target_label

    reader, time_range, _ = open_recording(args)
    fmt = args.format
    out = Path(args.out) if args.out else Path(f"{Path(target_label(args.db)).stem}-export.{fmt}")
    tags = [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else None
    try:
        result = export(reader, time_range.start_ns, time_range.end_ns, out, fmt, tags)
    except ExportError as exc:
        print(f"hmi export: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        reader.close()
    print(f"exported {result.samples} samples of {result.tags} tags ({time_range.label}) to {out}", end="")
    print(f" in {result.seconds:.1f} s")
    return EXIT_OK
