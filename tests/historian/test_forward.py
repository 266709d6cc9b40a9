"""Store-and-forward to a real PostgreSQL (tests/pg.py): what arrives, exactly once, in order."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hmi.config.models import ForwardConfig
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry
from hmi.historian import HistorianWriter
from hmi.historian.forward import TAG_BACKLOG, TAG_CONNECTED
from tests.historian.conftest import NS, T0, TlsPostgres, grid_batch, make_registry
from tests.pg import CentralDatabase

pytestmark = pytest.mark.postgres


def forward_config(db: CentralDatabase, **kwargs: Any) -> ForwardConfig:
    return ForwardConfig(url=db.url, password_ref=db.password_ref, station="ws1", **kwargs)


def make_forwarding_writer(
    path: Path, db: CentralDatabase, registry: TagRegistry, bus: TagBus | None = None, **kwargs: Any
) -> HistorianWriter:
    config = kwargs.pop("config", None) or forward_config(db)
    writer = HistorianWriter(
        str(path),
        registry,
        commit_interval_s=0.05,
        retry_initial_s=0.05,
        forward=config,
        forward_kwargs={"retry_initial_s": 0.05, "retry_max_s": 0.5, "status_interval_s": 0.1, "poll_s": 0.05},
        **kwargs,
    )
    if bus is not None:
        writer.attach(bus)
    writer.start()
    return writer


def local_samples(path: Path) -> list[tuple[str, int, float | None, int]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT t.name, s.ts, s.value, s.quality FROM samples s JOIN tags t ON t.id = s.tag_id ORDER BY 1, 2"
        ).fetchall()
    return [(str(n), int(ts), v, int(q)) for n, ts, v, q in rows]


def central_samples(db: CentralDatabase, station: str = "ws1") -> list[tuple[str, int, float | None, int]]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT t.name, s.ts, s.value, s.quality FROM samples s JOIN tags t ON t.id = s.tag_id "
            "JOIN stations st ON st.id = t.station_id WHERE st.name = %s ORDER BY 1, 2",
            (station,),
        ).fetchall()
    return [(str(n), int(ts), v, int(q)) for n, ts, v, q in rows]


def wait_for(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_recorded_samples_events_and_tags_arrive_centrally_as_recorded(
    tmp_path: Path, central_db: CentralDatabase
) -> None:
    """Every sample as the local file holds it (NaN as NULL, string values, a later value for
    the same tag and nanosecond replacing the earlier), tags with their units, and events."""
    registry = make_registry(3, string_tags=1)
    bus = TagBus(registry)
    path = tmp_path / "h.sqlite"
    writer = make_forwarding_writer(path, central_db, registry, bus)
    try:
        bus.publish(grid_batch(3, 0, 60, hz=2))
        values = np.array([1.0, np.nan, 3.0])
        bus.publish(SampleBatch.from_arrays([0, 1, 2], T0 + 1000 * NS, values, 0))
        bus.publish(SampleBatch.from_arrays([3, 3], [T0, T0 + NS], [np.nan, np.nan], 0, texts={0: "on", 1: "off"}))
        bus.publish_events([Event(EventCategory.SYSTEM, "test", "hello", Severity.WARNING, T0 + 5)])
        assert writer.flush()
        assert writer.forwarder is not None and writer.forwarder.wait_caught_up(20)
        # A later value for a key already forwarded: the central row becomes the local one.
        bus.publish(SampleBatch.from_arrays([0], T0, [42.0], 0))
        assert writer.flush() and writer.forwarder.wait_caught_up(20)
    finally:
        writer.close()
    local = local_samples(path)
    assert len([row for row in local if row[0].startswith("m.")]) == 3 * 120 + 3 + 2
    assert central_samples(central_db) == local
    assert ("m.t0", T0, 42.0, 0) in local
    with central_db.connect() as conn:
        assert conn.execute("SELECT unit FROM tags WHERE name = 'm.t0'").fetchone() == ("mm",)
        texts = conn.execute("SELECT ts, text FROM sample_texts ORDER BY ts").fetchall()
        assert texts == [(T0, "on"), (T0 + NS, "off")]
        messages = [r[0] for r in conn.execute("SELECT message FROM events ORDER BY local_id")]
        assert "hello" in messages
        cursor = conn.execute("SELECT position FROM forward_cursors WHERE stream = 'samples'").fetchone()
    with sqlite3.connect(path) as conn:
        assert cursor[0] == conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
    latest = bus.latest(TAG_CONNECTED)
    assert latest is not None
    assert bus.latest(TAG_BACKLOG) is not None


def test_an_audit_trail_begun_after_forwarding_started_reaches_the_central_historian(
    tmp_path: Path, central_db: CentralDatabase
) -> None:
    """The runtime opens its audit trail in the historian file after the writer: records
    made then still go, chain and all, keyed by the station."""
    from hmi.security.audit import AuditTrail

    path = tmp_path / "h.sqlite"
    writer = make_forwarding_writer(path, central_db, make_registry(1))
    try:
        writer.submit(grid_batch(1, 0, 5))
        assert writer.flush() and writer.forwarder is not None and writer.forwarder.wait_caught_up(20)
        trail = AuditTrail(path)
        try:
            made = [trail.record("login", "olga"), trail.record("write", "olga", "m.t0", value=3)]
        finally:
            trail.close()
        assert wait_for(lambda: writer.forwarder is not None and writer.forwarder.stats.audit_sent == 2)
    finally:
        writer.close()
    with central_db.connect() as conn:
        rows = conn.execute(
            "SELECT st.name, a.seq, a.kind, a.target, a.hash FROM audit a "
            "JOIN stations st ON st.id = a.station_id ORDER BY a.seq"
        ).fetchall()
    assert rows == [("ws1", r.seq, r.kind, r.target, r.hash) for r in made]


def test_a_restarted_writer_resumes_at_the_central_cursor(tmp_path: Path, central_db: CentralDatabase) -> None:
    """Outbox rows committed while the forwarder was away (here: forwarding to a server it
    could not reach) go after a restart, once each; nothing forwarded before goes again."""
    registry = make_registry(2)
    path = tmp_path / "h.sqlite"
    writer = make_forwarding_writer(path, central_db, registry)
    writer.submit(grid_batch(2, 0, 10))
    assert writer.flush() and writer.forwarder is not None and writer.forwarder.wait_caught_up(20)
    writer.close()
    unreachable = ForwardConfig(url="postgresql://nobody@127.0.0.1:1/x", station="ws1")
    writer = make_forwarding_writer(path, central_db, registry, config=unreachable)
    writer.submit(grid_batch(2, 10, 10))
    assert writer.flush()
    writer.close()
    writer = make_forwarding_writer(path, central_db, registry)
    try:
        assert writer.forwarder is not None and writer.forwarder.wait_caught_up(20)
        assert writer.forwarder.stats.merged_batches == 0, "nothing was sent twice"
        assert writer.forwarder.stats.samples_sent == 20
    finally:
        writer.close()
    assert central_samples(central_db) == local_samples(path)
    assert len([row for row in local_samples(path) if row[0].startswith("m.")]) == 40


def system_events(path: Path, source: str = "historian.forward") -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT message FROM events WHERE source = ? ORDER BY id", (source,))]


@pytest.mark.parametrize("problem", ["password", "database"])
def test_a_wrong_password_or_missing_database_is_told_once_and_recording_goes_on(
    tmp_path: Path, central_db: CentralDatabase, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    if problem == "password":
        monkeypatch.setenv(central_db.password_env[0], "not-the-password")
        config = forward_config(central_db)
    else:
        config = forward_config(central_db).model_copy(update={"url": central_db.url + "_missing"})
    registry = make_registry(2)
    bus = TagBus(registry)
    path = tmp_path / "h.sqlite"
    writer = make_forwarding_writer(path, central_db, registry, bus, config=config)
    try:
        assert writer.forwarder is not None
        assert wait_for(lambda: writer.forwarder is not None and writer.forwarder.stats.connect_failures >= 4)
        bus.publish(grid_batch(2, 0, 10))
        assert writer.flush()
    finally:
        writer.close()
    assert len([r for r in local_samples(path) if r[0].startswith("m.")]) == 20, "local recording went on"
    told = system_events(path)
    assert len(told) == 1, told
    expected = "wrong user name or password" if problem == "password" else "database does not exist"
    assert expected in told[0] and "127.0.0.1" in told[0]
    assert "not-the-password" not in told[0]


def test_at_the_bound_the_oldest_unsent_rows_leave_the_outbox_with_a_gap_event(
    tmp_path: Path, central_db: CentralDatabase
) -> None:
    """While the central database is away the outbox stays under max_backlog_mb: its oldest
    rows go, counted, with an event naming the time range the central database will lack.
    The local file keeps every sample; the rest, and the event, reach the central database."""
    registry = make_registry(4)
    path = tmp_path / "h.sqlite"
    away = ForwardConfig(url="postgresql://nobody@127.0.0.1:1/x", station="ws1", max_backlog_mb=0.004)
    writer = make_forwarding_writer(path, central_db, registry, config=away)
    for second in range(40):  # 40 chunks of 4 samples x 25 bytes: 4 kB, twice the bound
        writer.submit(grid_batch(4, second, 1, hz=10))
        assert writer.flush()
    writer.close()
    dropped = writer.stats.outbox_dropped
    assert dropped > 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT sum(nbytes) FROM outbox").fetchone()[0] <= 4000
    gaps = system_events(path)
    assert gaps and "will not reach the central historian" in gaps[0]
    assert len([r for r in local_samples(path) if r[0].startswith("m.")]) == 40 * 40
    writer = make_forwarding_writer(path, central_db, registry)
    try:
        assert writer.forwarder is not None and writer.forwarder.wait_caught_up(20)
    finally:
        writer.close()
    central = [r for r in central_samples(central_db) if r[0].startswith("m.")]
    assert len(central) == 40 * 40 - dropped
    first_forwarded = min(ts for _, ts, _, _ in central)
    assert first_forwarded > T0, "the oldest seconds are the ones dropped"
    with central_db.connect() as conn:
        messages = [r[0] for r in conn.execute("SELECT message FROM events WHERE source = 'historian.forward'")]
    assert any("will not reach the central historian" in m for m in messages)


def test_an_untrusted_server_certificate_is_told_once_and_the_right_ca_catches_up(
    tmp_path: Path, tls_postgres: TlsPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify-full against a server whose certificate another CA signed: one ERROR event
    naming the URL and the cause (never the password), local recording goes on; a writer
    with the CA that signed it forwards the whole backlog, over TLS."""
    server = tls_postgres.server
    db = CentralDatabase(server, "central").create()
    monkeypatch.setenv(*db.password_env)
    registry = make_registry(2)
    path = tmp_path / "h.sqlite"
    untrusted = forward_config(db, sslmode="verify-full", sslrootcert=str(tls_postgres.other_ca))
    writer = make_forwarding_writer(path, db, registry, TagBus(registry), config=untrusted)
    try:
        forwarder = writer.forwarder
        assert forwarder is not None
        assert wait_for(lambda: forwarder.stats.connect_failures >= 3)
        writer.submit(grid_batch(2, 0, 30))
        assert writer.flush()
    finally:
        writer.close()
    assert forwarder.stats.connects == 0
    assert len([r for r in local_samples(path) if r[0].startswith("m.")]) == 60, "local recording went on"
    told = system_events(path)
    assert len(told) == 1, told
    assert f"cannot forward to postgresql://hmi_admin@127.0.0.1:{server.port}/central" in told[0]
    assert "certificate is not trusted" in told[0] and "sslrootcert" in told[0]
    assert server.password not in told[0]

    trusted = forward_config(db, sslmode="verify-full", sslrootcert=str(tls_postgres.ca))
    writer = make_forwarding_writer(path, db, registry, config=trusted)
    try:
        assert writer.forwarder is not None and writer.forwarder.wait_caught_up(20)
    finally:
        writer.close()
    assert len([r for r in central_samples(db) if r[0].startswith("m.")]) == 60
    assert central_samples(db) == local_samples(path)
    with db.connect() as conn:
        told_centrally = [r[0] for r in conn.execute("SELECT message FROM events WHERE source = 'historian.forward'")]
    assert told_centrally == told, "the event itself reached the central historian"
