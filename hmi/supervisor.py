"""`hmi run`: start the plant (when the project embeds it), the runtime and the window as
separate processes, keep them alive, and stop them together.

Why processes: a VTK render takes both cores on software OpenGL, a malformed GLB can kill
the process that loads it, and recording must survive either (docs/architecture.md).
The user sees one application: closing the window stops everything; a crashed runtime or
plant is restarted (the window shows the gap); a crashed window is restarted while the
runtime keeps recording.
"""

from __future__ import annotations

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

from hmi.config.models import Project, SimulatorConfig
from hmi.paths import hmi_command

log = logging.getLogger(__name__)

POLL_S = 0.1
STOP_GRACE_S = 5.0
# A runtime exits with this when another process records into the project's historian;
# restarting it would only fail again, so the supervisor stops instead.
EXIT_HISTORIAN_IN_USE = 3


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


@dataclass
class Child:
    name: str
    argv: list[str]
    # What to do when it exits: "restart" always, "restart-on-crash" unless it exited 0,
    # or "stop-all" (the window closing normally ends the application).
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
    ) -> None:
        self.project_path = project_path
        self.project = project
        host = "127.0.0.1"
        self.stream_address = stream_address or f"tcp://{host}:{free_tcp_port()}"
        self.request_address = request_address or f"tcp://{host}:{free_tcp_port()}"
        ipc = ["--ipc-stream", self.stream_address, "--ipc-requests", self.request_address]
        self.children: list[Child] = []
        if project.simulator.enabled if with_sim is None else with_sim:
            self.children.append(Child("plant", hmi_command(*plant_args(project.simulator)), "restart"))
        self.children.append(
            Child("runtime", hmi_command("run", "--project", str(project_path), "--headless", *ipc), "restart")
        )
        if with_window:
            argv = hmi_command("window", "--project", str(project_path), *ipc, *(window_args or []))
            self.children.append(Child("window", argv, "stop-all"))
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
        from hmi.historian.dialect import dialect_for, url_for

        url = url_for(self.project.historian.url)
        lock = dialect_for(url).writer_lock(url)
        return lock.in_use() if lock is not None else None

    def run(self) -> int:
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

    def _check_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is None:
                if child.restart_at is not None and now >= child.restart_at:
                    self._start(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            child.process = None
            if child.on_exit == "stop-all" and code == 0:
                log.info("%s closed; stopping", child.name)
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
