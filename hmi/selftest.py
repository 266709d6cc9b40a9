"""`hmi self-test` (or `hmi --self-test`): the installation checks itself end to end.

It needs no display and touches none of the user's data: everything it writes goes to a
temporary folder (HMI_DATA_DIR points there for the run and its child processes), which
is deleted afterwards unless --keep. The steps, in order; the first failure ends the run,
since each later step needs the earlier ones:

  data folder  the user's data folder exists and is writable
  project      the demo project loads and validates
  plant        the demo plant starts as a child process, exactly as `hmi run` starts it
  opc ua       a runtime connects to it over OPC UA; every configured tag turns good
  window       an offscreen main window, fed over IPC, shows every tag live and paints
  write        a logged-in admin writes a setpoint; the plant confirms it
  3d models    each model passes the validator and the probe import in a child process,
               as the 3D view does, then is imported here and drawn in an offscreen frame
  historian    the runtime stops; its temporary historian holds every tag, nothing lost
  replay       playing the recording back yields exactly the recorded samples
  audit        the audit chain (login, write, logout) verifies; an edited copy is caught
  postgresql   the central historian's driver loads (psycopg's C implementation, its libpq,
               SQLAlchemy's dialect); given a server in HMI_SELFTEST_POSTGRES, it connects
               there and copies rows in and back out

Child processes are started with hmi.paths.hmi_command, so in a bundle this also proves
the frozen executable can start its own children (plant, probe). Threads: the steps run
on the calling thread; the runtime runs on its own asyncio loop in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from hmi import __version__
from hmi.config import ConfigError, Project, load_project
from hmi.config.connections import OpcUaConnection
from hmi.core.quality import Quality
from hmi.paths import data_dir, default_project, hmi_command, install_root
from hmi.supervisor import free_tcp_port, plant_args

if TYPE_CHECKING:
    from hmi.runtime import Runtime

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
USER = "selftest"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# A PostgreSQL URL for the postgresql step to connect to, its password named by
# `?password_ref=` (tools/package-test.sh sets it for a throwaway server).
POSTGRES_ENV = "HMI_SELFTEST_POSTGRES"


class StepFailed(Exception):
    """A step found something wrong; the message is what the summary shows."""


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    ok: bool
    detail: str
    seconds: float


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval: float = 0.05) -> float:
    """Seconds until `predicate()` held; StepFailed naming `what` after `timeout_s`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise StepFailed(f"{what} within {timeout_s:g} s")
        time.sleep(interval)
    return time.monotonic() - started


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def data_folder(path: Path) -> Iterator[None]:
    """HMI_DATA_DIR points at `path` inside the block (and for children started in it)."""
    before = os.environ.get("HMI_DATA_DIR")
    os.environ["HMI_DATA_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HMI_DATA_DIR", None)
        else:
            os.environ["HMI_DATA_DIR"] = before


def embedded_plant_project(project: Project, port: int, historian_url: str) -> Project:
    """`project` with its OPC UA connections to the embedded plant moved to `port`, and
    its historian at `historian_url`. StepFailed if no connection goes to that plant."""
    sim = project.simulator
    connections = dict(project.connections)
    moved = []
    for name, conn in connections.items():
        if not isinstance(conn, OpcUaConnection):
            continue
        parts = urlsplit(conn.endpoint)
        if parts.hostname in LOCAL_HOSTS and parts.port == sim.opcua_port:
            netloc = f"{parts.hostname}:{port}"
            connections[name] = conn.model_copy(update={"endpoint": urlunsplit(parts._replace(netloc=netloc))})
            moved.append(name)
    if not moved:
        raise StepFailed(f"no OPC UA connection of the project goes to its embedded plant (port {sim.opcua_port})")
    return project.model_copy(
        update={
            "connections": connections,
            "simulator": sim.model_copy(update={"opcua_port": port}),
            "historian": project.historian.model_copy(update={"url": historian_url}),
        }
    )


class RuntimeThread:
    """A Runtime on its own asyncio loop in a thread, stopped on request."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="self-test-runtime", daemon=True)

    def start(self) -> RuntimeThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            await self.runtime.run(self._stop)

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:  # reported by the step that waits on the runtime
            self.error = exc
        finally:
            self._loop.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float) -> bool:
        """Stop the runtime (it flushes the historian); False if it did not end in time."""
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class SelfTest:
    def __init__(self, timeout_s: float = 60.0, out: TextIO | None = None, workdir: Path | None = None) -> None:
        self.timeout_s = timeout_s
        self.out = out or sys.stdout
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="hmi-self-test-"))
        self.results: list[StepResult] = []
        self.project: Project | None = None
        self.test_project: Project | None = None
        self.plant: subprocess.Popen[bytes] | None = None
        self._plant_log: IO[bytes] | None = None
        self.runtime_thread: RuntimeThread | None = None
        self.stream = self.requests = ""
        self.password = secrets.token_urlsafe(18)
        self.recorded: dict[str, int] = {}
        self.time_range = (0, 0)

    # -- running ------------------------------------------------------------------------------

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("data folder", self.check_data_folder),
            ("project", self.check_project),
            ("plant", self.start_plant),
            ("opc ua", self.start_runtime),
            ("window", self.check_window),
            ("write", self.check_write),
            ("3d models", self.check_models),
            ("historian", self.check_historian),
            ("replay", self.check_replay),
            ("audit", self.check_audit),
            ("postgresql", self.check_postgres),
        ]

    def run(self, keep: bool = False) -> int:
        started = time.monotonic()
        frozen = "bundle" if getattr(sys, "frozen", False) else "source"
        self._print(f"hmi {__version__} self-test: {frozen} at {install_root()}")
        self._print(f"  Python {platform.python_version()} on {platform.system()} {platform.machine()}")
        (first, first_step), *rest = self.steps()
        failed: StepResult | None = None
        try:
            result = self._run_step(first, first_step)  # the user's own data folder
            failed = None if result.ok else result
            # Everything after it, the child processes and the runtime's thread included,
            # works in the temporary data folder.
            with data_folder(self.workdir / "data"):
                try:
                    for name, step in rest if failed is None else []:
                        result = self._run_step(name, step)
                        if not result.ok:
                            failed = result
                            break
                finally:
                    self.cleanup()
        finally:
            if keep:
                self._print(f"  kept {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        total = time.monotonic() - started
        if failed is not None:
            self._print(f"self-test FAILED at step '{failed.name}' after {total:.1f} s: {failed.detail}")
            return EXIT_FAILED
        self._print(f"self-test passed: {len(self.results)} steps in {total:.1f} s")
        return EXIT_OK

    def _run_step(self, name: str, step: Callable[[], str]) -> StepResult:
        started = time.monotonic()
        try:
            detail, ok = step(), True
        except StepFailed as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # a broken installation shows up as anything at all
            log.debug("step %s failed", name, exc_info=True)
            detail, ok = f"{exc.__class__.__name__}: {exc}", False
        result = StepResult(name, ok, detail, time.monotonic() - started)
        self.results.append(result)
        self._print(f"  {'ok' if ok else 'FAILED':<6} {name:<11} {result.seconds:5.1f} s  {detail}")
        return result

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def cleanup(self) -> None:
        if self.runtime_thread is not None and self.runtime_thread.alive:
            self.runtime_thread.stop(self.timeout_s)
        if self.plant is not None and self.plant.poll() is None:
            self.plant.terminate()
            try:
                self.plant.wait(10)
            except subprocess.TimeoutExpired:
                self.plant.kill()
                self.plant.wait()
        if self._plant_log is not None:
            self._plant_log.close()
            self._plant_log = None

    # -- the steps ------------------------------------------------------------------------------

    def check_data_folder(self) -> str:
        folder = data_dir()
        probe = folder / f".self-test-{os.getpid()}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StepFailed(f"the data folder {folder} is not writable: {exc}") from None
        inside = install_root() in folder.resolve().parents
        if inside and getattr(sys, "frozen", False):
            raise StepFailed(f"the data folder {folder} is inside the installation folder")
        return f"{folder} (writable)"

    def check_project(self) -> str:
        from hmi.sim.plant import unknown_machines

        path = default_project()
        try:
            project = load_project(path)
        except ConfigError as exc:
            raise StepFailed(f"{path}: {exc.issues[0] if exc.issues else exc}") from None
        unknown = unknown_machines(project.simulator.machines)
        if unknown:
            raise StepFailed(f"{path}: unknown demo machine(s) {', '.join(unknown)}")
        if not project.simulator.enabled:
            raise StepFailed(f"{path}: the project embeds no demo plant ([simulator] enabled = false)")
        self.project = project
        historian = f"sqlite:///{(self.workdir / 'historian.sqlite').as_posix()}"
        self.test_project = embedded_plant_project(project, free_tcp_port(), historian)
        return (
            f"{path.name}: {project.project.name!r}, {len(project.machines)} machines, "
            f"{len(project.tags)} tags, {len(project.alarms)} alarms"
        )

    def start_plant(self) -> str:
        assert self.test_project is not None
        port = self.test_project.simulator.opcua_port
        argv = hmi_command(*plant_args(self.test_project.simulator))
        self._plant_log = open(self.workdir / "plant.log", "wb")  # noqa: SIM115  (closed in cleanup)
        self.plant = subprocess.Popen(argv, stdout=self._plant_log, stderr=subprocess.STDOUT, env=dict(os.environ))

        def up() -> bool:
            if self.plant is not None and self.plant.poll() is not None:
                tail = (self.workdir / "plant.log").read_text("utf-8", "replace").strip().splitlines()[-3:]
                raise StepFailed(f"`hmi sim` exited with {self.plant.returncode}: {' | '.join(tail)}")
            return port_open(port)

        wait_for(up, self.timeout_s, f"the demo plant did not serve OPC UA on port {port}")
        return f"`hmi sim` child process (pid {self.plant.pid}) serving OPC UA on port {port}"

    def start_runtime(self) -> str:
        from hmi.runtime import Runtime
        from hmi.security.roles import Role
        from hmi.security.users import UserStore

        project = self.test_project
        assert project is not None
        UserStore().add(USER, Role.ADMIN, self.password)
        self.stream, self.requests = f"tcp://127.0.0.1:{free_tcp_port()}", f"tcp://127.0.0.1:{free_tcp_port()}"
        runtime = Runtime(project, self.stream, self.requests)
        self.runtime_thread = RuntimeThread(runtime).start()
        plant_tags = [
            name
            for name, tag in project.tags.items()
            if isinstance(project.connections[tag.connection], OpcUaConnection)
        ]

        def good() -> int:
            if not self.runtime_thread or not self.runtime_thread.alive:
                error = self.runtime_thread.error if self.runtime_thread else None
                raise StepFailed(f"the runtime stopped: {error!r}")
            return sum(1 for t in plant_tags if (s := runtime.bus.latest(t)) is not None and s.quality == Quality.GOOD)

        wait_for(lambda: good() == len(plant_tags), self.timeout_s, "not every tag turned good over OPC UA")
        return f"{len(plant_tags)}/{len(plant_tags)} tags good through the runtime"

    def check_window(self) -> str:
        from hmi.ui.selftest import CheckFailed, check_window, versions

        assert self.test_project is not None
        try:
            return f"{check_window(self.test_project, self.stream, self.requests, self.timeout_s)} ({versions()})"
        except CheckFailed as exc:
            raise StepFailed(str(exc)) from None

    def check_write(self) -> str:
        from hmi.ipc.client import IpcClient
        from hmi.ipc.mirror import BusMirror

        assert self.test_project is not None and self.runtime_thread is not None
        bus = self.runtime_thread.runtime.bus
        spec = next((s for s in self.test_project.tag_specs() if s.writable and s.low is not None), None)
        if spec is None or spec.low is None or spec.high is None:
            raise StepFailed("the project declares no writable numeric tag with limits")
        value = round(spec.low + 0.55 * (spec.high - spec.low), 1)
        latest = bus.latest(spec.name)
        if latest is not None and math.isclose(float(latest.value), value):
            value = round(spec.low + 0.45 * (spec.high - spec.low), 1)
        client = IpcClient(self.stream, self.requests, BusMirror())
        client.start()
        try:
            # Commands sent before the first snapshot would be dropped with the socket it renews.
            wait_for(lambda: client.link_up, self.timeout_s, "no IPC link to the runtime")
            login = client.send_command({"command": "login", "user": USER, "password": self.password})
            reply = login.result(self.timeout_s)
            if not reply.get("ok"):
                raise StepFailed(f"login refused: {reply.get('error')}")
            session = reply["session"]
            command = {"command": "write", "session": session, "tag": spec.name, "value": value}
            reply = client.send_command(command).result(self.timeout_s)
            if not reply.get("ok"):
                raise StepFailed(f"writing {spec.name} = {value:g} failed: {reply.get('error')}")

            def confirmed() -> bool:
                sample = bus.latest(spec.name)
                return (
                    sample is not None and sample.quality == Quality.GOOD and math.isclose(float(sample.value), value)
                )

            wait_for(confirmed, self.timeout_s, f"the plant did not report {spec.name} = {value:g}")
            client.send_command({"command": "logout", "session": session}).result(self.timeout_s)
        finally:
            client.stop()
        return f"{USER} (admin) wrote {spec.name} = {value:g} {spec.unit}; the plant confirmed it"

    def model_files(self) -> list[Path]:
        """Every bundled model, and every model the project names."""
        assert self.project is not None
        files = {p.resolve() for p in (install_root() / "models_glb").glob("*.glb")}
        files |= {self.project.resolve_path(m.model).resolve() for m in self.project.machines.values() if m.model}
        return sorted(files)

    def check_models(self) -> str:
        from hmi.scene.bindings_check import check_binding_nodes
        from hmi.scene.probe import VerdictCache, check_model
        from hmi.ui.selftest import CheckFailed, import_and_render, scene_view_loads

        assert self.project is not None
        scene_view_loads()
        files = self.model_files()
        if not files:
            raise StepFailed(f"no 3D models in {install_root() / 'models_glb'}")
        machines = self.project.machines
        models = {m: self.project.resolve_path(c.model) if c.model else None for m, c in machines.items()}
        problems = check_binding_nodes(self.project.bindings, models)
        if problems:
            where, message = problems[0]
            raise StepFailed(f"{len(problems)} 3D binding(s) do not resolve, e.g. {where}: {message}")
        cache = VerdictCache()  # the window's cache, in the temporary data folder
        parts: list[str] = []
        probes: list[float] = []
        for path in files:
            check = check_model(path, cache, probe=True)
            if not check.ok:
                raise StepFailed(f"{path.name}: {check.message}")
            try:
                drawn = import_and_render(check)
            except CheckFailed as exc:
                raise StepFailed(f"{path.name}: {exc}") from None
            probe_s = check.probe.seconds if check.probe is not None else 0.0
            probes.append(probe_s)
            parts.append(f"{path.stem} {drawn}")
        return (
            f"{len(files)} models validated, probed in child processes ({min(probes):.1f}-{max(probes):.1f} s), "
            f"drawn offscreen: {', '.join(parts)} parts; {len(self.project.bindings)} bindings resolve"
        )

    def check_historian(self) -> str:
        from hmi.historian import HistorianReader

        assert self.test_project is not None and self.runtime_thread is not None
        runtime = self.runtime_thread.runtime
        if not self.runtime_thread.stop(self.timeout_s):
            raise StepFailed(f"the runtime did not stop within {self.timeout_s:g} s")
        stats = runtime.historian.stats
        if stats.not_kept:
            raise StepFailed(f"the historian lost {stats.not_kept} samples: {stats.last_error}")
        url = self.test_project.historian.url
        with HistorianReader(url) as reader:
            span = reader.time_range()
            if span is None:
                raise StepFailed("the historian is empty")
            self.time_range = (span[0], span[1] + 1)
            counts = {t.name: reader.count(t, *self.time_range) for t in reader.tags()}
            events = len(reader.events(*self.time_range))
            size = reader.storage_bytes() or 0
        missing = [name for name in self.test_project.tags if not counts.get(name)]
        if missing:
            raise StepFailed(f"nothing recorded for {len(missing)} tag(s): {', '.join(missing[:5])}")
        self.recorded = counts
        return (
            f"{sum(counts.values())} samples of {len(counts)} tags and {events} events recorded "
            f"({size / 1024:.0f} kB), nothing lost"
        )

    def check_replay(self) -> str:
        from hmi.core.bus import TagBus
        from hmi.sources.replay import UNPACED, ReplaySource, ReplayState

        assert self.test_project is not None
        started = time.monotonic()
        source = ReplaySource(self.test_project.historian.url, *self.time_range, TagBus(), speed=UNPACED, autoplay=True)
        source.start()
        try:
            if not source.wait_ended(self.timeout_s):
                raise StepFailed(f"the replay did not finish within {self.timeout_s:g} s")
        finally:
            source.close()
        if source.state == ReplayState.FAILED:
            raise StepFailed(f"the replay failed: {source.error}")
        played = source.counts()
        differ = [name for name, n in self.recorded.items() if played.get(name, 0) != n]
        if differ:
            name = differ[0]
            example = f"{name}: {played.get(name, 0)} of {self.recorded[name]}"
            raise StepFailed(f"{len(differ)} tag(s) replayed differently, e.g. {example}")
        return (
            f"{sum(played.values())} samples of {len(played)} tags played back in {time.monotonic() - started:.1f} s, "
            "the same counts as recorded"
        )

    def check_audit(self) -> str:
        from hmi.security.audit import AuditTrail

        assert self.test_project is not None
        url = self.test_project.historian.url
        trail = AuditTrail(url, create=False)
        try:
            checked, problems = trail.verify()
            seq, head = trail.head()
            kinds = {r.kind for r in trail.records()}
        finally:
            trail.close()
        if problems:
            raise StepFailed(f"the audit chain is broken: {problems[0]}")
        expected = {"login", "write_request", "write", "logout"}
        if not expected <= kinds:
            raise StepFailed(f"the audit trail lacks {', '.join(sorted(expected - kinds))}")
        # A copy (SQLite's backup: WAL content included) with the first record's user changed.
        tampered = self.workdir / "tampered.sqlite"
        source, target = sqlite3.connect(self.workdir / "historian.sqlite"), sqlite3.connect(tampered)
        try:
            source.backup(target)
            with target:
                target.execute("UPDATE audit_records SET user = 'mallory' WHERE seq = 1")
        finally:
            source.close()
            target.close()
        copy = AuditTrail(tampered, create=False)
        try:
            _, copy_problems = copy.verify()
        finally:
            copy.close()
        if not any(problem.seq == 1 and "edited" in problem.message for problem in copy_problems):
            raise StepFailed("a copy with an edited audit record passed verification")
        return f"{checked} records intact (head {seq} {head[:12]}…); an edited copy was caught"

    def check_postgres(self) -> str:
        import importlib

        import psycopg
        import sqlalchemy as sa

        from hmi.historian.errors import HistorianError
        from hmi.historian.postgres import DRIVER, PostgresDialect, copy_rows, safe_url

        # The C implementation: the pure-Python fallback would need a libpq on the system.
        impl = psycopg.pq.__impl__
        if impl not in ("binary", "c"):
            raise StepFailed(f"psycopg runs its {impl!r} implementation: its C one (psycopg_binary) did not load")
        importlib.import_module(f"psycopg_{impl}._psycopg")
        # The dialect as create_engine finds it from a URL's name.
        sa.engine.make_url(f"{DRIVER}://").get_dialect().import_dbapi()
        driver = f"psycopg {psycopg.__version__} ({impl}, libpq {psycopg.pq.version_pretty(psycopg.pq.version())})"
        url = os.environ.get(POSTGRES_ENV)
        if not url:
            return f"{driver} and SQLAlchemy's {DRIVER} dialect load; no server to connect to ({POSTGRES_ENV})"
        try:
            engine = PostgresDialect().check_connection(url)
        except HistorianError as exc:
            raise StepFailed(str(exc)) from None
        # Rows shaped like the central samples, through COPY as the forwarder sends them.
        rows = [(1, 1_700_000_000_000_000_000 + i, i * 0.5, 192) for i in range(3)]
        try:
            with engine.begin() as conn:
                server = conn.exec_driver_sql("SHOW server_version").scalar()
                conn.exec_driver_sql(
                    "CREATE TEMPORARY TABLE selftest_samples "
                    "(tag_id integer, ts bigint, value double precision, quality smallint) ON COMMIT DROP"
                )
                copy_rows(conn, "selftest_samples", ("tag_id", "ts", "value", "quality"), rows)
                back = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM selftest_samples ORDER BY ts")]
        finally:
            engine.dispose()
        if back != rows:
            raise StepFailed(f"rows copied to {safe_url(url)} came back different: {back} instead of {rows}")
        return f"{driver}; PostgreSQL {server} at {safe_url(url)}: {len(rows)} rows copied in and read back"


def run_self_test(keep: bool = False, timeout_s: float = 60.0) -> int:
    return SelfTest(timeout_s).run(keep)
