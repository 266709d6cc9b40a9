"""`hmi central`: set up, inspect and prune the central historian (PostgreSQL).

    hmi central init   --url postgresql://hmi@host/historian --password-ref central
                       [--reader-password-ref reader]
    hmi central status --url ... --password-ref central
    hmi central prune  --url ... --password-ref central (--before 2026-01-01 | --retention-days 365)

The URL never holds the password: --password-ref names it (HMI_PASSWORD_<NAME> or the
user's credentials.toml). Every command says what it found and did.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers

if TYPE_CHECKING:
    import sqlalchemy as sa


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("central", help="set up, inspect or prune the central historian (PostgreSQL)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("init", help="create or migrate the schema, the partitions ahead and the hmi_reader role")
    _connection_args(a)
    a.add_argument(
        "--reader-password-ref",
        help="password_ref of the read-only role hmi_reader (lets it log in); without it, a group role",
    )
    a.add_argument("--days-ahead", type=int, default=7, help="daily partitions to create ahead (default 7)")
    a = actions.add_parser("status", help="schema version, stations, partitions and their sizes")
    _connection_args(a)
    a = actions.add_parser("prune", help="drop whole partitions older than a date (retention)")
    _connection_args(a)
    when = a.add_mutually_exclusive_group(required=True)
    when.add_argument("--before", help="drop partitions that end on or before this UTC date (YYYY-MM-DD)")
    when.add_argument("--retention-days", type=int, help="keep this many whole UTC days before today")
    a.add_argument("--dry-run", action="store_true", help="say what would be dropped, drop nothing")
    p.set_defaults(func=cmd_central)


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="postgresql://USER@HOST[:PORT]/DATABASE (no password in it)")
    p.add_argument("--password-ref", help="name of the password (env HMI_PASSWORD_<NAME> or credentials.toml)")
    p.add_argument("--sslmode", help="libpq sslmode: disable, prefer, require, verify-ca, verify-full")
    p.add_argument("--sslrootcert", help="CA certificate file that signed the server's certificate")


def cmd_central(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from hmi.historian.errors import HistorianError
    from hmi.historian.postgres import PostgresDialect, is_postgres_url, safe_url

    if not is_postgres_url(args.url):
        print(f"hmi central: {safe_url(args.url)} is not a PostgreSQL URL (postgresql://...)", file=sys.stderr)
        return EXIT_CONFIG
    dialect = PostgresDialect(args.password_ref, sslmode=args.sslmode, sslrootcert=args.sslrootcert)
    try:
        dialect.connect_args(args.url)  # a password in the URL, a password_ref that resolves to nothing
    except HistorianError as exc:
        print(f"hmi central: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        engine = dialect.check_connection(args.url)
    except HistorianError as exc:
        print(f"hmi central: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    where = safe_url(args.url)
    try:
        handler = {"init": _init, "status": _status, "prune": _prune}[args.action]
        return handler(args, engine, where)
    except HistorianError as exc:
        print(f"hmi central: {where}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except sa.exc.DBAPIError as exc:
        print(f"hmi central: {where}: {dialect.describe_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        engine.dispose()


def _init(args: argparse.Namespace, engine: sa.Engine, where: str) -> int:
    from hmi.config.credentials import CredentialError, resolve_password
    from hmi.historian import central

    reader_password = None
    if args.reader_password_ref:
        try:
            reader_password = resolve_password(args.reader_password_ref)
        except CredentialError as exc:
            print(f"hmi central: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    print(f"{where}:")
    with engine.connect() as conn:
        found = central.schema_version(conn)
        conn.rollback()
        central.ensure_central_schema(conn)
        if found is None:
            print(f"  schema: created (version {central.CENTRAL_SCHEMA_VERSION})")
        elif found < central.CENTRAL_SCHEMA_VERSION:
            print(f"  schema: migrated from version {found} to {central.CENTRAL_SCHEMA_VERSION}")
        else:
            print(f"  schema: version {found}, up to date")
        with conn.begin():
            created = central.maintain(conn, time.time_ns(), days_ahead=args.days_ahead)
            done = central.ensure_reader_role(conn, reader_password)
            timescale = central.timescaledb_installed(conn)
    print(f"  partitions: {_created_text(created)}")
    for line in done:
        print(f"  role: {line}")
    if timescale:
        print("  TimescaleDB: installed; see docs/historian.md to make samples a compressed hypertable")
    else:
        print("  TimescaleDB: not installed; samples are partitioned by day")
    return EXIT_OK


def _created_text(created: list[str]) -> str:
    if not created:
        return "all there already"
    return f"created {len(created)} ({', '.join(created[:3])}{', ...' if len(created) > 3 else ''})"


def _status(args: argparse.Namespace, engine: sa.Engine, where: str) -> int:
    from hmi.historian import central

    with engine.connect() as conn:
        version = central.schema_version(conn)
        if version is None:
            print(f"{where}: no central historian here (no schema): run `hmi central init`", file=sys.stderr)
            return EXIT_FAILURE
        size = int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar() or 0)
        stations = central.station_summaries(conn)
        parts = central.partition_summaries(conn)
        timescale = central.timescaledb_installed(conn)
    latest = central.CENTRAL_SCHEMA_VERSION
    note = "" if version == latest else f" (this hmi knows {latest}: run `hmi central init`)"
    print(f"{where}: schema version {version}{note}, {_size(size)}")
    print(f"TimescaleDB: {'installed' if timescale else 'not installed'}")
    print(f"stations: {len(stations)}")
    for s in stations:
        last = _when(s.updated_ns) if s.updated_ns else "never"
        cursors = ", ".join(f"{k} {v}" for k, v in sorted(s.cursors.items())) or "nothing forwarded"
        print(f"  {s.name}: {s.tags} tags, last forwarded {last} ({cursors})")
    print("partitions:")
    for table in central.PARTITIONED:
        dated = [p for p in parts if p.partition.table == table and not p.partition.is_default]
        total = sum(p.bytes for p in parts if p.partition.table == table)
        span = f"{dated[0].partition.name} .. {dated[-1].partition.name}" if dated else "none"
        print(f"  {table}: {len(dated)} ({span}), {_size(total)}")
        for p in parts:
            if p.partition.table == table and p.partition.is_default and p.rows:
                print(
                    f"  WARNING: {p.rows} {table} row(s) are in {p.partition.name}, outside every dated "
                    "partition; `hmi central init` moves them into partitions it creates for them"
                )
    return EXIT_OK


def _prune(args: argparse.Namespace, engine: sa.Engine, where: str) -> int:
    from hmi.historian import central

    if args.before:
        try:
            day = datetime.strptime(args.before, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            print(f"hmi central prune: --before {args.before!r}: expected a date YYYY-MM-DD", file=sys.stderr)
            return EXIT_CONFIG
        cutoff = int(day.timestamp()) * 1_000_000_000
    else:
        if args.retention_days < 1:
            print("hmi central prune: --retention-days must be at least 1", file=sys.stderr)
            return EXIT_CONFIG
        cutoff = central.retention_cutoff(time.time_ns(), args.retention_days)
    with engine.connect() as conn:
        if central.schema_version(conn) is None:
            print(f"{where}: no central historian here (no schema): run `hmi central init`", file=sys.stderr)
            return EXIT_FAILURE
        if args.dry_run:
            doomed = [p.name for p in central.partitions(conn) if p.end_ns is not None and p.end_ns <= cutoff]
        conn.rollback()
        if not args.dry_run:
            with conn.begin():
                doomed = central.drop_partitions_before(conn, cutoff)
    verb = "would drop" if args.dry_run else "dropped"
    print(f"{where}: {verb} {len(doomed)} partition(s) ending on or before {_when(cutoff)}")
    for name in doomed:
        print(f"  {name}")
    return EXIT_OK


def _when(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    value = float(nbytes)
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"
