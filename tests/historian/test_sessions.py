"""The session record (schema version 2): each runtime start records the project it ran, so
playback finds the machines, models and trends by itself; older files still open."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from hmi.config import load_project
from hmi.core.tags import TagRegistry
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian import schema as s
from hmi.historian.sessions import REDACTED, ProjectRecord, redact
from tests.helpers import demo_project_text
from tests.historian.legacy import v1_file

T0 = 1_790_000_000_000_000_000
NS = 1_000_000_000


def write_project(directory: Path, db: Path, extra: str = "") -> Path:
    """The demo project recording into `db` (its models resolve to the installation's)."""
    text = demo_project_text(48400).replace("sqlite:///{data}/demo.sqlite", f"sqlite:///{db}") + extra
    path = directory / "plant.toml"
    path.write_text(text, encoding="utf-8")
    return path


def start_and_close(project_path: Path) -> HistorianWriter:
    project = load_project(project_path)
    writer = HistorianWriter.from_project(project, TagRegistry(project.tag_specs()), commit_interval_s=0.05)
    writer.start()
    writer.close()
    return writer


def test_a_runtime_start_records_its_project_file_and_model_hashes(tmp_path: Path) -> None:
    """The file's text, path and hash, and every machine's GLB path, hash and size, are in
    the historian once the writer has started."""
    db = tmp_path / "h.sqlite"
    path = write_project(tmp_path, db)
    writer = start_and_close(path)
    with HistorianReader(db) as reader:
        session = reader.session_at(writer.started_ns + 1)
    assert session is not None
    record = session.project
    assert record.path == str(path.resolve())
    assert record.text == path.read_text(encoding="utf-8")
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.name == "Demo plant" and record.redacted == 0
    assert [m.machine for m in record.models] == sorted(["cnc01", "robot01", "conveyor01", "cmm01", "pump01"])
    for model in record.models:
        glb = Path(model.path)
        assert model.sha256 == hashlib.sha256(glb.read_bytes()).hexdigest()
        assert model.size == glb.stat().st_size


def test_restarts_add_a_session_each_but_store_the_project_text_once(tmp_path: Path) -> None:
    """A runtime restarting in a loop must not fill the file with copies of its project."""
    db = tmp_path / "h.sqlite"
    path = write_project(tmp_path, db)
    first, second = start_and_close(path), start_and_close(path)
    engine, _ = s.open_engine(str(db), create=False)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.sessions)).scalar() == 2
        assert conn.execute(sa.select(sa.func.count()).select_from(s.project_files)).scalar() == 1
    engine.dispose()
    with HistorianReader(db) as reader:
        at_second = reader.session_at(second.started_ns)
        between = reader.session_at(second.started_ns - 1)
        assert reader.session_at(first.started_ns - 1) is None
    assert at_second is not None and at_second.started_ns == second.started_ns
    assert between is not None and between.started_ns == first.started_ns


def test_a_session_that_started_inside_the_range_is_found(tmp_path: Path) -> None:
    """Data that begins two hours into a shift: no session runs at the shift's start, the one
    started within the shift is the recording's."""
    db = tmp_path / "h.sqlite"
    writer = start_and_close(write_project(tmp_path, db))
    with HistorianReader(db) as reader:
        assert reader.session_at(writer.started_ns - 2 * 3600 * NS) is None
        found = reader.session_at(writer.started_ns - 2 * 3600 * NS, until_ns=writer.started_ns + 6 * 3600 * NS)
    assert found is not None and found.started_ns == writer.started_ns


def test_a_version_1_file_opens_reads_and_takes_sessions_after_migrating(tmp_path: Path) -> None:
    """A file written by the schema-version-1 writer reads as before (no session), and a
    runtime recording into it migrates it to the current version and records its session."""
    db = tmp_path / "old.sqlite"
    v1_file(db)
    with HistorianReader(db) as reader:
        assert reader.read("cnc01.axis_x", T0, T0 + 60 * NS).values.tolist() == list(np.arange(60.0) + 1)
        assert [e.message for e in reader.events(T0, T0 + 60 * NS)] == ["Spindle fast"]
        assert reader.calendar() is not None
        assert reader.session_at(T0 + 60 * NS) is None
        assert reader.data_extent(T0 - 3600 * NS, T0 + 3600 * NS) == (T0, T0 + 59 * NS)
    writer = start_and_close(write_project(tmp_path, db))
    engine, _ = s.open_engine(str(db), create=False)
    with engine.connect() as conn:
        assert s.schema_version(conn) == s.SCHEMA_VERSION
    engine.dispose()
    with HistorianReader(db) as reader:
        session = reader.session_at(writer.started_ns)
        assert session is not None and session.project.name == "Demo plant"
        assert reader.read("cnc01.axis_x", T0, T0 + 60 * NS).values.tolist() == list(np.arange(60.0) + 1)


def test_a_password_written_into_a_url_is_not_recorded(tmp_path: Path) -> None:
    """Project files name passwords by reference; one typed into a URL anyway never reaches
    the historian (the recorded hash still names the file on disk)."""
    db = tmp_path / "h.sqlite"
    path = write_project(tmp_path, db, '\n[machines.extra]\ndescription = "docs at https://ops:Hunter2pw@wiki/x"\n')
    record = ProjectRecord.of(load_project(path))
    assert record.text is not None and "Hunter2pw" not in record.text
    assert f"https://ops:{REDACTED}@wiki/x" in record.text
    assert record.redacted == 1
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@given(
    user=st.text("abcxyz019_.-", min_size=1, max_size=8),
    secret=st.text(st.characters(blacklist_characters=" \t\n\r@/\"'", blacklist_categories=("Cs",)), min_size=1),
    scheme=st.sampled_from(["postgresql", "mqtts", "opc.tcp", "https"]),
)
def test_redaction_removes_every_url_password_and_keeps_the_rest(user: str, secret: str, scheme: str) -> None:
    """Whatever the password, it is gone from the recorded text, and nothing else changes."""
    text = f'url = "{scheme}://{user}:{secret}@host:5432/db"\n'
    redacted, count = redact(text)
    assert count == 1
    assert redacted == f'url = "{scheme}://{user}:{REDACTED}@host:5432/db"\n'


def test_text_without_url_passwords_is_recorded_unchanged() -> None:
    """Plain URLs, ports and references stay as written."""
    text = 'endpoint = "opc.tcp://127.0.0.1:48400/hmi-demo"\nuser = "op"\npassword_ref = "plant"\n'
    assert redact(text) == (text, 0)
