"""`hmi run`: start the plant (when the project embeds it), the runtime and the window as
separate processes, keep them alive, and stop them together.

Why processes: a VTK render takes both cores on software OpenGL, a malformed GLB can kill
the process that loads it, and recording must survive either (docs/architecture.md).
Closing the window closes only the window: the runtime (and the embedded plant) keep
recording and raising alarms, and `hmi run` on the same project opens a window on them
again (the runtime is found by its run file, below). Stopping the whole system is an
audited command to the runtime (`stop_system`: the window's File menu or `hmi stop`); the
runtime then exits with EXIT_STOPPED and the supervisor stops the rest. A crashed runtime
or plant is restarted (the window shows the gap); a crashed window is restarted while the
runtime keeps recording.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq

from hmi.config.models import Project, SimulatorConfig
from hmi.ipc import messages as m
from hmi.ipc.curve import CurveClient, host_of
from hmi.paths import data_dir, expand_data_url, hmi_command

log = logging.getLogger(__name__)

POLL_S = 0.1
STOP_GRACE_S = 5.0
# A runtime exits with this when another process records into the project's historian;
# restarting it would only fail again, so the supervisor stops instead.
EXIT_HISTORIAN_IN_USE = 3
# A runtime exits with this after an authorised `stop_system` command: the whole system is
# to stop (window and plant too), not to be restarted.
EXIT_STOPPED = 4
RUN_FILE_VERSION = 1
PING_TIMEOUT_S = 2.0


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(address: str) -> bool:
    """True if something already listens on a tcp://host:port (or host, port) address."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "posix":
            # Connections of a just-closed instance linger in TIME_WAIT for a minute; its
            # servers would bind anyway (ZeroMQ and asyncio set SO_REUSEADDR), so must the
            # check. Windows binds over TIME_WAIT anyway, and there the option would let a
            # bind succeed on a port that is really in use.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            return True
    return False


# -- finding a running runtime -------------------------------------------------------------------
#
# A runtime serving windows writes {data}/run/<hash of the project path>.json (RunningRuntime,
# versioned) and removes it on a clean exit. A file whose pid is gone (the runtime was
# killed) or whose request address does not answer `ping` is ignored, so it never blocks a
# fresh start.


@dataclass(frozen=True)
class RunningRuntime:
    """What the run file says about a project's runtime."""

    pid: int
    project: str
    stream_address: str
    request_address: str
    started_at: float
    supervisor_pid: int | None = None  # the `hmi run` that restarts it, when supervised
    # Its CURVE public key (Z85) when it serves over CURVE; absent (older files too): plain.
    server_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RUN_FILE_VERSION,
            "pid": self.pid,
            "supervisor_pid": self.supervisor_pid,
            "project": self.project,
            "stream": self.stream_address,
            "requests": self.request_address,
            "started_at": self.started_at,
            "server_key": self.server_key,
        }

    @property
    def curve(self) -> CurveClient | None:
        """How this workstation's CLI commands reach it (its own station key: `local`)."""
        return station_curve(self.server_key.encode("ascii")) if self.server_key else None

    @classmethod
    def from_json(cls, data: Any) -> RunningRuntime | None:
        """None for a file of another version or with missing fields."""
        if not isinstance(data, dict) or data.get("version") != RUN_FILE_VERSION:
            return None
        try:
            supervisor = data.get("supervisor_pid")
            server_key = data.get("server_key")
            return cls(
                pid=int(data["pid"]),
                project=str(data["project"]),
                stream_address=str(data["stream"]),
                request_address=str(data["requests"]),
                started_at=float(data["started_at"]),
                supervisor_pid=int(supervisor) if supervisor is not None else None,
                server_key=str(server_key) if server_key else None,
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def owner_pid(self) -> int:
        """The process whose end means the runtime is gone for good (not being restarted)."""
        return self.supervisor_pid or self.pid


def process_runs(pid: int) -> bool:
    """True while `pid` runs; an exited process its parent has not reaped yet does not."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _project_key(project_path: Path | str) -> str:
    return str(Path(project_path).resolve())


def run_file(project_path: Path | str) -> Path:
    digest = hashlib.sha256(_project_key(project_path).encode("utf-8")).hexdigest()[:16]
    return data_dir() / "run" / f"{digest}.json"


def write_run_file(
    project_path: Path | str, stream_address: str, request_address: str, server_key: bytes | None = None
) -> Path:
    """Announce this process as the project's runtime (written whole, then renamed into place)."""
    supervisor = os.getppid() if os.environ.get("HMI_SUPERVISED") else None
    key = server_key.decode("ascii") if server_key else None
    record = RunningRuntime(
        os.getpid(), _project_key(project_path), stream_address, request_address, time.time(), supervisor, key
    )
    path = run_file(project_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_run_file(project_path: Path | str) -> None:
    """Remove the run file if it is this process's (a later runtime's is left alone)."""
    path = run_file(project_path)
    record = read_run_file(project_path)
    if record is not None and record.pid == os.getpid():
        path.unlink(missing_ok=True)


def read_run_file(project_path: Path | str) -> RunningRuntime | None:
    try:
        data = json.loads(run_file(project_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return RunningRuntime.from_json(data)


def station_curve(server_key: bytes) -> CurveClient:
    """A CURVE client towards the runtime with `server_key`, as this workstation's station."""
    from hmi.security.stations import station_key_pair

    keys = station_key_pair()
    return CurveClient(server_key, keys.public, keys.secret)


def window_curve(project: Project, request_address: str, project_dir: Path | None = None) -> CurveClient | None:
    """How a window reaches the runtime at `request_address`: CURVE when [runtime] curve says
    so or the address leaves this host, towards [runtime] server_key, else towards this
    workstation's own runtime key (a runtime on this host, run by this user). Raises
    StationError when a key cannot be read."""
    from hmi.security.stations import read_public_key, runtime_key_pair

    rt = project.runtime
    if not rt.uses_curve(host_of(request_address)):
        return None
    server_key = read_public_key(rt.server_key, project_dir) if rt.server_key else runtime_key_pair().public
    return station_curve(server_key)


def request(
    address: str, command: dict[str, Any], timeout_s: float = PING_TIMEOUT_S, curve: CurveClient | None = None
) -> dict[str, Any]:
    """One command to a runtime's request address and its reply; TimeoutError if none comes."""
    ctx: zmq.Context = zmq.Context.instance()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(dealer)
    try:
        dealer.connect(address)
        dealer.send_multipart([m.REQUEST_COMMAND, json.dumps({**command, "_id": 1}).encode()])
        if not dealer.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no answer from {address} within {timeout_s:g} s")
        frames = dealer.recv_multipart()
        if frames[0] != m.KIND_REPLY or len(frames) != 2:
            raise ConnectionError(f"unexpected reply from {address}")
        reply = json.loads(frames[1])
        reply.pop("_id", None)
        return dict(reply)
    finally:
        dealer.close(0)


def find_running(project_path: Path | str) -> RunningRuntime | None:
    """The project's runtime if one runs and answers; None otherwise (a stale file is removed)."""
    record = read_run_file(project_path)
    if record is None:
        return None
    if not process_runs(record.pid):
        log.info("removing the run file of a runtime that is gone (pid %d)", record.pid)
        run_file(project_path).unlink(missing_ok=True)
        return None
    try:
        reply = request(record.request_address, {"command": "ping"}, curve=record.curve)
    except (TimeoutError, ConnectionError, zmq.ZMQError, ValueError) as exc:
        # The pid may be another process's by now, or the runtime hangs: not one to attach to.
        log.info("the runtime in %s does not answer (%s); ignoring it", run_file(project_path), exc)
        return None
    return record if reply.get("ok") and reply.get("pid") == record.pid else None


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, children get SIGTERM if the supervisor dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_pdeathsig


def plant_args(sim: SimulatorConfig) -> list[str]:
    """`hmi` arguments that serve the project's embedded demo plant."""
    args = ["sim", "--opcua-port", str(sim.opcua_port), "--rate", str(sim.rate_hz), "--speed", str(sim.speed)]
    args += ["--seed", str(sim.seed)]
    if sim.machines:
        args += ["--machines", ",".join(sim.machines)]
    return args


def ended_on_request(code: int) -> bool:
    """A normal exit, or one a SIGTERM or SIGINT asked for (a window told to stop before its
    own handler was installed, or by a session ending): a close, not a crash to restart."""
    return code in (0, -signal.SIGTERM, -signal.SIGINT)


@dataclass
class Child:
    name: str
    argv: list[str]
    # What to do when it exits: "restart" always, or "restart-on-crash" unless it exited 0
    # (the window: exit 0 is the operator closing it, which closes only the window).
    on_exit: str
    process: subprocess.Popen[bytes] | None = None
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=10))
    restart_at: float | None = None
    starts: int = 0


class Supervisor:
    def __init__(
        self,
        project_path: Path,
        project: Project,
        with_window: bool = True,
        with_sim: bool | None = None,
        stream_address: str | None = None,
        request_address: str | None = None,
        window_args: list[str] | None = None,
        attach: RunningRuntime | None = None,
    ) -> None:
        """`attach`: a runtime already running for this project; then only a window is
        started (and supervised) on it, and it ends when that runtime's owner ends. A
        station's project ([runtime] remote) likewise gets only a window, on that runtime:
        no plant and no runtime run here, and closing the window ends `hmi run`."""
        self.project_path = project_path
        self.project = project
        self.attach = attach
        rt = project.runtime
        self.remote = attach is None and rt.remote is not None
        host = "127.0.0.1"
        if attach is not None:
            stream_address, request_address = attach.stream_address, attach.request_address
        elif self.remote:
            # The addresses `hmi window` takes from the project; its CURVE keys follow from them.
            stream_address, request_address = (
                f"tcp://{rt.remote}:{rt.stream_port}",
                f"tcp://{rt.remote}:{rt.request_port}",
            )
        self.stream_address = stream_address or f"tcp://{host}:{free_tcp_port()}"
        self.request_address = request_address or f"tcp://{host}:{free_tcp_port()}"
        ipc = ["--ipc-stream", self.stream_address, "--ipc-requests", self.request_address]
        self.children: list[Child] = []
        if attach is None and not self.remote:
            if project.simulator.enabled if with_sim is None else with_sim:
                self.children.append(Child("plant", hmi_command(*plant_args(project.simulator)), "restart"))
            self.children.append(
                Child("runtime", hmi_command("run", "--project", str(project_path), "--headless", *ipc), "restart")
            )
        if with_window:
            argv = hmi_command("window", "--project", str(project_path), *ipc, *(window_args or []))
            self.children.append(Child("window", argv, "restart-on-crash"))
        self._stopping = False
        self.exit_code = 0
        self.started_at = time.time()  # the window logs its first live frame relative to this

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def _start(self, child: Child) -> None:
        env = dict(os.environ, HMI_SUPERVISED="1", HMI_RUN_STARTED=str(self.started_at))
        # A session of its own: Ctrl-C in the terminal (or a signal to the whole process group)
        # reaches the supervisor only, which stops the children in order (_stop_all); the
        # children still end with the supervisor, by the parent-death signal.
        child.process = subprocess.Popen(child.argv, env=env, preexec_fn=_die_with_parent(), start_new_session=True)
        child.starts += 1
        child.restart_at = None
        log.info("%s started (pid %d)", child.name, child.process.pid)

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def busy_ports(self) -> list[str]:
        """Addresses this application needs that something else already holds."""
        needed = [self.stream_address, self.request_address]
        if any(c.name == "plant" for c in self.children):
            needed.append(f"127.0.0.1:{self.project.simulator.opcua_port}")
        return [address for address in needed if port_in_use(address)]

    def historian_in_use(self) -> str | None:
        """Why the runtime could not record into the project's historian now (None if it can)."""
        # Before any child starts, so the default SQLite file is read without SQLAlchemy
        # (0.2 s warm, 0.7 s cold of every start); other URLs ask their back end.
        from hmi.historian.lock import WriterLock, is_plain_sqlite, sqlite_lock_for

        target = self.project.historian.url
        lock: WriterLock | None
        if "://" not in target:
            lock = WriterLock(Path(target).expanduser().resolve())
        elif is_plain_sqlite(url := expand_data_url(target)):
            lock = sqlite_lock_for(url)
        else:
            from hmi.historian.backends import dialect_for

            lock = dialect_for(url).writer_lock(url)
        return lock.in_use() if lock is not None else None

    def run(self) -> int:
        if self.remote:
            log.info("%s names the runtime at %s; opening a window on it", self.project_path, self.request_address)
        elif self.attach is None:
            problem = self._check_free()
            if problem is not None:
                return problem
        else:
            log.info(
                "the runtime of %s is already running (pid %d); opening a window on it",
                self.project_path,
                self.attach.pid,
            )
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.request_stop)
        for child in self.children:
            self._start(child)
        try:
            while not self._stopping:
                time.sleep(POLL_S)
                self._check_children()
        finally:
            self._stop_all()
        return self.exit_code

    def _check_free(self) -> int | None:
        """The exit code when ports or the historian are taken (after saying why), else None."""
        busy = self.busy_ports()
        if busy:
            log.error(
                "%s is already in use: is this project already running (hmi run)? To open another window on it, "
                "run: hmi window --project %s",
                ", ".join(busy),
                self.project_path,
            )
            return 1
        if any(c.name == "runtime" for c in self.children):
            problem = self.historian_in_use()
            if problem:
                log.error("%s", problem)
                return 1
        return None

    def _check_children(self) -> None:
        now = time.monotonic()
        if self.attach is not None and not process_runs(self.attach.owner_pid):
            log.info("the runtime of %s has stopped; closing its window", self.project_path)
            self._stopping = True
            return
        for child in self.children:
            if child.process is None:
                if child.restart_at is not None and now >= child.restart_at:
                    self._start(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            child.process = None
            if child.on_exit == "restart-on-crash" and ended_on_request(code):
                if self.attach is not None or self.remote:
                    log.info("%s closed; the runtime keeps running", child.name)
                    self._stopping = True
                    return
                log.info(
                    "%s closed; the runtime keeps recording and raising alarms. Reopen the window with: "
                    "hmi run --project %s (stop everything with: hmi stop --project %s --reason TEXT)",
                    child.name,
                    self.project_path,
                    self.project_path,
                )
                continue
            if child.name == "runtime" and code == EXIT_STOPPED:
                log.info("the system was stopped from an operator command; stopping window and plant")
                self._stopping = True
                return
            if child.name == "runtime" and code == EXIT_HISTORIAN_IN_USE:
                log.error("the runtime cannot record: another process holds the historian; stopping")
                self.exit_code = 1
                self._stopping = True
                return
            child.crashes.append(now)
            recent = sum(1 for t in child.crashes if now - t < 30.0)
            delay = 0.5 if recent < 3 else 5.0
            log.error("%s exited with code %s; restarting in %.1f s", child.name, code, delay)
            child.restart_at = now + delay

    def _stop_all(self) -> None:
        # Window and runtime first (the window may be saving its layout, the runtime flushes
        # the historian and closes its OPC UA sessions), the plant only when they are gone:
        # stopped together, the runtime's session close met a plant already closed, which
        # asyncua logs as an error with a traceback on every normal exit.
        consumers = [c for c in reversed(self.children) if c.name != "plant"]
        plant = [c for c in self.children if c.name == "plant"]
        for group in (consumers, plant):
            deadline = time.monotonic() + STOP_GRACE_S
            running = [c for c in group if c.process is not None and c.process.poll() is None]
            for child in running:
                assert child.process is not None
                child.process.terminate()
            for child in running:
                assert child.process is not None
                try:
                    child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0f s; killing it", child.name, STOP_GRACE_S)
                    child.process.kill()
                    child.process.wait()
