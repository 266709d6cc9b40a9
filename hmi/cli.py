"""`hmi` command line: run, stop, window, sim, check-config, trust, cert, replay, export, report, model-info, twin,
self-test.

Exit codes: 0 success, 1 runtime failure, 2 a bad project file or bad arguments, 3 (the
headless runtime) another process records into the project's historian, 4 (the headless
runtime) the system was stopped by an operator command (`hmi stop`, "Stop system…").
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmi import __version__
from hmi.config import ConfigError, Project, load_project
from hmi.paths import default_project

if TYPE_CHECKING:
    from hmi.historian.reader import HistorianReader, TimeRange

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


def _log_to_file(role: str) -> None:
    from hmi.logfile import add_log_file

    add_log_file(role)


def _load(path: Path, files: bool = False) -> Project:
    """The project, or exit 2 printing every problem. `files`: also check the files it names
    (models, bound nodes, demo machines) exactly as `hmi check-config` does."""
    try:
        if files:
            from hmi.project_checks import load_checked_project

            return load_checked_project(path)
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
    from hmi.project_checks import load_checked_project

    try:
        project = load_checked_project(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"{args.file}: OK: project {project.project.name!r}, {len(project.connections)} connection(s), "
        f"{len(project.machines)} machine(s), {len(project.tags)} tag(s), {len(project.trends)} trend(s), "
        f"{len(project.alarms)} alarm(s), {len(project.bindings)} 3D binding(s), {len(project.twin)} twin model(s)"
    )
    return EXIT_OK


def _read_password(args: argparse.Namespace, prompt: str = "Password: ", repeat: bool = True) -> str:
    """From stdin with --password-stdin (scripts), else asked without echo (twice with `repeat`:
    a new password; a login asks once)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass(prompt)
    if repeat and getpass.getpass("Repeat: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _cli_operator() -> tuple[str, str]:
    """Who changes users from the command line, which has no login: (OS user@host, host)."""
    import getpass
    import socket

    host = socket.gethostname()
    try:
        os_user = getpass.getuser()
    except Exception:  # no login name in the environment or the password database
        os_user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{os_user}@{host}", host


def cmd_users(args: argparse.Namespace) -> int:
    from hmi.security.audit import AuditError, AuditTrail
    from hmi.security.roles import Role
    from hmi.security.users import UserError, UserStore

    store = UserStore()
    by, station = _cli_operator()
    trail: AuditTrail | None = None
    if getattr(args, "project", None):
        # Opened before the change, so a bad --project changes nothing.
        project = _load(Path(args.project))
        try:
            trail = AuditTrail(project.historian.url)
        except AuditError as exc:
            print(f"hmi users: {exc}; nothing changed", file=sys.stderr)
            return EXIT_FAILURE
    try:
        if args.action == "list":
            users = store.users()
            if not users:
                print(f"no users yet in {store.path}: create the first admin with `hmi users add NAME --role admin`")
            for user in users:
                state = "disabled" if user.disabled else "enabled"
                print(f"{user.name:<24} {user.role.label:<9} {state}")
            return EXIT_OK
        if args.action == "add":
            role = Role.parse(args.role)
            if role != Role.ADMIN and not any(u.role == Role.ADMIN for u in store.users()):
                raise UserError("the first user must be an admin (--role admin)")
            store.add(args.name, role, _read_password(args), by, station)
            print(f"user {args.name!r} added as {role.label}")
        elif args.action == "passwd":
            if store.get(args.name) is None:
                raise UserError(f"no user {args.name!r}")
            store.set_password(args.name, _read_password(args, "New password: "), by, station)
            print(f"password of {args.name!r} changed")
        elif args.action in ("disable", "enable"):
            store.set_disabled(args.name, args.action == "disable", by, station)
            print(f"user {args.name!r} {args.action}d")
        elif args.action == "role":
            store.set_role(args.name, Role.parse(args.role), by, station)
            print(f"user {args.name!r} is now {args.role}")
        if trail is not None and store.last_change is not None:
            # The change is in users.json's change log already; this puts it in the project's
            # trail too (a running runtime then publishes its event without recording it twice).
            try:
                trail.append([store.last_change.audit_entry()])
            except Exception as exc:
                print(
                    f"hmi users: the change was made and is in the change log of {store.path}, but the audit "
                    f"trail of {args.project} cannot be written: {exc.__class__.__name__}: {exc}",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
    except (UserError, ValueError) as exc:
        print(f"hmi users: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if trail is not None:
            trail.close()
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from hmi.security.audit import AuditError, AuditTrail

    try:
        trail = AuditTrail(args.db, create=False)
    except AuditError as exc:
        print(f"hmi audit: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.action == "list":
            records = trail.records()
            for r in records[-args.last :] if args.last else records:
                when = datetime.fromtimestamp(r.ts_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                print(f"{r.seq:>6} {when}Z {r.kind:<16} {r.user:<12} {r.outcome:<8} {r.target} {r.details}")
            return EXIT_OK
        checked, problems = trail.verify()
        seq, head = trail.head()
    finally:
        trail.close()
    for problem in problems:
        print(f"{args.db}: {problem}", file=sys.stderr)
    if problems:
        print(f"{args.db}: audit trail BROKEN: {len(problems)} problem(s) in {checked} record(s)", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{args.db}: audit trail intact: {checked} record(s), head {seq} {head}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    project_path = Path(args.project)
    project = _load(project_path, files=True)  # never start what check-config refuses
    _log_to_file("runtime" if args.headless else "supervisor")
    if args.headless:
        return _run_headless(args, project)
    from hmi.supervisor import Supervisor, find_running

    running = find_running(project_path)
    if running is not None:
        # The runtime kept recording after its window was closed: open only a window on it.
        return Supervisor(project_path, project, attach=running).run()
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
    from hmi.historian.lock import HistorianInUse
    from hmi.runtime import Runtime
    from hmi.supervisor import EXIT_HISTORIAN_IN_USE, EXIT_STOPPED, free_tcp_port, remove_run_file, write_run_file

    stream, requests = _ipc_addresses(args, project)
    host = project.runtime.ipc_host
    stream = stream or f"tcp://{host}:{free_tcp_port(host)}"
    requests = requests or f"tcp://{host}:{free_tcp_port(host)}"
    runtime = Runtime(project, None if args.no_ipc else stream, None if args.no_ipc else requests)
    project_path = Path(args.project)

    def announce() -> None:
        # Found by `hmi run` (to open a window on it) and `hmi stop`; only once this runtime
        # holds the historian, so a second one refused for it never replaces the file.
        if not args.no_ipc:
            write_run_file(project_path, stream, requests)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # Windows
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        await runtime.run(stop, args.duration, freeze_gc=True, on_serving=announce)

    try:
        asyncio.run(main())
    except HistorianInUse as exc:
        log.error("%s", exc)  # also in the runtime's log file: under `hmi run` nobody sees stderr
        return EXIT_HISTORIAN_IN_USE
    except OSError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    finally:
        remove_run_file(project_path)
    if args.duration is not None:
        print(f"samples received per tag in {args.duration:g} s:")
        print(runtime.count_report())
    if runtime.stopped_by is not None:
        log.info("runtime stopped by %s (system stop)", runtime.stopped_by)
        return EXIT_STOPPED
    return EXIT_OK


STOP_WAIT_S = 60.0  # the runtime flushes the historian and closes its connections first


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a project's whole system (plant connections, runtime, historian) as a user with the
    engineer role: the same audited `stop_system` command as the window's "Stop system…"."""
    import time

    from hmi.supervisor import find_running, process_runs, request

    project_path = Path(args.project)
    _load(project_path)
    reason = args.reason.strip()
    if not reason:
        print("hmi stop: --reason must say why the system is stopped", file=sys.stderr)
        return EXIT_CONFIG
    running = find_running(project_path)
    if running is None:
        print(f"hmi stop: no runtime is running for {project_path}", file=sys.stderr)
        return EXIT_FAILURE
    user = args.user
    if not user:
        if not sys.stdin.isatty():
            print("hmi stop: give --user when the password comes from standard input", file=sys.stderr)
            return EXIT_CONFIG
        user = input("User: ")
    # A terminal gets a prompt without echo; a script pipes the password in (not a tty).
    password = _read_password(argparse.Namespace(password_stdin=not sys.stdin.isatty()), repeat=False)
    os_user, host = _cli_operator()
    station = f"{host} (hmi stop by {os_user})"
    address = running.request_address
    try:
        login = request(address, {"command": "login", "user": user, "password": password, "station": station}, 10.0)
        if not login.get("ok"):
            print(f"hmi stop: login refused: {login.get('error', 'no reason given')}", file=sys.stderr)
            return EXIT_FAILURE
        session = login["session"]
        reply = request(
            address, {"command": "stop_system", "session": session, "reason": reason, "station": station}, 10.0
        )
        if not reply.get("ok"):
            request(address, {"command": "logout", "session": session, "station": station, "reason": "hmi stop"}, 5.0)
            print(f"hmi stop: refused: {reply.get('error', 'no reason given')}; nothing was stopped", file=sys.stderr)
            return EXIT_FAILURE
    except (TimeoutError, ConnectionError) as exc:
        print(f"hmi stop: the runtime (pid {running.pid}) does not answer: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if reply.get("audit_error"):
        print(f"hmi stop: warning: {reply['audit_error']}", file=sys.stderr)
    print(f"stopping {project_path} (runtime pid {running.pid}), requested by {user}: {reason}")
    deadline = time.monotonic() + STOP_WAIT_S
    for pid in dict.fromkeys((running.pid, running.owner_pid)):  # the runtime, then whoever supervises it
        while process_runs(pid):
            if time.monotonic() > deadline:
                print(f"hmi stop: pid {pid} has not exited after {STOP_WAIT_S:g} s", file=sys.stderr)
                return EXIT_FAILURE
            time.sleep(0.1)
    print("stopped: plant connections closed, historian flushed and closed, runtime exited")
    return EXIT_OK


def cmd_window(args: argparse.Namespace) -> int:
    project = _load(Path(args.project))
    stream, requests = _ipc_addresses(args, project)
    if stream is None or requests is None:
        print("hmi window: no runtime address: give --ipc-stream and --ipc-requests", file=sys.stderr)
        return EXIT_CONFIG
    _log_to_file("window")
    from hmi.ui.app import run_window

    if args.machine and args.machine not in project.machines:
        print(f"hmi window: no machine {args.machine!r} in {args.project}", file=sys.stderr)
        return EXIT_CONFIG
    return run_window(
        project, stream, requests, screenshot=args.screenshot, exit_after_s=args.exit_after, machine=args.machine
    )


def _secret(env: str, file: str | None, what: str) -> str | None:
    """A password from a file (first line) or an environment variable, never the command line."""
    if file:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read the {what} password file: {exc}") from None
        return lines[0].strip() if lines else ""
    return os.environ.get(env)


def cmd_sim(args: argparse.Namespace) -> int:
    from hmi.sim.plant import Plant, catalogue, parse_fault

    if args.list:
        print(catalogue())
        return EXIT_OK
    try:
        machines = [m for m in args.machines.split(",") if m] if args.machines is not None else None
        faults = [item for text in args.fault for item in parse_fault(text)]
        plant = Plant(machines, seed=args.seed, faults=faults, scale_tags=args.scale_tags)
        if not plant.machines:
            raise ValueError("no machines to simulate (--machines is empty and there are no --scale-tags)")
        if args.rate <= 0 or args.speed <= 0:
            raise ValueError("--rate and --speed must be positive")
        opcua, mqtt = _sim_servers(args, plant)
    except ValueError as exc:
        print(f"hmi sim: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if opcua is None and mqtt is None:
        print("hmi sim: nothing to serve (--opcua-port 0 and no --mqtt-host)", file=sys.stderr)
        return EXIT_CONFIG

    _log_to_file("plant")
    from hmi.sim.runner import PlantRunner

    runner = PlantRunner(plant, args.rate, args.speed, opcua=opcua, mqtt=mqtt, freeze_gc=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        await runner.run(stop, args.duration)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"hmi sim: cannot serve on port {args.opcua_port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _sim_servers(args: argparse.Namespace, plant: Any) -> tuple[Any, Any]:
    """The OPC UA server and MQTT publisher `hmi sim` was asked for (None when off)."""
    opcua = mqtt = None
    if args.opcua_port:
        from hmi.sim.opcua_server import OpcUaSecurity, PlantOpcUaServer

        password = _secret("HMI_SIM_PASSWORD", args.password_file, "OPC UA") if args.user else None
        if args.user and not password:
            raise ValueError(f"--user {args.user} needs a password: set HMI_SIM_PASSWORD or give --password-file")
        security = OpcUaSecurity(
            policies=args.security, pki_dir=Path(args.pki) if args.pki else None, user=args.user, password=password
        )
        opcua = PlantOpcUaServer(plant, args.host, args.opcua_port, security, batched=not args.unbatched)
    if args.mqtt_host:
        from hmi.sim.mqtt_publisher import MqttOptions, PlantMqttPublisher

        tls = args.mqtt_tls or bool(args.mqtt_ca or args.mqtt_cert)
        options = MqttOptions(
            host=args.mqtt_host,
            port=args.mqtt_port or (8883 if tls else 1883),
            tls=tls,
            ca_file=Path(args.mqtt_ca) if args.mqtt_ca else None,
            cert_file=Path(args.mqtt_cert) if args.mqtt_cert else None,
            key_file=Path(args.mqtt_key) if args.mqtt_key else None,
            tls_insecure=args.mqtt_tls_insecure,
            username=args.mqtt_user,
            password=_secret("HMI_SIM_MQTT_PASSWORD", args.mqtt_password_file, "MQTT") if args.mqtt_user else None,
            topic_root=args.mqtt_root,
        )
        mqtt = PlantMqttPublisher(plant, options)
    return opcua, mqtt


def cmd_trust(args: argparse.Namespace) -> int:
    from hmi.sources.pki import Pki

    pki = Pki()
    if args.remove:
        try:
            removed = pki.untrust(args.remove)
        except ValueError as exc:
            print(f"hmi trust: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        for info in removed:
            print(f"no longer trusted: {info.thumbprint} ({info.subject}), moved to {info.path}")
        return EXIT_OK
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


def cmd_cert(args: argparse.Namespace) -> int:
    """Show or export the client's own OPC UA certificate (made now if there is none yet), the
    one a server must trust."""
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    from hmi.sources.pki import Pki, application_uris, default_application_uri, thumbprint

    pki = Pki()
    encoding = None
    if args.action == "export":
        encoding = {".pem": Encoding.PEM, ".der": Encoding.DER, ".cer": Encoding.DER, ".crt": Encoding.DER}.get(
            Path(args.file).suffix.lower()
        )
        if encoding is None:
            print(f"hmi cert: {args.file}: give a file ending in .der, .cer, .crt (DER) or .pem (PEM)", file=sys.stderr)
            return EXIT_CONFIG
    try:
        if not pki.own_cert.exists():
            uri = args.application_uri or default_application_uri()
            asyncio.run(pki.ensure_client_certificate(uri))
            print(f"created the client certificate for {uri}", file=sys.stderr)
        cert = pki.own_certificate()
        if encoding is not None:
            Path(args.file).write_bytes(cert.public_bytes(encoding))
    except (OSError, ValueError) as exc:
        print(f"hmi cert: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    der = cert.public_bytes(Encoding.DER)
    if encoding is not None:
        print(f"wrote the client certificate ({thumbprint(der)}) to {args.file}")
        return EXIT_OK
    not_after = cert.not_valid_after_utc
    state = " (expired)" if not_after < datetime.now(UTC) else ""
    print(f"file            {pki.own_cert}")
    print(f"subject         {cert.subject.rfc4514_string()}")
    print(f"ApplicationUri  {', '.join(application_uris(cert)) or '(none)'}")
    print(f"valid           {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {not_after:%Y-%m-%d %H:%M} UTC{state}")
    print(f"SHA-256         {hashlib.sha256(der).hexdigest().upper()}")
    print(f"SHA-1           {thumbprint(der)} (the thumbprint OPC UA servers show)")
    return EXIT_OK


def _open_recording(args: argparse.Namespace) -> tuple[HistorianReader, TimeRange, Project | None]:
    """The historian reader, the range asked for, and the project (if one was given)."""
    from hmi.historian import HistorianError, HistorianReader
    from hmi.historian.reader import resolve_range
    from hmi.historian.writer import HistorianWriter

    project = _load(Path(args.project)) if getattr(args, "project", None) else None
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


def cmd_export(args: argparse.Namespace) -> int:
    from hmi.historian.export import ExportError, export

    reader, time_range, _ = _open_recording(args)
    fmt = args.format
    out = Path(args.out) if args.out else Path(f"{Path(args.db).stem}-export.{fmt}")
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
    reader, time_range, project = _open_recording(args)
    try:
        html = shift_report(
            reader, time_range, project=project.project.name if project else "", station=args.station or _host()
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


def cmd_replay(args: argparse.Namespace) -> int:
    from hmi.sources.replay import UNPACED, check_speed

    try:
        speed = UNPACED if args.speed == "max" else check_speed(float(args.speed))
    except ValueError as exc:
        print(f"hmi replay: --speed: {exc} (or 'max' with --headless)", file=sys.stderr)
        return EXIT_CONFIG
    if speed == UNPACED and not args.headless:
        print("hmi replay: --speed max is for --headless; a window plays at 0.5x to 100x", file=sys.stderr)
        return EXIT_CONFIG
    reader, time_range, project = _open_recording(args)
    reader.close()
    if args.headless:
        return _replay_headless(args.db, time_range, speed)
    from hmi.ui.replay_window import run_replay_window

    return run_replay_window(
        args.db, time_range, project, speed=speed, screenshot=args.screenshot, exit_after_s=args.exit_after
    )


def _replay_headless(db: str, time_range: TimeRange, speed: float) -> int:
    from hmi.core.bus import TagBus
    from hmi.sources.replay import ReplaySource, ReplayState, format_counts

    source = ReplaySource(db, time_range.start_ns, time_range.end_ns, TagBus(), speed=speed, autoplay=True)
    source.start()
    try:
        source.wait_ended()
    except KeyboardInterrupt:
        source.close()
        return EXIT_FAILURE
    source.close()
    if source.state == ReplayState.FAILED:
        print(f"hmi replay: {source.error}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"samples replayed per tag, {time_range.label}:")
    print(format_counts(source.counts(), source.published_events))
    return EXIT_OK


def cmd_twin(args: argparse.Namespace) -> int:
    """`hmi twin fit`: fit a pump's curve from a recorded healthy period, print the config block."""
    from hmi.config.twin import CentrifugalPumpConfig
    from hmi.twin.fit import FitError, fit_pump

    reader, time_range, project = _open_recording(args)
    config = project.twin.get(args.machine) if project is not None else None
    if config is not None and not isinstance(config, CentrifugalPumpConfig):
        reader.close()
        print(f"hmi twin fit: [twin.{args.machine}] is a {config.kind_name} model, not a pump", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = fit_pump(
            reader,
            args.machine,
            time_range.start_ns,
            time_range.end_ns,
            config,
            rated_speed_rpm=args.rated_speed,
            magnetising_a=args.magnetising_current,
        )
    except FitError as exc:
        print(f"hmi twin fit: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        reader.close()
    print(result.report(), file=sys.stderr)
    print(result.toml())
    return EXIT_OK


def _add_range_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, metavar="FILE", help="historian file (or a database URL)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--shift", metavar="DATE/NAME", help="a recorded shift, e.g. 2026-11-20/A")
    which.add_argument("--from", dest="start", metavar="TIME", help="start, ISO 8601 (local time of the recording)")
    parser.add_argument("--to", dest="end", metavar="TIME", help="end (with --from)")
    parser.add_argument("--project", help="project file: its time zone, shifts and trends")


def cmd_model_info(args: argparse.Namespace) -> int:
    """Validate a GLB and print its node tree and triangle count, or why it is refused."""
    if args.probe_child:
        # The probe import's child process (see hmi.scene.probe); this is how a frozen
        # bundle, which has no `python -m`, runs it.
        from hmi.ui.scene_probe import main as probe_main

        return probe_main(["--render"] if args.render else [])
    if not args.file:
        print("hmi model-info: a GLB file is required", file=sys.stderr)
        return EXIT_CONFIG
    import json

    from hmi.scene.probe import check_model
    from hmi.scene.report import describe

    check = check_model(args.file, cache=None, probe=args.probe, render=args.render)
    report = check.checked.report
    if args.json:
        data = report.to_json()
        if check.probe is not None:
            data["probe"] = {"ok": check.probe.ok, "message": check.probe.message, "seconds": check.probe.seconds}
        print(json.dumps(data, indent=2))
    else:
        for line in describe(report):
            print(line)
        if check.probe is not None:
            verdict = "OK" if check.probe.ok else f"FAILED: {check.probe.message}"
            print(f"probe import in a child process: {verdict} ({check.probe.seconds:.2f} s)")
    return EXIT_OK if check.ok else EXIT_FAILURE


def cmd_self_test(args: argparse.Namespace) -> int:
    from hmi.selftest import run_self_test

    if not args.verbose:
        # The summary is the output; library chatter would push it off the screen.
        logging.getLogger().setLevel(logging.WARNING)
    return run_self_test(keep=args.keep, timeout_s=args.timeout)


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

    p = sub.add_parser(
        "stop",
        help="stop the whole system of a project (plant connections, runtime, historian); engineer role",
        description="Log in to the project's running runtime and stop it: recording ends, the window and the "
        "embedded plant close too. Audited with the user and the reason. The password is asked for, or read "
        "from standard input when that is not a terminal.",
    )
    p.add_argument("--project", default=str(default_project()), help="project file (default: the demo plant)")
    p.add_argument("--user", help="user name (an engineer or admin; asked for when not given)")
    p.add_argument("--reason", required=True, help="why the system is stopped (recorded in the audit trail)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("window", help="open a window on a running runtime")
    p.add_argument("--project", default=str(default_project()))
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window, then exit")
    p.add_argument("--exit-after", type=float, metavar="S", help="close the window after S seconds")
    p.add_argument("--machine", metavar="ID", help="the machine shown first (default: the project's first)")
    _add_ipc_args(p)
    p.set_defaults(func=cmd_window)

    p = sub.add_parser(
        "sim",
        help="serve the demo plant over OPC UA and/or MQTT",
        description="Serve the demo plant (docs/demo-plant.md). Passwords come from HMI_SIM_PASSWORD and "
        "HMI_SIM_MQTT_PASSWORD or from files, never from the command line.",
    )
    p.add_argument("--machines", help="comma-separated machine ids (default: all five)")
    p.add_argument("--list", action="store_true", help="print every machine's signals and faults, then exit")
    p.add_argument("--rate", type=float, default=10.0, help="ticks (updates) per second (default 10)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same values")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="MACHINE.FAULT@TIME",
        help="schedule a fault in simulated time: pump01.bearing_wear@300s, pump01.cavitation@1m..2m (cleared at "
        "2 min), --fault=-pump01.cavitation@5m (clear only); repeatable",
    )
    p.add_argument("--duration", type=float, help="stop after S wall-clock seconds")
    p.add_argument("--scale-tags", type=int, default=0, metavar="N", help="add N synthetic tags (OPC UA load tests)")
    g = p.add_argument_group("OPC UA")
    g.add_argument("--opcua-port", type=int, default=48400, help="OPC UA port (default 48400; 0: off)")
    g.add_argument("--host", default="127.0.0.1", help="address to serve OPC UA on (default 127.0.0.1)")
    g.add_argument(
        "--security",
        choices=("both", "none", "encrypt"),
        default="both",
        help="endpoints: None and Basic256Sha256 SignAndEncrypt (both, default), or one of them",
    )
    g.add_argument("--pki", metavar="DIR", help="certificate folder (default: <data dir>/sim-pki)")
    g.add_argument("--user", help="require this user name (password: HMI_SIM_PASSWORD or --password-file)")
    g.add_argument("--password-file", metavar="FILE", help="file whose first line is the OPC UA password")
    g.add_argument("--unbatched", action="store_true", help="use asyncua's one-by-one write path (benchmarks)")
    g = p.add_argument_group("MQTT")
    g.add_argument("--mqtt-host", help="broker host (MQTT is off without it)")
    g.add_argument("--mqtt-port", type=int, help="broker port (default 1883, or 8883 with TLS)")
    g.add_argument("--mqtt-tls", action="store_true", help="connect with TLS")
    g.add_argument("--mqtt-ca", metavar="PEM", help="CA certificate(s) to trust for the broker (implies TLS)")
    g.add_argument("--mqtt-cert", metavar="PEM", help="client certificate (implies TLS; needs --mqtt-key)")
    g.add_argument("--mqtt-key", metavar="PEM", help="client private key")
    g.add_argument("--mqtt-tls-insecure", action="store_true", help="do not check the broker's host name")
    g.add_argument("--mqtt-user", help="user name (password: HMI_SIM_MQTT_PASSWORD or --mqtt-password-file)")
    g.add_argument("--mqtt-password-file", metavar="FILE", help="file whose first line is the MQTT password")
    g.add_argument("--mqtt-root", default="factory", help="topic root (default: factory)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("trust", help="trust an OPC UA server certificate (see the rejected list with --list)")
    p.add_argument("certificate", nargs="?", help="SHA-1 thumbprint of a rejected certificate, or a certificate file")
    p.add_argument("--list", action="store_true", help="list trusted and rejected certificates")
    p.add_argument(
        "--remove", metavar="THUMBPRINT|NAME", help="stop trusting a server certificate (moved back to rejected)"
    )
    p.set_defaults(func=cmd_trust)
    p = sub.add_parser("cert", help="show or export this client's OPC UA certificate (for the server to trust)")
    cert = p.add_subparsers(dest="action", required=True)
    c = cert.add_parser("show", help="subject, ApplicationUri, validity and thumbprints")
    c.add_argument("--application-uri", help="for a certificate made now (default urn:<host>:hmi:client)")
    c.set_defaults(func=cmd_cert)
    c = cert.add_parser("export", help="write the certificate to FILE: DER (.der .cer .crt) or PEM (.pem)")
    c.add_argument("file", help="where to write it")
    c.add_argument("--application-uri", help="for a certificate made now (default urn:<host>:hmi:client)")
    c.set_defaults(func=cmd_cert)
    p = sub.add_parser("users", help="manage users (stored in the data folder; no default password)")
    users = p.add_subparsers(dest="action", required=True)
    u = users.add_parser("list", help="list users and their roles")
    for action, text in (
        ("add", "add a user (the first must be an admin)"),
        ("passwd", "set a user's password"),
        ("disable", "disable a user (keeps the record)"),
        ("enable", "enable a disabled user"),
        ("role", "change a user's role"),
    ):
        u = users.add_parser(action, help=text)
        u.add_argument("name")
        if action in ("add", "role"):
            u.add_argument("--role", required=True, help="viewer, operator, engineer or admin")
        if action in ("add", "passwd"):
            u.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        u.add_argument(
            "--project",
            metavar="FILE",
            help="also record the change (and who made it: the OS user and host) in this project's audit trail",
        )
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("audit", help="check or list the audit trail")
    audit = p.add_subparsers(dest="action", required=True)
    a = audit.add_parser("verify", help="check the hash chain; exits 1 if a record was edited, deleted or reordered")
    a.add_argument("--db", required=True, help="historian database file (or URL)")
    a = audit.add_parser("list", help="print the audit records")
    a.add_argument("--db", required=True, help="historian database file (or URL)")
    a.add_argument("--last", type=int, default=0, help="only the last N records")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("replay", help="play back a recorded shift or time range from a historian file")
    _add_range_args(p)
    p.add_argument("--headless", action="store_true", help="play without a window and print per-tag counts")
    p.add_argument("--speed", default="1", help="0.5 to 100 (x real time); 'max' with --headless")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the playback window, then exit")
    p.add_argument("--exit-after", type=float, metavar="S", help="close the window after S seconds")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("export", help="export a time range of a historian file to CSV or Parquet")
    _add_range_args(p)
    p.add_argument("--tags", help="comma-separated tag names (default: all)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--out", metavar="FILE", help="output file (default: DB-export.FORMAT here)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write the printable shift report of a historian file (HTML)")
    _add_range_args(p)
    p.add_argument("--out", required=True, metavar="FILE", help="report.html")
    p.add_argument("--station", default="", help="station named in the header (default: this host)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("model-info", help="check a GLB model: node tree and triangle count, or the error")
    p.add_argument("file", nargs="?", help="a .glb (or embedded .gltf) file")
    p.add_argument("--probe", action="store_true", help="also import it with VTK in a child process")
    p.add_argument("--render", action="store_true", help="with --probe: also draw one offscreen frame")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--probe-child", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_model_info)

    p = sub.add_parser("twin", help="digital-twin tools: fit a pump curve from recorded data")
    twin = p.add_subparsers(dest="action", required=True)
    t = twin.add_parser("fit", help="fit [twin.MACHINE.curve] from a healthy period in the historian; prints TOML")
    _add_range_args(t)
    t.add_argument("--machine", required=True, help="the pump's machine id, e.g. pump01")
    t.add_argument("--rated-speed", type=float, metavar="RPM", help="without --project: the rated speed")
    t.add_argument("--magnetising-current", type=float, metavar="A", help="no-load current (motor data sheet)")
    p.set_defaults(func=cmd_twin)

    p = sub.add_parser("check-config", help="validate a project file")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--self-test" in argv and all(a.startswith("-") for a in argv[: argv.index("--self-test")]):
        # What an installer or a support call runs first: `hmi --self-test`.
        argv[argv.index("--self-test")] = "self-test"
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
