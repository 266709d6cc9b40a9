"""The historian's tables, its schema version and the migrations between versions.

Layout (all timestamps are integer nanoseconds since the Unix epoch, UTC):

- meta: key/value facts about the file: schema_version, created_ns, timezone.
- tags: one row per tag name ever recorded, with its current unit, description, type.
- tag_configs: every configuration a tag was recorded under (unit, description, range),
  from `since_ns` on, so old data is shown with the unit it was recorded in.
- samples: (tag_id, ts) -> value, quality. Clustered on the key (see the back end's
  module), so one tag's range is one contiguous read. NaN values are stored as NULL.
- sample_texts: the string value of samples of string tags, same key.
- events: alarm transitions, operator actions, system events; details as JSON.
- shifts: the shift calendar, versioned by `since_ns` (a changed calendar is a new set).
- sessions (version 2): one row per runtime start, naming the project it ran (path and
  SHA-256 of the file), so playback finds the machines, models and trends by itself.
- project_files (version 2): the text of each distinct project file, by its SHA-256 (a
  runtime that restarts a thousand times stores its project once).
- session_models (version 2): each machine's 3D model file as it was at the session's start
  (path, SHA-256, size; the hash is NULL when the file was missing). Not a copy: see
  docs/historian.md, "Sessions".
- outbox (version 3): what the forwarder still has to ship to a central PostgreSQL
  (hmi/historian/forward.py): one row per committed chunk of samples, written in the same
  transaction as the samples (only when [historian.forward] is configured), in `seq` order
  (AUTOINCREMENT: a number is never reused, even after the rows are deleted).

A new schema version adds a migration function to MIGRATIONS; opening a file runs the
missing ones in order, in one transaction. A file from a newer program is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlalchemy as sa

from hmi.historian.backends import dialect_for, table_options, url_for
from hmi.historian.dialect import Dialect
from hmi.historian.errors import HistorianError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("datatype", sa.String(16), nullable=False, server_default="float"),
    sa.Column("unit", sa.String(40), nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("low", sa.Double, nullable=True),
    sa.Column("high", sa.Double, nullable=True),
    sa.Column("first_seen_ns", sa.BigInteger, nullable=False),
)

tag_configs = sa.Table(
    "tag_configs",
    metadata,
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("tags.id"), primary_key=True),
    sa.Column("since_ns", sa.BigInteger, primary_key=True),
    sa.Column("datatype", sa.String(16), nullable=False),
    sa.Column("unit", sa.String(40), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("low", sa.Double, nullable=True),
    sa.Column("high", sa.Double, nullable=True),
)

# No foreign key on the hot tables: checking one per row would cost ingest speed, and
# only the writer inserts there (with ids it took from `tags`).
samples = sa.Table(
    "samples",
    metadata,
    sa.Column("tag_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("quality", sa.SmallInteger, nullable=False),
    **table_options("samples"),
)

sample_texts = sa.Table(
    "sample_texts",
    metadata,
    sa.Column("tag_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("text", sa.Text, nullable=False),
    **table_options("sample_texts"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("category", sa.String(16), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("user", sa.String(100), nullable=False, server_default=""),
    sa.Column("details", sa.JSON, nullable=True),
    sa.Index("ix_events_ts", "ts"),
    sa.Index("ix_events_category_ts", "category", "ts"),
)

shifts = sa.Table(
    "shifts",
    metadata,
    sa.Column("since_ns", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("start", sa.String(5), nullable=False),  # HH:MM local time
    sa.Column("end", sa.String(5), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
)

project_files = sa.Table(
    "project_files",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),  # of the file's bytes as read
    sa.Column("text", sa.Text, nullable=False),  # as recorded: see sessions.redact
    sa.Column("redacted", sa.Integer, nullable=False, server_default="0"),  # secrets blanked out
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_ns", sa.BigInteger, nullable=False),
    sa.Column("host", sa.String(200), nullable=False, server_default=""),
    sa.Column("program_version", sa.String(40), nullable=False, server_default=""),
    sa.Column("project_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("project_path", sa.Text, nullable=True),  # NULL: a project built in code
    sa.Column("project_sha256", sa.String(64), sa.ForeignKey("project_files.sha256"), nullable=True),
    sa.Index("ix_sessions_started", "started_ns"),
)

session_models = sa.Table(
    "session_models",
    metadata,
    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id"), primary_key=True),
    sa.Column("machine", sa.String(200), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),  # resolved at the session's start
    sa.Column("sha256", sa.String(64), nullable=True),  # NULL: the file was not there
    sa.Column("size", sa.BigInteger, nullable=True),
)

# Samples are clustered by (tag, ts) and may arrive late, so no time cursor can say what has
# been forwarded: the outbox is the durable order. Arrays are little-endian numpy buffers.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),  # when the chunk was committed
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("min_ts", sa.BigInteger, nullable=False),
    sa.Column("max_ts", sa.BigInteger, nullable=False),
    sa.Column("nbytes", sa.Integer, nullable=False),  # of the blobs: the backlog's bound counts these
    sa.Column("tag_ids", sa.LargeBinary, nullable=False),  # int32, the file's tag ids
    sa.Column("ts", sa.LargeBinary, nullable=False),  # int64 ns
    sa.Column("vals", sa.LargeBinary, nullable=False),  # float64, NaN for NULL
    sa.Column("quality", sa.LargeBinary, nullable=False),  # uint8
    sa.Column("texts", sa.Text, nullable=True),  # JSON [[row, text], ...] of string samples
    sqlite_autoincrement=True,
)


def _to_v2(conn: sa.Connection) -> None:
    """Version 2: the session and project record (three new tables; nothing else changes)."""
    for table in (project_files, sessions, session_models):
        table.create(conn, checkfirst=True)


def _to_v3(conn: sa.Connection) -> None:
    """Version 3: the forwarding outbox (one new table)."""
    outbox.create(conn, checkfirst=True)


# version N -> the step that turns a version N-1 file into version N.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {2: _to_v2, 3: _to_v3}


def schema_version(conn: sa.Connection) -> int | None:
    """The file's schema version; None for an empty database."""
    inspector = sa.inspect(conn)
    names = set(inspector.get_table_names())
    if "meta" not in names:
        if names & {"samples", "events", "tags"}:
            raise HistorianError("this database has historian-like tables but no schema version: not an hmi historian")
        return None
    row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
    if row is None:
        raise HistorianError("the historian's meta table has no schema_version")
    return int(row[0])


def set_meta(conn: sa.Connection, key: str, value: str) -> None:
    updated = conn.execute(sa.update(meta).where(meta.c.key == key).values(value=value)).rowcount
    if not updated:
        conn.execute(sa.insert(meta).values(key=key, value=value))


def get_meta(conn: sa.Connection, key: str) -> str | None:
    row = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).first()
    return None if row is None else str(row[0])


def ensure_schema(conn: sa.Connection, latest: int = SCHEMA_VERSION) -> int:
    """Create the tables of a new file or migrate an older one; returns the version found."""
    with conn.begin():
        found = schema_version(conn)
        if found is None:
            metadata.create_all(conn)
            set_meta(conn, "schema_version", str(latest))
            set_meta(conn, "created_ns", str(time.time_ns()))
            return latest
        if found > latest:
            raise HistorianError(
                f"this historian was written by a newer version of hmi (schema version {found}; "
                f"this one knows versions up to {latest}): update hmi to open it"
            )
        for version in range(found + 1, latest + 1):
            step = MIGRATIONS.get(version)
            if step is None:
                raise HistorianError(f"no migration to schema version {version}")
            log.info("migrating historian schema from version %d to %d", version - 1, version)
            step(conn)
            set_meta(conn, "schema_version", str(version))
        return found


def make_engine(target: str) -> tuple[sa.Engine, Dialect]:
    """An engine for a URL or file path, configured by its back end; no I/O yet."""
    url = url_for(target)
    dialect = dialect_for(url)
    return dialect.create_engine(url), dialect


def open_engine(target: str, create: bool = True) -> tuple[sa.Engine, Dialect]:
    """An engine for a URL or file path; creates or migrates the schema when `create`,
    else insists that the historian exists and is one this version can read."""
    url = url_for(target)
    dialect = dialect_for(url)
    if not create and not dialect.database_exists(url):
        # The expanded URL (where it looked), without a password.
        raise HistorianError(f"no historian at {sa.engine.make_url(url).render_as_string(hide_password=True)}")
    engine = dialect.create_engine(url)
    if not create:
        with engine.connect() as conn:
            found = schema_version(conn)
            conn.rollback()
            if found is None:
                engine.dispose()
                raise HistorianError(f"{target} is not an hmi historian (no tables)")
            if found != SCHEMA_VERSION:
                try:
                    ensure_schema(conn)
                except sa.exc.OperationalError as exc:
                    if found > SCHEMA_VERSION:
                        raise
                    # A read-only copy of an older file (taken for analysis) still reads: what
                    # later versions added are new tables, which the reader treats as empty.
                    log.warning("%s: reading schema version %d without migrating it: %s", target, found, exc.orig)
    if create:
        with engine.connect() as conn:
            ensure_schema(conn)
    return engine, dialect
