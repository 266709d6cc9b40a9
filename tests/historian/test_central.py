"""The central historian's schema on a real PostgreSQL: creation, migration, partitions,
retention, the read-only role, and what an operator reads when a connection fails."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from hmi.cli import main
from hmi.historian import central
from hmi.historian import schema as s
from hmi.historian.errors import HistorianError
from hmi.historian.postgres import PostgresDialect
from hmi.security.audit import audit_records
from tests.historian.conftest import TlsPostgres
from tests.pg import PASSWORD_REF, CentralDatabase, PostgresServer

NS = 1_000_000_000
DAY = central.NS_PER_DAY
T0 = 1_790_000_000 * NS  # 2026-09-21T14:13:20Z


def day_ns(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()) * NS


@pytest.fixture
def engine(central_db: CentralDatabase) -> Iterator[sa.Engine]:
    engine = central_db.engine()
    yield engine
    engine.dispose()


def table_names(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def insert_sample(conn: sa.Connection, tag_id: int, ts: int, value: float = 1.0) -> None:
    conn.execute(sa.insert(central.samples).values(tag_id=tag_id, ts=ts, value=value, quality=192))


# -- rules that hold for every timestamp (no server needed) ---------------------------------


@given(st.integers(min_value=0, max_value=4_000_000_000 * NS))
def test_every_timestamp_has_exactly_the_partition_of_its_utc_day_and_month(ts: int) -> None:
    ((name, low, high),) = central.partition_ranges("samples", ts, ts)
    assert low <= ts < high and high - low == DAY
    assert name == "samples_p" + datetime.fromtimestamp(ts // NS, UTC).strftime("%Y%m%d")
    ((name, low, high),) = central.partition_ranges("events", ts, ts)
    assert low <= ts < high
    assert name == "events_p" + datetime.fromtimestamp(ts // NS, UTC).strftime("%Y%m")


@given(st.integers(min_value=0, max_value=3_000_000_000 * NS), st.integers(min_value=0, max_value=100 * DAY))
def test_partitions_for_a_span_are_contiguous_and_cover_it(start: int, length: int) -> None:
    for table in ("samples", "events"):
        ranges = central.partition_ranges(table, start, start + length)
        assert ranges[0][1] <= start < ranges[0][2]
        assert ranges[-1][1] <= start + length < ranges[-1][2]
        assert all(a[2] == b[1] for a, b in itertools.pairwise(ranges))


# -- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        (s.tags, central.tags),
        (s.tag_configs, central.tag_configs),
        (s.samples, central.samples),
        (s.sample_texts, central.sample_texts),
        (s.events, central.events),
        (audit_records, central.audit),
        (s.project_files, central.project_files),
        (s.sessions, central.sessions),
        (s.session_models, central.session_models),
    ],
    ids=lambda table: table.name,
)
def test_every_column_a_station_records_has_a_central_home_that_takes_its_values(
    local: sa.Table, remote: sa.Table
) -> None:
    """The two schemas are written out separately (each with its own version and migrations),
    so this is what keeps them in step: a column added locally and not centrally would be
    dropped by the forwarder without a word. The local surrogate `id` is the station's own
    number; centrally the station's id joins it in the key."""
    for column in local.columns:
        if column.name == "id":
            continue
        assert column.name in remote.columns, f"{remote.name} has no {column.name}"
        there = remote.columns[column.name]
        assert there.type.python_type is column.type.python_type, f"{remote.name}.{column.name}: {there.type}"
        assert there.nullable or not column.nullable, f"{remote.name}.{column.name} refuses NULL"


@pytest.mark.postgres
def test_schema_is_created_once_and_found_current(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert central.schema_version(conn) is None
        conn.rollback()
        assert central.ensure_central_schema(conn) == central.CENTRAL_SCHEMA_VERSION
        expected = {
            "meta",
            "stations",
            "tags",
            "tag_configs",
            "samples",
            "sample_texts",
            "events",
            "audit",
            "sessions",
            "project_files",
            "session_models",
            "forward_cursors",
        }
        assert expected <= table_names(conn)
        assert central.schema_version(conn) == central.CENTRAL_SCHEMA_VERSION
        conn.rollback()
        # A second station starting finds it and changes nothing.
        assert central.ensure_central_schema(conn) == central.CENTRAL_SCHEMA_VERSION
        assert central.timescaledb_installed(conn) is False
        # Without TimescaleDB, samples is natively partitioned with a DEFAULT partition.
        defaults = [p.name for p in central.partitions(conn) if p.is_default]
        assert defaults == ["samples_default", "sample_texts_default", "events_default"]


@pytest.mark.postgres
def test_an_older_schema_is_migrated_step_by_step_and_a_newer_one_refused(engine: sa.Engine) -> None:
    ran: list[int] = []

    def to_v2(conn: sa.Connection) -> None:
        ran.append(2)
        conn.exec_driver_sql("ALTER TABLE stations ADD COLUMN site text")

    with engine.connect() as conn:
        central.ensure_central_schema(conn)
        assert central.ensure_central_schema(conn, latest=2, migrations={2: to_v2}) == 1
        assert central.schema_version(conn) == 2
        assert "site" in {c["name"] for c in sa.inspect(conn).get_columns("stations")}
        conn.rollback()
        assert central.ensure_central_schema(conn, latest=2, migrations={2: to_v2}) == 2
        assert ran == [2]
        with pytest.raises(HistorianError, match="newer version of hmi"):
            central.ensure_central_schema(conn, latest=1)


@pytest.mark.postgres
def test_a_failed_migration_leaves_the_old_version_whole(engine: sa.Engine) -> None:
    def broken(conn: sa.Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE stations ADD COLUMN site text")
        conn.exec_driver_sql("SELECT no_such_function()")

    with engine.connect() as conn:
        central.ensure_central_schema(conn)
        with pytest.raises(sa.exc.ProgrammingError):
            central.ensure_central_schema(conn, latest=2, migrations={2: broken})
        conn.rollback()
        assert central.schema_version(conn) == 1
        assert "site" not in {c["name"] for c in sa.inspect(conn).get_columns("stations")}


# -- partitions and retention -------------------------------------------------------------------


@pytest.mark.postgres
def test_partitions_are_made_ahead_idempotently_and_retention_drops_whole_days(engine: sa.Engine) -> None:
    now = day_ns("2026-09-21") + 14 * 3600 * NS
    with engine.connect() as conn:
        central.ensure_central_schema(conn)
        with conn.begin():
            created = central.maintain(conn, now, days_ahead=3)
            assert created[:5] == [f"samples_p202609{d}" for d in (20, 21, 22, 23, 24)]
            assert "events_p202609" in created
            assert central.maintain(conn, now, days_ahead=3) == []
            for day in (20, 21, 22):
                insert_sample(conn, 1, day_ns(f"2026-09-{day}") + 3600 * NS)
        assert central.default_rows(conn)["samples"] == 0
        conn.rollback()
        with conn.begin():
            # The cutoff in the middle of the 21st keeps that whole day.
            dropped = central.drop_partitions_before(conn, day_ns("2026-09-21") + 3600 * NS)
        assert dropped == ["samples_p20260920", "sample_texts_p20260920"]
        remaining = sorted(conn.execute(sa.select(central.samples.c.ts)).scalars())
        assert remaining == [day_ns("2026-09-21") + 3600 * NS, day_ns("2026-09-22") + 3600 * NS]
        conn.rollback()
        with conn.begin():
            assert central.drop_partitions_before(conn, day_ns("2026-09-21") + 3600 * NS) == []
            # Retention never touches the DEFAULT partitions.
            assert central.drop_partitions_before(conn, day_ns("2030-01-01")) != []
        assert {p.name for p in central.partitions(conn)} == {
            "samples_default",
            "sample_texts_default",
            "events_default",
        }


@pytest.mark.postgres
def test_a_row_outside_every_partition_lands_in_default_is_reported_and_moved_later(
    engine: sa.Engine, central_db: CentralDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = day_ns("2031-05-17") + 5 * NS
    with engine.connect() as conn:
        central.ensure_central_schema(conn)
        with conn.begin():
            central.ensure_partitions(conn, T0, T0)
            insert_sample(conn, 7, T0)
            insert_sample(conn, 7, stray, 42.0)  # no partition for that day: still accepted
        assert central.default_rows(conn) == {"samples": 1, "sample_texts": 0, "events": 0}
        conn.rollback()
    assert main(["central", "status", "--url", central_db.url, "--password-ref", PASSWORD_REF]) == 0
    out = capsys.readouterr().out
    assert "WARNING: 1 samples row(s) are in samples_default" in out
    with engine.connect() as conn:
        with conn.begin():
            assert central.ensure_partitions(conn, stray, stray, tables=("samples",)) == ["samples_p20310517"]
        assert central.default_rows(conn)["samples"] == 0
        moved = conn.exec_driver_sql("SELECT tag_id, ts, value FROM samples_p20310517").all()
        assert moved == [(7, stray, 42.0)]
        conn.rollback()
        # The moved-into partition took the table's key: a duplicate is refused.
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            insert_sample(conn, 7, stray)


# -- the command line and the read-only role -----------------------------------------------------


@pytest.mark.postgres
def test_central_init_is_idempotent_and_the_reader_may_select_but_not_insert(
    central_db: CentralDatabase,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HMI_PASSWORD_CENTRAL_READER", "reader-secret")
    args = ["central", "init", "--url", central_db.url, "--password-ref", PASSWORD_REF]
    assert main([*args, "--reader-password-ref", "central_reader"]) == 0
    out = capsys.readouterr().out
    assert "schema: created (version 1)" in out
    assert "partitions: created" in out and "hmi_reader" in out
    assert "TimescaleDB: not installed" in out
    assert postgres_server.password not in out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "schema: version 1, up to date" in out and "partitions: all there already" in out

    with central_db.connect() as conn:
        conn.execute("INSERT INTO stations (name, created_ns) VALUES ('ws1', 1)")
        # A partition made after init (by the forwarder) is readable directly too.
        conn.execute(
            f"CREATE TABLE samples_p20300101 PARTITION OF samples FOR VALUES FROM ({day_ns('2030-01-01')}) "
            f"TO ({day_ns('2030-01-02')})"
        )
    reader = psycopg.connect(
        host=postgres_server.host,
        port=postgres_server.port,
        user="hmi_reader",
        password="reader-secret",
        dbname=central_db.name,
        autocommit=True,
    )
    with reader:
        assert reader.execute("SELECT name FROM stations").fetchall() == [("ws1",)]
        assert reader.execute("SELECT count(*) FROM samples_p20300101").fetchone() == (0,)
        for statement in (
            "INSERT INTO stations (name, created_ns) VALUES ('evil', 1)",
            "INSERT INTO samples (tag_id, ts, value, quality) VALUES (1, 1, 1, 192)",
            "DELETE FROM stations",
            "DROP TABLE samples_p20300101",
        ):
            with pytest.raises((psycopg.errors.InsufficientPrivilege,)):
                reader.execute(statement)


@pytest.mark.postgres
def test_central_prune_drops_partitions_before_a_date(
    central_db: CentralDatabase, engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.connect() as conn:
        central.ensure_central_schema(conn)
        with conn.begin():
            central.ensure_partitions(conn, day_ns("2026-01-30"), day_ns("2026-02-02"))
    args = ["central", "prune", "--url", central_db.url, "--password-ref", PASSWORD_REF, "--before", "2026-02-01"]
    assert main([*args, "--dry-run"]) == 0
    assert "would drop 5 partition(s)" in capsys.readouterr().out
    with engine.connect() as conn:
        assert "samples_p20260130" in {p.name for p in central.partitions(conn)}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "dropped 5 partition(s)" in out and "events_p202601" in out
    with engine.connect() as conn:
        left = sorted(p.name for p in central.partitions(conn, "samples") if not p.is_default)
    assert left == ["samples_p20260201", "samples_p20260202"]


# -- connection failures: clear, with the URL and never the password ------------------------------


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["central", "status", *args])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.postgres
def test_a_wrong_password_names_the_url_and_not_the_password(
    central_db: CentralDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HMI_PASSWORD_WRONG", "not-the-password")
    code, err = cli_error(capsys, "--url", central_db.url, "--password-ref", "wrong")
    assert code == 1
    assert f"cannot connect to {central_db.url.replace('+psycopg', '')}" in err
    assert "wrong user name or password" in err
    assert "not-the-password" not in err


@pytest.mark.postgres
def test_a_missing_database_says_so(central_db: CentralDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    url = central_db.url.rsplit("/", 1)[0] + "/no_such_db"
    code, err = cli_error(capsys, "--url", url, "--password-ref", PASSWORD_REF)
    assert code == 1
    assert "no_such_db" in err and "the database does not exist" in err


@pytest.mark.postgres
def test_a_password_in_the_url_is_refused_without_showing_it(
    central_db: CentralDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    url = central_db.url.replace("hmi_admin@", "hmi_admin:hunter2@")
    code, err = cli_error(capsys, "--url", url, "--password-ref", PASSWORD_REF)
    assert code == 2
    assert "must not contain a password" in err and "hunter2" not in err


@pytest.mark.postgres
def test_an_untrusted_server_certificate_is_refused_and_a_trusted_one_accepted(
    tls_postgres: TlsPostgres, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server, ca = tls_postgres.server, tls_postgres.ca
    monkeypatch.setenv("HMI_PASSWORD_TLS", server.password)
    url = server.url()
    tls = ["--url", url, "--password-ref", "tls", "--sslmode", "verify-full"]
    code, err = cli_error(capsys, *tls, "--sslrootcert", str(tls_postgres.other_ca))
    assert code == 1
    assert f"cannot connect to {url.replace('+psycopg', '')}" in err
    assert "TLS failed: the server's certificate is not trusted" in err and "sslrootcert" in err
    assert server.password not in err
    # The same server with the CA that signed it: TLS verified, and the schema is absent.
    code, err = cli_error(capsys, *tls, "--sslrootcert", str(ca))
    assert code == 1 and "no central historian here" in err
    engine = PostgresDialect("tls", sslmode="verify-full", sslrootcert=str(ca)).check_connection(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").scalar()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_missing_password_ref_says_how_to_give_it(
    central_db: CentralDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli_error(capsys, "--url", central_db.url, "--password-ref", "nobody_set_this")
    assert code == 2
    assert "HMI_PASSWORD_NOBODY_SET_THIS" in err


def test_status_needs_a_postgres_url(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli_error(capsys, "--url", "sqlite:///x.sqlite")
    assert code == 2 and "not a PostgreSQL URL" in err


@pytest.mark.postgres
def test_the_url_may_name_its_password_ref(central_db: CentralDatabase) -> None:
    url = f"postgresql://{central_db.url.split('://', 1)[1]}?password_ref={PASSWORD_REF}&station=ws1"
    engine = PostgresDialect().check_connection(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_database()").scalar() == central_db.name
    finally:
        engine.dispose()
