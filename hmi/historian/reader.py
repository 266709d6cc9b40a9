"""Reads from the historian: one tag as numpy arrays, decimated for drawing, the last value
at or before a time, windows of many tags for playback, and events with filters.

The same reader serves a local SQLite file and the central PostgreSQL database
(`postgresql://host/db?station=ws1&password_ref=NAME`): layout.py shapes each back end's
tables alike, the dialect gives the placeholders and how to decimate.

A reader has its own connection (SQLite WAL lets it run beside the writer; on PostgreSQL it
runs in autocommit, so it never sits "idle in transaction" holding locks that would stop a
partition from being dropped). Use one reader from one thread at a time; any thread may
create it. Hot reads are plain SQL through the driver's cursor, converted to numpy in one
step; the rest is SQLAlchemy Core.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import QUALITY_DTYPE
from hmi.core.samples import TAG_ID_DTYPE, TS_DTYPE, VALUE_DTYPE, SampleBatch
from hmi.core.tags import DataType, TagSpec
from hmi.historian import schema as s
from hmi.historian.backends import dialect_for, url_for
from hmi.historian.layout import LOCAL, Layout, central_layout, central_session, central_timezone, open_central

# Re-exported: playback reads recordings through this module only (docs/architecture.md).
from hmi.historian.sessions import ModelRecord as ModelRecord
from hmi.historian.sessions import ProjectRecord as ProjectRecord
from hmi.historian.sessions import RecordedSession, read_session
from hmi.historian.sessions import model_file_state as model_file_state
from hmi.historian.shifts import ShiftCalendar, calendar_from_rows

log = logging.getLogger(__name__)

_ROW_DTYPE = np.dtype([("ts", "<i8"), ("value", "<f8"), ("quality", "u1"), ("null", "?")])
_TAGGED_DTYPE = np.dtype([("tag", "<i4"), ("ts", "<i8"), ("value", "<f8"), ("quality", "u1"), ("null", "?")])
# Above this many raw samples per pixel a decimated read returns min/max buckets.
RAW_POINTS_PER_PIXEL = 4
# decimated_many: buckets per UNION ALL statement (SQLite allows 500 terms; 50 to 100 read
# fastest here) and tags per GROUP BY statement (a short parameter list).
BUCKETS_PER_STATEMENT = 64
TAGS_PER_STATEMENT = 64
# HistoryLookup.many reads half of this many tags or more on a second connection.
HISTORY_SPLIT_TAGS = 8
_DATATYPES = frozenset(d.value for d in DataType)
_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(frozen=True, slots=True)
class RecordedTag:
    id: int  # the file's own tag id
    name: str
    datatype: DataType
    unit: str
    description: str
    low: float | None
    high: float | None

    def spec(self) -> TagSpec:
        return TagSpec(
            name=self.name,
            unit=self.unit,
            datatype=self.datatype,
            description=self.description,
            low=self.low,
            high=self.high,
        )


@dataclass(frozen=True, slots=True, eq=False)
class Series:
    """One tag's samples in time order; `texts` maps row -> string (string tags)."""

    ts: np.ndarray
    values: np.ndarray
    quality: np.ndarray
    texts: dict[int, str] | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class Decimated:
    """Per pixel bucket: its start, min, max, sample count and worst quality.

    Empty buckets have count 0 and NaN min/max. When the range holds few samples
    (`raw` is True) each bucket is one raw sample (min == max == value)."""

    ts: np.ndarray
    min: np.ndarray
    max: np.ndarray
    count: np.ndarray
    quality: np.ndarray
    raw: bool


def _event_from_row(r: sa.Row) -> Event:
    return Event(
        category=EventCategory(r.category),
        source=r.source,
        message=r.message,
        severity=Severity(r.severity),
        ts_ns=int(r.ts),
        user=r.user,
        details=dict(r.details or {}),
    )


PRIORITIES = ("urgent", "high", "medium", "low")
DESIGN_SUPPRESSION_CAUSES = ("suppressed", "unsuppressed")


def machine_of(source: str) -> str:
    """The machine an event concerns: its source's prefix before the first dot."""
    return source.split(".", 1)[0]


def is_design_suppression(event: Event) -> bool:
    """A suppression-by-design change of an inactive alarm: noise for the operator (every
    CNC tool change makes two), kept in the historian."""
    d = event.details
    return (
        event.category == EventCategory.ALARM
        and d.get("cause") in DESIGN_SUPPRESSION_CAUSES
        and d.get("active") is False
    )


def _design_suppression(e: sa.FromClause = s.events) -> sa.ColumnElement[bool]:
    # JSON paths through SQLAlchemy's JSON type: json_extract on SQLite, ->> on PostgreSQL.
    d = e.c.details
    return sa.and_(
        e.c.category == str(EventCategory.ALARM),
        sa.func.coalesce(d["cause"].as_string(), "").in_(DESIGN_SUPPRESSION_CAUSES),
        sa.func.coalesce(d["active"].as_boolean(), sa.true()) == sa.false(),
    )


@dataclass(frozen=True, slots=True)
class EventQuery:
    """The journal's filters. The same filter runs as SQL (`clauses`) on the historian and in
    Python (`matches`) on live events, so a row means the same whichever way it came."""

    categories: tuple[str, ...] | None = None
    machine: str = ""  # the source's prefix before the first dot
    priority: str = ""  # alarm events only: "urgent", "high", "medium", "low"
    user: str = ""
    text: str = ""  # in the message, source or user, ignoring case
    hide_design_suppression: bool = False

    def clauses(self, e: sa.FromClause = s.events) -> list[sa.ColumnElement[bool]]:
        """The filter on `e`: the local events table, or a reader's own (HistorianReader.events_table)."""
        out: list[sa.ColumnElement[bool]] = []
        if self.categories is not None:
            out.append(e.c.category.in_(list(self.categories)))
        if self.machine:
            out.append(sa.or_(e.c.source == self.machine, e.c.source.startswith(self.machine + ".", autoescape=True)))
        if self.priority:
            out += [e.c.category == str(EventCategory.ALARM), e.c.details["priority"].as_string() == self.priority]
        if self.user:
            out.append(e.c.user == self.user)
        if self.text:
            needle = self.text.lower()
            out.append(
                sa.or_(
                    *(sa.func.lower(c).contains(needle, autoescape=True) for c in (e.c.message, e.c.source, e.c.user))
                )
            )
        if self.hide_design_suppression:
            out.append(sa.not_(_design_suppression(e)))
        return out

    def matches(self, event: Event) -> bool:
        if self.categories is not None and str(event.category) not in self.categories:
            return False
        if self.machine and machine_of(event.source) != self.machine:
            return False
        if self.priority and (event.category != EventCategory.ALARM or event.details.get("priority") != self.priority):
            return False
        if self.user and event.user != self.user:
            return False
        if self.text:
            needle = self.text.lower()
            if not any(needle in t.lower() for t in (event.message, event.source, event.user)):
                return False
        return not (self.hide_design_suppression and is_design_suppression(event))


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events newest first; `next_key` is where the next (older) page starts, None at the end."""

    events: list[Event]
    next_key: tuple[int, int] | None


def _rows_to_arrays(rows: Sequence[tuple[object, ...]], dtype: np.dtype) -> np.ndarray:
    arr = np.fromiter(rows, dtype=dtype, count=len(rows))
    if arr.shape[0] and arr["null"].any():
        arr["value"][arr["null"]] = np.nan  # NaN is stored as NULL
    return arr


def with_password_ref(target: str, password_ref: str | None) -> str:
    """`target` naming `password_ref` (`?password_ref=NAME`: the name, never the password), so
    every reader opened on it (playback, trends, journal threads) finds the password."""
    if not password_ref or "://" not in target:
        return target
    url = sa.engine.make_url(target).update_query_dict({"password_ref": password_ref})
    return url.render_as_string(hide_password=False)


def target_label(target: str) -> str:
    """A short name for a historian in titles and file names: the file's, or the database's
    (with its station)."""
    if "://" not in target:
        return Path(target).name
    url = sa.engine.make_url(target)
    if url.get_backend_name() == "sqlite":
        return Path(url.database or "memory").name
    station = url.query.get("station")
    return f"{url.database}-{station}" if isinstance(station, str) and station else str(url.database)


class HistorianReader:
    """Reads one historian: a SQLite file (path or URL) or a central PostgreSQL database.

    `password_ref` names the server's password (else the URL's `?password_ref=`); the URL's
    `?station=` picks the station whose tags show under their own names (none: every
    station's, as `station/name`)."""

    def __init__(self, target: str | Path, *, password_ref: str | None = None) -> None:
        self.target = str(target)
        url = url_for(self.target)
        self.layout: Layout = LOCAL
        if sa.engine.make_url(url).get_backend_name() == "postgresql":
            self.dialect = dialect_for(url, password_ref)
            self.engine, station = open_central(url, self.dialect)
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                self.layout = central_layout(self._conn, station)
            except BaseException:
                self.close()
                raise
        else:
            self.engine, self.dialect = s.open_engine(self.target, create=False)
            self._conn = self.engine.connect()
        raw = self._conn.connection.driver_connection
        assert raw is not None
        self._raw: Any = raw
        self._tags: list[RecordedTag] | None = None
        sql = self.dialect.sql
        self._sql_range = sql(
            self.engine,
            "SELECT ts, COALESCE(value, 0.0), quality, value IS NULL FROM samples "
            "WHERE tag_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
        )
        self._sql_last = sql(
            self.engine,
            "SELECT ts, COALESCE(value, 0.0), quality, value IS NULL FROM samples "
            "WHERE tag_id = ? AND ts <= ? ORDER BY ts DESC LIMIT 1",
        )
        self._sql_bucket = sql(
            self.engine,
            "SELECT MIN(value), MAX(value), COUNT(*), MAX(quality) FROM samples "
            "WHERE tag_id = ? AND ts >= ? AND ts < ?",
        )
        # The bucket is a subquery's column: a server binding each placeholder on its own
        # (PostgreSQL) would not see `GROUP BY (ts - ?) / ?` as the select list's expression.
        self._sql_group = sql(
            self.engine,
            "SELECT bucket, MIN(value), MAX(value), COUNT(*), MAX(quality) FROM "
            "(SELECT (ts - ?) / ? AS bucket, value, quality FROM samples "
            "WHERE tag_id = ? AND ts >= ? AND ts < ?) AS b GROUP BY bucket",
        )
        self._sql_texts = sql(
            self.engine, "SELECT ts, text FROM sample_texts WHERE tag_id = ? AND ts >= ? AND ts <= ? ORDER BY ts"
        )

    def close(self) -> None:
        self._conn.close()
        self.engine.dispose()

    def __enter__(self) -> HistorianReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cursor_rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        cursor = self._raw.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def _end_read(self) -> None:
        # Release the read snapshot, so the next read sees newer commits (and the WAL can
        # be checkpointed behind us).
        self._conn.rollback()

    # -- tags ------------------------------------------------------------------------------

    @property
    def events_table(self) -> sa.FromClause:
        """The events as this reader sees them (for EventQuery.clauses)."""
        return self.layout.events

    def tags(self, refresh: bool = False) -> list[RecordedTag]:
        if self._tags is None or refresh:
            t = self.layout.tags
            rows = self._conn.execute(
                sa.select(t.c.id, t.c.name, t.c.datatype, t.c.unit, t.c.description, t.c.low, t.c.high).order_by(t.c.id)
            ).all()
            self._end_read()
            self._tags = [
                RecordedTag(
                    int(r.id),
                    r.name,
                    DataType(r.datatype) if r.datatype in _DATATYPES else DataType.FLOAT,
                    r.unit,
                    r.description,
                    r.low,
                    r.high,
                )
                for r in rows
            ]
        return self._tags

    def tag(self, name: str) -> RecordedTag:
        for tag in self.tags():
            if tag.name == name:
                return tag
        for tag in self.tags(refresh=True):
            if tag.name == name:
                return tag
        raise KeyError(f"no tag {name!r} in this historian")

    def tag_configs(self, name: str) -> list[tuple[int, TagSpec]]:
        """Every configuration the tag was recorded under, as (since_ns, spec), oldest first."""
        tag = self.tag(name)
        tc = self.layout.tag_configs
        rows = self._conn.execute(sa.select(tc).where(tc.c.tag_id == tag.id).order_by(tc.c.since_ns)).all()
        self._end_read()
        return [
            (
                int(r.since_ns),
                TagSpec(name, r.unit, DataType(r.datatype), r.description, low=r.low, high=r.high),
            )
            for r in rows
        ]

    def _tag_id(self, tag: str | int | RecordedTag) -> int:
        if isinstance(tag, RecordedTag):
            return tag.id
        if isinstance(tag, int):
            return tag
        return self.tag(tag).id

    # -- samples ---------------------------------------------------------------------------

    def read(self, tag: str | int | RecordedTag, start_ns: int, end_ns: int) -> Series:
        """Samples of one tag with start_ns <= ts < end_ns, as numpy arrays."""
        tag_id = self._tag_id(tag)
        rows = self._cursor_rows(self._sql_range, (tag_id, start_ns, end_ns))
        arr = _rows_to_arrays(rows, _ROW_DTYPE)
        texts = self._texts(tag_id, arr["ts"]) if arr.shape[0] else None
        self._end_read()
        return Series(arr["ts"].copy(), arr["value"].copy(), arr["quality"].astype(QUALITY_DTYPE), texts)

    def _texts(self, tag_id: int, ts: np.ndarray) -> dict[int, str] | None:
        rows = self._cursor_rows(self._sql_texts, (tag_id, int(ts[0]), int(ts[-1])))
        if not rows:
            return None
        text_ts = np.fromiter((r[0] for r in rows), TS_DTYPE, len(rows))
        pos = np.searchsorted(ts, text_ts)
        return {int(p): str(r[1]) for p, t, r in zip(pos.tolist(), text_ts.tolist(), rows, strict=True) if ts[p] == t}

    def count(self, tag: str | int | RecordedTag, start_ns: int, end_ns: int) -> int:
        tag_id = self._tag_id(tag)
        t = self.layout.samples
        n = self._conn.execute(
            sa.select(sa.func.count()).where(t.c.tag_id == tag_id, t.c.ts >= start_ns, t.c.ts < end_ns)
        ).scalar()
        self._end_read()
        return int(n or 0)

    def decimated(self, tag: str | int | RecordedTag, start_ns: int, end_ns: int, pixels: int) -> Decimated:
        """Min/max per bucket of (end - start) / pixels, for drawing a long range fast."""
        if pixels <= 0 or end_ns <= start_ns:
            raise ValueError("need a positive number of pixels and end after start")
        tag_id = self._tag_id(tag)
        limit = pixels * RAW_POINTS_PER_PIXEL
        rows = self._cursor_rows(self._sql_range + " LIMIT " + str(limit + 1), (tag_id, start_ns, end_ns))
        if len(rows) <= limit:
            arr = _rows_to_arrays(rows, _ROW_DTYPE)
            self._end_read()
            return Decimated(
                arr["ts"].copy(),
                arr["value"].copy(),
                arr["value"].copy(),
                np.ones(arr.shape[0], np.int64),
                arr["quality"].astype(QUALITY_DTYPE),
                raw=True,
            )
        width = max(1, -(-(end_ns - start_ns) // pixels))
        starts = start_ns + np.arange(pixels, dtype=np.int64) * width
        lo = np.full(pixels, np.nan)
        hi = np.full(pixels, np.nan)
        count = np.zeros(pixels, np.int64)
        quality = np.zeros(pixels, QUALITY_DTYPE)
        cursor = self._raw.cursor()
        try:
            if self.dialect.decimation == "per_bucket":
                for i, a in enumerate(starts.tolist()):
                    cursor.execute(self._sql_bucket, (tag_id, a, min(a + width, end_ns)))
                    mn, mx, n, q = cursor.fetchone()
                    if n:
                        lo[i] = np.nan if mn is None else mn
                        hi[i] = np.nan if mx is None else mx
                        count[i] = n
                        quality[i] = q
            else:
                cursor.execute(self._sql_group, (start_ns, width, tag_id, start_ns, end_ns))
                for b, mn, mx, n, q in cursor.fetchall():
                    lo[b] = np.nan if mn is None else mn
                    hi[b] = np.nan if mx is None else mx
                    count[b] = n
                    quality[b] = q
        finally:
            cursor.close()
        self._end_read()
        return Decimated(starts, lo, hi, count, quality, raw=False)

    def decimated_many(
        self, tags: Iterable[str | int | RecordedTag], start_ns: int, end_ns: int, pixels: int
    ) -> dict[int, Decimated]:
        """`decimated()` of several tags over one range, keyed by tag id, with the same result
        per tag in a few statements rather than one per pixel of every tag (a trend opening
        fifty pens of a shift waited on 60,000 round trips through Python)."""
        if pixels <= 0 or end_ns <= start_ns:
            raise ValueError("need a positive number of pixels and end after start")
        ids = list(dict.fromkeys(self._tag_id(t) for t in tags))
        limit = pixels * RAW_POINTS_PER_PIXEL
        cursor = self._raw.cursor()
        try:
            # Few samples come back raw, as from decimated(); counting stops past the limit.
            probe = self.dialect.sql(
                self.engine,
                "SELECT COUNT(*) FROM (SELECT 1 FROM samples WHERE tag_id = ? AND ts >= ? AND ts < ? LIMIT ?) AS n",
            )
            dense = []
            for tag_id in ids:
                cursor.execute(probe, (tag_id, start_ns, end_ns, limit + 1))
                if cursor.fetchone()[0] > limit:
                    dense.append(tag_id)
            width = max(1, -(-(end_ns - start_ns) // pixels))
            lo = np.full((len(dense), pixels), np.nan)
            hi = np.full((len(dense), pixels), np.nan)
            count = np.zeros((len(dense), pixels), np.int64)
            quality = np.zeros((len(dense), pixels), QUALITY_DTYPE)
            if dense:
                if self.dialect.decimation == "per_bucket":
                    rows = self._buckets_per_bucket(cursor, dense, start_ns, end_ns, width, pixels)
                else:
                    rows = self._buckets_grouped(cursor, dense, start_ns, end_ns, width)
                if rows:
                    cols = np.array(rows, dtype=object).T
                    row, bucket = cols[0].astype(np.intp), cols[1].astype(np.intp)
                    lo[row, bucket] = cols[2].astype(np.float64)  # NULL (no value or all NaN) -> NaN
                    hi[row, bucket] = cols[3].astype(np.float64)
                    count[row, bucket] = cols[4].astype(np.int64)
                    quality[row, bucket] = cols[5].astype(QUALITY_DTYPE)
        finally:
            cursor.close()
        self._end_read()
        starts = start_ns + np.arange(pixels, dtype=np.int64) * width
        out = {t: Decimated(starts.copy(), lo[i], hi[i], count[i], quality[i], raw=False) for i, t in enumerate(dense)}
        for tag_id in ids:
            if tag_id not in out:
                out[tag_id] = self.decimated(tag_id, start_ns, end_ns, pixels)
        return out

    def _buckets_per_bucket(
        self, cursor: Any, tag_ids: list[int], start_ns: int, end_ns: int, width: int, pixels: int
    ) -> list[tuple[Any, ...]]:
        """(tag row, bucket, min, max, count, worst quality) of every bucket holding samples:
        one indexed aggregate per bucket as decimated() runs it, BUCKETS_PER_STATEMENT of
        them joined by UNION ALL into one statement (no sort, unlike GROUP BY on SQLite, and
        no round trip through Python per bucket)."""
        one = (
            "SELECT ?, ?, MIN(value), MAX(value), COUNT(*), MAX(quality) FROM samples "
            "WHERE tag_id = ? AND ts >= ? AND ts < ? HAVING COUNT(*) > 0"
        )
        # Bucket b is [start + b * width, min(start + (b + 1) * width, end)), clamped to end
        # so that the bounds stay int64 (a bucket past the end is empty either way).
        bounds = [(min(a, end_ns), min(a + width, end_ns)) for a in range(start_ns, start_ns + pixels * width, width)]
        n = len(tag_ids)
        terms = np.empty((n * pixels, 5), np.int64)
        terms[:, 0] = np.repeat(np.arange(n), pixels)
        terms[:, 1] = np.tile(np.arange(pixels), n)
        terms[:, 2] = np.repeat(np.asarray(tag_ids, np.int64), pixels)
        terms[:, 3:] = np.tile(np.asarray(bounds, np.int64), (n, 1))
        rows: list[tuple[Any, ...]] = []
        for k in range(0, terms.shape[0], BUCKETS_PER_STATEMENT):
            chunk = terms[k : k + BUCKETS_PER_STATEMENT]
            # The same text for every full chunk: the driver's statement cache prepares it once.
            sql = self.dialect.sql(self.engine, " UNION ALL ".join([one] * chunk.shape[0]))
            cursor.execute(sql, chunk.ravel().tolist())
            rows += cursor.fetchall()
        return rows

    def _buckets_grouped(
        self, cursor: Any, tag_ids: list[int], start_ns: int, end_ns: int, width: int
    ) -> list[tuple[Any, ...]]:
        """The same rows from one GROUP BY over the bucket number per TAGS_PER_STATEMENT tags
        (a hash aggregate on a server; SQLite sorts every sample for it)."""
        rows: list[tuple[Any, ...]] = []
        for k in range(0, len(tag_ids), TAGS_PER_STATEMENT):
            part = tag_ids[k : k + TAGS_PER_STATEMENT]
            # The bucket is a subquery's column: a server binding each placeholder on its own
            # would not see `GROUP BY (ts - ?) / ?` as the select list's expression. Integer
            # division of a non-negative offset floors on SQLite and PostgreSQL alike.
            sql = self.dialect.sql(
                self.engine,
                "SELECT tag_id, bucket, MIN(value), MAX(value), COUNT(*), MAX(quality) FROM "
                "(SELECT tag_id, (ts - ?) / ? AS bucket, value, quality FROM samples "
                f"WHERE tag_id IN ({', '.join('?' * len(part))}) AND ts >= ? AND ts < ?) AS b "
                "GROUP BY tag_id, bucket",
            )
            cursor.execute(sql, (start_ns, width, *part, start_ns, end_ns))
            row_of = {t: k + i for i, t in enumerate(part)}
            rows += [(row_of[t], *rest) for t, *rest in cursor.fetchall()]
        return rows

    def last_value(self, tag: str | int | RecordedTag, at_ns: int) -> tuple[int, float | str, int] | None:
        """(ts, value, quality) of the tag's last sample at or before `at_ns`."""
        tag_id = self._tag_id(tag)
        rows = self._cursor_rows(self._sql_last, (tag_id, at_ns))
        if not rows:
            self._end_read()
            return None
        row: tuple[Any, ...] = rows[0]
        ts, value, quality, null = row
        texts = self._texts(tag_id, np.array([ts], TS_DTYPE))
        self._end_read()
        if texts:
            return int(ts), texts[0], int(quality)
        return int(ts), (float("nan") if null else float(value)), int(quality)

    def last_values(self, tag_ids: Iterable[int], at_ns: int) -> SampleBatch:
        """The last sample at or before `at_ns` of each tag that has one, in (ts, tag) order
        (tag ids are the file's own)."""
        rows: list[tuple[object, ...]] = []
        cursor = self._raw.cursor()
        try:
            for tag_id in tag_ids:
                cursor.execute(self._sql_last, (tag_id, at_ns))
                row = cursor.fetchone()
                if row is not None:
                    rows.append((tag_id, *row))
        finally:
            cursor.close()
        return self._window(rows)

    def window(self, tag_ids: Iterable[int], start_ns: int, end_ns: int) -> SampleBatch:
        """All samples of `tag_ids` with start_ns <= ts < end_ns, merged in (ts, tag) order
        (tag ids are the file's own)."""
        rows: list[tuple[object, ...]] = []
        cursor = self._raw.cursor()
        try:
            for tag_id in tag_ids:
                cursor.execute(self._sql_range, (tag_id, start_ns, end_ns))
                rows.extend((tag_id, *r) for r in cursor.fetchall())
        finally:
            cursor.close()
        return self._window(rows)

    def _window(self, rows: list[tuple[object, ...]]) -> SampleBatch:
        arr = _rows_to_arrays(rows, _TAGGED_DTYPE)
        order = np.lexsort((arr["tag"], arr["ts"]))
        arr = arr[order]
        texts: dict[int, str] = {}
        if arr.shape[0]:
            for tag_id in self._string_tag_ids(np.unique(arr["tag"]).tolist()):
                rows_of_tag = np.flatnonzero(arr["tag"] == tag_id)
                ts = arr["ts"][rows_of_tag]
                found = self._texts(tag_id, ts)
                for local, text in (found or {}).items():
                    texts[int(rows_of_tag[local])] = text
        self._end_read()
        return SampleBatch(
            arr["tag"].astype(TAG_ID_DTYPE),
            arr["ts"].astype(TS_DTYPE),
            arr["value"].astype(VALUE_DTYPE),
            arr["quality"].astype(QUALITY_DTYPE),
            texts or None,
        )

    def _string_tag_ids(self, tag_ids: Iterable[int]) -> list[int]:
        strings = {t.id for t in self.tags() if t.datatype == DataType.STRING}
        return [t for t in tag_ids if t in strings]

    def time_range(self) -> tuple[int, int] | None:
        """First and last sample time in the file (over all tags), or None if empty."""
        first: int | None = None
        last: int | None = None
        t = self.layout.samples
        for tag in self.tags(refresh=True):
            lo = self._conn.execute(sa.select(sa.func.min(t.c.ts)).where(t.c.tag_id == tag.id)).scalar()
            hi = self._conn.execute(sa.select(sa.func.max(t.c.ts)).where(t.c.tag_id == tag.id)).scalar()
            if lo is not None and hi is not None:
                first = int(lo) if first is None else min(first, int(lo))
                last = int(hi) if last is None else max(last, int(hi))
        self._end_read()
        return None if first is None or last is None else (first, last)

    # -- events ----------------------------------------------------------------------------

    def events(
        self,
        start_ns: int,
        end_ns: int,
        *,
        categories: Iterable[EventCategory | str] | None = None,
        sources: Iterable[str] | None = None,
        source_prefix: str | None = None,
        min_severity: Severity | str | None = None,
        user: str | None = None,
        text: str | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events with start_ns <= ts < end_ns matching every filter given, in time order."""
        e = self.layout.events
        query = sa.select(e).where(e.c.ts >= start_ns, e.c.ts < end_ns)
        if categories is not None:
            query = query.where(e.c.category.in_([str(c) for c in categories]))
        if sources is not None:
            query = query.where(e.c.source.in_(list(sources)))
        if source_prefix:
            query = query.where(e.c.source.startswith(source_prefix, autoescape=True))
        if min_severity is not None:
            rank = _SEVERITY_RANK[Severity(min_severity)]
            query = query.where(e.c.severity.in_([str(sv) for sv, r in _SEVERITY_RANK.items() if r >= rank]))
        if user is not None:
            query = query.where(e.c.user == user)
        if text:
            query = query.where(e.c.message.contains(text, autoescape=True))
        query = query.order_by(e.c.ts, e.c.id)
        if limit is not None:
            query = query.limit(limit)
        rows = self._conn.execute(query).all()
        self._end_read()
        return [_event_from_row(r) for r in rows]

    def event_page(
        self,
        start_ns: int,
        end_ns: int,
        query: EventQuery | None = None,
        *,
        before: tuple[int, int] | None = None,
        limit: int = 1000,
    ) -> EventPage:
        """One page of the events with start_ns <= ts < end_ns matching `query`, newest first.
        `before` is the previous page's `next_key`: keyset paging on (ts, id), so page 50 costs
        what page 1 costs (OFFSET would re-read every earlier row)."""
        e = self.layout.events
        where = [e.c.ts >= start_ns, e.c.ts < end_ns, *(query or EventQuery()).clauses(e)]
        if before is not None:
            ts, row_id = before
            # `ts <= x` alone lets the ts index narrow the range; the OR picks the exact cut.
            where += [e.c.ts <= ts, sa.or_(e.c.ts < ts, e.c.id < row_id)]
        rows = self._conn.execute(
            sa.select(e).where(*where).order_by(e.c.ts.desc(), e.c.id.desc()).limit(limit + 1)
        ).all()
        self._end_read()
        more = len(rows) > limit
        rows = rows[:limit]
        next_key = (int(rows[-1].ts), int(rows[-1].id)) if more else None
        return EventPage([_event_from_row(r) for r in rows], next_key)

    def event_counts(self, start_ns: int, end_ns: int, query: EventQuery | None = None) -> tuple[int, int]:
        """(events matching `query`, design-suppression changes it hides) in the range; the
        second is 0 unless the query hides them."""
        e = self.layout.events
        query = query or EventQuery()
        if not query.hide_design_suppression:
            n = self._conn.execute(
                sa.select(sa.func.count()).where(e.c.ts >= start_ns, e.c.ts < end_ns, *query.clauses(e))
            ).scalar()
            self._end_read()
            return int(n or 0), 0
        shown = replace(query, hide_design_suppression=False)
        design = _design_suppression(e)
        row = self._conn.execute(
            sa.select(sa.func.count(), sa.func.sum(sa.case((design, 1), else_=0))).where(
                e.c.ts >= start_ns, e.c.ts < end_ns, *shown.clauses(e)
            )
        ).one()
        self._end_read()
        total, hidden = int(row[0] or 0), int(row[1] or 0)
        return total - hidden, hidden

    def last_events_per_source(self, category: EventCategory | str, before_ns: int) -> list[Event]:
        """The latest event of each source in `category` with ts < before_ns (e.g. the state
        every alarm was left in before a replayed range starts)."""
        e = self.layout.events
        latest = (
            sa.select(e.c.source, sa.func.max(e.c.id).label("id"))
            .where(e.c.category == str(category), e.c.ts < before_ns)
            .group_by(e.c.source)
            .subquery()
        )
        rows = self._conn.execute(sa.select(e).join(latest, e.c.id == latest.c.id).order_by(e.c.ts, e.c.id)).all()
        self._end_read()
        return [_event_from_row(r) for r in rows]

    # -- calendar --------------------------------------------------------------------------

    def timezone(self) -> str:
        layout = self.layout
        value = central_timezone(self._conn, layout) if layout.central else s.get_meta(self._conn, "timezone")
        self._end_read()
        return value or "UTC"

    def calendar(self, at_ns: int | None = None) -> ShiftCalendar | None:
        """The shift calendar in force at `at_ns` (default: the latest), or None if none was stored
        (the central database stores none: give the project's, resolve_range's fallback)."""
        if self.layout.central:
            return None
        sh = s.shifts
        versions = [int(v) for (v,) in self._conn.execute(sa.select(sh.c.since_ns).distinct().order_by(sh.c.since_ns))]
        if not versions:
            self._end_read()
            return None
        chosen = versions[-1]
        if at_ns is not None:
            earlier = [v for v in versions if v <= at_ns]
            chosen = earlier[-1] if earlier else versions[0]
        rows = self._conn.execute(
            sa.select(sh.c.name, sh.c.start, sh.c.end, sh.c.timezone)
            .where(sh.c.since_ns == chosen)
            .order_by(sh.c.start)
        ).all()
        self._end_read()
        return calendar_from_rows([(r.name, r.start, r.end) for r in rows], rows[0].timezone)

    def storage_bytes(self) -> int | None:
        return self.dialect.storage_bytes(self.engine)

    # -- sessions (schema version 2) -------------------------------------------------------

    def session_at(self, at_ns: int, until_ns: int | None = None) -> RecordedSession | None:
        """The runtime session (and the project it ran) at `at_ns`, else the first one
        started before `until_ns`; None for a file without session records."""
        if self.layout.central:
            return central_session(self._conn, self.layout, at_ns, until_ns)
        if not sa.inspect(self._conn).has_table(s.sessions.name):
            self._end_read()  # an older file opened read-only, not migrated
            return None
        session = read_session(self._conn, at_ns, until_ns)
        self._end_read()
        return session

    def data_extent(self, start_ns: int, end_ns: int) -> tuple[int, int] | None:
        """The first and last sample time in [start_ns, end_ns) over all tags; None if no
        sample falls there. One indexed lookup per tag and end (the key is (tag, ts))."""
        t = self.layout.samples
        first: int | None = None
        last: int | None = None
        for tag in self.tags():
            where = (t.c.tag_id == tag.id, t.c.ts >= start_ns, t.c.ts < end_ns)
            lo = self._conn.execute(sa.select(t.c.ts).where(*where).order_by(t.c.ts).limit(1)).scalar()
            if lo is None:
                continue
            hi = self._conn.execute(sa.select(t.c.ts).where(*where).order_by(t.c.ts.desc()).limit(1)).scalar()
            assert hi is not None
            first = int(lo) if first is None else min(first, int(lo))
            last = int(hi) if last is None else max(last, int(hi))
        self._end_read()
        return None if first is None or last is None else (first, last)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_ns: int
    end_ns: int
    label: str  # "shift 2026-11-20/A" or "2026-11-20 06:00:00 CET to ..."
    timezone: str


def resolve_range(
    reader: HistorianReader,
    *,
    shift: str | None = None,
    start: str | None = None,
    end: str | None = None,
    timezone: str | None = None,
    fallback_calendar: ShiftCalendar | None = None,
) -> TimeRange:
    """The range a user asked for: a shift `2026-11-20/A` (from the file's own calendar, or
    `fallback_calendar`), or --from/--to times, local to the file's (or given) time zone."""
    from datetime import time as time_of_day

    from hmi.historian.shifts import format_ns, local_to_ns, parse_shift_spec, parse_time, zone

    tz_name = timezone or reader.timezone()
    tz = zone(tz_name)
    if shift:
        day, name = parse_shift_spec(shift)
        calendar = reader.calendar(at_ns=local_to_ns(day, time_of_day(12, 0), tz)) or fallback_calendar
        if not calendar:
            raise ValueError(f"{reader.target} has no shift calendar: give --from/--to, or --project with [[shifts]]")
        occurrence = calendar.resolve(day, name)
        return TimeRange(occurrence.start_ns, occurrence.end_ns, f"shift {occurrence.label}", calendar.timezone)
    if not start or not end:
        raise ValueError("give a shift (--shift 2026-11-20/A) or both --from and --to")
    start_ns, end_ns = parse_time(start, tz), parse_time(end, tz)
    if end_ns <= start_ns:
        raise ValueError("--to must be after --from")
    return TimeRange(start_ns, end_ns, f"{format_ns(start_ns, tz)} to {format_ns(end_ns, tz)}", tz_name)


def _lookup_points(dec: Decimated, start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A decimated read as HistoryLookup hands it to a trend, for one pen or many."""
    if dec.raw:
        return dec.ts, dec.min, dec.quality
    # Each bucket as two points, its min then its max, so the envelope draws.
    filled = dec.count > 0
    starts = dec.ts[filled]
    width = (end_ns - start_ns) // max(dec.ts.shape[0], 1)
    ts = np.empty(2 * starts.shape[0], TS_DTYPE)
    ts[0::2] = starts
    ts[1::2] = starts + width // 2
    values = np.empty(ts.shape[0], VALUE_DTYPE)
    values[0::2] = dec.min[filled]
    values[1::2] = dec.max[filled]
    quality = np.repeat(dec.quality[filled], 2)
    return ts, values, quality


class HistoryLookup:
    """History for a trend (TrendView's HistoryProvider): (tag name, start ns, end ns, points)
    -> (ts ns, values, quality), decimated to about `points` (min and max of each bucket).

    Called on the trend's history worker thread, one call at a time; the reader opens on
    first use there. A historian that is not there yet (nothing recorded so far) or a tag it
    does not know gives empty arrays, and the next call tries again.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self._reader: HistorianReader | None = None
        self._missing_logged = False
        # Several trends share one lookup, each from its own worker thread (and CSV export from
        # another): the reader's connection is used by one of them at a time.
        self._many_lock = threading.RLock()
        self._helper: ThreadPoolExecutor | None = None
        self._helper_reader: HistorianReader | None = None

    def __call__(self, name: str, start_ns: int, end_ns: int, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._many_lock:
            return self._one(name, start_ns, end_ns, points)

    def _one(self, name: str, start_ns: int, end_ns: int, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        empty = (np.zeros(0, TS_DTYPE), np.zeros(0, VALUE_DTYPE), np.zeros(0, QUALITY_DTYPE))
        if end_ns <= start_ns:
            return empty
        reader = self._open()
        if reader is None:
            return empty
        try:
            tag = reader.tag(name)
        except KeyError:
            return empty
        return _lookup_points(reader.decimated(tag, start_ns, end_ns, max(points // 2, 1)), start_ns, end_ns)

    def many(
        self, names: Sequence[str], start_ns: int, end_ns: int, points: int
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """What calling this lookup for each name gives, read together (decimated_many): a
        trend of fifty pens over a shift opened in 0.6-0.7 s rather than 1.0 s pen by pen
        (docs/performance.md). From HISTORY_SPLIT_TAGS tags on, half of them are read on a
        second connection in a helper thread, since SQLite runs each statement on one core."""
        out = {name: (np.zeros(0, TS_DTYPE), np.zeros(0, VALUE_DTYPE), np.zeros(0, QUALITY_DTYPE)) for name in names}
        if end_ns <= start_ns or not names:
            return out
        with self._many_lock:  # several trends share one lookup, each from its own worker
            reader = self._open()
            if reader is None:
                return out
            known: dict[str, RecordedTag] = {}
            for name in names:
                try:
                    known[name] = reader.tag(name)
                except KeyError:
                    pass  # not recorded (yet): empty, as for one pen
            tags = list(known.values())
            pixels = max(points // 2, 1)
            if len(tags) < HISTORY_SPLIT_TAGS:
                decimated = reader.decimated_many(tags, start_ns, end_ns, pixels)
            else:
                half = len(tags) // 2
                other = self._helper_pool().submit(self._helper_read, tags[half:], start_ns, end_ns, pixels)
                try:
                    decimated = reader.decimated_many(tags[:half], start_ns, end_ns, pixels)
                finally:
                    decimated_other = other.result()  # never leave the helper reading alone
                decimated.update(decimated_other)
        for name, tag in known.items():
            out[name] = _lookup_points(decimated[tag.id], start_ns, end_ns)
        return out

    def _helper_pool(self) -> ThreadPoolExecutor:
        if self._helper is None:
            self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trend-history-helper")
        return self._helper

    def _helper_read(self, tags: list[RecordedTag], start_ns: int, end_ns: int, pixels: int) -> dict[int, Decimated]:
        # On the helper thread, with the helper's own reader (one connection per thread).
        if self._helper_reader is None:
            self._helper_reader = HistorianReader(self.target)
        return self._helper_reader.decimated_many(tags, start_ns, end_ns, pixels)

    def _open(self) -> HistorianReader | None:
        if self._reader is None:
            try:
                self._reader = HistorianReader(self.target)
            except s.HistorianError as exc:
                if not self._missing_logged:
                    log.info("no history for trends yet: %s", exc)
                    self._missing_logged = True
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None
        if self._helper_reader is not None:
            self._helper_reader.close()
            self._helper_reader = None
