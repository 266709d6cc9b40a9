"""`hmi service install|uninstall|status`: the headless runtime as a systemd service.

The unit runs `hmi run --headless --project ABS_PATH` (the bundle's executable when frozen,
else this Python with `-m hmi`), restarts it on failure, and leaves its log to the journal
(hmi/logfile.py writes no log file when stderr is the journal). System level (root,
/etc/systemd/system) runs it as a dedicated user with its data in /var/lib/hmi
(StateDirectory=hmi, HMI_DATA_DIR) inside a read-only file system; user level
(~/.config/systemd/user) runs it as the invoking user with that user's data folder. The
unit text is a pure function of its inputs (`unit_text`), so it is tested without systemd.
Windows has no equivalent here: docs/packaging.md says how to use NSSM or `sc.exe`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers, load
from hmi.paths import hmi_command, install_root

DEFAULT_NAME = "hmi-runtime"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_USER = "hmi"  # the dedicated account docs/packaging.md suggests for a server
STATE_DIRECTORY = "hmi"  # StateDirectory=: systemd makes /var/lib/hmi, owned by the service's user
SYSTEM_DATA_DIR = Path("/var/lib") / STATE_DIRECTORY
# The first line of every unit this command writes; uninstall removes only units that carry
# it (never a unit someone else wrote under the same name). Bump the version if the unit's
# layout changes in a way `status` or `uninstall` must tell apart.
UNIT_MARKER = "# hmi-service-unit: 1"
# Exit codes of the headless runtime (hmi/cli/__init__.py): 4 is an operator's audited
# stop_system, so the service stays stopped and is not "failed"; 2 (the project or a key is
# refused) and 3 (another process records into the historian) would only fail again.
SUCCESS_EXIT = "4"
NO_RESTART_EXIT = "2 3"
RESTART_SEC = 5
START_LIMIT_INTERVAL_S = 300
START_LIMIT_BURST = 10  # with RestartSec=5: about a minute of failing starts, then "failed"
STOP_TIMEOUT_S = 30  # the historian's last commit and the OPC UA sessions' close
HOME_FOLDERS = (Path("/home"), Path("/root"), Path("/run/user"))


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("service", help="install the headless runtime as a systemd service; its status")
    actions = p.add_subparsers(dest="action", required=True)
    install = actions.add_parser("install", help="write and enable the unit (system level needs root)")
    install.add_argument("--project", required=True, help="the project file the runtime records")
    install.add_argument(
        "--user-name",
        metavar="NAME",
        help=f"system level: the account the runtime runs as (default: {SYSTEM_USER}); "
        "user level: must be the invoking user",
    )
    install.add_argument("--dry-run", action="store_true", help="print the unit, write and enable nothing")
    for action in (install, actions.add_parser("uninstall", help="stop, disable and remove the unit")):
        _add_common(action)
    _add_common(actions.add_parser("status", help="systemd's state of the unit and whether the runtime answers"))
    p.set_defaults(func=cmd_service)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", action="store_true", help="a user service (~/.config/systemd/user), not a system one")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"the unit's name (default: {DEFAULT_NAME})")
    p.add_argument(
        "--unit-dir", metavar="DIR", help="where the unit file goes (default: the systemd folder of the level)"
    )


# -- the unit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitPlan:
    """Everything the unit text depends on."""

    argv: list[str]  # the command line: executable first, the absolute project path last
    working_dir: Path
    user_level: bool
    user_name: str | None = None  # system level: User=
    data_dir: Path | None = None  # HMI_DATA_DIR; None: the platform's folder of the user
    writable: list[Path] = field(default_factory=list)  # beyond the data folder (a historian elsewhere)
    protect_home: str = "yes"
    description: str = "HMI runtime"


def quote(word: str, variables: bool = False) -> str:
    """One word of a unit setting: `%` escaped (systemd's specifiers), `$` too where systemd
    expands variables (`variables`: ExecStart only), and double-quoted with C escapes when
    it holds whitespace, quotes or backslashes."""
    word = word.replace("%", "%%")
    if variables:
        word = word.replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_start(argv: list[str]) -> str:
    # systemd expands $VARIABLE in the arguments, not in the program's path (checked with
    # `systemd-analyze verify`: "$$" in the path stays "$$").
    return " ".join([quote(argv[0]), *(quote(a, variables=True) for a in argv[1:])])


def unit_text(plan: UnitPlan) -> str:
    """The unit file. Hardening only where it cannot break the runtime: it needs the network,
    its data folder (and a historian folder the project names) and nothing else."""
    lines = [
        UNIT_MARKER,
        "# Written by `hmi service install`; remove it with `hmi service uninstall`.",
        "[Unit]",
        f"Description={plan.description.replace('%', '%%')}",  # specifiers expand here too
        "After=network-online.target",
        "Wants=network-online.target",
        "# A runtime that keeps failing (a port taken, the plant's certificate refused) is",
        "# given up: `systemctl reset-failed` and a start re-arm it.",
        f"StartLimitIntervalSec={START_LIMIT_INTERVAL_S}",
        f"StartLimitBurst={START_LIMIT_BURST}",
        "",
        "[Service]",
        "Type=simple",
    ]
    if plan.user_name is not None:
        lines.append(f"User={plan.user_name}")
    lines += [
        f"ExecStart={exec_start(plan.argv)}",
        # Taken whole, unquoted (systemd.exec(5)): only the specifier character is escaped.
        f"WorkingDirectory={str(plan.working_dir).replace('%', '%%')}",
        # Lines reach the journal as they are written, not when a buffer fills.
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if plan.data_dir is not None:
        lines.append(f"Environment={quote(f'HMI_DATA_DIR={plan.data_dir}')}")
    if not plan.user_level:
        lines += [f"StateDirectory={STATE_DIRECTORY}", "StateDirectoryMode=0700"]
    lines += [
        "UMask=0077",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "# 4: stopped by an operator's audited stop_system (stays stopped, not failed);",
        "# 2: the project or a key refused, 3: the historian recorded by another process.",
        f"SuccessExitStatus={SUCCESS_EXIT}",
        f"RestartPreventExitStatus={NO_RESTART_EXIT}",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "NoNewPrivileges=yes",
    ]
    if not plan.user_level:
        # Not MemoryDenyWriteExecute: libffi's closures (ctypes, cffi) need writable code.
        # Not RestrictAddressFamilies: OPC UA, MQTT and database drivers choose their own.
        lines += [
            "ProtectSystem=strict",
            "ReadWritePaths=" + " ".join(quote(str(p)) for p in [plan.data_dir or SYSTEM_DATA_DIR, *plan.writable]),
            f"ProtectHome={plan.protect_home}",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
        ]
    lines += ["", "[Install]", f"WantedBy={'default.target' if plan.user_level else 'multi-user.target'}", ""]
    return "\n".join(lines)


def read_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """The settings of a unit file by section, in order (a key may repeat: Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def unquote(value: str) -> list[str]:
    """The words of a setting written by `quote` (POSIX quoting rules, then `%%`)."""
    return [w.replace("%%", "%") for w in shlex.split(value)]


def read_exec_start(value: str) -> list[str]:
    """The command line of an ExecStart written by `exec_start`."""
    words = unquote(value)
    return words[:1] + [w.replace("$$", "$") for w in words[1:]]


def unit_argv(sections: dict[str, list[tuple[str, str]]]) -> list[str]:
    return next((read_exec_start(v) for k, v in sections.get("Service", []) if k == "ExecStart"), [])


def unit_environment(sections: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    env = {}
    for key, value in sections.get("Service", []):
        if key == "Environment":
            for word in unquote(value):
                name, _, val = word.partition("=")
                env[name] = val
    return env


def historian_folder(url: str, project_dir: Path) -> Path | None:
    """The folder of a SQLite historian the project names outside the data folder (the
    runtime writes its file, WAL and lock there), else None."""
    if "{data}" in url:
        return None
    if "://" not in url:
        path = Path(url)
    elif url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").partition("?")[0])
    else:
        return None  # a database server
    path = path.expanduser()
    return (path if path.is_absolute() else project_dir / path).parent


def in_home(path: Path) -> bool:
    return any(path.is_relative_to(home) for home in HOME_FOLDERS)


def default_unit_dir(user_level: bool) -> Path:
    if not user_level:
        return SYSTEM_UNIT_DIR
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


# -- the command -------------------------------------------------------------------------------


class Refused(Exception):
    """Why the command does nothing; exit code and message."""

    def __init__(self, message: str, code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.code = code


def cmd_service(args: argparse.Namespace) -> int:
    try:
        if args.action == "install":
            return _install(args)
        if args.action == "uninstall":
            return _uninstall(args)
        return _status(args)
    except Refused as exc:
        print(f"hmi service {args.action}: {exc}", file=sys.stderr)
        return exc.code


def _unit_path(args: argparse.Namespace) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9:_.@-]+", args.name):
        raise Refused(f"{args.name!r} is not a unit name (letters, digits, ':', '_', '.', '-', '@')")
    folder = Path(args.unit_dir) if args.unit_dir else default_unit_dir(args.user)
    return folder / f"{args.name}.service"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _plan(args: argparse.Namespace) -> UnitPlan:
    project_path = Path(args.project).expanduser().absolute()
    if re.search(r"[\x00-\x1f\x7f]", str(project_path)):
        raise Refused(f"{str(project_path)!r}: a unit file cannot name a path with control characters")
    if not project_path.is_file():
        raise Refused(f"the project file {project_path} does not exist")
    project = load(project_path, files=True)  # a project `hmi check-config` refuses would fail every start
    if project.runtime.remote is not None:
        raise Refused(
            f"{project_path} names a remote runtime ([runtime] remote = {project.runtime.remote!r}): it is a "
            "station's project, and a station runs no runtime; install the service on that server"
        )
    argv = hmi_command("run", "--headless", "--project", str(project_path))
    if not Path(argv[0]).is_absolute():
        raise Refused(f"cannot tell which program to start ({argv[0]!r} is not an absolute path)", EXIT_FAILURE)
    writable = historian_folder(project.historian.url, project_path.parent)
    if args.user:
        me = getpass.getuser()
        if args.user_name not in (None, me):
            raise Refused(
                f"a user service runs as its user ({me}): install it as {args.user_name}, without --user-name"
            )
        # The same data folder as this user's other commands (`hmi station add`, `hmi users`).
        data = os.environ.get("HMI_DATA_DIR")
        return UnitPlan(
            argv, project_path.parent, user_level=True, data_dir=Path(data).absolute() if data else None,
            description=f"HMI runtime for {project_path}",
        )  # fmt: skip
    user_name = args.user_name or SYSTEM_USER
    _check_account(user_name)
    # The program (a checkout or venv in a home folder) must stay readable too.
    paths = [project_path, Path(argv[0]), install_root(), *([writable] if writable else [])]
    return UnitPlan(
        argv,
        project_path.parent,
        user_level=False,
        user_name=user_name,
        data_dir=SYSTEM_DATA_DIR,
        writable=[writable] if writable is not None and not writable.is_relative_to(SYSTEM_DATA_DIR) else [],
        # The project (and its models) must stay readable, a historian there writable
        # (ReadWritePaths wins over the read-only home): hidden only when nothing is there.
        protect_home="read-only" if any(in_home(p) for p in paths) else "yes",
        description=f"HMI runtime for {project_path}",
    )


def _check_account(name: str) -> None:
    try:
        import pwd
    except ImportError:  # Windows: no systemd either; said at the top of the command
        return
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise Refused(
            f"there is no user {name!r} to run the runtime as: create it with "
            f"`useradd --system --home-dir {SYSTEM_DATA_DIR} --shell /usr/sbin/nologin {name}`, "
            "or name another with --user-name"
        ) from None


def _systemctl(user_level: bool, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemctl")
    if exe is None:
        raise Refused("systemctl is not installed: this system does not run systemd", EXIT_FAILURE)
    return subprocess.run(
        [exe, *(["--user"] if user_level else []), *args], capture_output=True, text=True, timeout=60, check=False
    )


def _checked(user_level: bool, *args: str, unit_path: Path) -> None:
    done = _systemctl(user_level, *args)
    if done.returncode != 0:
        command = " ".join(["systemctl", *(["--user"] if user_level else []), *args])
        raise Refused(f"{unit_path}: `{command}` failed: {done.stderr.strip() or done.stdout.strip()}", EXIT_FAILURE)


def _require_level(args: argparse.Namespace) -> None:
    if not sys.platform.startswith("linux"):
        raise Refused("only Linux with systemd is supported; docs/packaging.md says how to run it on Windows")
    if not args.user and not _is_root():
        raise Refused("a system service needs root: run it with sudo, or install a user service with --user", 1)


def _install(args: argparse.Namespace) -> int:
    if not args.dry_run:
        _require_level(args)
    text = unit_text(_plan(args))
    if args.dry_run:
        print(text, end="")
        return EXIT_OK
    path = _unit_path(args)
    if path.exists() and not path.read_text(encoding="utf-8").startswith(UNIT_MARKER):
        raise Refused(f"{path} exists and was not written by `hmi service install`: not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)  # systemd reads it; it holds no secret
    os.replace(tmp, path)
    print(f"wrote {path}")
    _checked(args.user, "daemon-reload", unit_path=path)
    _checked(args.user, "enable", path.name, unit_path=path)
    # restart, not start: a unit installed again (the project moved) must run its new command.
    _checked(args.user, "restart", path.name, unit_path=path)
    scope = "--user " if args.user else ""
    print(f"enabled and (re)started {path.name}: `hmi service status {scope}--name {args.name}`, "
          f"logs: `journalctl {scope}-u {path.name}`")  # fmt: skip
    if args.user:
        print(f"to keep it running while {getpass.getuser()} is logged out: `loginctl enable-linger`")
    return EXIT_OK


def _uninstall(args: argparse.Namespace) -> int:
    _require_level(args)
    path = _unit_path(args)
    if not path.exists():
        raise Refused(f"{path} does not exist: nothing to remove", EXIT_FAILURE)
    if not path.read_text(encoding="utf-8").startswith(UNIT_MARKER):
        raise Refused(f"{path} was not written by `hmi service install`: not removing it")
    _checked(args.user, "disable", "--now", path.name, unit_path=path)
    path.unlink()
    _checked(args.user, "daemon-reload", unit_path=path)
    print(f"stopped, disabled and removed {path} (the data folder is kept)")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    path = _unit_path(args)
    if not path.exists():
        raise Refused(f"{path} does not exist: the service is not installed", EXIT_FAILURE)
    sections = read_unit(path.read_text(encoding="utf-8"))
    print(f"unit:    {path}")
    active = False
    try:
        shown = _systemctl(
            args.user, "show", path.name, "--property=ActiveState,SubState,UnitFileState,MainPID,NRestarts"
        )
    except (Refused, OSError, subprocess.SubprocessError) as exc:
        print(f"systemd: unknown ({exc})")
    else:
        if shown.returncode == 0:
            state = dict(line.partition("=")[::2] for line in shown.stdout.splitlines() if "=" in line)
            active = state.get("ActiveState") == "active"
            print(
                f"systemd: {state.get('ActiveState', '?')} ({state.get('SubState', '?')}), "
                f"{state.get('UnitFileState', '?')}, main pid {state.get('MainPID', '?')}, "
                f"restarts {state.get('NRestarts', '?')}"
            )
        else:
            print(f"systemd: unknown (systemctl: {shown.stderr.strip() or shown.stdout.strip()})")
    answering = _runtime_status(sections)
    return EXIT_OK if active and answering else EXIT_FAILURE


def _runtime_status(sections: dict[str, list[tuple[str, str]]]) -> bool:
    """Print whether the unit's runtime answers through its run file, as `hmi run` finds it."""
    argv = unit_argv(sections)
    if "--project" not in argv[:-1]:
        print("runtime: the unit names no project")
        return False
    project = argv[argv.index("--project") + 1]
    data = unit_environment(sections).get("HMI_DATA_DIR")
    if data:
        os.environ["HMI_DATA_DIR"] = data  # the run file is in the service's data folder
    from hmi.security.stations import StationError
    from hmi.supervisor import find_running, process_runs, read_run_file, request, run_file

    record = read_run_file(project)
    if record is not None and record.server_key and data and _owner(Path(data)) not in (None, _euid()):
        # Pinging over CURVE would make this account's station key in the service's folder
        # (root's files there, which the service's own user then refuses).
        state = "runs" if process_runs(record.pid) else "is gone"
        print(f"runtime: pid {record.pid} {state} (run file {run_file(project)}); not pinged over CURVE as this")
        print(f"         user: run `hmi service status` as the service's user ({_owner_name(Path(data))}) to ping it")
        return False
    try:
        running = find_running(project)
    except StationError as exc:  # CURVE: this account's station key cannot be used (another owner)
        record = read_run_file(project)
        print(f"runtime: run file {run_file(project)} names pid {record.pid if record else '?'}; cannot ping: {exc}")
        print("         run `hmi service status` as the service's user to ping it")
        return False
    if running is None:
        print(f"runtime: not answering (no live run file {run_file(project)})")
        return False
    print(f"runtime: answering, pid {running.pid}, stream {running.stream_address}, requests {running.request_address}")
    try:
        reply = request(running.request_address, {"command": "status"}, curve=running.curve)
    except (TimeoutError, ConnectionError, ValueError) as exc:
        print(f"         no status: {exc}")
        return True
    for source in reply.get("sources", []):
        state = "connected" if source.get("connected") else f"not connected ({source.get('last_error') or '?'})"
        print(f"         {source.get('name')}: {state}")
    print(f"         samples {reply.get('samples', '?')}")
    return True


def _euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def _owner_name(path: Path) -> str:
    uid = _owner(path)
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name if uid is not None else "?"
    except (ImportError, KeyError):
        return f"uid {uid}"
