"""The parser, built from the command modules (each adds its own arguments), and `main`."""

from __future__ import annotations

import argparse
import importlib
import sys

from hmi import __version__
from hmi.cli.common import setup_logging

# Every command, in the order of `hmi --help`, and the module of hmi.cli that adds its parser
# (certificates adds two). A module is imported only when its parser is built: some import
# the project-config package at their top, which the plant `hmi run` starts (`hmi sim`)
# never uses and would wait 0.25-0.34 s for before it serves.
COMMANDS: dict[str, str] = {
    "run": "run",
    "stop": "stop",
    "window": "window",
    "sim": "sim",
    "trust": "certificates",
    "cert": "certificates",
    "users": "users",
    "station": "station",
    "service": "service",
    "audit": "audit",
    "central": "central",
    "replay": "replay",
    "export": "export",
    "report": "report",
    "model-info": "model_info",
    "twin": "twin",
    "check-config": "check_config",
    "self-test": "self_test",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` only (when it names one)."""
    parser = argparse.ArgumentParser(prog="hmi", description="HMI/SCADA workstation for machine digital twins")
    parser.add_argument("--version", action="version", version=f"hmi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for module in modules:
        importlib.import_module(f"hmi.cli.{module}").add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--self-test" in argv and all(a.startswith("-") for a in argv[: argv.index("--self-test")]):
        # What an installer or a support call runs first: `hmi --self-test`.
        argv[argv.index("--self-test")] = "self-test"
    # The options before the command take no value, so the first other word is the command;
    # without one (`hmi --help`, a typo) every command's parser is built, to list them all.
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    setup_logging(args.verbose)
    return int(args.func(args))
