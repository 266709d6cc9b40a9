"""The central historian's schema on PostgreSQL: many stations' history in one database.

Layout (timestamps are integer nanoseconds since the Unix epoch, UTC, as in the local file):

- meta: schema_version (CENTRAL_SCHEMA_VERSION), created_ns.
- stations: one row per station (workstation) that forwards; `name` is its
  [historian.forward] station.
- tags: (station, name) -> id, with the current unit, description, type, range.
- tag_configs: every configuration a tag was recorded under, from `since_ns` on.
- samples, sample_texts: partitioned by range of ts, one partition per UTC day
  (`samples_pYYYYMMDD`); events: one partition per UTC month (`events_pYYYYMM`). Each has a
  DEFAULT partition (`samples_default`, ...) so that a row never fails for want of a
  partition; `ensure_partitions` moves such rows into the day's partition when it creates
  it, and `default_rows` reports what is still there.
- audit: each station's audit trail (hmi/security/audit.py), keyed by (station, seq).
- sessions, session_models: each station's runtime sessions under the station's own ids;
  project_files: the project texts by SHA-256, shared (a file is the same on every station).
- forward_cursors: how far each station's stream has been applied. The forwarder writes a
  batch and advances its cursor in one transaction: exactly once.

Retention drops whole partitions (`drop_partitions_before`), never deletes rows: a DELETE
of a day of samples would bloat the table and take as long as writing them did.

The role `hmi_reader` may read everything and write nothing (`ensure_reader_role`).

A new schema version adds a step to MIGRATIONS; `ensure_central_schema` runs the missing
ones in order in one transaction, under an advisory lock so that two stations starting at
once do not both create the tables. A database from a newer program is refused.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from hmi.historian.errors import HistorianError

log = logging.getLogger(__name__)

CENTRAL_SCHEMA_VERSION = 1
READER_ROLE = "hmi_reader"
NS_PER_DAY = 86_400 * 1_000_000_000
# Any fixed number: the key of the advisory lock that serialises schema changes.
SCHEMA_LOCK_KEY = 0x686D6943  # "hmiC"
DAILY = ("samples", "sample_texts")
MONTHLY = ("events",)
PARTITIONED = DAILY + MONTHLY

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

stations = sa.Table(
    "stations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("station_id", sa.Integer, sa.ForeignKey("stations.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("datatype", sa.String(16), nullable=False, server_default="float"),
    sa.Column("unit", sa.String(40), nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("low", sa.Double, nullable=True),
    sa.Column("high", sa.Double, nullable=True),
    sa.Column("first_seen_ns", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("station_id", "name", name="uq_tags_station_name"),
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

# No foreign keys on the partitioned tables: a check per row would cost ingest speed, and
# only the forwarder writes there, with ids it took from `tags`.
samples = sa.Table(
    "samples",
    metadata,
    sa.Column("tag_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("quality", sa.SmallInteger, nullable=False),
    postgresql_partition_by="RANGE (ts)",
)

sample_texts = sa.Table(
    "sample_texts",
    metadata,
    sa.Column("tag_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("text", sa.Text, nullable=False),
    postgresql_partition_by="RANGE (ts)",
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("station_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("local_id", sa.BigInteger, primary_key=True, autoincrement=False),  # the station's events.id
    # In the key because a partitioned table's key must hold the partition column.
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("category", sa.String(16), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("user", sa.String(100), nullable=False, server_default=""),
    sa.Column("details", pg.JSONB, nullable=True),
    sa.Index("ix_events_ts", "ts"),
    sa.Index("ix_events_category_ts", "category", "ts"),
    postgresql_partition_by="RANGE (ts)",
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("station_id", sa.Integer, sa.ForeignKey("stations.id"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("user", sa.String(100), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON as hashed on the station
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_ts", "ts"),
)

project_files = sa.Table(
    "project_files",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("redacted", sa.Integer, nullable=False, server_default="0"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("station_id", sa.Integer, sa.ForeignKey("stations.id"), primary_key=True),
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),  # the station's sessions.id
    sa.Column("started_ns", sa.BigInteger, nullable=False),
    sa.Column("host", sa.String(200), nullable=False, server_default=""),
    sa.Column("program_version", sa.String(40), nullable=False, server_default=""),
    sa.Column("project_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("project_path", sa.Text, nullable=True),
    sa.Column("project_sha256", sa.String(64), sa.ForeignKey("project_files.sha256"), nullable=True),
    sa.Index("ix_sessions_started", "started_ns"),
)

session_models = sa.Table(
    "session_models",
    metadata,
    sa.Column("station_id", sa.Integer, primary_key=True),
    sa.Column("session_id", sa.BigInteger, primary_key=True),
    sa.Column("machine", sa.String(200), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.ForeignKeyConstraint(["station_id", "session_id"], ["sessions.station_id", "sessions.id"]),
)

forward_cursors = sa.Table(
    "forward_cursors",
    metadata,
    sa.Column("station_id", sa.Integer, sa.ForeignKey("stations.id"), primary_key=True),
    sa.Column("stream", sa.String(32), primary_key=True),  # samples, events, audit, tags, sessions
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_ns", sa.BigInteger, nullable=False),
)


# -- schema version and migrations ---------------------------------------------------------

Migration = Callable[[sa.Connection], None]

# version -> the step from version - 1. Version 1 is the creation itself.
MIGRATIONS: dict[int, Migration] = {}


def schema_version(conn: sa.Connection) -> int | None:
    """The central schema's version, or None for a database without it."""
    if not sa.inspect(conn).has_table("meta"):
        return None
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return None if value is None else int(value)


def _set_meta(conn: sa.Connection, key: str, value: str) -> None:
    statement = pg.insert(meta).values(key=key, value=value)
    conn.execute(statement.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value}))


def _create_v1(conn: sa.Connection) -> None:
    metadata.create_all(conn)
    for table in PARTITIONED:
        conn.exec_driver_sql(f'CREATE TABLE IF NOT EXISTS "{table}_default" PARTITION OF "{table}" DEFAULT')


def ensure_central_schema(
    conn: sa.Connection,
    latest: int = CENTRAL_SCHEMA_VERSION,
    migrations: Mapping[int, Migration] | None = None,
) -> int:
    """Create the schema in an empty database or migrate an older one, in one transaction;
    returns the version found (None counts as `latest`: it was created)."""
    steps = MIGRATIONS if migrations is None else migrations
    with conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        found = schema_version(conn)
        if found is None:
            _create_v1(conn)
            for version in range(2, latest + 1):
                _run_step(conn, steps, version)
            _set_meta(conn, "schema_version", str(latest))
            _set_meta(conn, "created_ns", str(time.time_ns()))
            return latest
        if found > latest:
            raise HistorianError(
                f"this central historian was written by a newer version of hmi (schema version {found}; "
                f"this one knows versions up to {latest}): update hmi"
            )
        for version in range(found + 1, latest + 1):
            _run_step(conn, steps, version)
            _set_meta(conn, "schema_version", str(version))
        return found


def _run_step(conn: sa.Connection, steps: Mapping[int, Migration], version: int) -> None:
    step = steps.get(version)
    if step is None:
        raise HistorianError(f"no migration to central schema version {version}")
    log.info("migrating central historian schema to version %d", version)
    step(conn)


# -- partitions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    table: str  # the partitioned table: samples, sample_texts, events
    name: str
    start_ns: int | None  # None: the DEFAULT partition
    end_ns: int | None

    @property
    def is_default(self) -> bool:
        return self.start_ns is None


def _day_start(ts_ns: int) -> int:
    # Epoch days are UTC days (POSIX time has no leap seconds).
    return (ts_ns // NS_PER_DAY) * NS_PER_DAY


def _month_start(ts_ns: int) -> tuple[int, datetime]:
    day = datetime.fromtimestamp(_day_start(ts_ns) // 1_000_000_000, UTC)
    first = day.replace(day=1)
    return int(first.timestamp()) * 1_000_000_000, first


def _next_month(first: datetime) -> datetime:
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


def partition_ranges(table: str, start_ns: int, end_ns: int) -> list[tuple[str, int, int]]:
    """(name, from, to) of every partition of `table` that rows in [start_ns, end_ns] need."""
    ranges: list[tuple[str, int, int]] = []
    if table in DAILY:
        day = _day_start(start_ns)
        while day <= end_ns:
            when = datetime.fromtimestamp(day // 1_000_000_000, UTC)
            ranges.append((f"{table}_p{when:%Y%m%d}", day, day + NS_PER_DAY))
            day += NS_PER_DAY
    elif table in MONTHLY:
        month_ns, first = _month_start(start_ns)
        while month_ns <= end_ns:
            following = _next_month(first)
            following_ns = int(following.timestamp()) * 1_000_000_000
            ranges.append((f"{table}_p{first:%Y%m}", month_ns, following_ns))
            month_ns, first = following_ns, following
    else:
        raise ValueError(f"{table} is not partitioned")
    return ranges


_BOUND = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


def partitions(conn: sa.Connection, table: str | None = None) -> list[Partition]:
    """The partitions that exist, oldest first per table, DEFAULT last."""
    rows = conn.execute(
        sa.text(
            "SELECT parent.relname, child.relname, pg_get_expr(child.relpartbound, child.oid) "
            "FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent "
            "JOIN pg_class child ON child.oid = i.inhrelid "
            "JOIN pg_namespace n ON n.oid = parent.relnamespace "
            "WHERE n.nspname = current_schema() AND parent.relname = ANY(:tables) AND child.relispartition"
        ),
        {"tables": [table] if table else list(PARTITIONED)},
    ).all()
    found: list[Partition] = []
    for parent, child, bound in rows:
        match = _BOUND.search(bound or "")
        if match:
            found.append(Partition(parent, child, int(match.group(1)), int(match.group(2))))
        else:
            found.append(Partition(parent, child, None, None))
    order = {name: i for i, name in enumerate(PARTITIONED)}
    found.sort(key=lambda p: (order.get(p.table, 99), p.start_ns is None, p.start_ns or 0))
    return found


def ensure_partitions(
    conn: sa.Connection, start_ns: int, end_ns: int, tables: tuple[str, ...] = PARTITIONED
) -> list[str]:
    """Create the partitions rows in [start_ns, end_ns] need (idempotent); returns the new
    ones' names. Runs in the caller's transaction. Rows that had gone to the DEFAULT
    partition for want of this one are moved into it."""
    created: list[str] = []
    existing = {p.name for p in partitions(conn)}
    native = natively_partitioned(conn)
    for table in tables:
        if table not in native:
            continue  # a TimescaleDB hypertable (docs/historian.md) makes its own chunks
        for name, low, high in partition_ranges(table, start_ns, end_ns):
            if name in existing:
                continue
            _create_partition(conn, table, name, low, high)
            created.append(name)
    return created


def _create_partition(conn: sa.Connection, table: str, name: str, low: int, high: int) -> None:
    default = f"{table}_default"
    # Two stations may create the same day at once: one waits, then sees it there.
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(:name))"), {"key": SCHEMA_LOCK_KEY, "name": name})
    if conn.execute(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar():
        return
    stray = conn.execute(
        sa.text(f'SELECT EXISTS (SELECT 1 FROM "{default}" WHERE ts >= :low AND ts < :high)'),
        {"low": low, "high": high},
    ).scalar()
    if not stray:
        conn.exec_driver_sql(f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES FROM ({low}) TO ({high})')
        return
    # A partition cannot be created over rows the DEFAULT partition holds: move them in.
    log.info("moving rows of %s from %s into the new partition %s", table, default, name)
    conn.exec_driver_sql(f'LOCK TABLE "{default}" IN ACCESS EXCLUSIVE MODE')
    conn.exec_driver_sql(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
    conn.exec_driver_sql(
        f'WITH moved AS (DELETE FROM "{default}" WHERE ts >= {low} AND ts < {high} RETURNING *) '
        f'INSERT INTO "{name}" SELECT * FROM moved'
    )
    conn.exec_driver_sql(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" FOR VALUES FROM ({low}) TO ({high})')


def drop_partitions_before(conn: sa.Connection, ts_ns: int, tables: tuple[str, ...] = PARTITIONED) -> list[str]:
    """Drop every partition whose whole range lies before `ts_ns` (retention); returns their
    names. A partition that reaches past `ts_ns` is kept whole: retention never deletes rows."""
    dropped: list[str] = []
    for part in partitions(conn):
        if part.table in tables and part.end_ns is not None and part.end_ns <= ts_ns:
            conn.exec_driver_sql(f'DROP TABLE "{part.name}"')
            dropped.append(part.name)
    return dropped


def natively_partitioned(conn: sa.Connection) -> set[str]:
    """Which of the partitioned tables are (not, for example, TimescaleDB hypertables)."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'p' AND c.relname = ANY(:tables)"
        ),
        {"tables": list(PARTITIONED)},
    )
    return set(rows.scalars())


def default_rows(conn: sa.Connection) -> dict[str, int]:
    """Rows in each DEFAULT partition: outside every dated partition, to be reported."""
    return {
        part.table: int(conn.exec_driver_sql(f'SELECT count(*) FROM "{part.name}"').scalar() or 0)
        for part in partitions(conn)
        if part.is_default
    }


def maintain(conn: sa.Connection, now_ns: int, days_ahead: int = 7, retention_days: int | None = None) -> list[str]:
    """Partitions from yesterday to `days_ahead` on, and, with `retention_days`, old ones
    dropped; in the caller's transaction. Returns what was created and dropped."""
    changed = ensure_partitions(conn, now_ns - NS_PER_DAY, now_ns + days_ahead * NS_PER_DAY)
    if retention_days is not None:
        changed += drop_partitions_before(conn, retention_cutoff(now_ns, retention_days))
    return changed


def retention_cutoff(now_ns: int, retention_days: int) -> int:
    """Keep `retention_days` whole UTC days before today."""
    return _day_start(now_ns) - retention_days * NS_PER_DAY


# -- roles and extensions ------------------------------------------------------------------


def ensure_reader_role(conn: sa.Connection, password: str | None = None, role: str = READER_ROLE) -> list[str]:
    """The read-only role: SELECT on every table, now and later (default privileges), no
    write. Without a password it is a group role (NOLOGIN) to grant to people's own logins.
    Idempotent; returns what it did, for `hmi central init` to say."""
    from psycopg import sql

    done: list[str] = []
    raw = conn.connection.driver_connection
    role_id = sql.Identifier(role)

    def run(statement: sql.Composable) -> None:
        conn.exec_driver_sql(statement.as_string(raw))

    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
    if not exists:
        run(sql.SQL("CREATE ROLE {} NOLOGIN").format(role_id))
        done.append(f"created role {role}")
    if password is not None:
        # A literal, not a parameter: utility statements take no bind parameters.
        run(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role_id, sql.Literal(password)))
        done.append(f"set the password of {role} (may log in)")
    database = sql.Identifier(str(conn.exec_driver_sql("SELECT current_database()").scalar()))
    schema = sql.Identifier(str(conn.exec_driver_sql("SELECT current_schema()").scalar()))
    run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role_id))
    run(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role_id))
    run(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, role_id))
    # Partitions made later (by this user) are readable directly too; through their parent
    # table they are anyway.
    run(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(schema, role_id))
    done.append(f"granted {role} SELECT on every table of schema {schema.as_string(raw)}")
    return done


def timescaledb_installed(conn: sa.Connection) -> bool:
    """Whether the TimescaleDB extension is installed in this database (docs/historian.md
    shows the SQL that turns samples into a compressed hypertable; without it, the plain
    partitions above)."""
    return bool(conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").scalar())


# -- a summary for `hmi central status` ----------------------------------------------------


@dataclass(frozen=True)
class StationSummary:
    name: str
    tags: int
    cursors: dict[str, int]
    updated_ns: int | None


@dataclass(frozen=True)
class PartitionSummary:
    partition: Partition
    bytes: int
    rows: int | None  # only counted for DEFAULT partitions (the rest: an estimate is shown)


def station_summaries(conn: sa.Connection) -> list[StationSummary]:
    out: list[StationSummary] = []
    for station_id, name in conn.execute(sa.select(stations.c.id, stations.c.name).order_by(stations.c.name)):
        count = conn.execute(sa.select(sa.func.count()).select_from(tags).where(tags.c.station_id == station_id))
        cursor_rows = conn.execute(
            sa.select(forward_cursors.c.stream, forward_cursors.c.position, forward_cursors.c.updated_ns).where(
                forward_cursors.c.station_id == station_id
            )
        ).all()
        updated = max((row[2] for row in cursor_rows), default=None)
        out.append(
            StationSummary(name, int(count.scalar() or 0), {row[0]: int(row[1]) for row in cursor_rows}, updated)
        )
    return out


def partition_summaries(conn: sa.Connection) -> list[PartitionSummary]:
    out: list[PartitionSummary] = []
    defaults = default_rows(conn)
    for part in partitions(conn):
        size = int(
            conn.execute(sa.text("SELECT pg_total_relation_size(to_regclass(:n))"), {"n": part.name}).scalar() or 0
        )
        out.append(PartitionSummary(part, size, defaults.get(part.table) if part.is_default else None))
    return out
