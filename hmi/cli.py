"""`hmi` command line: run, window, sim, check-config, trust.

Exit codes: 0 success, 1 runtime failure, 2 a bad project file or bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from hmi import __version__
from hmi.config import ConfigError, Project, load_project
from hmi.paths import default_project

log = logging.getLogger("hmi")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # asyncua logs every reconnect attempt and publish at INFO; our sources say what matters.
    for noisy in ("asyncua", "asyncua.client.ua_client", "asyncua.server"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


def _load(path: Path) -> Project:
    try:
        return load_project(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _add_ipc_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ipc-stream", metavar="ADDR", help="runtime stream address (tcp://host:port)")
    parser.add_argument("--ipc-requests", metavar="ADDR", help="runtime request address (tcp://host:port)")


def _ipc_addresses(args: argparse.Namespace, project: Project) -> tuple[str | None, str | None]:
    """From the command line, else the project's [runtime] ports (0: pick a free one)."""
    rt = project.runtime
    stream = args.ipc_stream or (f"tcp://{rt.ipc_host}:{rt.stream_port}" if rt.stream_port else None)
    requests = args.ipc_requests or (f"tcp://{rt.ipc_host}:{rt.request_port}" if rt.request_port else None)
    return stream, requests


# -- commands ---------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    from hmi.sim.plant import unknown_machines

    try:
        project = load_project(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_CONFIG
    unknown = unknown_machines(project.simulator.machines)
    if unknown:
        for name in unknown:
            print(f"{args.file}: simulator.machines: unknown demo machine {name!r}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"{args.file}: OK: project {project.project.name!r}, {len(project.connections)} connection(s), "
        f"{len(project.machines)} machine(s), {len(project.tags)} tag(s), {len(project.trends)} trend(s)"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    project_path = Path(args.project)
    project = _load(project_path)
    if args.headless:
        return _run_headless(args, project)
    from hmi.supervisor import Supervisor

    stream, requests = _ipc_addresses(args, project)
    supervisor = Supervisor(
        project_path,
        project,
        with_sim=False if args.no_sim else None,
        stream_address=stream,
        request_address=requests,
    )
    return supervisor.run()


def _run_headless(args: argparse.Namespace, project: Project) -> int:
    from hmi.runtime import Runtime
    from hmi.supervisor import free_tcp_port

    stream, requests = _ipc_addresses(args, project)
    host = project.runtime.ipc_host
    stream = stream or f"tcp://{host}:{free_tcp_port(host)}"
    requests = requests or f"tcp://{host}:{free_tcp_port(host)}"
    runtime = Runtime(project, None if args.no_ipc else stream, None if args.no_ipc else requests)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # Windows
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        await runtime.run(stop, args.duration)

    try:
        asyncio.run(main())
    except OSError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    if args.duration is not None:
        print(f"samples received per tag in {args.duration:g} s:")
        print(runtime.count_report())
    return EXIT_OK


def cmd_window(args: argparse.Namespace) -> int:
    project = _load(Path(args.project))
    stream, requests = _ipc_addresses(args, project)
    if stream is None or requests is None:
        print("hmi window: no runtime address: give --ipc-stream and --ipc-requests", file=sys.stderr)
        return EXIT_CONFIG
    from hmi.ui.app import run_window

    return run_window(project, stream, requests, screenshot=args.screenshot, exit_after_s=args.exit_after)


def cmd_sim(args: argparse.Namespace) -> int:
    from hmi.sim.opcua_server import serve_plant
    from hmi.sim.plant import Plant, parse_fault

    try:
        machines = [m for m in args.machines.split(",") if m] if args.machines else None
        faults = [parse_fault(f) for f in args.fault]
        plant = Plant(machines, seed=args.seed, faults=faults)
    except ValueError as exc:
        print(f"hmi sim: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.opcua_port == 0:
        print("hmi sim: nothing to serve (--opcua-port 0)", file=sys.stderr)
        return EXIT_CONFIG

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        await serve_plant(plant, args.opcua_port, args.rate, args.speed, args.duration, args.host, stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"hmi sim: cannot serve on port {args.opcua_port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_trust(args: argparse.Namespace) -> int:
    from hmi.sources.pki import Pki

    pki = Pki()
    if args.list or not args.certificate:
        entries = pki.list()
        if not entries:
            print(f"no certificates in {pki.trusted_dir} or {pki.rejected_dir}")
        for e in entries:
            print(f"{e.state:<8}  {e.thumbprint}  valid until {e.not_after:%Y-%m-%d}  {e.subject}")
        return EXIT_OK
    try:
        info = pki.trust(args.certificate)
    except ValueError as exc:
        print(f"hmi trust: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"trusted {info.thumbprint} ({info.subject}): {info.path}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hmi", description="HMI/SCADA workstation for machine digital twins")
    parser.add_argument("--version", action="version", version=f"hmi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the application (plant, runtime and window)")
    p.add_argument("--project", default=str(default_project()), help="project file (default: the demo plant)")
    p.add_argument("--headless", action="store_true", help="run the runtime alone, without a window")
    p.add_argument("--duration", type=float, help="with --headless: stop after S seconds and print counts")
    p.add_argument("--no-sim", action="store_true", help="do not start the embedded demo plant")
    p.add_argument("--no-ipc", action="store_true", help="with --headless: serve no windows")
    _add_ipc_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("window", help="open a window on a running runtime")
    p.add_argument("--project", default=str(default_project()))
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window, then exit")
    p.add_argument("--exit-after", type=float, metavar="S", help="close the window after S seconds")
    _add_ipc_args(p)
    p.set_defaults(func=cmd_window)

    p = sub.add_parser("sim", help="serve the demo plant over OPC UA")
    p.add_argument("--machines", help="comma-separated machine ids (default: all)")
    p.add_argument("--opcua-port", type=int, default=48400, help="OPC UA port (0: off)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on")
    p.add_argument("--rate", type=float, default=10.0, help="updates per second")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="MACHINE.FAULT@TIME",
        help="schedule a fault, e.g. cnc01.tool_wear@300s (repeatable)",
    )
    p.add_argument("--duration", type=float, help="stop after S seconds")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("trust", help="trust an OPC UA server certificate (see the rejected list with --list)")
    p.add_argument("certificate", nargs="?", help="SHA-1 thumbprint of a rejected certificate, or a certificate file")
    p.add_argument("--list", action="store_true", help="list trusted and rejected certificates")
    p.set_defaults(func=cmd_trust)

    p = sub.add_parser("check-config", help="validate a project file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
