"""What the commands share: exit codes, logging, loading the project, IPC addresses, passwords,
and the recorded range that replay, export, report and twin fit read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from hmi.config import Project
    from hmi.historian.reader import HistorianReader, TimeRange

# What `add_subparsers` returns: each command module's add_arguments adds its parsers to it.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# Exit codes; hmi/cli/__init__.py lists every code, with the headless runtime's own.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # asyncua logs every reconnect attempt and publish at INFO; our sources say what matters.
    for noisy in ("asyncua", "asyncua.client.ua_client", "asyncua.server"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


def log_to_file(role: str) -> None:
    from hmi.logfile import add_log_file

    add_log_file(role)


def load(path: Path, files: bool = False) -> Project:
    """The project, or exit 2 printing every problem. `files`: also check the files it names
    (models, bound nodes, demo machines) exactly as `hmi check-config` does."""
    # Here, not at the top: `hmi sim` (the plant `hmi run` starts) never loads a project, and
    # hmi.config costs it 0.25-0.34 s before it serves.
    from hmi.config import ConfigError, load_project

    try:
        if files:
            from hmi.project_checks import load_checked_project

            return load_checked_project(path)
        return load_project(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def add_ipc_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ipc-stream", metavar="ADDR", help="runtime stream address (tcp://host:port)")
    parser.add_argument("--ipc-requests", metavar="ADDR", help="runtime request address (tcp://host:port)")


def ipc_addresses(args: argparse.Namespace, project: Project) -> tuple[str | None, str | None]:
    """From the command line, else the project's [runtime] ports (0: pick a free one)."""
    rt = project.runtime
    stream = args.ipc_stream or (f"tcp://{rt.ipc_host}:{rt.stream_port}" if rt.stream_port else None)
    requests = args.ipc_requests or (f"tcp://{rt.ipc_host}:{rt.request_port}" if rt.request_port else None)
    return stream, requests


def read_password(args: argparse.Namespace, prompt: str = "Password: ", repeat: bool = True) -> str:
    """From stdin with --password-stdin (scripts), else asked without echo (twice with `repeat`:
    a new password; a login asks once)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass(prompt)
    if repeat and getpass.getpass("Repeat: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cli_operator() -> tuple[str, str]:
    """Who changes users from the command line, which has no login: (OS user@host, host)."""
    import getpass
    import socket

    host = socket.gethostname()
    try:
        os_user = getpass.getuser()
    except Exception:  # no login name in the environment or the password database
        os_user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{os_user}@{host}", host


def add_range_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", required=True, metavar="FILE", help="historian file, or a database URL (postgresql://…?station=ws1)"
    )
    parser.add_argument("--password-ref", metavar="NAME", help="the database's password by reference (credentials)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--shift", metavar="DATE/NAME", help="a recorded shift, e.g. 2026-11-20/A")
    which.add_argument("--from", dest="start", metavar="TIME", help="start, ISO 8601 (local time of the recording)")
    parser.add_argument("--to", dest="end", metavar="TIME", help="end (with --from)")
    parser.add_argument("--project", help="project file: its time zone, shifts and trends")


def open_recording(args: argparse.Namespace) -> tuple[HistorianReader, TimeRange, Project | None]:
    """The historian reader, the range asked for, and the project (if one was given)."""
    from hmi.historian import HistorianError, HistorianReader
    from hmi.historian.reader import resolve_range, with_password_ref
    from hmi.historian.writer import HistorianWriter

    project = load(Path(args.project)) if getattr(args, "project", None) else None
    # Every reader the command opens later (playback's threads) takes the ref from the target.
    args.db = with_password_ref(args.db, getattr(args, "password_ref", None))
    try:
        reader = HistorianReader(args.db)
    except HistorianError as exc:
        print(f"hmi {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    fallback = None
    if project is not None:
        from hmi.core.tags import TagRegistry

        fallback = HistorianWriter.from_project(project, TagRegistry()).calendar
    try:
        time_range = resolve_range(
            reader,
            shift=args.shift,
            start=args.start,
            end=args.end,
            timezone=project.project.timezone if project is not None else None,
            fallback_calendar=fallback,
        )
    except ValueError as exc:
        reader.close()
        print(f"hmi {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return reader, time_range, project


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGINT or SIGTERM (call from the running loop): the process then ends
    through its own orderly shutdown, as `hmi stop` and the supervisor expect."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
