"""Store-and-forward: ship what the local historian committed to a central PostgreSQL.

Thread "historian-forward", one per runtime, started by HistorianWriter.start when the
project has [historian.forward]. It reads the local SQLite file through its own connection
(WAL: it reads while the writer writes) and writes the central database through its own
psycopg connection, so ingest and local recording never wait on the central database.

What it reads, in what order (docs/historian.md, "Forwarding"):

- samples: the `outbox` table (schema.py, version 3), one row per chunk the writer
  committed, written in the same SQLite transaction as the samples, numbered by `seq`
  (AUTOINCREMENT: never reused). The samples table itself has no insertion order and takes
  late rows, so no time cursor could say what was sent.
- events and audit records: their own increasing ids (events.id, audit_records.seq).
- tags: upserted by (station, name) before any sample that needs them; configuration
  history (tag_configs) by its `since_ns`.
- sessions (sessions.py): by the local sessions.id, each with its models, and its project
  file by SHA-256 (shared by every station: a file is the same wherever it ran); shipped
  before samples, so a playback of the central data finds the project it was recorded with.

Exactly once, in order: each batch is one PostgreSQL transaction that writes the rows AND
advances the stream's row in `forward_cursors`, locked FOR UPDATE and checked to be where
this forwarder left it. On any failure both roll back and the batch is sent again from the
cursor the central database holds; on start the forwarder reads that cursor and resumes
there. Central samples are keyed (tag_id, ts): the fast path is one binary COPY; a chunk
whose key is already there (the local writer's own upsert: a later value for the same tag
and nanosecond) takes a merge path (COPY into a temporary table, INSERT ... ON CONFLICT DO
UPDATE) in the same transaction, so the central row ends as the local one.

Forwarded outbox rows are deleted by the writer (`on_forwarded`), in its own transactions:
the file keeps one writer. The backlog's bound (max_backlog_mb) is enforced there too.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from hmi.config.models import ForwardConfig
from hmi.core.backoff import Backoff
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import DataType, TagSpec
from hmi.historian.backends import url_for
from hmi.historian.errors import HistorianError

if TYPE_CHECKING:
    import psycopg

    from hmi.core.bus import TagBus

log = logging.getLogger(__name__)

SOURCE = "historian.forward"
TAG_BACKLOG = "historian.forward.backlog_rows"
TAG_AGE = "historian.forward.oldest_unsent_age_s"
TAG_RATE = "historian.forward.rows_per_s"
TAG_CONNECTED = "historian.forward.connected"
STATUS_TAGS = (
    TagSpec(TAG_BACKLOG, "rows", DataType.INT, "Rows recorded locally and not yet in the central historian"),
    TagSpec(TAG_AGE, "s", DataType.FLOAT, "Age of the oldest row not yet in the central historian"),
    TagSpec(TAG_RATE, "rows/s", DataType.FLOAT, "Rows forwarded to the central historian per second"),
    TagSpec(TAG_CONNECTED, "", DataType.BOOL, "Connected to the central historian"),
)
# The backlog's size warning and alarm, as fractions of max_backlog_mb (long before loss).
SIZE_WARN = 0.5
SIZE_ALARM = 0.9
MAX_CHUNKS_PER_BATCH = 512
# Forwarded outbox rows are deleted this long after their commit: a server running with
# synchronous_commit = off may lose its last commits in a crash (rows and cursor together),
# and then sends them again from the outbox.
RELEASE_DELAY_S = 10.0
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"
# Binary COPY rows of (tag_id int4, ts int8, value float8 | NULL, quality int2).
_HEAD = [("n", ">i2"), ("l1", ">i4"), ("tag", ">i4"), ("l2", ">i4"), ("ts", ">i8"), ("l3", ">i4")]
_ROW = np.dtype([*_HEAD, ("v", ">f8"), ("l4", ">i4"), ("q", ">i2")])
_ROW_NULL = np.dtype([*_HEAD, ("l4", ">i4"), ("q", ">i2")])


def samples_copy_buffer(tag_ids: np.ndarray, ts: np.ndarray, values: np.ndarray, quality: np.ndarray) -> bytes:
    """The whole `COPY samples (tag_id, ts, value, quality) FROM STDIN (FORMAT BINARY)` input,
    built by numpy: NaN goes as NULL, as the local file stores it."""
    null = np.isnan(values)
    parts = [COPY_HEADER]
    for mask, dtype in ((~null, _ROW), (null, _ROW_NULL)):
        n = int(mask.sum())
        if not n:
            continue
        rows = np.empty(n, dtype)
        rows["n"] = 4
        rows["l1"] = 4
        rows["tag"] = tag_ids[mask]
        rows["l2"] = 8
        rows["ts"] = ts[mask]
        if dtype is _ROW:
            rows["l3"] = 8
            rows["v"] = values[mask]
        else:
            rows["l3"] = -1
        rows["l4"] = 2
        rows["q"] = quality[mask]
        parts.append(rows.tobytes())
    parts.append(COPY_TRAILER)
    return b"".join(parts)


def outbox_blobs(
    tag_ids: np.ndarray, ts: np.ndarray, values: np.ndarray, quality: np.ndarray, texts: dict[int, str]
) -> dict[str, Any]:
    """One outbox row's columns (the writer calls this inside its commit)."""
    blobs = {
        "tag_ids": np.ascontiguousarray(tag_ids, "<i4").tobytes(),
        "ts": np.ascontiguousarray(ts, "<i8").tobytes(),
        "vals": np.ascontiguousarray(values, "<f8").tobytes(),
        "quality": np.ascontiguousarray(quality, "u1").tobytes(),
    }
    return {
        "rows": len(ts),
        "min_ts": int(ts.min()),
        "max_ts": int(ts.max()),
        "nbytes": sum(len(b) for b in blobs.values()),
        "texts": json.dumps(sorted(texts.items()), ensure_ascii=False) if texts else None,
        **blobs,
    }


@dataclass
class Chunks:
    """Outbox rows decoded into one set of arrays (local tag ids)."""

    first_seq: int
    last_seq: int
    tag_ids: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    quality: np.ndarray
    texts: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts)


def decode_chunks(rows: Sequence[Sequence[Any]]) -> Chunks:
    """Rows of (seq, tag_ids, ts, vals, quality, texts) in seq order, as one batch."""
    tag_ids, ts, values, quality = [], [], [], []
    texts: dict[int, str] = {}
    offset = 0
    for _seq, b_ids, b_ts, b_vals, b_q, b_texts in rows:
        ids = np.frombuffer(b_ids, "<i4")
        tag_ids.append(ids)
        ts.append(np.frombuffer(b_ts, "<i8"))
        values.append(np.frombuffer(b_vals, "<f8"))
        quality.append(np.frombuffer(b_q, "u1"))
        if b_texts:
            for row, text in json.loads(b_texts):
                texts[offset + int(row)] = text
        offset += len(ids)
    return Chunks(
        int(rows[0][0]),
        int(rows[-1][0]),
        np.concatenate(tag_ids),
        np.concatenate(ts),
        np.concatenate(values),
        np.concatenate(quality),
        texts,
    )


def last_of_each_key(tag_ids: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Indices keeping, of rows with the same (tag, ts), the last one (the local upsert's
    winner), sorted by (tag, ts): one COPY may not carry a key twice."""
    n = len(ts)
    order = np.lexsort((np.arange(n), ts, tag_ids))
    if n < 2:
        return order
    t, s = tag_ids[order], ts[order]
    last = np.ones(n, bool)
    last[:-1] = (t[1:] != t[:-1]) | (s[1:] != s[:-1])
    return order[last]


@dataclass
class ForwardStats:
    samples_sent: int = 0
    events_sent: int = 0
    audit_sent: int = 0
    tags_sent: int = 0
    sessions_sent: int = 0
    batches: int = 0
    merged_batches: int = 0  # samples batches that needed the merge path (a key already there)
    connects: int = 0
    connect_failures: int = 0
    batch_failures: int = 0
    last_error: str = ""
    connected: bool = False
    backlog_rows: int = 0
    backlog_bytes: int = 0
    oldest_age_s: float = 0.0
    rows_per_s: float = 0.0
    max_backlog_rows: int = 0  # the highest backlog_rows published since start


class _CursorMoved(Exception):
    """The central cursor is not where this forwarder left it (another process with the
    same station name, or a restore): re-read it and go on from there."""


def _local_path(target: str) -> Path:
    url = sa.engine.make_url(url_for(target))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise HistorianError(f"forwarding reads a local SQLite historian file, not {url.get_backend_name()}")
    database = url.database[5:].split("?", 1)[0] if url.database.startswith("file:") else url.database
    return Path(database)


class Forwarder:
    """Ships the local historian's committed rows to the central database; see the module."""

    def __init__(
        self,
        config: ForwardConfig,
        local_target: str,
        *,
        base_dir: Path | None = None,
        on_forwarded: Callable[[int], None] | None = None,
        retention_days: float | None = None,
        status_interval_s: float = 1.0,
        poll_s: float = 0.25,
        retry_initial_s: float = 0.25,
        retry_max_s: float = 10.0,
    ) -> None:
        self.config = config
        self.local_path = _local_path(local_target)
        self.base_dir = base_dir
        self.on_forwarded = on_forwarded
        self.retention_days = retention_days
        self.status_interval_s = status_interval_s
        self.poll_s = poll_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.stats = ForwardStats()
        self.reported: list[str] = []  # every system event's message (also on the bus)

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None
        self._bus: TagBus | None = None
        self._status_ids: list[int] = []

        # Forwarder-thread state. `_sa` carries the transactions (central.py's helpers take
        # it); `_pg` is its psycopg connection, for COPY and the cursor rows.
        self._engine: sa.Engine | None = None
        self._sa: sa.Connection | None = None
        self._pg: psycopg.Connection[Any] | None = None
        self._local: sqlite3.Connection | None = None
        self._station_id = 0
        self._pos: dict[str, int] = {}  # stream -> the position the central database holds
        self._central_ids = np.full(0, -1, np.int64)  # local tag id -> central tag id
        self._partition_days: set[int] = set()
        # Doubling from the first failure: the central database is not starting beside us.
        self._backoff = Backoff(retry_initial_s, retry_max_s, startup_s=0.0)
        self._next_attempt = 0.0
        self._down_since: float | None = None
        self._reasons: set[str] = set()  # told once until a connection succeeds
        self._size_level = 0  # 0 fine, 1 warned, 2 alarmed
        self._age_warned = False
        self._rate_rows = 0
        self._rate_since = time.monotonic()
        self._local_tables: set[str] = set()  # found in the local file (once made, a table stays)
        self._samples_from = 0  # the outbox seq read from (normally the central cursor)
        self._to_release: deque[tuple[float, int]] = deque()  # (committed at, outbox seq)
        self.release_delay_s = RELEASE_DELAY_S
        self._caught_up = threading.Event()

    # -- wiring and control (any thread) --------------------------------------------------------

    def attach(self, bus: TagBus) -> None:
        self._bus = bus
        self._status_ids = bus.register(STATUS_TAGS)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="historian-forward", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """New rows were committed locally (called by the writer after an outbox commit)."""
        self._wake.set()

    def close(self, drain_s: float = 2.0, timeout: float = 10.0) -> None:
        """Stop; first ship what is committed for up to `drain_s` while connected."""
        self._drain_until = time.monotonic() + drain_s
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("historian forwarder did not stop within %.0f s", timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_caught_up(self, timeout: float) -> bool:
        """True once connected with no backlog (tests, benchmarks, `close`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats.connected and self._caught_up.is_set():
                return True
            self._wake.set()
            time.sleep(0.02)
        return False

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        next_status = 0.0
        try:
            while True:
                now = time.monotonic()
                stopping = self._stop.is_set()
                self._release(now)
                if stopping and (self._pg is None or now >= self._drain_until):
                    break
                shipped = 0
                if self._pg is None and now >= self._next_attempt and not stopping:
                    self._connect()
                if self._pg is not None:
                    try:
                        shipped = self._cycle()
                    except _CursorMoved as exc:
                        log.warning("historian forward: %s; re-reading the central cursors", exc)
                        self._rollback()
                        self._partition_days = set()
                        self._load_cursors()
                        shipped = 1
                    except Exception as exc:
                        self._lost(exc)
                if now >= next_status:
                    self._status(now)
                    next_status = now + self.status_interval_s
                if shipped:
                    self._caught_up.clear()
                    continue
                if self._pg is not None:
                    self._caught_up.set()
                if stopping:
                    break
                wait = min(next_status, self._next_attempt if self._pg is None else now + self.poll_s) - now
                self._wake.wait(max(0.0, min(wait, self.poll_s if self._pg is not None else wait)))
                self._wake.clear()
        except Exception as exc:  # a bug: be loud; local recording is not affected
            log.exception("historian forwarder failed")
            self._event(f"Forwarding to the central historian stopped: {exc!r}", Severity.ERROR)
        finally:
            self._disconnect()
            if self._local is not None:
                self._local.close()
                self._local = None

    # -- connection ------------------------------------------------------------------------------

    def _make_engine(self) -> sa.Engine:
        from hmi.historian.postgres import PostgresDialect

        rootcert = self.config.sslrootcert
        if rootcert and self.base_dir is not None and not Path(rootcert).is_absolute():
            rootcert = str(self.base_dir / rootcert)
        dialect = PostgresDialect(self.config.password_ref, self.config.effective_sslmode, rootcert)
        url, args = dialect.connect_args(self.config.url)  # resolves the password
        args.update(
            application_name=f"hmi forward {self.config.station}"[:63],
            # A cut network path shows as an error within seconds, not a hang.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=20_000,
        )
        # No pool: a connection that failed is closed for good, the next one is new.
        return sa.create_engine(url, connect_args=args, poolclass=sa.pool.NullPool)

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One central transaction; yields the psycopg connection it runs on."""
        assert self._sa is not None and self._pg is not None
        with self._sa.begin():
            yield self._pg

    def _connect(self) -> None:
        import psycopg

        from hmi.historian.postgres import describe_error, safe_url

        try:
            if self._local is None:
                self._local = sqlite3.connect(self.local_path, timeout=5.0, check_same_thread=False)
            if self._engine is None:
                self._engine = self._make_engine()
            self._sa = self._engine.connect()
            self._pg = self._sa.connection.driver_connection
            self._setup()
        except (HistorianError, sa.exc.SQLAlchemyError, psycopg.Error, sqlite3.Error, OSError) as exc:
            reason = str(exc) if isinstance(exc, HistorianError) else describe_error(exc)
            self._disconnect()
            self.stats.connect_failures += 1
            self._failed(f"cannot forward to {safe_url(self.config.url)}: {reason}")
            return
        self.stats.connects += 1
        self.stats.connected = True
        self._backoff.reset()
        self._reasons.clear()
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._event(
                f"Forwarding to the central historian again after {down:.0f} s; "
                f"{self.stats.backlog_rows} rows to catch up",
                Severity.INFO,
                {"down_s": round(down, 1), "backlog_rows": self.stats.backlog_rows},
            )
            self._down_since = None
        log.info("historian forwarding to %s as station %r", safe_url(self.config.url), self.config.station)

    def _failed(self, reason: str) -> None:
        self.stats.last_error = reason
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        # One event per distinct reason until a connection succeeds (a wrong password is not
        # repeated every 10 s; a different problem is told).
        key = reason.split("(", 1)[0]
        if key not in self._reasons:
            self._reasons.add(key)
            self._event(
                f"Historian forwarding: {reason}. Recording locally goes on; the backlog is sent when it works",
                Severity.ERROR,
                {"error": reason},
            )
        else:
            log.info("historian forward: %s", reason)
        self._next_attempt = now + self._backoff.next(ever_connected=True)
        self._status(now)

    def _lost(self, exc: BaseException) -> None:
        import psycopg

        from hmi.historian.postgres import describe_error

        if not isinstance(exc, psycopg.Error | sa.exc.SQLAlchemyError | sqlite3.Error | OSError):
            log.exception("historian forward: unexpected error")
        self.stats.batch_failures += 1
        self._disconnect()
        self._failed(f"connection lost: {describe_error(exc)}")

    def _disconnect(self) -> None:
        self.stats.connected = False
        self._pg = None
        self._partition_days = set()  # created in a transaction that may have rolled back
        self._to_release.clear()  # commits not yet known durable: the reconnect re-reads the cursor
        if self._sa is not None:
            try:
                self._sa.invalidate()
                self._sa.close()
            except Exception:  # closing a dead connection: nothing more to learn
                pass
            self._sa = None

    def _rollback(self) -> None:
        if self._sa is not None and self._sa.in_transaction():
            self._sa.rollback()

    def _setup(self) -> None:
        """Check the central schema, register the station, read the cursors."""
        from hmi.historian import central

        assert self._sa is not None
        # Creates the schema in an empty database, migrates an older one, refuses a newer one.
        central.ensure_central_schema(self._sa)
        with self._tx() as pg:
            row = pg.execute(
                "INSERT INTO stations (name, created_ns) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING RETURNING id",
                (self.config.station, now_ns()),
            ).fetchone()
            if row is None:
                row = pg.execute("SELECT id FROM stations WHERE name = %s", (self.config.station,)).fetchone()
            assert row is not None
            self._station_id = int(row[0])
        self._central_ids = np.full(0, -1, np.int64)
        self._load_cursors()

    def _load_cursors(self) -> None:
        with self._tx() as pg:
            pg.execute(
                "INSERT INTO forward_cursors (station_id, stream, position, updated_ns) "
                "SELECT %s, s, 0, %s FROM unnest(%s::text[]) AS s ON CONFLICT DO NOTHING",
                (self._station_id, now_ns(), ["tags", "samples", "events", "audit", "sessions"]),
            )
            rows = pg.execute(
                "SELECT stream, position FROM forward_cursors WHERE station_id = %s", (self._station_id,)
            ).fetchall()
        self._pos = {str(stream): int(position) for stream, position in rows}
        local = self._local_top("outbox")
        if self._pos.get("samples", 0) > local:
            # The central database has more of this station than this file ever held: the
            # file was replaced. Its outbox starts over (the cursor check expects the old value).
            self._event(
                f"Historian forwarding: the central cursor of station {self.config.station!r} is at "
                f"{self._pos['samples']} but this historian file's outbox only reaches {local}: "
                "a new file, or two stations with one name; forwarding this file from its start",
                Severity.WARNING,
            )
            self._samples_from = 0
        else:
            self._samples_from = self._pos.get("samples", 0)
        self._to_release.clear()
        if self._samples_from:
            self._to_release.append((time.monotonic(), self._samples_from))

    def _local_top(self, table: str) -> int:
        """The highest seq the local outbox ever handed out (AUTOINCREMENT's record)."""
        assert self._local is not None
        row = self._local.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return int(row[0]) if row else 0

    # -- one round ---------------------------------------------------------------------------------

    def _cycle(self) -> int:
        shipped = 0
        if self.config.tags:
            shipped += self._ship_tag_configs()
        if self.config.sessions:
            shipped += self._ship_sessions()
        if self.config.samples:
            shipped += self._ship_samples()
        if self.config.events:
            shipped += self._ship_events()
        if self.config.audit:
            shipped += self._ship_audit()
        self._rate_rows += shipped
        return shipped

    def _advance(self, stream: str, position: int) -> None:
        """Inside the batch's transaction: lock the stream's cursor, check it, move it."""
        pg = self._pg
        assert pg is not None
        row = pg.execute(
            "SELECT position FROM forward_cursors WHERE station_id = %s AND stream = %s FOR UPDATE",
            (self._station_id, stream),
        ).fetchone()
        expected = self._pos.get(stream, 0)
        if row is None or int(row[0]) != expected:
            raise _CursorMoved(f"{stream} cursor is at {None if row is None else row[0]}, expected {expected}")
        pg.execute(
            "UPDATE forward_cursors SET position = %s, updated_ns = %s WHERE station_id = %s AND stream = %s",
            (position, now_ns(), self._station_id, stream),
        )

    # -- tags --------------------------------------------------------------------------------------

    def _grow_map(self, top: int) -> None:
        if top > len(self._central_ids):
            grown = np.full(max(top, 2 * len(self._central_ids), 64), -1, np.int64)
            grown[: len(self._central_ids)] = self._central_ids
            self._central_ids = grown

    def _central_tag_ids(self, local_ids: np.ndarray) -> np.ndarray:
        self._grow_map(int(local_ids.max()) + 1 if len(local_ids) else 0)
        mapped = self._central_ids[local_ids]
        if (mapped < 0).any():
            self._ship_tags(np.unique(local_ids[mapped < 0]).tolist())
            mapped = self._central_ids[local_ids]
            if (mapped < 0).any():
                missing = np.unique(local_ids[mapped < 0]).tolist()[:5]
                raise HistorianError(f"local tag ids {missing} are not in the local tags table")
        return mapped

    def _ship_tags(self, local_ids: list[int]) -> None:
        """Upsert these local tags as (station, name) in their own transaction, so the map
        is only filled from committed rows."""
        assert self._local is not None and self._pg is not None
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(local_ids), 500):
            part = local_ids[i : i + 500]
            rows += self._local.execute(
                "SELECT id, name, datatype, unit, description, low, high, first_seen_ns FROM tags "
                f"WHERE id IN ({','.join('?' * len(part))})",
                part,
            ).fetchall()
        if not rows:
            return
        by_name = {row[1]: int(row[0]) for row in rows}
        with self._tx() as pg, pg.cursor() as cur:
            cur.executemany(
                "INSERT INTO tags (station_id, name, datatype, unit, description, low, high, first_seen_ns) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (station_id, name) DO UPDATE SET "
                "datatype = EXCLUDED.datatype, unit = EXCLUDED.unit, description = EXCLUDED.description, "
                "low = EXCLUDED.low, high = EXCLUDED.high",
                [(self._station_id, *row[1:]) for row in rows],
            )
            found = cur.execute(
                "SELECT id, name FROM tags WHERE station_id = %s AND name = ANY(%s)",
                (self._station_id, list(by_name)),
            ).fetchall()
        self._grow_map(max(by_name.values()) + 1)
        for central_id, name in found:
            self._central_ids[by_name[name]] = int(central_id)
        self.stats.tags_sent += len(rows)

    def _ship_tag_configs(self) -> int:
        """Configuration history (tag_configs) by since_ns; idempotent (ON CONFLICT DO NOTHING)."""
        assert self._local is not None and self._pg is not None
        since = self._pos.get("tags", 0)
        rows = self._local.execute(
            "SELECT tag_id, since_ns, datatype, unit, description, low, high FROM tag_configs "
            "WHERE since_ns > ? ORDER BY since_ns LIMIT 5000",
            (since,),
        ).fetchall()
        if not rows:
            return 0
        local_ids = np.array([r[0] for r in rows], np.int64)
        self._ship_tags(np.unique(local_ids).tolist())  # current metadata, and the id map
        central_ids = self._central_tag_ids(local_ids)
        last = int(rows[-1][1])
        with self._tx() as pg, pg.cursor() as cur:
            cur.executemany(
                "INSERT INTO tag_configs (tag_id, since_ns, datatype, unit, description, low, high) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(int(c), *r[1:]) for c, r in zip(central_ids.tolist(), rows, strict=True)],
            )
            self._advance("tags", last)
        self._pos["tags"] = last
        return len(rows)

    # -- samples -----------------------------------------------------------------------------------

    def _ship_samples(self) -> int:
        assert self._local is not None and self._pg is not None
        chosen: list[tuple[Any, ...]] = []
        total = 0
        cursor = self._local.execute(
            "SELECT seq, rows, tag_ids, ts, vals, quality, texts FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._samples_from, MAX_CHUNKS_PER_BATCH),
        )
        for seq, rows, *blobs in cursor:
            if chosen and total + rows > self.config.batch_rows:
                break
            chosen.append((seq, *blobs))
            total += rows
        cursor.close()
        if not chosen:
            return 0
        chunks = decode_chunks(chosen)
        keep = last_of_each_key(chunks.tag_ids, chunks.ts)
        central_ids = self._central_tag_ids(chunks.tag_ids.astype(np.int64))
        buffer = samples_copy_buffer(central_ids[keep], chunks.ts[keep], chunks.values[keep], chunks.quality[keep])
        texts = [(int(central_ids[r]), int(chunks.ts[r]), t) for r, t in chunks.texts.items()]
        import psycopg

        assert self._sa is not None
        with self._tx():
            self._ensure_partitions(chunks.ts)
            self._advance("samples", chunks.last_seq)
            try:
                with self._sa.begin_nested():  # a savepoint: a key already there takes the merge path
                    self._copy_samples("samples", "sample_texts", buffer, texts)
            except psycopg.errors.UniqueViolation:
                self.stats.merged_batches += 1
                self._merge_samples(buffer, texts)
        self._pos["samples"] = self._samples_from = chunks.last_seq
        self.stats.samples_sent += len(chunks)
        self.stats.batches += 1
        self._to_release.append((time.monotonic(), chunks.last_seq))
        return len(chunks)

    def _release(self, now: float) -> None:
        """Tell the writer which outbox rows it may delete (see RELEASE_DELAY_S)."""
        seq = 0
        while self._to_release and self._to_release[0][0] + self.release_delay_s <= now:
            seq = self._to_release.popleft()[1]
        if seq and self.on_forwarded is not None:
            self.on_forwarded(seq)

    def _copy_samples(self, table: str, texts_table: str, buffer: bytes, texts: list[tuple[int, int, str]]) -> None:
        assert self._pg is not None
        with self._pg.cursor() as cur:
            with cur.copy(f"COPY {table} (tag_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(buffer)
            if texts:
                with cur.copy(f"COPY {texts_table} (tag_id, ts, text) FROM STDIN") as copy:
                    for row in texts:
                        copy.write_row(row)

    def _merge_samples(self, buffer: bytes, texts: list[tuple[int, int, str]]) -> None:
        """The local writer's upsert, centrally: a later value for a key replaces the earlier."""
        assert self._pg is not None
        pg = self._pg
        pg.execute(
            "CREATE TEMP TABLE IF NOT EXISTS hmi_fwd_samples "
            "(tag_id int, ts bigint, value double precision, quality smallint) ON COMMIT DELETE ROWS"
        )
        pg.execute(
            "CREATE TEMP TABLE IF NOT EXISTS hmi_fwd_texts (tag_id int, ts bigint, text text) ON COMMIT DELETE ROWS"
        )
        self._copy_samples("hmi_fwd_samples", "hmi_fwd_texts", buffer, texts)
        pg.execute(
            "INSERT INTO samples (tag_id, ts, value, quality) SELECT tag_id, ts, value, quality FROM hmi_fwd_samples "
            "ON CONFLICT (tag_id, ts) DO UPDATE SET value = EXCLUDED.value, quality = EXCLUDED.quality"
        )
        if texts:
            pg.execute(
                "INSERT INTO sample_texts (tag_id, ts, text) SELECT tag_id, ts, text FROM hmi_fwd_texts "
                "ON CONFLICT (tag_id, ts) DO UPDATE SET text = EXCLUDED.text"
            )

    def _ensure_partitions(self, ts: np.ndarray) -> None:
        """Day partitions for the batch's range, once per day (a row outside any lands in
        DEFAULT, which later blocks creating that day's partition)."""
        from hmi.historian import central

        day = 86_400 * 10**9
        first, last = int(ts.min()) // day, int(ts.max()) // day
        days = set(range(first, last + 1))
        if days <= self._partition_days or last - first > 400:
            return
        assert self._sa is not None
        central.ensure_partitions(self._sa, first * day, (last + 1) * day - 1)
        self._partition_days |= days

    # -- events and audit ----------------------------------------------------------------------------

    def _ship_events(self) -> int:
        assert self._local is not None and self._pg is not None
        rows = self._local.execute(
            'SELECT id, ts, category, source, severity, message, "user", details FROM events '
            "WHERE id > ? ORDER BY id LIMIT ?",
            (self._pos.get("events", 0), max(1000, self.config.batch_rows // 10)),
        ).fetchall()
        if not rows:
            return 0
        last = int(rows[-1][0])
        with self._tx() as pg, pg.cursor() as cur:
            self._ensure_partitions(np.array([row[1] for row in rows], np.int64))
            self._advance("events", last)
            columns = 'station_id, local_id, ts, category, source, severity, message, "user", details'
            with cur.copy(f"COPY events ({columns}) FROM STDIN") as copy:
                for row in rows:
                    details = row[7] if row[7] not in (None, "null") else None
                    copy.write_row((self._station_id, *row[:7], details))
        self._pos["events"] = last
        self.stats.events_sent += len(rows)
        return len(rows)

    def _has_local_table(self, name: str) -> bool:
        """Whether the local file has table `name` (the audit trail may not have made its
        table yet, a file of an older schema has no sessions); asked again until it appears."""
        assert self._local is not None
        if name not in self._local_tables:
            if self._local.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is None:
                return False
            self._local_tables.add(name)
        return True

    def _ship_audit(self) -> int:
        assert self._local is not None and self._pg is not None
        if not self._has_local_table("audit_records"):
            return 0
        rows = self._local.execute(
            'SELECT seq, ts, kind, "user", target, outcome, details, prev_hash, hash FROM audit_records '
            "WHERE seq > ? ORDER BY seq LIMIT 1000",
            (self._pos.get("audit", 0),),
        ).fetchall()
        if not rows:
            return 0
        last = int(rows[-1][0])
        with self._tx() as pg, pg.cursor() as cur:
            self._advance("audit", last)
            columns = 'station_id, seq, ts, kind, "user", target, outcome, details, prev_hash, hash'
            with cur.copy(f"COPY audit ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((self._station_id, *row))
        self._pos["audit"] = last
        self.stats.audit_sent += len(rows)
        return len(rows)

    def _ship_sessions(self) -> int:
        """Runtime sessions with their models and project files, in one transaction with
        the cursor. A project file already there (sent by this or another station) is kept:
        its key is the hash of its bytes."""
        assert self._local is not None and self._pg is not None
        local = self._local
        if not self._has_local_table("sessions"):
            return 0  # a file from before sessions were recorded (schema version 1)
        rows = local.execute(
            "SELECT id, started_ns, host, program_version, project_name, project_path, project_sha256 "
            "FROM sessions WHERE id > ? ORDER BY id LIMIT 100",
            (self._pos.get("sessions", 0),),
        ).fetchall()
        if not rows:
            return 0
        ids = [int(row[0]) for row in rows]
        shas = sorted({row[6] for row in rows if row[6]})
        files = local.execute(
            f"SELECT sha256, text, redacted FROM project_files WHERE sha256 IN ({','.join('?' * len(shas))})", shas
        ).fetchall()
        models = local.execute(
            "SELECT session_id, machine, path, sha256, size FROM session_models "
            f"WHERE session_id IN ({','.join('?' * len(ids))}) ORDER BY session_id, machine",
            ids,
        ).fetchall()
        known = {row[0] for row in files}
        # A session naming a file its own database lacks would fail the central foreign key
        # on every retry: it goes without the text, as a session of a project built in code.
        sessions = [(self._station_id, *row[:6], row[6] if row[6] in known else None) for row in rows]
        last = ids[-1]
        with self._tx() as pg, pg.cursor() as cur:
            self._advance("sessions", last)
            if files:
                cur.executemany(
                    "INSERT INTO project_files (sha256, text, redacted) VALUES (%s, %s, %s) "
                    "ON CONFLICT (sha256) DO NOTHING",
                    files,
                )
            cur.executemany(
                "INSERT INTO sessions (station_id, id, started_ns, host, program_version, project_name, "
                "project_path, project_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                sessions,
            )
            if models:
                cur.executemany(
                    "INSERT INTO session_models (station_id, session_id, machine, path, sha256, size) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [(self._station_id, *row) for row in models],
                )
        self._pos["sessions"] = last
        self.stats.sessions_sent += len(rows)
        return len(rows)

    # -- visibility ----------------------------------------------------------------------------------

    def _backlog(self) -> tuple[int, int, int | None]:
        """(rows, outbox bytes, oldest unsent time in ns) not yet in the central database."""
        if self._local is None:
            try:
                self._local = sqlite3.connect(self.local_path, timeout=5.0, check_same_thread=False)
            except sqlite3.Error:
                return 0, 0, None
        local = self._local
        rows, nbytes, oldest = local.execute(
            "SELECT coalesce(sum(rows), 0), coalesce(sum(nbytes), 0), min(created_ns) FROM outbox WHERE seq > ?",
            (self._samples_from,),
        ).fetchone()
        total, first = int(rows), oldest
        if self.config.events and "events" in self._pos:
            n, ts = local.execute(
                "SELECT count(*), min(ts) FROM events WHERE id > ?", (self._pos["events"],)
            ).fetchone()
            total += int(n)
            first = ts if first is None else first if ts is None else min(first, ts)
        local.rollback()  # end the read transaction: it would hold back the WAL checkpoint
        return total, int(nbytes), None if first is None else int(first)

    def _status(self, now: float) -> None:
        try:
            rows, nbytes, oldest = self._backlog()
        except sqlite3.Error as exc:
            log.warning("historian forward: reading the backlog: %s", exc)
            return
        stats = self.stats
        stats.backlog_rows, stats.backlog_bytes = rows, nbytes
        stats.max_backlog_rows = max(stats.max_backlog_rows, rows)
        stats.oldest_age_s = max(0.0, (now_ns() - oldest) / 1e9) if oldest is not None else 0.0
        elapsed = now - self._rate_since
        if elapsed > 0:
            stats.rows_per_s = self._rate_rows / elapsed
        self._rate_rows, self._rate_since = 0, now
        self._check_bounds()
        if self._bus is not None and self._status_ids and not self._stop.is_set():
            self._bus.publish(
                SampleBatch.from_arrays(
                    self._status_ids,
                    now_ns(),
                    [float(rows), stats.oldest_age_s, stats.rows_per_s, 1.0 if stats.connected else 0.0],
                    Quality.GOOD,
                )
            )

    def _check_bounds(self) -> None:
        """Warn long before the bound drops anything: at half the size, alarm at 90 %; and
        when the oldest unsent row is older than backlog_alarm_s (or half the local retention,
        after which local retention would delete unsent events)."""
        limit = self.config.max_backlog_mb * 1e6
        fill = self.stats.backlog_bytes / limit
        level = 2 if fill >= SIZE_ALARM else 1 if fill >= SIZE_WARN else 0
        if level > self._size_level:
            severity = Severity.ERROR if level == 2 else Severity.WARNING
            self._event(
                f"Historian forwarding backlog at {fill:.0%} of its {self.config.max_backlog_mb:g} MB bound "
                f"({self.stats.backlog_rows} rows); at the bound the oldest unsent rows are dropped from the "
                "outbox (the local historian keeps them)",
                severity,
                {"backlog_bytes": self.stats.backlog_bytes, "fill": round(fill, 3)},
            )
        if level == 0 or fill < SIZE_WARN * 0.8:
            self._size_level = level
        else:
            self._size_level = max(level, self._size_level)
        age_limit = self.config.backlog_alarm_s
        if self.retention_days is not None:
            age_limit = min(age_limit, self.retention_days * 86_400 / 2)
        age = self.stats.oldest_age_s
        if age >= age_limit and not self._age_warned:
            self._age_warned = True
            self._event(
                f"Historian forwarding is {age:.0f} s behind (alarm at {age_limit:g} s): "
                f"{self.stats.backlog_rows} rows not yet in the central historian",
                Severity.WARNING,
                {"oldest_age_s": round(age, 1), "backlog_rows": self.stats.backlog_rows},
            )
        elif age < age_limit / 2:
            self._age_warned = False

    def _event(self, message: str, severity: Severity, details: dict[str, object] | None = None) -> None:
        self.reported.append(message)
        (log.error if severity == Severity.ERROR else log.warning if severity == Severity.WARNING else log.info)(
            "%s", message
        )
        if self._bus is not None:
            self._bus.publish_events([Event(EventCategory.SYSTEM, SOURCE, message, severity, details=details or {})])
