"""The writer thread: batching, flushing, bounded queue, storage policies, events, tag configs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from hmi.config.loader import validate_project
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec
from hmi.historian import HistorianReader, HistorianWriter, StorageMode, StoragePolicy
from hmi.historian import schema as s
from hmi.historian.writer import TAG_DROPPED, TAG_QUEUE_DEPTH, TAG_WRITE_OK
from tests.helpers import wait_until
from tests.historian.conftest import NS, T0, grid_batch, make_registry

MakeWriter = Callable[..., HistorianWriter]


def count_rows(path: Path) -> int:
    with HistorianReader(path) as reader:
        return sum(reader.count(t, -(2**63), 2**63 - 1) for t in reader.tags())


def test_commits_wait_for_the_interval_then_hold_everything(make_writer: MakeWriter, db_path: Path) -> None:
    """Small batches are committed together once the commit interval has passed."""
    writer = make_writer(commit_interval_s=0.6)
    for i in range(10):
        writer.submit(grid_batch(4, i, 1))
    time.sleep(0.2)
    assert writer.stats.commits == 0, "nothing is committed before the interval"
    wait_until(lambda: writer.stats.written == 40, timeout=5)
    assert writer.stats.commits == 1
    assert count_rows(db_path) == 40


def test_a_large_backlog_is_committed_in_bounded_transactions(make_writer: MakeWriter, db_path: Path) -> None:
    """A backlog bigger than max_batch_samples goes in several commits, none waiting for the interval."""
    writer = make_writer(commit_interval_s=60.0, max_batch_samples=1000, start=False)
    writer.submit(grid_batch(10, 0, 450))  # 4,500 samples
    started = time.monotonic()
    writer.start()
    wait_until(lambda: writer.stats.written == 4500, timeout=10)
    assert time.monotonic() - started < 30, "size, not the 60 s interval, triggered the commits"
    assert writer.stats.commits == 5
    assert count_rows(db_path) == 4500


def test_close_flushes_what_is_queued(make_writer: MakeWriter, db_path: Path) -> None:
    """Samples and events submitted right before close() are all in the file afterwards."""
    writer = make_writer(commit_interval_s=30.0)
    writer.submit(grid_batch(4, 0, 100))
    writer.submit_events([Event(EventCategory.OPERATOR, "m.t0", "acknowledged", user="anna")])
    writer.close()
    assert count_rows(db_path) == 400
    with HistorianReader(db_path) as reader:
        assert [e.user for e in reader.events(0, 2**62)] == ["anna"]


def test_queue_depth_and_drops_are_published_and_never_silent(make_writer: MakeWriter) -> None:
    """Beyond max_queue_samples samples are refused, counted, announced and published as tags."""
    bus = TagBus(make_registry(2))
    writer = make_writer(bus.registry, start=False, max_queue_samples=1000, status_interval_s=0.05)
    writer.attach(bus)
    events: list[Event] = []
    bus.subscribe_events(events.extend)
    for i in range(15):
        bus.publish(grid_batch(2, i * 50, 50))  # 100 samples each: 1,500 in all
    assert writer.queue_depth == 1000
    assert writer.stats.dropped == 500
    writer.start()
    wait_until(lambda: any("queue full" in e.message for e in events), timeout=5)
    report = next(e for e in events if "queue full" in e.message)
    # The writer's own first status samples found the queue full too: also counted.
    assert report.severity == Severity.ERROR and report.details["dropped_samples"] >= 500
    assert writer.flush(10)
    wait_until(lambda: bus.latest(TAG_QUEUE_DEPTH) is not None and bus.latest(TAG_QUEUE_DEPTH).value < 100)
    wait_until(lambda: bus.latest(TAG_DROPPED).value == writer.stats.dropped)
    assert bus.latest(TAG_WRITE_OK).value == 1.0
    writer.close()
    assert writer.stats.written == writer.stats.accepted, "everything accepted was written"
    assert writer.stats.lost == 0


def test_on_change_with_deadband_keeps_only_real_changes(make_writer: MakeWriter, db_path: Path) -> None:
    """on_change keeps a sample when it moved beyond the deadband from the last kept one, or
    its quality changed; `every` keeps all; `off` keeps none."""
    registry = make_registry(3)
    policies = {
        "m.t0": StoragePolicy(StorageMode.ON_CHANGE, 0.5),
        "m.t1": StoragePolicy(StorageMode.OFF),
    }
    writer = make_writer(registry, policies=policies)
    values = [1.0, 1.2, 1.4, 1.6, 1.6, 1.0, 1.0, math.nan, math.nan, 2.0, 2.0]
    quality = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    n = len(values)
    ts = T0 + np.arange(n) * NS
    # In two batches, so the filter carries its state from one to the next.
    for part in (slice(0, 5), slice(5, n)):
        k = part.stop - part.start
        ids = np.r_[np.zeros(k), np.ones(k), np.full(k, 2)]
        writer.submit(
            SampleBatch.from_arrays(ids, np.tile(ts[part], 3), np.tile(values[part], 3), np.tile(quality[part], 3))
        )
    writer.close()
    with HistorianReader(db_path) as reader:
        kept = reader.read("m.t0", 0, 2**62)
        assert ((kept.ts - T0) // NS).tolist() == [0, 3, 4, 5, 7, 9]
        assert {t.name for t in reader.tags()} >= {"m.t0", "m.t2"}
        assert reader.count("m.t2", 0, 2**62) == n
        assert "m.t1" not in {t.name for t in reader.tags()} or reader.count("m.t1", 0, 2**62) == 0
    assert writer.stats.skipped == (n - 6) + n


def test_on_change_without_deadband_is_exact_on_change(make_writer: MakeWriter, db_path: Path) -> None:
    """Deadband 0 keeps every sample that differs from the previous one, and nothing else."""
    registry = make_registry(1)
    writer = make_writer(registry, policies={"m.t0": StoragePolicy(StorageMode.ON_CHANGE)})
    values = [5.0, 5.0, 5.0, 6.0, 6.0, 5.0, math.inf, math.inf]
    writer.submit(SampleBatch.from_arrays(np.zeros(8), T0 + np.arange(8) * NS, values, 0))
    writer.close()
    with HistorianReader(db_path) as reader:
        assert reader.read("m.t0", 0, 2**62).values.tolist() == [5.0, 6.0, 5.0, math.inf]


def test_history_keys_of_the_project_file_become_policies(tmp_path: Path) -> None:
    """tags.*.history and history_deadband in the project file reach the writer's filter."""
    raw = {
        "project": {"name": "p", "timezone": "Europe/Berlin"},
        "historian": {"url": f"sqlite:///{tmp_path}/h.sqlite"},
        "connections": {"plc": {"kind": "opcua", "endpoint": "opc.tcp://127.0.0.1:1"}},
        "machines": {"m": {}},
        "tags": {
            "m.a": {"connection": "plc", "address": "ns=2;s=a", "history": "on_change", "history_deadband": 0.5},
            "m.b": {"connection": "plc", "address": "ns=2;s=b", "history": "off"},
            "m.c": {"connection": "plc", "address": "ns=2;s=c"},
        },
        "shifts": [{"name": "A", "start": "06:00", "end": "18:00"}, {"name": "B", "start": "18:00", "end": "06:00"}],
    }
    project = validate_project(raw, "p.toml")
    writer = HistorianWriter.from_project(project, TagRegistry(project.tag_specs()))
    assert writer.filter.policies == {
        "m.a": StoragePolicy(StorageMode.ON_CHANGE, 0.5),
        "m.b": StoragePolicy(StorageMode.OFF),
    }
    assert writer.calendar is not None and writer.calendar.names() == ["A", "B"]
    assert writer.calendar.timezone == "Europe/Berlin"


def test_events_keep_their_fields_and_json_details(make_writer: MakeWriter, db_path: Path) -> None:
    """Events come back with every field, details as JSON (numpy values as numbers), and filter."""
    writer = make_writer()
    events = [
        Event(
            EventCategory.ALARM,
            "m.t0.hi",
            "Tool temperature high",
            Severity.WARNING,
            T0 + 1,
            "",
            {"state": "UNACK_ACTIVE", "value": np.float64(81.5), "limit": 80},
        ),
        Event(
            EventCategory.OPERATOR, "m.t0.hi", "Alarm acknowledged", Severity.INFO, T0 + 2, "anna", {"comment": "ok"}
        ),
        Event(EventCategory.SYSTEM, "plant", "Connection plant lost", Severity.ERROR, T0 + 3),
        Event(EventCategory.SYSTEM, "plant", "Connection plant established", Severity.INFO, T0 + 4),
    ]
    writer.submit_events(events)
    writer.close()
    with HistorianReader(db_path) as reader:
        got = reader.events(T0, T0 + 10)
        assert [e.message for e in got] == [e.message for e in events]
        assert got[0].details == {"state": "UNACK_ACTIVE", "value": 81.5, "limit": 80}
        assert got[1].user == "anna" and got[1].ts_ns == T0 + 2
        assert [e.ts_ns for e in reader.events(T0, T0 + 10, categories=["system"])] == [T0 + 3, T0 + 4]
        assert [e.message for e in reader.events(T0, T0 + 10, min_severity="warning")] == [
            "Tool temperature high",
            "Connection plant lost",
        ]
        assert len(reader.events(T0, T0 + 10, source_prefix="m.t0")) == 2
        assert len(reader.events(T0, T0 + 10, user="anna")) == 1
        assert len(reader.events(T0, T0 + 10, text="lost")) == 1
        assert len(reader.events(T0 + 2, T0 + 4)) == 2, "the range is half-open"


def test_tags_keep_the_configuration_they_were_recorded_under(make_writer: MakeWriter, db_path: Path) -> None:
    """A tag whose unit changes between runs keeps both configurations, each from its time."""
    writer = make_writer(TagRegistry([TagSpec("m.temp", unit="°F", description="temp")]))
    writer.submit(grid_batch(1, 0, 5))
    writer.close()
    writer = make_writer(TagRegistry([TagSpec("m.temp", unit="°C", description="temp")]))
    writer.submit(grid_batch(1, 5, 5))
    writer.close()
    with HistorianReader(db_path) as reader:
        configs = reader.tag_configs("m.temp")
        assert [spec.unit for _, spec in configs] == ["°F", "°C"]
        assert configs[0][0] < configs[1][0]
        assert reader.tag("m.temp").unit == "°C"
        assert reader.count("m.temp", 0, 2**62) == 10


def test_retention_deletes_old_rows_in_chunks_while_ingest_goes_on(make_writer: MakeWriter, db_path: Path) -> None:
    """Data older than retention_days goes, in chunks; new data and ingest are unaffected."""
    now = time.time_ns()
    old = now - 10 * 86_400 * NS
    writer = make_writer(retention_days=5, retention_chunk_rows=100)
    writer.submit(grid_batch(4, 0, 1000, t0=old))
    writer.submit_events([Event(EventCategory.SYSTEM, "x", "old", ts_ns=old), Event(EventCategory.SYSTEM, "x", "new")])
    assert writer.flush(10)
    writer.request_retention()
    for i in range(20):
        writer.submit(grid_batch(4, i, 1, t0=now))
        time.sleep(0.01)
    wait_until(lambda: writer.stats.retention_deleted == 4001, timeout=20)
    assert writer.flush(10)
    with HistorianReader(db_path) as reader:
        assert sum(reader.count(t, 0, now - 86_400 * NS) for t in reader.tags()) == 0
        assert sum(reader.count(f"m.t{i}", now, 2**62) for i in range(4)) == 80
        assert [e.message for e in reader.events(0, 2**62)] == ["new"]


def test_a_new_file_carries_the_schema_version(make_writer: MakeWriter, db_path: Path) -> None:
    """The meta table says which schema version wrote the file."""
    make_writer().close()
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        assert s.schema_version(conn) == s.SCHEMA_VERSION
    engine.dispose()


def test_a_file_from_a_newer_version_is_refused(make_writer: MakeWriter, db_path: Path) -> None:
    """A historian written by a newer hmi is not touched; the reader says why."""
    make_writer().close()
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        s.set_meta(conn, "schema_version", str(s.SCHEMA_VERSION + 1))
    engine.dispose()
    with pytest.raises(s.HistorianError, match="newer version of hmi"):
        HistorianReader(db_path)


def test_migrations_run_once_in_order(make_writer: MakeWriter, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening an older file applies each missing migration once and records the new version."""
    make_writer().close()
    applied: list[int] = []

    def step(version: int) -> Callable[[sa.Connection], None]:
        def migrate(conn: sa.Connection) -> None:
            applied.append(version)
            conn.exec_driver_sql(f"CREATE TABLE migrated_{version} (x INTEGER)")

        return migrate

    latest = s.SCHEMA_VERSION + 2
    monkeypatch.setattr(s, "SCHEMA_VERSION", latest)
    monkeypatch.setattr(s, "MIGRATIONS", {latest - 1: step(latest - 1), latest: step(latest)})
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        assert s.ensure_schema(conn, latest) == latest - 2
        assert s.ensure_schema(conn, latest) == latest
        assert s.schema_version(conn) == latest
        assert {"migrated_" + str(latest - 1), "migrated_" + str(latest)} <= set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert applied == [latest - 1, latest]


def test_a_value_that_arrives_after_a_comm_lost_mark_is_recorded_after_it(make_writer: MakeWriter, db_path) -> None:
    """The recorded order is the order the operator saw. A COMM_LOST mark is stamped when the
    runtime sees the loss (at start, at a disconnect); a static tag's value that arrives after
    it carries its older source time. Recorded at that time it would sort before the mark and
    replay would show the tag lost while the live view showed it good."""
    from hmi.core.quality import Quality

    writer = make_writer()
    mark = T0 + 100 * NS
    writer.submit(SampleBatch.from_arrays([0, 1], mark, [np.nan, np.nan], Quality.COMM_LOST))  # start
    # Then the server's initial values: tag 0 static since T0 (two queued values), tag 1 new.
    writer.submit(SampleBatch.from_arrays([0, 0, 1], [T0, T0 + NS, mark + 5 * NS], [7.0, 8.0, 3.0]))
    writer.submit(SampleBatch.from_arrays([0], [mark + 9 * NS], [9.0]))  # the stream goes on
    assert writer.flush()
    with HistorianReader(db_path) as reader:
        s0 = reader.read("m.t0", 0, 2**62)
        s1 = reader.read("m.t1", 0, 2**62)
    assert s0.quality.tolist() == [Quality.COMM_LOST, Quality.GOOD, Quality.GOOD, Quality.GOOD]
    assert s0.values.tolist()[1:] == [7.0, 8.0, 9.0]  # in the order they arrived
    assert s0.ts.tolist() == [mark, mark + 1, mark + 2, mark + 9 * NS]
    assert s1.ts.tolist() == [mark, mark + 5 * NS]  # a newer value keeps its own time
