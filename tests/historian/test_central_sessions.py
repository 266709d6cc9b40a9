"""Sessions forwarded: a playback of the central database alone finds the project each
station ran (machines, trend groups), as it does from the station's own file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hmi.cli import main
from hmi.config import load_project
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian.reader import with_password_ref
from hmi.sources.replay import project_of_recording
from tests.helpers import demo_project_text
from tests.pg import CentralDatabase

pytestmark = pytest.mark.postgres

NS = 1_000_000_000
DEMO_MACHINES = ["cnc01", "robot01", "conveyor01", "cmm01", "pump01"]
FAST = {"retry_initial_s": 0.05, "retry_max_s": 0.5, "status_interval_s": 0.1, "poll_s": 0.05}


def demo_project_forwarding(tmp_path: Path, db: CentralDatabase, station: str) -> Path:
    """The demo project recording into its own file in tmp_path and forwarding to `db`."""
    folder = tmp_path / station
    folder.mkdir(exist_ok=True)
    text = demo_project_text(48400).replace("sqlite:///{data}/demo.sqlite", f"sqlite:///{folder / 'plant.sqlite'}")
    text += f'\n[historian.forward]\nurl = "{db.url}"\npassword_ref = "{db.password_ref}"\nstation = "{station}"\n'
    path = folder / "plant.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_demo_station(
    project_path: Path, seconds: int = 60, as_station: str | None = None
) -> tuple[int, int, dict[str, int]]:
    """A runtime's writer (HistorianWriter.from_project) records `seconds` of every demo tag
    at 1 Hz and forwards until caught up. Returns (first sample ns, last, forward stats).
    `as_station`: the same project file run as another station, into a file of its own."""
    project = load_project(project_path)
    if as_station is not None:
        forward = project.historian.forward
        assert forward is not None
        historian = project.historian.model_copy(
            update={
                "url": f"sqlite:///{project_path.parent / as_station}.sqlite",
                "forward": forward.model_copy(update={"station": as_station}),
            }
        )
        project = project.model_copy(update={"historian": historian})
    registry = TagRegistry(project.tag_specs())
    writer = HistorianWriter.from_project(project, registry, commit_interval_s=0.05, forward_kwargs=FAST)
    writer.start()
    first = (writer.started_ns // NS + 2) * NS
    ts = first + np.arange(seconds) * NS
    n = len(registry)
    values = np.tile(np.sin(np.arange(seconds) / 9), n)
    writer.submit(SampleBatch.from_arrays(np.repeat(np.arange(n), seconds), np.tile(ts, n), values, 0))
    forwarder = writer.forwarder
    assert forwarder is not None
    try:
        assert writer.flush() and forwarder.wait_caught_up(30)
    finally:
        writer.close()
    stats = {"sessions": forwarder.stats.sessions_sent, "merged": forwarder.stats.merged_batches}
    return first, int(ts[-1]), stats


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).isoformat()


def central_rows(db: CentralDatabase, sql: str) -> list[tuple[object, ...]]:
    with db.connect() as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]


def test_a_playback_of_the_central_database_alone_finds_the_project_the_station_ran(
    tmp_path: Path, central_db: CentralDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo project's runtime writer forwards to PostgreSQL; then `hmi replay --db
    postgresql://…?station=ws1 --password-ref … --from … --to …` and the playback window's
    project lookup, on the central database alone, find its machines and trend groups."""
    project_path = demo_project_forwarding(tmp_path, central_db, "ws1")
    first, last, stats = run_demo_station(project_path)
    assert stats == {"sessions": 1, "merged": 0}
    (tmp_path / "ws1" / "plant.sqlite").unlink()  # the central database alone from here

    target = with_password_ref(central_db.url.replace("+psycopg", "") + "?station=ws1", central_db.password_ref)
    with HistorianReader(target) as reader:
        recorded = project_of_recording(reader, first - 60 * NS, last + 60 * NS, "Europe/Berlin", "central")
    project = recorded.project
    assert "as the runtime ran it" in recorded.origin
    assert project.project.name == "Demo plant"
    assert list(project.machines) == DEMO_MACHINES
    assert [t.name for t in project.trends] == [t.name for t in load_project(project_path).trends]

    db = central_db.url.replace("postgresql+psycopg://", "postgresql://") + "?station=ws1"
    code = main(["replay", "--db", db, "--password-ref", central_db.password_ref, "--from", iso(first),
                 "--to", iso(last + NS), "--headless", "--speed", "max"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    counts = dict(line.split() for line in out.splitlines()[1:])
    assert counts["cnc01.spindle_speed"] == "60"
    assert central_db.server.password not in out


def test_each_session_arrives_once_and_a_project_file_is_stored_once_for_every_station(
    tmp_path: Path, central_db: CentralDatabase
) -> None:
    """Two starts of ws1 and one of ws2 from the same project file: three sessions, each
    once, with their models; one project file (its key is the hash of its bytes)."""
    ws1 = demo_project_forwarding(tmp_path, central_db, "ws1")
    run_demo_station(ws1, seconds=5)
    _, _, again = run_demo_station(ws1, seconds=5)
    assert again["sessions"] == 1, "the first session was not sent again"
    run_demo_station(ws1, seconds=5, as_station="ws2")
    sessions = central_rows(
        central_db,
        "SELECT st.name, count(*), count(DISTINCT s.project_sha256) FROM sessions s "
        "JOIN stations st ON st.id = s.station_id GROUP BY st.name ORDER BY st.name",
    )
    assert sessions == [("ws1", 2, 1), ("ws2", 1, 1)]
    assert central_rows(central_db, "SELECT count(*) FROM project_files") == [(1,)]
    models = central_rows(
        central_db,
        "SELECT station_id, session_id, count(*) FROM session_models GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert [row[2] for row in models] == [len(DEMO_MACHINES)] * 3
    cursors = central_rows(
        central_db,
        "SELECT st.name, c.position FROM forward_cursors c JOIN stations st ON st.id = c.station_id "
        "WHERE c.stream = 'sessions' ORDER BY 1",
    )
    assert cursors == [("ws1", 2), ("ws2", 1)]


def test_sessions_false_forwards_no_session(tmp_path: Path, central_db: CentralDatabase) -> None:
    path = demo_project_forwarding(tmp_path, central_db, "ws1")
    path.write_text(path.read_text(encoding="utf-8") + "sessions = false\n", encoding="utf-8")
    run_demo_station(path, seconds=3)
    assert central_rows(central_db, "SELECT count(*) FROM tags")[0][0] > 0, "the rest was forwarded"
    assert central_rows(central_db, "SELECT count(*) FROM sessions") == [(0,)]
