"""The parser, built from the command modules (each adds its own arguments), and `main`."""

from __future__ import annotations

import argparse
import sys

from hmi import __version__
from hmi.cli import (
    audit,
    central,
    certificates,
    check_config,
    export,
    model_info,
    replay,
    report,
    run,
    self_test,
    sim,
    stop,
    twin,
    users,
    window,
)
from hmi.cli.common import setup_logging

# The order of `hmi --help`.
COMMANDS = (
    run,
    stop,
    window,
    sim,
    certificates,
    users,
    audit,
    central,
    replay,
    export,
    report,
    model_info,
    twin,
    check_config,
    self_test,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hmi", description="HMI/SCADA workstation for machine digital twins")
    parser.add_argument("--version", action="version", version=f"hmi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--self-test" in argv and all(a.startswith("-") for a in argv[: argv.index("--self-test")]):
        # What an installer or a support call runs first: `hmi --self-test`.
        argv[argv.index("--self-test")] = "self-test"
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return int(args.func(args))
