"""Reading from the central PostgreSQL database: the same reader, the same answers as from
the local file the data was recorded in, per station or every station at once."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmi.cli import main
from hmi.core.bus import TagBus
from hmi.core.events import EventCategory
from hmi.core.samples import SampleBatch
from hmi.historian import HistorianError, HistorianReader, HistorianWriter
from hmi.historian import schema as s
from hmi.historian.reader import EventQuery, HistoryLookup
from hmi.sources.replay import UNPACED, ReplaySource
from tests.historian.central_fill import copy, copy_recording, ensure_schema
from tests.historian.conftest import NS, T0, make_registry
from tests.historian.test_journal_queries import varied_events
from tests.pg import CentralDatabase

pytestmark = pytest.mark.postgres

MakeWriter = Callable[..., HistorianWriter]
END = T0 + 700 * NS


def target(db: CentralDatabase, station: str | None = "ws1") -> str:
    query = f"?password_ref={db.password_ref}" + (f"&station={station}" if station else "")
    return db.url + query


@pytest.fixture
def recorded(make_writer: MakeWriter, db_path: Path) -> Path:
    """Four float tags (one dense at 10 Hz, with NaN and bad quality), a string tag, events."""
    writer = make_writer(make_registry(4, string_tags=1), timezone="Europe/Berlin")
    steps = 6000
    ts = T0 + np.arange(steps, dtype=np.int64) * (NS // 10)
    values = np.sin(np.arange(steps) / 50.0)
    values[100:110] = np.nan
    quality = np.zeros(steps, np.uint8)
    quality[2000:2100] = 2
    writer.submit(SampleBatch.from_arrays(np.zeros(steps, np.int32), ts, values, quality))
    for tag in (1, 2, 3):
        n = 50 * tag
        writer.submit(
            SampleBatch.from_arrays(
                np.full(n, tag, np.int32), T0 + np.arange(n, dtype=np.int64) * 7 * NS, np.arange(n) * 1.5 - tag, 0
            )
        )
    writer.submit(
        SampleBatch.from_arrays([4, 4, 4], [T0, T0 + NS, T0 + 5 * NS], [0, 0, 0], 0, {0: "G01", 1: "M30", 2: "ü"})
    )
    assert writer.submit_events(varied_events(90)) and writer.flush()
    writer.close()
    return db_path


@pytest.fixture
def both(recorded: Path, central_db: CentralDatabase) -> tuple[HistorianReader, HistorianReader]:
    copy_recording(central_db.engine(), recorded, "ws1")
    local, remote = HistorianReader(recorded), HistorianReader(target(central_db))
    yield local, remote
    local.close()
    remote.close()


def same_series(a: object, b: object) -> None:
    for field in ("ts", "values", "quality"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.texts == b.texts  # type: ignore[attr-defined]


def same_decimated(a: object, b: object) -> None:
    for field in ("ts", "min", "max", "count", "quality"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.raw == b.raw  # type: ignore[attr-defined]


def same_batch(a: SampleBatch, b: SampleBatch, ids: dict[int, int]) -> None:
    np.testing.assert_array_equal(np.array([ids[int(t)] for t in a.tag_ids], np.int32), b.tag_ids)
    for field in ("ts_ns", "values", "quality"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.texts == b.texts


def test_every_reader_method_answers_the_same_from_postgres(both: tuple[HistorianReader, HistorianReader]) -> None:
    local, remote = both
    assert [(t.name, t.datatype, t.unit, t.description) for t in local.tags()] == [
        (t.name, t.datatype, t.unit, t.description) for t in remote.tags()
    ]
    ids = {a.id: b.id for a, b in zip(local.tags(), remote.tags(), strict=True)}
    names = [t.name for t in local.tags()]
    for name in names:
        assert local.tag_configs(name) == remote.tag_configs(name)
        same_series(local.read(name, T0, END), remote.read(name, T0, END))
        same_series(local.read(name, T0 + 3 * NS, T0 + 90 * NS), remote.read(name, T0 + 3 * NS, T0 + 90 * NS))
        assert local.count(name, T0, END) == remote.count(name, T0, END)
        for pixels in (7, 100, 2000):  # dense (min/max buckets: GROUP BY on PostgreSQL) and raw
            same_decimated(local.decimated(name, T0, END, pixels), remote.decimated(name, T0, END, pixels))
        for at in (T0 - 1, T0, T0 + 5 * NS + 1, END):
            a, b = local.last_value(name, at), remote.last_value(name, at)
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert a[0] == b[0] and a[2] == b[2]
                assert a[1] == b[1] or (math.isnan(a[1]) and math.isnan(b[1]))  # type: ignore[arg-type]
    dense = local.decimated_many(names, T0, END, 100)
    dense_remote = remote.decimated_many(names, T0, END, 100)
    for tag in local.tags():
        same_decimated(dense[tag.id], dense_remote[ids[tag.id]])
    same_batch(local.window(list(ids), T0, END), remote.window(list(ids.values()), T0, END), ids)
    same_batch(local.last_values(list(ids), T0 + 60 * NS), remote.last_values(list(ids.values()), T0 + 60 * NS), ids)
    assert local.time_range() == remote.time_range()
    assert local.data_extent(T0 + NS, END) == remote.data_extent(T0 + NS, END)
    # Events: every filter, keyset pages (ids are the station's own), counts, last per source.
    assert local.events(T0, END) == remote.events(T0, END)
    filters = dict(categories=[EventCategory.ALARM], source_prefix="cnc01", min_severity="warning", text="temp")
    assert local.events(T0, END, **filters) == remote.events(T0, END, **filters)  # type: ignore[arg-type]
    for query in (
        EventQuery(),
        EventQuery(machine="cnc01", hide_design_suppression=True),
        EventQuery(priority="urgent"),
        EventQuery(user="olga", text="NOTE"),
    ):
        key_a = key_b = None
        while True:
            page_a = local.event_page(T0, END, query, before=key_a, limit=7)
            page_b = remote.event_page(T0, END, query, before=key_b, limit=7)
            assert page_a == page_b
            if page_a.next_key is None:
                break
            key_a, key_b = page_a.next_key, page_b.next_key
        assert local.event_counts(T0, END, query) == remote.event_counts(T0, END, query)
    assert local.last_events_per_source(EventCategory.ALARM, T0 + 20 * NS) == remote.last_events_per_source(
        EventCategory.ALARM, T0 + 20 * NS
    )
    assert remote.session_at(T0) is None  # no session was recorded: as the file
    assert remote.calendar() is None
    assert remote.timezone() == "UTC"  # no recorded project names one


def test_the_decimated_group_by_statement_runs_on_postgres(both: tuple[HistorianReader, HistorianReader]) -> None:
    """The bucket expression is a subquery column: PostgreSQL binds each placeholder on its own
    and refused `GROUP BY (ts - $6) / $7` against the select list's `(ts - $1) / $2`."""
    _, remote = both
    assert remote.dialect.decimation == "group_by"
    dec = remote.decimated("m.t0", T0, END, 50)
    assert not dec.raw and int(dec.count.sum()) == 6000


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    series=st.lists(
        st.tuples(
            st.integers(0, 10_000),
            st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.just(math.nan)),
            st.sampled_from([0, 1, 2, 3]),
        ),
        max_size=400,
        unique_by=lambda r: r[0],
    ),
    window=st.tuples(st.integers(-100, 10_100), st.integers(1, 10_200)),
    pixels=st.integers(1, 120),
)
def test_reads_and_decimated_reads_agree_for_any_series(
    central_db: CentralDatabase,
    tmp_path: Path,
    series: list[tuple[int, float, int]],
    window: tuple[int, int],
    pixels: int,
) -> None:
    """One tag's random series stored in a local file and centrally: read() and decimated()
    give the same arrays for any range and width (NaN and -0.0 as the file stores them)."""
    engine = central_db.engine()
    ensure_schema(engine)
    path = tmp_path / "h.sqlite"
    local_engine, _ = s.open_engine(str(path))
    name = f"p.t{len(list(tmp_path.glob('*.marker')))}"
    (tmp_path / f"{name}.marker").touch()
    step = 1_000_000
    rows = [(T0 + k * step, None if math.isnan(v) else v, q) for k, v, q in series]
    with local_engine.begin() as conn:
        tag_id = conn.execute(sa.insert(s.tags).values(name=name, first_seen_ns=T0).returning(s.tags.c.id)).scalar_one()
        if rows:
            conn.execute(
                sa.insert(s.samples), [{"tag_id": tag_id, "ts": t, "value": v, "quality": q} for t, v, q in rows]
            )
    local_engine.dispose()
    from hmi.historian import central

    with engine.begin() as conn:
        station = conn.execute(sa.select(central.stations.c.id).where(central.stations.c.name == "ws1")).scalar()
        if station is None:
            station = conn.execute(
                sa.insert(central.stations).values(name="ws1", created_ns=0).returning(central.stations.c.id)
            ).scalar_one()
        remote_id = conn.execute(
            sa.insert(central.tags).values(station_id=station, name=name).returning(central.tags.c.id)
        ).scalar_one()
        copy(conn, "samples", ("tag_id", "ts", "value", "quality"), [(remote_id, t, v, q) for t, v, q in rows])
    engine.dispose()
    start = T0 + window[0] * step
    end = start + window[1] * step
    with HistorianReader(path) as local, HistorianReader(target(central_db)) as remote:
        same_series(local.read(name, start, end), remote.read(name, start, end))
        same_decimated(local.decimated(name, start, end, pixels), remote.decimated(name, start, end, pixels))


def test_two_stations_in_one_database(recorded: Path, central_db: CentralDatabase) -> None:
    """Without a station every station's tags and event sources read as station/name; with one,
    that station's under their own names; an unknown station is named with the known ones."""
    copy_recording(central_db.engine(), recorded, "ws1")
    copy_recording(central_db.engine(), recorded, "ws2")
    with HistorianReader(recorded) as local, HistorianReader(target(central_db, None)) as every:
        names = [t.name for t in every.tags()]
        assert "ws1/m.t0" in names and "ws2/m.t0" in names and len(names) == 2 * len(local.tags())
        for station in ("ws1", "ws2"):
            same_series(local.read("m.t1", T0, END), every.read(f"{station}/m.t1", T0, END))
        events = every.events(T0, END, source_prefix="ws2/cnc01.")
        assert events and all(e.source.startswith("ws2/cnc01.") for e in events)
        assert len(every.events(T0, END)) == 2 * len(local.events(T0, END))
        # Pages over both stations' events cover each exactly once (ids unique across stations).
        seen, key = [], None
        while True:
            page = every.event_page(T0, END, EventQuery(machine="ws1/cnc01"), before=key, limit=5)
            seen += page.events
            if (key := page.next_key) is None:
                break
        assert sorted(e.ts_ns for e in seen) == sorted(
            e.ts_ns for e in local.event_page(T0, END, EventQuery(machine="cnc01"), limit=10_000).events
        )
    with HistorianReader(target(central_db, "ws2")) as one:
        assert [t.name for t in one.tags()] == [t.name for t in HistorianReader(recorded).tags()]
    with pytest.raises(HistorianError, match=r"no station 'ws9'.*ws1, ws2"):
        HistorianReader(target(central_db, "ws9"))


def test_a_password_in_the_url_is_refused_and_a_missing_one_is_explained(central_db: CentralDatabase) -> None:
    ensure_schema(central_db.engine())
    with pytest.raises(HistorianError, match="must not contain a password"):
        HistorianReader(central_db.url.replace("@", ":secret@", 1))
    with pytest.raises(HistorianError, match=r"no password for password_ref 'nobody'.*HMI_PASSWORD_NOBODY"):
        HistorianReader(central_db.url + "?password_ref=nobody")
    with pytest.raises(HistorianError, match="not an hmi central historian"):
        HistorianReader(central_db.server.url("postgres") + f"?password_ref={central_db.password_ref}")
    # password_ref as an argument (the CLI's --password-ref) works as the URL parameter does.
    with HistorianReader(central_db.url, password_ref=central_db.password_ref) as reader:
        assert reader.tags() == []


def test_replay_plays_from_the_central_database_alone(recorded: Path, central_db: CentralDatabase) -> None:
    """hmi.sources.replay given only a postgresql:// URL plays what the local file plays; with
    two stations and no station named, both stations' tags play side by side."""

    def counts(db: str) -> dict[str, int]:
        source = ReplaySource(db, T0, END, TagBus(), speed=UNPACED, autoplay=True)
        source.start()
        try:
            assert source.wait_ended(60), source.error
        finally:
            source.close()
        return source.counts()

    copy_recording(central_db.engine(), recorded, "ws1")
    expected = counts(str(recorded))
    assert expected and counts(target(central_db)) == expected
    copy_recording(central_db.engine(), recorded, "ws2")
    both = counts(target(central_db, None))
    assert both == {f"{st}/{name}": n for st in ("ws1", "ws2") for name, n in expected.items()}


def test_cli_replay_export_and_report_take_a_database_url(
    recorded: Path, central_db: CentralDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--db postgresql://…?station=ws1 --password-ref NAME`: export writes the CSV the file
    gives, replay plays headless, report writes its HTML."""
    copy_recording(central_db.engine(), recorded, "ws1")
    url = central_db.url + "?station=ws1"
    span = ["--from", "2026-09-21T14:13:20Z", "--to", "2026-09-21T14:25:00Z"]
    ref = ["--password-ref", central_db.password_ref]
    assert main(["export", "--db", str(recorded), *span, "--out", str(tmp_path / "local.csv")]) == 0
    assert main(["export", "--db", url, *ref, *span, "--out", str(tmp_path / "central.csv")]) == 0
    local_rows = list(csv.reader((tmp_path / "local.csv").open(encoding="utf-8")))
    assert len(local_rows) > 6000
    assert list(csv.reader((tmp_path / "central.csv").open(encoding="utf-8"))) == local_rows
    capsys.readouterr()
    assert main(["replay", "--db", url, *ref, *span, "--headless", "--speed", "max"]) == 0
    assert "m.t0" in capsys.readouterr().out
    assert main(["report", "--db", url, *ref, *span, "--out", str(tmp_path / "r.html")]) == 0
    assert "ws1" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_trend_history_reads_the_central_database(recorded: Path, central_db: CentralDatabase) -> None:
    copy_recording(central_db.engine(), recorded, "ws1")
    local, remote = HistoryLookup(str(recorded)), HistoryLookup(target(central_db))
    try:
        for a, b in zip(local("m.t0", T0, END, 200), remote("m.t0", T0, END, 200), strict=True):
            np.testing.assert_array_equal(a, b)
        many_a, many_b = local.many(["m.t0", "m.t1"], T0, END, 200), remote.many(["m.t0", "m.t1"], T0, END, 200)
        for name in ("m.t0", "m.t1"):
            for a, b in zip(many_a[name], many_b[name], strict=True):
                np.testing.assert_array_equal(a, b)
    finally:
        local.close()
        remote.close()
