"""`hmi run`: the supervisor (plant, runtime, window), or with --headless the runtime alone."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from hmi.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    add_ipc_args,
    ipc_addresses,
    load,
    log_to_file,
    stop_on_signals,
)
from hmi.config import Project
from hmi.paths import default_project

log = logging.getLogger("hmi")  # not __name__: the runtime's log lines keep the name they always had


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="run the application (plant, runtime and window)")
    p.add_argument("--project", default=str(default_project()), help="project file (default: the demo plant)")
    p.add_argument("--headless", action="store_true", help="run the runtime alone, without a window")
    p.add_argument("--duration", type=float, help="with --headless: stop after S seconds and print counts")
    p.add_argument("--no-sim", action="store_true", help="do not start the embedded demo plant")
    p.add_argument("--no-ipc", action="store_true", help="with --headless: serve no windows")
    add_ipc_args(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    project_path = Path(args.project)
    project = load(project_path, files=True)  # never start what check-config refuses
    log_to_file("runtime" if args.headless else "supervisor")
    if args.headless:
        return _run_headless(args, project)
    from hmi.supervisor import Supervisor, find_running

    if project.runtime.remote is not None:
        # A station: the plant and the runtime are the server's; only a window runs here.
        return Supervisor(project_path, project).run()
    running = find_running(project_path)
    if running is not None:
        # The runtime kept recording after its window was closed: open only a window on it.
        return Supervisor(project_path, project, attach=running).run()
    stream, requests = ipc_addresses(args, project)
    supervisor = Supervisor(
        project_path,
        project,
        with_sim=False if args.no_sim else None,
        stream_address=stream,
        request_address=requests,
    )
    return supervisor.run()


def _run_headless(args: argparse.Namespace, project: Project) -> int:
    from hmi.historian.lock import HistorianInUse
    from hmi.runtime import Runtime
    from hmi.security.stations import StationError
    from hmi.supervisor import EXIT_HISTORIAN_IN_USE, EXIT_STOPPED, free_tcp_port, remove_run_file, write_run_file

    stream, requests = ipc_addresses(args, project)
    host = project.runtime.ipc_host
    stream = stream or f"tcp://{host}:{free_tcp_port(host)}"
    requests = requests or f"tcp://{host}:{free_tcp_port(host)}"
    try:
        runtime = Runtime(project, None if args.no_ipc else stream, None if args.no_ipc else requests)
    except StationError as exc:  # a CURVE key or the station allow-list may not be used
        log.error("%s", exc)
        return EXIT_CONFIG
    project_path = Path(args.project)

    def announce() -> None:
        # Found by `hmi run` (to open a window on it) and `hmi stop`; only once this runtime
        # holds the historian, so a second one refused for it never replaces the file.
        if not args.no_ipc:
            curve = runtime.publisher.curve if runtime.publisher is not None else None
            write_run_file(project_path, stream, requests, curve.public if curve is not None else None)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await runtime.run(stop, args.duration, freeze_gc=True, on_serving=announce)

    try:
        asyncio.run(main())
    except HistorianInUse as exc:
        log.error("%s", exc)  # also in the runtime's log file: under `hmi run` nobody sees stderr
        return EXIT_HISTORIAN_IN_USE
    except OSError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except StationError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    finally:
        remove_run_file(project_path)
    if args.duration is not None:
        print(f"samples received per tag in {args.duration:g} s:")
        print(runtime.count_report())
    if runtime.stopped_by is not None:
        log.info("runtime stopped by %s (system stop)", runtime.stopped_by)
        return EXIT_STOPPED
    return EXIT_OK
