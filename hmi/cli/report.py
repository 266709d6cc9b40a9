"""`hmi report`: the printable shift report of a recorded range, as HTML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hmi.cli.common import EXIT_CONFIG, EXIT_OK, Subparsers, add_range_args, open_recording


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("report", help="write the printable shift report of a historian file (HTML)")
    add_range_args(p)
    p.add_argument("--out", required=True, metavar="FILE", help="report.html")
    p.add_argument(
        "--station", default="", help="station named in the header (default: the --db URL's ?station=, else this host)"
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """The printable shift report of a recorded shift or range, as HTML (PDF needs Qt: the window's journal)."""
    from hmi.historian.report import shift_report

    out = Path(args.out)
    if out.suffix.lower() != ".html":
        print(
            f"hmi report: {out.name}: the command line writes HTML (.html); print it to PDF, or use the "
            "window's Journal > Shift report… for a PDF",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    reader, time_range, project = open_recording(args)
    try:
        html = shift_report(
            reader,
            time_range,
            project=project.project.name if project else "",
            station=args.station or reader.layout.station or _host(),
        )
    finally:
        reader.close()
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"hmi report: cannot write {out}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote the report of {time_range.label} to {out}")
    return EXIT_OK


def _host() -> str:
    import socket

    return socket.gethostname()
