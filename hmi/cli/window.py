"""`hmi window`: a window on a running runtime (imports the UI only when run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hmi.cli.common import EXIT_CONFIG, Subparsers, add_ipc_args, ipc_addresses, load, log_to_file
from hmi.paths import default_project


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("window", help="open a window on a running runtime")
    p.add_argument("--project", default=str(default_project()))
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window, then exit")
    p.add_argument("--exit-after", type=float, metavar="S", help="close the window after S seconds")
    p.add_argument("--machine", metavar="ID", help="the machine shown first (default: the project's first)")
    add_ipc_args(p)
    p.set_defaults(func=cmd_window)


def cmd_window(args: argparse.Namespace) -> int:
    project = load(Path(args.project))
    stream, requests = ipc_addresses(args, project)
    rt = project.runtime
    if rt.remote is not None and not (args.ipc_stream or args.ipc_requests):
        # A station: its window attaches to the runtime the project names.
        stream, requests = f"tcp://{rt.remote}:{rt.stream_port}", f"tcp://{rt.remote}:{rt.request_port}"
    if stream is None or requests is None:
        print("hmi window: no runtime address: give --ipc-stream and --ipc-requests", file=sys.stderr)
        return EXIT_CONFIG
    from hmi.security.stations import StationError
    from hmi.supervisor import window_curve

    try:
        curve = window_curve(project, requests, Path(args.project).parent)
    except StationError as exc:
        print(f"hmi window: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log_to_file("window")
    from hmi.ui.app import run_window

    if args.machine and args.machine not in project.machines:
        print(f"hmi window: no machine {args.machine!r} in {args.project}", file=sys.stderr)
        return EXIT_CONFIG
    return run_window(
        project,
        stream,
        requests,
        screenshot=args.screenshot,
        exit_after_s=args.exit_after,
        machine=args.machine,
        curve=curve,
    )
