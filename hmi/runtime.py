"""The headless runtime: sources -> tag bus -> (alarms, twin and advisories, historian) -> IPC publisher.

Builds everything from a project file and runs it on one asyncio loop. No Qt: this is
what runs on an edge box, and what keeps recording when a window crashes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hmi.commands import AlarmHistory, AlarmService, OperatorCommands, SourceMethodCaller, TagWriter, WriteOutcome
from hmi.config.alarms import alarm_definitions, alarm_settings
from hmi.config.models import Project
from hmi.core.alarms.engine import AlarmEngine
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory
from hmi.core.quality import Quality
from hmi.core.samples import RuntimeMarks, SampleBatch
from hmi.core.staleness import StaleWatcher
from hmi.core.tags import DataType, TagSpec
from hmi.gcfreeze import FREEZE_AFTER_START_S, freeze_startup_objects
from hmi.historian.reader import HistorianReader
from hmi.historian.writer import HistorianWriter
from hmi.ipc.curve import CurveServer, StationsLookup, host_of
from hmi.ipc.publisher import IpcPublisher, check_free
from hmi.security.audit import AuditError, AuditTrail
from hmi.security.positions import Position, StationBoard
from hmi.security.sessions import LoginThrottle, Sessions
from hmi.security.stations import LOCAL_STATION, StationList, runtime_key_pair, station_key_pair
from hmi.security.users import UserStore
from hmi.security.verified_writes import VerifiedWrites
from hmi.sources.base import BrowsableSource, Source, WritableSource, make_source
from hmi.twin.advisories import ADVISORY_SETTINGS, advisory_definitions
from hmi.twin.service import TwinService

log = logging.getLogger(__name__)

# After an authorised stop_system the reply must leave before the request socket closes
# (it closes with no linger); sources, historian and sockets are stopped after this delay.
STOP_REPLY_GRACE_S = 0.3
ALARM_TICK_S = 0.1  # how late an on/off delay or a shelf expiry may be seen at most
WRITE_TIMEOUT_S = 10.0
BROWSE_TIMEOUT_S = 10.0


class SampleCounter:
    """Counts samples received per tag id and quality (for `--duration` reports and tests).

    Every sample a source delivered counts, a communication-error status from the server
    (COMM_LOST) included; the marks the runtime publishes itself (RuntimeMarks: COMM_LOST when
    a connection drops, stale marks) do not: they were not received from anywhere.
    """

    QUALITIES = len(Quality)

    def __init__(self, bus: TagBus) -> None:
        self._lock = threading.Lock()
        self._counts = np.zeros((0, self.QUALITIES), np.int64)  # [tag id, quality]
        self._subscription = bus.subscribe(self._on_batch, name="sample-counter")

    def _on_batch(self, batch: SampleBatch) -> None:
        if isinstance(batch, RuntimeMarks) or not len(batch):
            return
        # One bincount over (tag id, quality) pairs.
        flat = batch.tag_ids.astype(np.int64) * self.QUALITIES + np.minimum(batch.quality, self.QUALITIES - 1)
        with self._lock:
            rows = max(self._counts.shape[0], int(batch.tag_ids.max()) + 1)
            counts = np.bincount(flat, minlength=rows * self.QUALITIES).reshape(rows, self.QUALITIES)
            counts[: self._counts.shape[0]] += self._counts
            self._counts = counts

    def counts(self) -> np.ndarray:
        """Samples per tag id, all qualities."""
        with self._lock:
            return self._counts.sum(axis=1)

    def counts_by_quality(self) -> np.ndarray:
        """Samples per tag id (rows) and Quality (columns)."""
        with self._lock:
            return self._counts.copy()


def project_positions(project: Project) -> list[Position]:
    """The operator positions: [[positions]], or the older [alarm_system] positions (no area)."""
    areas = {p.name: p.area for p in project.positions}
    return [Position(n, areas.get(n, ""), tuple(m)) for n, m in project.operator_positions().items()]


class Runtime:
    def __init__(
        self,
        project: Project,
        stream_address: str | None = None,
        request_address: str | None = None,
        alarm_history: AlarmHistory | None = None,
        writer: TagWriter | None = None,
        users: UserStore | None = None,
    ) -> None:
        """`alarm_history` gives the recorded alarm events to restore from (default: the
        historian's, when there is one); `writer` carries writes to the plant (default: the
        tag's source); `users` is the user store (default: users.json in the data folder)."""
        self.project = project
        self.bus = TagBus()
        # Configured tags take the first ids, in file order, so ids are stable per project.
        self.bus.register(project.tag_specs())
        self.counter = SampleCounter(self.bus)
        # Every sample and event on the bus is recorded ([historian], [[shifts]], tags.*.history).
        self.historian = HistorianWriter.from_project(project, self.bus.registry)
        self.historian.attach(self.bus)
        project_dir = project.source_path.parent if project.source_path is not None else None
        self.sources: list[Source] = [
            make_source(name, conn, project.tags_of_connection(name), self.bus, project_dir)
            for name, conn in project.connections.items()
        ]
        # A value older than its tag's (or machine's) stale_after_s turns UNCERTAIN (hmi/core/staleness.py).
        self.staleness = StaleWatcher(
            self.bus,
            {name: tag.stale_after_s for name, tag in project.tags.items() if tag.stale_after_s is not None},
            {name: m.stale_after_s for name, m in project.machines.items() if m.stale_after_s is not None},
            set(project.connections),
        )
        # Alarms evaluate every batch on the bus; acknowledgements survive a restart because
        # the engine takes up the states its last recorded events describe.
        self.alarms = AlarmService(
            AlarmEngine(alarm_definitions(project), self.bus.registry, alarm_settings(project)), self.bus
        )
        self.alarms.restore(alarm_history if alarm_history is not None else historian_alarm_history(project))
        # The digital twin runs on the bus too: derived tags, and advisories that are
        # acknowledged like alarms on an engine of their own ([twin.*], docs/twin.md).
        self.twin = TwinService.from_project(project, self.bus)
        definitions = advisory_definitions(self.twin.models)
        self.advisories = AlarmService(
            AlarmEngine(definitions, self.bus.registry, ADVISORY_SETTINGS),
            self.bus,
            EventCategory.ADVISORY,
            self._advisory_details,
            watched_tags=[self.bus.registry.id_of(d.tag) for d in definitions],
        )
        self.advisories.restore(
            alarm_history if alarm_history is not None else historian_alarm_history(project, EventCategory.ADVISORY)
        )
        # Opened once the historian holds its file (run()): a failed start leaves no file.
        self.audit = open_audit(project, defer=True)
        security = project.security
        self.sessions = Sessions(
            users or UserStore(),
            security.idle_logout_s,
            LoginThrottle(security.max_failed_logins, security.lockout_s),
        )
        self.commands = OperatorCommands(
            self.sessions,
            self.audit,
            self.bus,
            self.alarms,
            writer or self.write_to_source,
            self.reload_config,
            advisories=self.advisories,
            stop_system=self.request_stop,
            # Method calls (and the call dialog's signature reads) go to the connection's source.
            caller=SourceMethodCaller(self.source_named, self._on_loop),
            # Operator positions ([[positions]]) and the stations heard from (station health).
            board=StationBoard(project_positions(project)),
            # Writes to `verify = true` tags wait for a second user ([writes]).
            verified_writes=VerifiedWrites(project.writes.verify_reasons, project.writes.verify_timeout_s),
        )
        # The runtime's own commands go into the one command table, which OperatorCommands keeps
        # (it is built and tested without a runtime). Anyone may send these: no session.
        self.commands.register("browse", self._address_space_command)
        self.commands.register("watch", self._address_space_command)
        self.commands.register("ping", self._ping)
        self.commands.register("status", self._status)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        # Who stopped the system with `stop_system` (None: not stopped by a command); the
        # process then exits with EXIT_STOPPED so that the supervisor stops the rest too.
        self.stopped_by: str | None = None
        self.publisher: IpcPublisher | None = None
        if stream_address and request_address:
            curve = self._curve_server(stream_address, request_address)
            self.publisher = IpcPublisher(self.bus, stream_address, request_address, self.handle_command, curve=curve)
        self.started_at = time.time()

    def _curve_server(self, stream_address: str, request_address: str) -> CurveServer | None:
        """CURVE when [runtime] curve says so, else when either address leaves this host
        (raises StationError when a key or the allow-list may not be used)."""
        rt = self.project.runtime
        if not any(rt.uses_curve(host_of(a)) for a in (stream_address, request_address)):
            return None
        keys = runtime_key_pair()
        return CurveServer(keys.public, keys.secret, enrolled_stations())

    def _advisory_details(self, name: str) -> dict[str, Any] | None:
        """The twin's finding behind an advisory, for its events (bus thread)."""
        finding = self.twin.finding(name)
        return finding.to_json() if finding is not None else None

    def handle_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Every command from windows and the CLI (IPC request thread): one table lookup
        (OperatorCommands.table); an unknown name gets `unknown command 'name'`."""
        return self.commands.handle(command)

    def _ping(self, command: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "uptime_s": time.time() - self.started_at}

    def _status(self, command: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "sources": [
                {
                    "name": s.name,
                    "connected": s.connected,
                    "notifications": s.notifications,
                    "rejected": s.rejected,
                    "last_error": s.last_error,
                }
                for s in self.sources
            ],
            "samples": self.bus.samples_published,
            "alarms": {
                "count": len(self.alarms.engine),
                "unacknowledged": self.alarms.engine.unacknowledged(),
                "flood": self.alarms.engine.flood(),
                "transitions": self.alarms.engine.transitions,
            },
            "twin": self.twin.stats(),
            "historian": {
                "queue_depth": self.historian.queue_depth,
                "written": self.historian.stats.written,
                "not_kept": self.historian.stats.not_kept,
                "last_error": self.historian.stats.last_error,
            },
        }

    def request_stop(self, user: str) -> None:
        """Stop the whole runtime gracefully (IPC request thread: the stop_system command, whose
        reply goes out first). Raises RuntimeError when the runtime is not running."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            raise RuntimeError("the runtime is not running")
        self.stopped_by = user
        log.info("system stop requested by %s", user)
        loop.call_soon_threadsafe(loop.call_later, STOP_REPLY_GRACE_S, stop.set)

    async def run(
        self,
        stop: asyncio.Event | None = None,
        duration_s: float | None = None,
        freeze_gc: bool = False,
        on_serving: Callable[[], None] | None = None,
    ) -> None:
        """Acquire, evaluate and record until `stop` is set (or for `duration_s`).

        With `freeze_gc` (the runtime in a process of its own), start-up objects are frozen out
        of the garbage collector once the sources have had time to connect (not at once: the
        collection it takes would delay the first samples). `on_serving` is called once the
        historian records and windows can connect (the CLI announces the runtime then)."""
        stop = stop or asyncio.Event()
        self._stop = stop
        self._loop = asyncio.get_running_loop()
        if freeze_gc:
            self._loop.call_later(FREEZE_AFTER_START_S, freeze_startup_objects)
        if self.publisher is not None:
            if self.publisher.curve is not None:
                self.publisher.curve.stations()  # an allow-list others may read stops the start here
            # A busy port fails the start before the historian opens its file (nothing is left
            # behind); the ports are bound after it, so a window that connects can read it.
            check_free(self.publisher.stream_address)
            check_free(self.publisher.request_address)
        self.historian.start()
        if self.audit is not None:
            try:
                self.audit.open()
            except AuditError as exc:
                # Each action then says its audit failed (OperatorCommands._record).
                log.error("%s: operator actions will not be audited", exc)
        if self.publisher is not None:
            try:
                self.publisher.start()
            except OSError:  # taken between the check and now: stop recording cleanly
                self.historian.close()
                raise
        if self.publisher is not None:
            log.info(
                "runtime serving windows on %s (requests %s)",
                self.publisher.stream_address,
                self.publisher.request_address,
            )
        tasks = [asyncio.create_task(source.run(stop), name=f"source-{source.name}") for source in self.sources]
        status_task = asyncio.create_task(self._log_status(stop))
        tasks.append(asyncio.create_task(self._tick_alarms(stop), name="alarm-timer"))
        try:
            if on_serving is not None:
                on_serving()
            if duration_s is not None:
                try:
                    await asyncio.wait_for(stop.wait(), duration_s)
                except TimeoutError:
                    pass
            else:
                await stop.wait()
        finally:
            stop.set()
            await asyncio.gather(*tasks, status_task, return_exceptions=True)
            # Flush after the sources stopped (their last COMM_LOST marks are recorded too).
            await asyncio.to_thread(self.historian.close)
            if self.publisher is not None:
                self.publisher.stop()
            self.alarms.close()
            self.advisories.close()
            self.twin.close()
            if self.audit is not None:
                self.audit.close()

    async def _tick_alarms(self, stop: asyncio.Event) -> None:
        """On/off delays and shelf expiries elapse with time, not only with samples."""
        while not stop.is_set():
            self.alarms.tick()
            self.advisories.tick()
            self.commands.tick()  # idle sessions ended, user changes from `hmi users`
            self.staleness.tick()
            try:
                await asyncio.wait_for(stop.wait(), ALARM_TICK_S)
            except TimeoutError:
                pass

    def source_named(self, connection: str) -> Source | None:
        return next((s for s in self.sources if s.name == connection), None)

    def write_to_source(self, spec: TagSpec, value: float | bool | str) -> WriteOutcome:
        """Carry a checked write to the source of the tag's connection (IPC request thread)."""
        source = self.source_named(spec.connection)
        if not isinstance(source, WritableSource) or self._loop is None:
            return WriteOutcome(False, "BadNotSupported", f"connection {spec.connection!r} cannot write")
        try:
            result = self._on_loop(source.write(spec.name, value), WRITE_TIMEOUT_S)
        except TimeoutError:
            return WriteOutcome(False, "BadTimeout", f"no answer from {spec.connection} within {WRITE_TIMEOUT_S:g} s")
        except Exception as exc:  # not connected, and whatever the connection raised
            return WriteOutcome(False, "BadNotConnected", f"{exc.__class__.__name__}: {exc}")
        return WriteOutcome(bool(result.ok), str(result.status), str(getattr(result, "message", "") or ""))

    def _on_loop(self, coro: Any, timeout_s: float) -> Any:
        """Run a source coroutine on the runtime's loop from the request thread and wait for it."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the runtime is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def _address_space_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """`browse` (children of a node, each with the configured tag it feeds) and `watch`
        (subscribe to a browsed node as an ad-hoc tag): the tag browser's requests."""
        name = str(command.get("connection", ""))
        source = self.source_named(name)
        if not isinstance(source, BrowsableSource):
            return {"ok": False, "error": f"connection {name!r} cannot be browsed"}
        try:
            if command["command"] == "browse":
                entries = self._on_loop(source.browse(command.get("node_id") or None), BROWSE_TIMEOUT_S)
                return {"ok": True, "nodes": [_browse_json(e, source.tag_for_node(e.node_id)) for e in entries]}
            datatype = DataType(command.get("datatype") or "float")
            tag = self._on_loop(
                source.watch(str(command["node_id"]), str(command["tag"]), str(command.get("unit", "")), datatype),
                BROWSE_TIMEOUT_S,
            )
            return {"ok": True, "tag": tag}
        except TimeoutError:
            return {"ok": False, "error": f"no answer from {name} within {BROWSE_TIMEOUT_S:g} s"}
        except Exception as exc:  # not connected, unknown node, bad name
            return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}

    def reload_config(self) -> str:
        """Re-read the project file and apply its alarm configuration (IPC request thread).

        Raises ConfigError (every problem listed) and changes nothing when the file is bad.
        Other sections take effect on the next start; the summary says so."""
        from hmi.config import load_project

        if self.project.source_path is None:
            raise ValueError("the runtime was not started from a project file")
        project = load_project(self.project.source_path)
        before = len(self.alarms.engine)
        count = self.alarms.replace_engine(alarm_definitions(project), alarm_settings(project))
        self.sessions.idle_timeout_s = project.security.idle_logout_s
        self.commands.board.replace_positions(project_positions(project))
        keep = {"alarms", "alarm_system", "positions", "security", "source_path"}
        others = sorted(
            k for k in type(project).model_fields if k not in keep and getattr(project, k) != getattr(self.project, k)
        )
        self.project = project
        summary = f"{count} alarm(s) now configured (was {before})"
        if others:
            summary += f"; changes to {', '.join(others)} take effect after a restart"
        log.info("configuration reloaded: %s", summary)
        return summary

    async def _log_status(self, stop: asyncio.Event) -> None:
        last = self.bus.samples_published
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 30.0)
            except TimeoutError:
                now = self.bus.samples_published
                up = sum(s.connected for s in self.sources)
                log.info("runtime: %d/%d connections up, %.0f samples/s", up, len(self.sources), (now - last) / 30)
                last = now

    def count_report(self) -> str:
        """Samples received per tag, and how many of them arrived good, uncertain, bad or
        with a communication-error status (the marks the runtime makes itself not counted)."""
        counts = self.counter.counts_by_quality()
        registry = self.bus.registry
        width = max((len(n) for n in registry.names()), default=10)
        columns = ("samples", "good", "uncertain", "bad", "comm-lost")
        lines = [f"{'tag':<{width}}  " + "  ".join(f"{c:>9}" for c in columns)]
        for tag_id in range(len(registry)):
            row = counts[tag_id] if tag_id < counts.shape[0] else np.zeros(len(Quality), np.int64)
            cells = [int(row.sum()), *(int(row[q]) for q in Quality)]
            lines.append(f"{registry.spec(tag_id).name:<{width}}  " + "  ".join(f"{n:>9}" for n in cells))
        totals = [int(counts.sum()), *(int(counts[:, q].sum()) for q in Quality)]
        lines.append(f"{'total':<{width}}  " + "  ".join(f"{n:>9}" for n in totals))
        return "\n".join(lines)


def open_audit(project: Project, defer: bool = False) -> AuditTrail | None:
    """The audit trail in the historian's database file; None (and an error logged) if it cannot
    open. With `defer` it opens on `open()` or first use (see Runtime.run)."""
    try:
        return AuditTrail(project.historian.url, defer=defer)
    except AuditError as exc:
        log.error("%s: operator actions will not be audited", exc)
        return None


def historian_alarm_history(project: Project, category: EventCategory = EventCategory.ALARM) -> AlarmHistory:
    """The latest recorded event of every alarm (or advisory), from the project's historian
    (read when the engine restores, through the reader: the one place that reads events back)."""

    def read() -> list[Event]:
        try:
            reader = HistorianReader(project.historian.url)
        except Exception as exc:  # no historian yet (first start), or one this version cannot read
            log.info("no recorded alarm states to restore: %s", exc)
            return []
        with reader:
            return list(reader.last_events_per_source(category, time.time_ns() + 1))

    return read


def enrolled_stations(allow_list: StationList | None = None) -> StationsLookup:
    """Who may attach over CURVE: the allow-list (re-read when it changes), and this
    workstation's own station key as LOCAL_STATION (its secret sits beside the runtime's)."""
    stations = allow_list or StationList()
    local = {station_key_pair().public.decode("ascii"): LOCAL_STATION}

    def lookup() -> dict[str, str]:
        return {**stations.names_by_key(), **local}

    return lookup


def _browse_json(entry: Any, tag: str | None) -> dict[str, Any]:
    value = entry.value
    if not (value is None or isinstance(value, bool | int | float | str)):
        value = str(value)[:200]
    return {
        "node_id": entry.node_id,
        "browse_name": entry.browse_name,
        "display_name": entry.display_name,
        "node_class": entry.node_class,
        "data_type": entry.data_type,
        "value_rank": entry.value_rank,
        "access": list(entry.access),
        "value": value,
        "status": entry.status,
        "eu_range": list(entry.eu_range) if entry.eu_range else None,
        "eu_unit": entry.eu_unit,
        "tag": tag,
    }
