"""`hmi stop`: the audited `stop_system` command, from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers, cli_operator, load, read_password
from hmi.paths import default_project


def add_arguments(sub: Subparsers) -> None:
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


STOP_WAIT_S = 60.0  # the runtime flushes the historian and closes its connections first


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a project's whole system (plant connections, runtime, historian) as a user with the
    engineer role: the same audited `stop_system` command as the window's "Stop system…"."""
    import time

    from hmi.supervisor import find_running, process_runs, request

    project_path = Path(args.project)
    load(project_path)
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
    password = read_password(argparse.Namespace(password_stdin=not sys.stdin.isatty()), repeat=False)
    os_user, host = cli_operator()
    station = f"{host} (hmi stop by {os_user})"
    address = running.request_address
    curve = running.curve  # the runtime serves over CURVE: this workstation's station key
    try:
        login = request(
            address, {"command": "login", "user": user, "password": password, "station": station}, 10.0, curve
        )
        if not login.get("ok"):
            print(f"hmi stop: login refused: {login.get('error', 'no reason given')}", file=sys.stderr)
            return EXIT_FAILURE
        session = login["session"]
        reply = request(
            address, {"command": "stop_system", "session": session, "reason": reason, "station": station}, 10.0, curve
        )
        if not reply.get("ok"):
            request(
                address, {"command": "logout", "session": session, "station": station, "reason": "hmi stop"}, 5.0, curve
            )
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
