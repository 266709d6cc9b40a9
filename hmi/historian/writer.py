"""The historian writer: one thread owns the database and records every batch and event.

Threads: `submit` and `submit_events` run on whatever thread publishes on the bus (they
are bus subscribers, called under the bus lock), so they only append to a bounded queue
and never touch the disk. Everything else runs on the writer thread ("historian-writer"),
which is the one place that crosses from the bus to the database.

Policy, in order of what matters:

- Never silent: the queue is bounded by samples (`max_queue_samples`, memory is the
  guard). When it is full the newest samples are dropped, counted, published as the tag
  `historian.dropped_samples` and announced by a system event. Its depth is published as
  `historian.queue_depth`.
- Commits are batched, bounded by time (`commit_interval_s`) and size
  (`max_batch_samples`); rows go in sorted by (tag, time) through one `executemany` of
  tuples on the driver connection (SQLAlchemy Core with dicts reached about 45 % of that,
  the ORM about 5 %).
- A failed write (disk full, read-only, locked) keeps the batch in memory, raises a system
  event, reopens the connection and retries with backoff; when it works again it says so.
  Samples that still cannot be written when the writer is closed are counted as lost.
- Retention deletes old rows in small chunks between commits, so ingest never waits
  behind a long delete.
- `close()` flushes everything and folds the WAL back into the file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from hmi import __version__
from hmi.config.models import ForwardConfig, Project
from hmi.core.bus import Subscription, TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import DataType, TagRegistry, TagSpec
from hmi.historian import schema as s
from hmi.historian.backends import dialect_for, url_for
from hmi.historian.dialect import Dialect
from hmi.historian.forward import Forwarder, outbox_blobs
from hmi.historian.retention import purge_steps
from hmi.historian.sessions import ProjectRecord, write_session
from hmi.historian.shifts import ShiftCalendar, ShiftDefinition
from hmi.historian.storage import StorageFilter, StorageMode, StoragePolicy

if TYPE_CHECKING:
    from hmi.historian.lock import WriterLock

log = logging.getLogger(__name__)

SOURCE = "historian"
TAG_QUEUE_DEPTH = "historian.queue_depth"
FIRST_OPEN_WAIT_S = 5.0  # start() waits at most this long for the first open attempt
LATEST_NS = np.iinfo(np.int64).max - 1  # the latest time a [start, end) read can reach
TAG_DROPPED = "historian.dropped_samples"
TAG_WRITE_OK = "historian.write_ok"
STATUS_TAGS = (
    TagSpec(TAG_QUEUE_DEPTH, "samples", DataType.INT, "Samples waiting to be written to the historian"),
    TagSpec(TAG_DROPPED, "samples", DataType.INT, "Samples the historian could not keep (queue full or write failed)"),
    TagSpec(TAG_WRITE_OK, "", DataType.BOOL, "The historian is writing normally"),
)
FAILURE_REPEAT_S = 30.0  # while failing, remind at most this often
DROP_REPORT_S = 10.0


@dataclass
class WriterStats:
    """Counters, updated on the writer thread (and by `submit` for accepted/dropped)."""

    accepted: int = 0  # samples taken into the queue
    written: int = 0  # samples committed
    skipped: int = 0  # not stored by a tag's on_change/off policy (not a loss)
    restamped: int = 0  # late values recorded after their tag's mark (_in_arrival_order)
    dropped: int = 0  # refused because the queue was full
    lost: int = 0  # accepted but could not be written before close
    events_written: int = 0
    events_dropped: int = 0
    outbox_dropped: int = 0  # samples dropped from the forwarding outbox at its bound (kept locally)
    commits: int = 0
    write_failures: int = 0
    retention_deleted: int = 0
    last_error: str = ""
    failing_since: float | None = None
    open_failures: int = 0
    commit_seconds: list[float] = field(default_factory=list, repr=False)

    @property
    def not_kept(self) -> int:
        return self.dropped + self.lost


class HistorianWriter:
    def __init__(
        self,
        target: str,
        registry: TagRegistry,
        *,
        policies: Mapping[str, StoragePolicy] | None = None,
        calendar: ShiftCalendar | None = None,
        timezone: str = "UTC",
        retention_days: float | None = None,
        max_queue_samples: int = 2_000_000,
        max_queue_events: int = 100_000,
        commit_interval_s: float = 1.0,
        max_batch_samples: int = 50_000,
        status_interval_s: float = 1.0,
        retry_initial_s: float = 0.25,
        retry_max_s: float = 10.0,
        retention_check_s: float = 3600.0,
        retention_chunk_rows: int = 5_000,
        close_attempts: int = 3,
        project: Project | None = None,
        forward: ForwardConfig | None = None,
        base_dir: Path | None = None,
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.target = target
        # Recorded with this start (sessions.py) on the writer thread, so playback finds it.
        self.project = project
        self.started_ns = now_ns()
        self._project_record: ProjectRecord | None = None
        self.registry = registry
        self.filter = StorageFilter(registry, policies)
        self.calendar = calendar
        self.timezone = calendar.timezone if calendar is not None else timezone
        self.retention_days = retention_days
        self.max_queue_samples = max_queue_samples
        self.max_queue_events = max_queue_events
        self.commit_interval_s = commit_interval_s
        self.max_batch_samples = max_batch_samples
        self.status_interval_s = status_interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.retention_check_s = retention_check_s
        self.retention_chunk_rows = retention_chunk_rows
        self.close_attempts = close_attempts
        self.stats = WriterStats()

        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[SampleBatch] = deque()
        self._event_queue: deque[Event] = deque()
        self._queued = 0  # samples in _queue
        self._backlog = 0  # samples accepted and not yet written or given up (queue + held)
        self._first_queued_at: float | None = None
        self._stopping = False
        self._flush_requested = False
        self._retention_requested = False
        self._thread: threading.Thread | None = None
        self._lock: WriterLock | None = None

        self._bus: TagBus | None = None
        self._subscriptions: list[Subscription] = []
        self._status_ids: list[int] = []

        # Writer-thread state.
        self._engine: sa.Engine | None = None
        self._dialect: Dialect | None = None
        self._conn: sa.Connection | None = None
        self._samples_sql = ""
        self._texts_sql = ""
        self._bus_to_db = np.full(0, -1, np.int64)
        self._held: list[SampleBatch] = []
        # Per bus tag id: the recorded time at or below which a value arriving now would sort
        # before a COMM_LOST mark the operator saw first, where one stands. See _in_arrival_order.
        self._first_open = threading.Event()
        self._floor = np.zeros(0, np.int64)
        self._has_floor = np.zeros(0, bool)
        self._held_samples = 0
        self._held_since: float | None = None
        self._held_events: list[Event] = []
        self._next_attempt = 0.0
        self._backoff = retry_initial_s
        self._last_failure_event = -1e18
        self._dropped_reported = 0
        self._last_drop_event = -1e18
        self._retention: Iterator[int] | None = None
        self._next_retention = 0.0
        self._db_errors: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError,)
        self._open_errors: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError, OSError, s.HistorianError)

        # Store-and-forward ([historian.forward]): each committed chunk also goes to the
        # outbox, in the same transaction (hmi/historian/forward.py reads it).
        self.forwarder: Forwarder | None = None
        self._outbox = forward is not None and forward.samples
        self._outbox_limit = int(forward.max_backlog_mb * 1e6) if forward is not None else 0
        self._outbox_bytes = 0  # blob bytes in the outbox table (set on open)
        self._forwarded_seq = 0  # set by the forwarder's thread: rows up to it may go
        self._outbox_deleted_to = 0
        self._last_outbox_delete = 0.0
        if forward is not None:
            self.forwarder = Forwarder(
                forward,
                target,
                base_dir=base_dir,
                on_forwarded=self._on_forwarded,
                retention_days=retention_days,
                **(forward_kwargs or {}),
            )

    @classmethod
    def from_project(cls, project: Project, registry: TagRegistry, **kwargs: Any) -> HistorianWriter:
        """A writer as the project file's [historian], [[shifts]] and per-tag history keys say."""
        policies = {
            name: StoragePolicy(StorageMode(tag.history), tag.history_deadband)
            for name, tag in project.tags.items()
            if tag.history != StorageMode.EVERY
        }
        calendar = ShiftCalendar(
            [ShiftDefinition.parse(shift.name, shift.start, shift.end) for shift in project.shifts],
            project.project.timezone,
        )
        return cls(
            project.historian.url,
            registry,
            policies=policies,
            calendar=calendar,
            retention_days=project.historian.retention_days,
            project=project,
            forward=project.historian.forward,
            base_dir=project.source_path.parent if project.source_path is not None else None,
            **kwargs,
        )

    # -- wiring (any thread) ---------------------------------------------------------------

    def attach(self, bus: TagBus) -> None:
        """Record every batch and event published on `bus`, and publish status tags there."""
        self._bus = bus
        self._status_ids = bus.register(STATUS_TAGS)
        if self.forwarder is not None:
            self.forwarder.attach(bus)
        self._subscriptions = [
            bus.subscribe(self._on_bus_batch, name="historian"),
            bus.subscribe_events(self._on_bus_events, name="historian-events"),
        ]

    def _on_bus_batch(self, batch: SampleBatch) -> None:
        self.submit(batch)

    def _on_bus_events(self, events: Sequence[Event]) -> None:
        self.submit_events(events)

    def start(self) -> None:
        """Start the writer thread; raises HistorianInUse (hmi.historian.lock) if another
        process records into the same file (its lock is held until the thread ends)."""
        if self._thread is not None:
            return
        url = url_for(self.target)
        self._lock = dialect_for(url).writer_lock(url)
        if self._lock is not None:
            self._lock.acquire()
        self._thread = threading.Thread(target=self._run, name="historian-writer", daemon=True)
        self._thread.start()
        # Wait for the first attempt to open the database (not its success: a dead server is
        # retried in the background), so a reader finds the schema complete once start returns.
        self._first_open.wait(FIRST_OPEN_WAIT_S)
        if self.forwarder is not None:
            self.forwarder.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return self._backlog

    # -- ingest (publishing threads; must stay quick) ---------------------------------------

    def submit(self, batch: SampleBatch) -> bool:
        """Queue a batch for writing; False (and counted) if the queue is full or closed."""
        n = len(batch)
        if n == 0:
            return True
        with self._cond:
            if self._stopping or self._backlog + n > self.max_queue_samples:
                self.stats.dropped += n
                return False
            if not self._queue:
                self._first_queued_at = time.monotonic()
            self._queue.append(batch)
            self._queued += n
            self._backlog += n
            self.stats.accepted += n
            if self._queued >= self.max_batch_samples:
                self._cond.notify()
        return True

    def submit_events(self, events: Sequence[Event]) -> bool:
        if not events:
            return True
        with self._cond:
            if self._stopping or len(self._event_queue) + len(events) > self.max_queue_events:
                self.stats.events_dropped += len(events)
                return False
            if not self._queue and not self._event_queue:
                self._first_queued_at = time.monotonic()
            self._event_queue.extend(events)
        return True

    # -- control ---------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is queued now; True once nothing accepted is left unwritten."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flush_requested = True
            self._cond.notify()
        while time.monotonic() < deadline:
            with self._cond:
                done = self._backlog == 0 and not self._event_queue and not self._held_events
                if not done:
                    self._flush_requested = True
                    self._cond.notify()
            if done:
                return True
            time.sleep(0.005)
        return False

    def request_retention(self) -> None:
        with self._cond:
            self._retention_requested = True
            self._cond.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking data, write everything queued, close the database."""
        for sub in self._subscriptions:
            sub.close()
        self._subscriptions = []
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is None:
            # Never started: what was queued cannot be written; say so.
            with self._cond:
                if self._backlog:
                    log.error("historian writer closed without running; %d samples not kept", self._backlog)
                    self.stats.lost += self._backlog
                    self._backlog = 0
                    self._queue.clear()
            return
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("historian writer did not finish within %.0f s; %d samples unwritten", timeout, self._backlog)
        if self.forwarder is not None:
            self.forwarder.close()  # after the last commit: it ships that too if it can, briefly

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                try:
                    self._loop()
                    return
                except Exception as exc:
                    # A bug, not a database error (those are handled in _loop). Be loud, keep
                    # what is held, and go on: recording must not stop for good.
                    log.exception("historian writer failed unexpectedly; continuing")
                    self.stats.last_error = f"internal error: {exc!r}"
                    self._system_event(f"Historian writer error: {exc!r}", Severity.ERROR, {"error": repr(exc)})
                    self._close_connection(clean=False)
                    self._next_attempt = time.monotonic() + 1.0
                    time.sleep(1.0)
        finally:
            self._close_connection(clean=True)
            if self._lock is not None:
                self._lock.release()

    def _loop(self) -> None:
        next_status = 0.0
        close_attempts = 0
        while True:
            now = time.monotonic()
            with self._cond:
                wait = self._wait_time(now, next_status)
                if wait > 0:
                    self._cond.wait(wait)
                stopping = self._stopping
                flush = self._flush_requested
                self._flush_requested = False
                retention_now = self._retention_requested
                self._retention_requested = False
                batches = list(self._queue)
                self._queue.clear()
                self._queued = 0
                # The commit interval counts from when the oldest of these arrived.
                arrived = self._first_queued_at
                self._first_queued_at = None
                events = list(self._event_queue)
                self._event_queue.clear()
            now = time.monotonic()
            self._take(batches, events, arrived if arrived is not None else now)

            if self._conn is None and now >= self._next_attempt:
                self._open()
                self._first_open.set()
            ready = self._held_samples >= self.max_batch_samples or (
                self._held_since is not None and now - self._held_since >= self.commit_interval_s
            )
            if (self._held_samples or self._held_events) and (ready or flush or stopping):
                if self._conn is not None and (now >= self._next_attempt or stopping):
                    self._write_held()
                if stopping and (self._held_samples or self._held_events):
                    close_attempts += 1
                    if close_attempts >= self.close_attempts:
                        self._give_up_held()
                    else:
                        time.sleep(min(self._backoff, 1.0))
                        self._close_connection(clean=False)
                        self._open()
                        continue
            if now >= next_status:
                self._publish_status()
                next_status = now + self.status_interval_s
            self._report_drops(now)
            if stopping:
                if not self._held_samples and not self._held_events:
                    with self._cond:
                        if not self._queue and not self._event_queue:
                            break
                continue
            if retention_now:
                self._next_retention = 0.0
            self._retention_step(now)

    def _wait_time(self, now: float, next_status: float) -> float:
        """How long to sleep (caller holds the lock): until something is due."""
        if self._stopping or self._flush_requested or self._retention_requested:
            return 0.0
        if self._queued >= self.max_batch_samples:
            return 0.0
        deadline = next_status
        first = self._held_since if self._held_since is not None else self._first_queued_at
        if first is not None:
            deadline = min(deadline, max(first + self.commit_interval_s, self._next_attempt))
        if self._conn is None:
            deadline = min(deadline, self._next_attempt)
        if self._retention is not None and not self._held_samples and not self._queue:
            return 0.0
        return max(0.0, deadline - now)

    def _take(self, batches: list[SampleBatch], events: list[Event], arrived: float) -> None:
        for batch in batches:
            n = len(batch)
            kept = self.filter.apply(self._in_arrival_order(batch))
            skipped = n - len(kept)
            if skipped:
                self.stats.skipped += skipped
                with self._cond:
                    self._backlog -= skipped
            if len(kept):
                self._held.append(kept)
                self._held_samples += len(kept)
                if self._held_since is None:
                    self._held_since = arrived
        if events:
            self._held_events.extend(events)
            if self._held_since is None:
                self._held_since = arrived

    def _in_arrival_order(self, batch: SampleBatch) -> SampleBatch:
        """The batch as it is recorded: after a sample that says the value is not good (a
        COMM_LOST mark stamped when the loss was seen, a stale mark, a BAD value), a sample of
        the same tag that arrives later but carries an older or equal source time (a static OPC
        UA tag's value after a start or a reconnect, a retained message) is recorded 1 ns after
        it, and so are further late samples, in arrival order, until a GOOD value newer than
        the mark ends the rule. So replay shows what the operator saw, in the order seen
        (docs/historian.md, "Recorded order"). The bus's batch is shared: a copy is changed."""
        ids = batch.tag_ids
        if not len(ids):
            return batch
        top = int(ids.max()) + 1
        if top > self._floor.shape[0]:
            size = max(top, 2 * self._floor.shape[0])
            self._floor = np.concatenate([self._floor, np.zeros(size - self._floor.shape[0], np.int64)])
            self._has_floor = np.concatenate([self._has_floor, np.zeros(size - self._has_floor.shape[0], bool)])
        not_good = batch.quality != Quality.GOOD
        floor, has_floor = self._floor, self._has_floor
        if not not_good.any() and not has_floor[ids].any():
            return batch  # the usual batch: no mark anywhere near
        marked = has_floor[:top].copy()  # tags with a mark standing, or one in this batch
        marked[ids[not_good]] = True
        ts = batch.ts_ns.copy()
        for row in np.flatnonzero(marked[ids]).tolist():  # arrival order
            tag = int(ids[row])
            if not has_floor[tag]:
                if not_good[row]:
                    floor[tag], has_floor[tag] = ts[row], True
            elif ts[row] <= floor[tag]:
                ts[row] = floor[tag] = min(int(floor[tag]) + 1, LATEST_NS)
            elif not_good[row]:
                floor[tag] = ts[row]
            else:
                has_floor[tag] = False  # a good value newer than the mark: the stream's own times are past it
        if np.array_equal(ts, batch.ts_ns):
            return batch
        self.stats.restamped += int((ts != batch.ts_ns).sum())
        return SampleBatch(ids, ts, batch.values, batch.quality, batch.texts)

    # -- database --------------------------------------------------------------------------

    def _open(self) -> bool:
        try:
            if self._engine is None:
                self._engine, self._dialect = s.make_engine(self.target)
                # The hot path uses the driver's cursor, whose errors SQLAlchemy does not wrap.
                self._db_errors = (sa.exc.SQLAlchemyError, self._engine.dialect.loaded_dbapi.Error)
                self._open_errors = (*self._db_errors, OSError, s.HistorianError)
            assert self._dialect is not None
            conn = self._engine.connect()
            try:
                s.ensure_schema(conn)
                self._dialect.after_open(conn)
                conn.commit()
                self._record_calendar(conn)
                self._record_session(conn)
                if self._outbox:
                    # The rollback of a failed commit undid what the counter had added: count anew.
                    self._outbox_bytes = int(
                        conn.execute(sa.select(sa.func.coalesce(sa.func.sum(s.outbox.c.nbytes), 0))).scalar() or 0
                    )
                    conn.rollback()
            except BaseException:
                conn.close()
                raise
        except self._open_errors as exc:
            self.stats.open_failures += 1
            self._failed("open", exc)
            return False
        self._conn = conn
        self._samples_sql = self._dialect.upsert_samples_sql(self._engine)
        self._texts_sql = self._dialect.upsert_texts_sql(self._engine)
        # Tag ids are the file's own; a reopened (possibly replaced) file maps them anew.
        self._bus_to_db = np.full(0, -1, np.int64)
        log.info("historian recording to %s", self._engine.url.render_as_string(hide_password=True))
        if self._retention is None and self.retention_days is not None:
            self._next_retention = 0.0
        return True

    def _close_connection(self, clean: bool) -> None:
        if self._conn is not None:
            try:
                if clean and self._dialect is not None:
                    self._dialect.before_close(self._conn)
                elif not clean:
                    # After a failure, the next attempt gets a fresh connection, not this one back from the pool.
                    self._conn.invalidate()
                self._conn.close()
            except sa.exc.SQLAlchemyError as exc:
                log.warning("historian: closing the database: %s", exc)
            self._conn = None
        self._retention = None
        if clean and self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _record_calendar(self, conn: sa.Connection) -> None:
        """Store the time zone and shift calendar, as a new version when they changed."""
        with conn.begin():
            if s.get_meta(conn, "timezone") != self.timezone:
                s.set_meta(conn, "timezone", self.timezone)
            if self.calendar is None:
                return
            latest = conn.execute(sa.select(sa.func.max(s.shifts.c.since_ns))).scalar()
            current: set[tuple[str, str, str, str]] = set()
            if latest is not None:
                rows = conn.execute(
                    sa.select(s.shifts.c.name, s.shifts.c.start, s.shifts.c.end, s.shifts.c.timezone).where(
                        s.shifts.c.since_ns == latest
                    )
                )
                current = {(r[0], r[1], r[2], r[3]) for r in rows}
            wanted = {(n, a, b, self.calendar.timezone) for n, a, b in self.calendar.to_rows()}
            if wanted and wanted != current:
                since = now_ns()
                conn.execute(
                    sa.insert(s.shifts),
                    [{"since_ns": since, "name": n, "start": a, "end": b, "timezone": tz} for n, a, b, tz in wanted],
                )

    def _record_session(self, conn: sa.Connection) -> None:
        """Record this start and its project (once per file: a reopen finds it there)."""
        if self.project is None:
            return
        if self._project_record is None:
            self._project_record = ProjectRecord.of(self.project)
        if write_session(conn, self._project_record, self.started_ns, __version__):
            log.info("historian: session recorded with project %s", self._project_record.path or "(built in code)")

    def _db_ids(self, conn: sa.Connection, bus_ids: np.ndarray) -> np.ndarray:
        top = int(bus_ids.max())
        if top >= self._bus_to_db.shape[0]:
            grown = np.full(max(top + 1, 2 * self._bus_to_db.shape[0], 64), -1, np.int64)
            grown[: self._bus_to_db.shape[0]] = self._bus_to_db
            self._bus_to_db = grown
        mapped = self._bus_to_db[bus_ids]
        if (mapped < 0).any():
            missing = np.unique(bus_ids[mapped < 0]).tolist()
            self._ensure_tags(conn, missing)
            mapped = self._bus_to_db[bus_ids]
        return mapped

    def _ensure_tags(self, conn: sa.Connection, bus_ids: list[int]) -> None:
        """Map bus tag ids to the file's ids, adding tags and recording changed configs."""
        specs = [self._spec(i) for i in bus_ids]
        now = now_ns()
        with conn.begin():
            existing: dict[str, sa.Row[Any]] = {}
            names = [spec.name for spec in specs]
            for i in range(0, len(names), 500):
                for row in conn.execute(sa.select(s.tags).where(s.tags.c.name.in_(names[i : i + 500]))):
                    existing[row.name] = row
            for bus_id, spec in zip(bus_ids, specs, strict=True):
                config = {
                    "datatype": str(spec.datatype),
                    "unit": spec.unit,
                    "description": spec.description,
                    "low": spec.low,
                    "high": spec.high,
                }
                found = existing.get(spec.name)
                if found is None:
                    key = conn.execute(
                        sa.insert(s.tags).values(name=spec.name, first_seen_ns=now, **config)
                    ).inserted_primary_key
                    assert key is not None
                    tag_id = key[0]
                    conn.execute(sa.insert(s.tag_configs).values(tag_id=tag_id, since_ns=now, **config))
                else:
                    tag_id = found.id
                    if any(getattr(found, key) != value for key, value in config.items()):
                        conn.execute(sa.update(s.tags).where(s.tags.c.id == tag_id).values(**config))
                        conn.execute(sa.insert(s.tag_configs).values(tag_id=tag_id, since_ns=now, **config))
                self._bus_to_db[bus_id] = int(tag_id)

    def _spec(self, bus_id: int) -> TagSpec:
        if bus_id < len(self.registry):
            return self.registry.spec(bus_id)
        # Not registered (a source published an unknown id): keep the data under a name
        # that says so rather than losing it.
        return TagSpec(f"unknown.tag_{bus_id}", description="published without being registered")

    def _write_held(self) -> None:
        assert self._conn is not None
        batch = SampleBatch.concat(self._held) if self._held else SampleBatch.empty()
        n = len(batch)
        done = 0
        started = time.perf_counter()
        try:
            if n == 0:
                self._write_chunk(batch, self._held_events)
                self.stats.events_written += len(self._held_events)
                self._held_events = []
            while done < n:
                end = min(n, done + self.max_batch_samples)
                chunk = batch if done == 0 and end == n else batch.take(np.arange(done, end))
                self._write_chunk(chunk, self._held_events)
                self.stats.events_written += len(self._held_events)
                self._held_events = []
                done = end
                self.stats.written += len(chunk)
                with self._cond:
                    self._backlog -= len(chunk)
        except self._db_errors as exc:
            # Keep what is not committed; it is retried after a backoff on a new connection.
            self._held = [batch.take(np.arange(done, n))] if 0 < done < n else self._held
            self._held_samples = n - done
            self.stats.write_failures += 1
            self._failed("write", exc)
            self._close_connection(clean=False)
            return
        self._held = []
        self._held_samples = 0
        self._held_since = None
        self.stats.commit_seconds.append(time.perf_counter() - started)
        del self.stats.commit_seconds[:-100]
        if self.stats.failing_since is not None:
            down = time.monotonic() - self.stats.failing_since
            self.stats.failing_since = None
            self._backoff = self.retry_initial_s
            self._system_event(
                f"Historian writing again after {down:.0f} s",
                Severity.INFO,
                {"down_s": round(down, 1), "not_kept": self.stats.not_kept},
            )
            self._publish_status()

    def _write_chunk(self, batch: SampleBatch, events: list[Event]) -> None:
        conn = self._conn
        assert conn is not None
        rows: list[tuple[int, int, float, int]] = []
        text_rows: list[tuple[int, int, str]] = []
        if len(batch):
            db_ids = self._db_ids(conn, batch.tag_ids)
            # Sorted by key: the B-tree takes runs of appends per tag. lexsort is stable,
            # so of two samples with one (tag, ts) the later arrival is written last and wins.
            order = np.lexsort((batch.ts_ns, db_ids))
            rows = list(
                zip(
                    db_ids[order].tolist(),
                    batch.ts_ns[order].tolist(),
                    batch.values[order].tolist(),
                    batch.quality[order].tolist(),
                    strict=True,
                )
            )
            if batch.texts:
                text_rows = [(int(db_ids[r]), int(batch.ts_ns[r]), t) for r, t in batch.texts.items()]
            if self._outbox:
                texts = {}
                if batch.texts:
                    position = np.empty_like(order)
                    position[order] = np.arange(len(order))
                    texts = {int(position[r]): t for r, t in batch.texts.items()}
                outbox_row = outbox_blobs(
                    db_ids[order], batch.ts_ns[order], batch.values[order], batch.quality[order], texts
                )
        with conn.begin():
            if rows:
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.executemany(self._samples_sql, rows)
                    if text_rows:
                        cursor.executemany(self._texts_sql, text_rows)
                finally:
                    cursor.close()
                if self._outbox:
                    # Same transaction: the outbox holds exactly what the file committed.
                    conn.execute(sa.insert(s.outbox).values(created_ns=now_ns(), **outbox_row))
            if events:
                conn.execute(sa.insert(s.events), [_event_row(e) for e in events])
            if self._outbox:
                self._prune_outbox(conn, len(rows) and outbox_row["nbytes"])
        self.stats.commits += 1
        if self._outbox and rows and self.forwarder is not None:
            self.forwarder.wake()

    # -- the forwarding outbox (writer thread) -----------------------------------------------------

    def _on_forwarded(self, seq: int) -> None:
        """The forwarder's thread: outbox rows up to `seq` are in the central database."""
        self._forwarded_seq = max(self._forwarded_seq, seq)

    def _prune_outbox(self, conn: sa.Connection, added_bytes: int) -> None:
        """Inside the commit: delete forwarded rows (lazily, at most every 2 s), and hold
        the outbox under max_backlog_mb by dropping its oldest unsent rows, with a gap
        event naming the time range the central database lacks (the file keeps it)."""
        self._outbox_bytes += added_bytes
        now = time.monotonic()
        forwarded = self._forwarded_seq
        over = self._outbox_bytes > self._outbox_limit
        if forwarded > self._outbox_deleted_to and (over or now - self._last_outbox_delete >= 2.0):
            freed = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(s.outbox.c.nbytes), 0)).where(s.outbox.c.seq <= forwarded)
            ).scalar()
            conn.execute(sa.delete(s.outbox).where(s.outbox.c.seq <= forwarded))
            self._outbox_bytes -= int(freed or 0)
            self._outbox_deleted_to = forwarded
            self._last_outbox_delete = now
        if self._outbox_bytes <= self._outbox_limit:
            return
        # Drop the oldest unsent rows down to 90 % of the bound, so this is not every commit.
        target = self._outbox_bytes - int(self._outbox_limit * 0.9)
        dropped = freed_bytes = 0
        first_ts = last_ts = None
        last_seq = 0
        for seq, nbytes, rows, min_ts, max_ts in conn.execute(
            sa.select(s.outbox.c.seq, s.outbox.c.nbytes, s.outbox.c.rows, s.outbox.c.min_ts, s.outbox.c.max_ts)
            .order_by(s.outbox.c.seq)
            .limit(100_000)
        ):
            if freed_bytes >= target:
                break
            freed_bytes += nbytes
            dropped += rows
            first_ts = min_ts if first_ts is None else min(first_ts, min_ts)
            last_ts = max_ts if last_ts is None else max(last_ts, max_ts)
            last_seq = seq
        if not last_seq:
            return
        conn.execute(sa.delete(s.outbox).where(s.outbox.c.seq <= last_seq))
        self._outbox_bytes -= freed_bytes
        self.stats.outbox_dropped += dropped
        message = (
            f"Historian forwarding backlog reached its bound ({self._outbox_limit / 1e6:g} MB): "
            f"{dropped} samples recorded between {_iso(first_ts)} and {_iso(last_ts)} will not reach "
            "the central historian (this station's historian keeps them)"
        )
        log.error("%s", message)
        details: dict[str, object] = {
            "gap_start_ns": first_ts,
            "gap_end_ns": last_ts,
            "dropped_samples": dropped,
            "dropped_total": self.stats.outbox_dropped,
        }
        event = Event(EventCategory.SYSTEM, "historian.forward", message, Severity.ERROR, details=details)
        if self._bus is not None:
            # Comes back through the writer's subscription: recorded, then forwarded as any event.
            self._bus.publish_events([event])
        else:
            conn.execute(sa.insert(s.events), [_event_row(event)])

    def _give_up_held(self) -> None:
        n = self._held_samples
        if n or self._held_events:
            self.stats.lost += n
            self.stats.events_dropped += len(self._held_events)
            log.error(
                "historian: could not write %d samples and %d events before closing (%s)",
                n,
                len(self._held_events),
                self.stats.last_error,
            )
            self._system_event(
                f"Historian could not keep {n} samples at shutdown: {self.stats.last_error}",
                Severity.ERROR,
                {"lost_samples": n, "lost_events": len(self._held_events)},
                record=False,
            )
        with self._cond:
            self._backlog -= n
        self._held = []
        self._held_samples = 0
        self._held_events = []
        self._held_since = None

    def _failed(self, what: str, exc: BaseException) -> None:
        reason = self._dialect.describe_error(exc) if self._dialect is not None else str(exc)
        self.stats.last_error = reason
        now = time.monotonic()
        first = self.stats.failing_since is None
        if first:
            self.stats.failing_since = now
        self._next_attempt = now + self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max_s)
        if first or now - self._last_failure_event >= FAILURE_REPEAT_S:
            self._last_failure_event = now
            held = self._held_samples
            message = (
                f"Historian cannot {what}: {reason}. Holding {held} samples in memory and retrying; "
                f"{self.stats.not_kept} samples could not be kept so far"
            )
            log.error("%s", message)
            self._system_event(
                message,
                Severity.ERROR,
                {"error": reason, "operation": what, "held_samples": held, "not_kept": self.stats.not_kept},
            )
            self._publish_status()

    def _report_drops(self, now: float) -> None:
        dropped = self.stats.dropped
        if dropped == self._dropped_reported or now - self._last_drop_event < DROP_REPORT_S:
            return
        new = dropped - self._dropped_reported
        self._dropped_reported = dropped
        self._last_drop_event = now
        message = (
            f"Historian queue full: {new} samples could not be kept ({dropped} since start). "
            "The writer is behind: the disk is slow or failing, or the machine is overloaded"
        )
        log.error("%s", message)
        self._system_event(message, Severity.ERROR, {"dropped_samples": new, "dropped_total": dropped})
        self._publish_status()

    def _system_event(self, message: str, severity: Severity, details: dict[str, object], record: bool = True) -> None:
        event = Event(EventCategory.SYSTEM, SOURCE, message, severity, details=details)
        if self._bus is not None:
            # Comes back through our own subscription, so it is recorded too.
            self._bus.publish_events([event])
        elif record:
            self._held_events.append(event)
            if self._held_since is None:
                self._held_since = time.monotonic()

    def _publish_status(self) -> None:
        # Not while closing: the writer has left the bus by then, so a status sample
        # published now would be seen by others but never recorded.
        if self._bus is None or not self._status_ids or self._stopping:
            return
        ok = 1.0 if self._conn is not None and self.stats.failing_since is None else 0.0
        self._bus.publish(
            SampleBatch.from_arrays(
                self._status_ids,
                now_ns(),
                [float(self._backlog), float(self.stats.not_kept), ok],
                Quality.GOOD,
            )
        )

    # -- retention -------------------------------------------------------------------------

    def _retention_step(self, now: float) -> None:
        if self.retention_days is None or self._conn is None:
            return
        if self._retention is None:
            if now < self._next_retention:
                return
            cutoff = now_ns() - int(self.retention_days * 86_400 * 1e9)
            self._retention = purge_steps(self._conn, cutoff, self.retention_chunk_rows)
            self._next_retention = now + self.retention_check_s
        if self._held_samples >= self.max_batch_samples // 2:
            return  # ingest first
        try:
            self.stats.retention_deleted += next(self._retention)
        except StopIteration:
            self._retention = None
        except self._db_errors as exc:
            log.warning("historian retention: %s", self._dialect.describe_error(exc) if self._dialect else exc)
            self._retention = None


def _iso(ts_ns: int | None) -> str:
    from datetime import UTC, datetime

    if ts_ns is None:
        return "?"
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_row(event: Event) -> dict[str, object]:
    return {
        "ts": int(event.ts_ns),
        "category": str(event.category),
        "source": event.source,
        "severity": str(event.severity),
        "message": event.message,
        "user": event.user,
        "details": event.details or None,
    }
