"""Chaos for store-and-forward, on a private PostgreSQL server the test may kill: the
server SIGKILLed and kept down, connections refused (pg_hba reject: the network path cut),
the forwarding process SIGKILLed mid-batch. Afterwards the central samples equal the local
ones, each once; the backlog tag rose while the server was away and came back to 0."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hmi.core.bus import TagBus
from hmi.core.samples import SampleBatch, now_ns
from hmi.historian.forward import TAG_BACKLOG
from tests.historian.conftest import make_registry
from tests.historian.test_forward import central_samples, local_samples, make_forwarding_writer, wait_for
from tests.pg import PASSWORD_REF, CentralDatabase, PostgresServer

pytestmark = pytest.mark.postgres

TAGS = 200
HZ = 10.0
DOWN_S = 3.0  # the soak versions keep it down for 2 minutes and 1 hour
SOAK_TAGS = 2000  # the issue's scale: 2,000 tags x 10 Hz = 20,000 samples/s


@pytest.fixture
def own_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[CentralDatabase]:
    """A server of this test's own (the session's one must not be killed), one database."""
    server = PostgresServer().start()
    try:
        db = CentralDatabase(server, "central").create()
        monkeypatch.setenv(*db.password_env)
        yield db
    finally:
        server.stop()


def kill_server(server: PostgresServer) -> None:
    """SIGKILL the postmaster and its backends, by their ids."""
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    for target in [pid, *children]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


def restart_server(server: PostgresServer) -> None:
    server._run([str(server.bindir / "pg_ctl"), "-D", str(server.data), "-l", str(server.log_path), "-w", "start"])


def set_reject(server: PostgresServer, reject: bool) -> None:
    """Refuse (or accept again) TCP connections from 127.0.0.1 and drop the forwarder's."""
    hba = server.data / "pg_hba.conf"
    lines = [line for line in hba.read_text().splitlines() if "# chaos" not in line]
    if reject:
        lines.insert(0, "host all all 127.0.0.1/32 reject # chaos")
    hba.write_text("\n".join(lines) + "\n")
    import psycopg

    socket = {"host": str(server.directory), "port": server.port, "user": server.user, "password": server.password}
    with psycopg.connect(dbname="postgres", autocommit=True, **socket) as conn:  # the socket: not refused
        conn.execute("SELECT pg_reload_conf()")
        if reject:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'hmi forward%'"
            )


class Feeder:
    """The live load: `tags` tags at HZ on the bus, from a thread, until stopped (on a fixed
    tick, so a slow publish does not lower the rate)."""

    def __init__(self, bus: TagBus, tags: int = TAGS) -> None:
        self.bus = bus
        self.tags = tags
        self.published = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ids = np.arange(self.tags, dtype=np.int32)
        tick = time.monotonic()
        while not self.stop.is_set():
            ts = now_ns()
            self.bus.publish(SampleBatch.from_arrays(ids, ts, np.sin(ids + ts / 1e9), 0))
            self.published += self.tags
            tick += 1 / HZ
            self.stop.wait(max(0.0, tick - time.monotonic()))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.mark.parametrize("outage", ["sigkill", "refused"])
def test_after_an_outage_every_local_sample_is_central_exactly_once(
    tmp_path: Path, own_server: CentralDatabase, outage: str
) -> None:
    run_outage(tmp_path, own_server, outage, DOWN_S)


@pytest.mark.soak
@pytest.mark.parametrize(
    "down_s", [pytest.param(down, marks=pytest.mark.timeout(2 * down + 600)) for down in (120.0, 3600.0)]
)
def test_a_long_outage_at_the_issues_scale_catches_up_exactly_once(
    tmp_path: Path, own_server: CentralDatabase, down_s: float
) -> None:
    """Issue #19's chaos figure: 2,000 tags x 10 Hz through a real writer, the server
    SIGKILLed and kept down, then restarted; prints the catch-up figures."""
    figures = run_outage(tmp_path, own_server, "sigkill", down_s, tags=SOAK_TAGS)
    print("forward outage figures:", figures)
    assert figures["catch_up_rate_x_live"] >= 1.0, "catching up at all while live recording goes on"


def run_outage(
    tmp_path: Path, own_server: CentralDatabase, outage: str, down_s: float, tags: int = TAGS
) -> dict[str, float]:
    """Returns the figures: live rate, peak backlog, catch-up time and rate."""
    server = own_server.server
    registry = make_registry(tags)
    bus = TagBus(registry)
    path = tmp_path / "h.sqlite"
    writer = make_forwarding_writer(path, own_server, registry, bus)
    backlog: list[float] = []  # every published value of the backlog tag
    backlog_id = bus.registry.id_of(TAG_BACKLOG)
    bus.subscribe(lambda batch: backlog.extend(batch.values[batch.tag_ids == backlog_id].tolist()))
    forwarder = writer.forwarder
    assert forwarder is not None
    feeder = Feeder(bus, tags)
    live_started = time.monotonic()
    try:
        assert wait_for(lambda: forwarder.stats.samples_sent >= 5 * tags)
        if outage == "sigkill":
            kill_server(server)
        else:
            set_reject(server, True)
        assert wait_for(lambda: not forwarder.stats.connected, 10)
        time.sleep(down_s)  # the outage itself, with live recording going on
        assert forwarder.stats.backlog_rows >= tags * HZ, "the backlog grew while the server was away"
        if outage == "sigkill":
            restart_server(server)
        else:
            set_reject(server, False)
        started = time.monotonic()
        sent_before = forwarder.stats.samples_sent
        # Caught up: less than a second of live data behind.
        assert wait_for(lambda: forwarder.stats.connected and forwarder.stats.backlog_rows < HZ * tags, 20 + down_s)
        catch_up_s = time.monotonic() - started
        sent = forwarder.stats.samples_sent - sent_before
        live_rate = feeder.published / (time.monotonic() - live_started)
        print(f"caught up after a {down_s:.0f} s outage in {catch_up_s:.1f} s")
    finally:
        feeder.close()
        assert writer.flush()
        caught_up = forwarder.wait_caught_up(20)
        writer.close()
    assert caught_up
    assert_same_samples(own_server, path)
    assert forwarder.stats.merged_batches == 0, "no batch was applied twice"
    with own_server.connect() as conn, sqlite3.connect(path) as local:
        cursor = conn.execute("SELECT position FROM forward_cursors WHERE stream = 'samples'").fetchone()[0]
        top = local.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
    assert cursor == top, "every outbox chunk applied, the last one last"
    assert max(backlog) >= tags * HZ * down_s * 0.5
    assert forwarder.stats.backlog_rows == 0
    assert backlog[-1] == 0, "the backlog tag came back to 0"
    return {
        "tags": tags,
        "down_s": down_s,
        "live_samples_per_s": round(live_rate),
        "peak_backlog_rows": max(backlog),
        "catch_up_s": round(catch_up_s, 1),
        "forwarded_while_catching_up_per_s": round(sent / catch_up_s),
        "catch_up_rate_x_live": round(sent / catch_up_s / live_rate, 1),
    }


def assert_same_samples(db: CentralDatabase, path: Path) -> int:
    """central_samples(db) == local_samples(path), streamed side by side (at the soak's
    scale both lists would not fit in memory); returns the rows compared."""
    import itertools

    local_sql = (
        "SELECT t.name, s.ts, s.value, s.quality FROM samples s JOIN tags t ON t.id = s.tag_id ORDER BY t.name, s.ts"
    )
    central_sql = (
        "SELECT t.name, s.ts, s.value, s.quality FROM samples s JOIN tags t ON t.id = s.tag_id "
        "JOIN stations st ON st.id = t.station_id WHERE st.name = 'ws1' ORDER BY t.name COLLATE \"C\", s.ts"
    )
    n = 0
    with sqlite3.connect(path) as local, db.connect(autocommit=False) as conn, conn.cursor(name="compare") as central:
        central.itersize = 50_000
        central.execute(central_sql)
        for n, (mine, theirs) in enumerate(itertools.zip_longest(local.execute(local_sql), central), 1):
            assert mine is not None and theirs is not None, f"row {n}: local {mine}, central {theirs}"
            assert tuple(mine) == tuple(theirs), f"row {n}: local {mine}, central {theirs}"
    return n


def central_count(db: CentralDatabase) -> int:
    import psycopg

    try:
        with db.connect() as conn:
            return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])
    except psycopg.errors.UndefinedTable:  # the child has not created the schema yet
        return 0


CHILD = """
import sys, time, numpy as np
from hmi.config.models import ForwardConfig
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagRegistry, TagSpec
from hmi.historian import HistorianWriter
url, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
registry = TagRegistry([TagSpec(f"m.t{i}") for i in range(%(tags)d)])
config = ForwardConfig(url=url, password_ref="%(ref)s", station="ws1", batch_rows=2000)
writer = HistorianWriter(path, registry, commit_interval_s=0.05, forward=config)
writer.start()
ids = np.arange(%(tags)d, dtype=np.int32)
end = time.monotonic() + seconds
while time.monotonic() < end:
    writer.submit(SampleBatch.from_arrays(ids, now_ns(), ids * 1.0, 0))
    time.sleep(0.01)
writer.flush()
print("caught up", writer.forwarder.wait_caught_up(30), flush=True)
writer.close()
"""


def test_a_forwarding_process_killed_mid_batch_resumes_exactly_once(
    tmp_path: Path, own_server: CentralDatabase
) -> None:
    """SIGKILL the recording process while it forwards (small batches, so one is nearly
    always open), start it again: the rows of the batch it was in arrive once."""
    path = tmp_path / "h.sqlite"
    script = CHILD % {"tags": TAGS, "ref": PASSWORD_REF}
    child = subprocess.Popen([sys.executable, "-c", script, own_server.url, str(path), "60"], env=os.environ.copy())
    try:
        assert wait_for(lambda: central_count(own_server) > 20 * TAGS, 30)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    done = subprocess.run(
        [sys.executable, "-c", script, own_server.url, str(path), "1"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "caught up True" in done.stdout, done.stderr[-2000:]
    central = central_samples(own_server)
    assert central == local_samples(path)
    assert len(central) > 20 * TAGS
