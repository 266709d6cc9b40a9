"""`hmi self-test` (also `hmi --self-test`): check this installation end to end."""

from __future__ import annotations

import argparse
import logging

from hmi.cli.common import Subparsers


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser(
        "self-test",
        help="check this installation end to end, without a display (also: hmi --self-test)",
        description="Load the demo project, start its plant, connect over OPC UA, show live values in an offscreen "
        "window, write a value, load every 3D model, record to a temporary historian, replay it and verify the "
        "audit chain. Exits 0 when every step passed, 1 naming the step that failed.",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (historian, logs) and print it")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="time limit of each step (default 60)")
    p.set_defaults(func=cmd_self_test)


def cmd_self_test(args: argparse.Namespace) -> int:
    from hmi.selftest import run_self_test

    if not args.verbose:
        # The summary is the output; library chatter would push it off the screen.
        logging.getLogger().setLevel(logging.WARNING)
    return run_self_test(keep=args.keep, timeout_s=args.timeout)
