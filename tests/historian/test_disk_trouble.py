"""A full disk, a read-only database or an unwritable folder: system events, counted
losses, recovery when the trouble ends, and never a crash."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hmi.core.bus import TagBus
from hmi.core.events import Event, Severity
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian.writer import TAG_DROPPED, TAG_WRITE_OK
from tests.helpers import wait_until
from tests.historian.conftest import grid_batch, make_registry

MakeWriter = Callable[..., HistorianWriter]


class PageLimit:
    """SQLite's max_page_count on every new connection to one file: a disk that is full
    at a size the test chooses (the limit is per connection, so it is set on connect)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.pages: int | None = None

    def __call__(self, dbapi_connection: sqlite3.Connection, _record: object) -> None:
        if self.pages is None:
            return
        files = [row[2] for row in dbapi_connection.execute("PRAGMA database_list")]
        if self.path in files:
            dbapi_connection.execute(f"PRAGMA max_page_count = {self.pages}")


@pytest.fixture
def page_limit(db_path: Path) -> Iterator[PageLimit]:
    limit = PageLimit(db_path)
    sa.event.listen(sa.engine.Engine, "connect", limit)
    yield limit
    sa.event.remove(sa.engine.Engine, "connect", limit)


def on_bus(make_writer: MakeWriter, **kwargs: object) -> tuple[TagBus, HistorianWriter, list[Event]]:
    bus = TagBus(make_registry(4))
    writer = make_writer(bus.registry, start=False, status_interval_s=0.05, **kwargs)
    writer.attach(bus)
    events: list[Event] = []
    bus.subscribe_events(events.extend)
    writer.start()
    return bus, writer, events


def test_full_disk_raises_an_event_counts_drops_and_recovers(
    make_writer: MakeWriter, db_path: Path, page_limit: PageLimit
) -> None:
    """With the database full, writes fail: a system event says so, the queue fills, the
    overflow is counted and published; when space returns everything held is written."""
    first = make_writer(make_registry(4))  # the file as an earlier run left it
    first.submit(grid_batch(4, 0, 10))
    first.close()
    with sqlite3.connect(db_path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_limit.pages = pages + 2
    bus, writer, events = on_bus(make_writer, max_queue_samples=20_000, retry_max_s=0.2)
    for i in range(10):
        bus.publish(grid_batch(4, 10 + i * 1000, 1000))  # 40,000 samples: more than the queue holds
    wait_until(lambda: any("cannot write" in e.message for e in events), timeout=10)
    failure = next(e for e in events if "cannot write" in e.message)
    assert failure.severity == Severity.ERROR and failure.source == "historian"
    assert "full" in failure.message
    wait_until(lambda: any("queue full" in e.message for e in events), timeout=15)
    wait_until(lambda: bus.latest(TAG_DROPPED) is not None and bus.latest(TAG_DROPPED).value >= 20_000)
    assert bus.latest(TAG_WRITE_OK).value == 0.0
    assert writer.running

    page_limit.pages = None
    wait_until(lambda: any("writing again" in e.message for e in events), timeout=15)
    writer.close()
    assert writer.stats.lost == 0
    assert writer.stats.written == writer.stats.accepted, "everything that was accepted got written"
    with HistorianReader(db_path) as reader:
        stored = sum(reader.count(t, 0, 2**62) for t in reader.tags())
        recorded = [e.message for e in reader.events(0, 2**62, categories=["system"])]
    assert stored == 40 + writer.stats.written, "the earlier 40 and everything written since"
    assert any("cannot write" in m for m in recorded), "the trouble itself is in the record afterwards"


def test_read_only_database_raises_an_event_and_loses_nothing_silently(make_writer: MakeWriter, db_path: Path) -> None:
    """A database that opens read-only refuses writes: a system event names it, and what
    could not be written by close() is counted as lost."""
    make_writer(make_registry(4)).close()
    target = f"sqlite:///file:{db_path}?mode=ro&uri=true"
    bus, writer, events = on_bus(make_writer, target=target, close_attempts=2)
    bus.publish(grid_batch(4, 0, 100))
    wait_until(lambda: any("read-only" in e.message for e in events), timeout=10)
    assert writer.running
    writer.close()
    assert writer.stats.lost >= 400
    assert writer.stats.written == 0
    assert any("could not keep" in e.message for e in events)


def test_a_folder_that_cannot_be_created_raises_an_event(make_writer: MakeWriter, tmp_path: Path) -> None:
    """A historian path under a regular file cannot be opened: event, retries, counted loss."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    bus, writer, events = on_bus(make_writer, target=str(blocker / "h.sqlite"), close_attempts=2)
    bus.publish(grid_batch(4, 0, 10))
    wait_until(lambda: any("cannot open" in e.message for e in events), timeout=10)
    assert writer.stats.open_failures >= 1
    writer.close()
    assert writer.stats.lost >= 40
