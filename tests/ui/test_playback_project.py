"""Playback that needs no manual: `hmi replay --db FILE --shift S` alone shows the project the
runtime ran (machines, 3D models, trend groups), starts at the first recorded data, and a
missing model is named instead of breaking anything."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from hmi.config import load_project
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian.reader import TimeRange, resolve_range
from hmi.historian.shifts import format_ns, zone
from hmi.sources.replay import ReplayState
from hmi.ui.replay_window import PlaybackSession
from tests.helpers import REPO, demo_project_text
from tests.historian.legacy import v1_file
from tests.ui.conftest import dispose_widget

NS = 1_000_000_000
DEMO_MACHINES = ["cnc01", "robot01", "conveyor01", "cmm01", "pump01"]


def record_demo_session(tmp_path: Path, project_text: str | None = None, seconds: int = 120) -> tuple[Path, int, int]:
    """A real writer of the demo project (the runtime's: HistorianWriter.from_project) records
    its session, then `seconds` of every demo tag at 1 Hz from just after its start. Returns
    the file, the first sample's time and the writer's start."""
    db = tmp_path / "plant.sqlite"
    text = project_text or demo_project_text(48400)
    path = tmp_path / "plant.toml"
    path.write_text(text.replace("sqlite:///{data}/demo.sqlite", f"sqlite:///{db}"), encoding="utf-8")
    project = load_project(path)
    registry = TagRegistry(project.tag_specs())
    writer = HistorianWriter.from_project(project, registry, commit_interval_s=0.05)
    writer.start()
    first = (writer.started_ns // NS + 2) * NS
    ts = first + np.arange(seconds) * NS
    n = len(registry)
    writer.submit(
        SampleBatch.from_arrays(
            np.repeat(np.arange(n), seconds), np.tile(ts, n), np.tile(np.sin(np.arange(seconds) / 9), n), 0
        )
    )
    writer.close()
    return db, first, writer.started_ns


@pytest.fixture
def sessions() -> Iterator[list[PlaybackSession]]:
    made: list[PlaybackSession] = []
    yield made
    for session in made:
        session.close()
        dispose_widget(session.window)


def open_session(made: list[PlaybackSession], db: Path, time_range: TimeRange, speed: float = 1.0) -> PlaybackSession:
    session = PlaybackSession(str(db), time_range, None, speed=speed)
    made.append(session)
    session.window.resize(1600, 1000)
    session.window.show()
    session.start()
    return session


def test_a_shift_opened_with_db_and_shift_alone_shows_the_machines_and_trends_and_starts_at_the_first_data(
    qtbot: QtBot, tmp_path: Path, sessions: list[PlaybackSession]
) -> None:
    """The figure of issue #18: what `hmi replay --db F --shift S` opens, for a shift whose
    data begins after its start, is the recorded project at its first sample."""
    db, first, _ = record_demo_session(tmp_path)
    with HistorianReader(db) as reader:
        shift = reader.calendar().at(first)  # type: ignore[union-attr]
        time_range = resolve_range(reader, shift=shift.label)  # what --shift DATE/NAME resolves to
    assert shift is not None and time_range.start_ns <= first
    session = open_session(sessions, db, time_range)
    window = session.window
    assert window.project.project.name == "Demo plant"
    assert list(window.project.machines) == DEMO_MACHINES
    assert window.scene is not None and window.scene.machines() == DEMO_MACHINES
    assert [t.name for t in window.project.trends] == [t.name for t in load_project(tmp_path / "plant.toml").trends]
    assert "as the runtime ran it" in session.bar.project_label.text()
    qtbot.waitUntil(lambda: session.source.state == ReplayState.PLAYING, timeout=10_000)
    assert session.source.first_ns == first
    # It starts at the first sample, not at the shift's start (at 1x, a second or two in).
    assert first - NS <= session.source.position_ns < first + 5 * NS
    # The bar shows the source's position at its next poll (POLL_MS), not at once.
    shown = format_ns(first, zone(time_range.timezone))[:16]
    qtbot.waitUntil(lambda: session.bar.time_label.text().startswith(shown), timeout=5000)
    # The timeline shows the two minutes of data, not the eight hours of the shift.
    timeline = session.bar.timeline
    qtbot.waitUntil(lambda: timeline.view_end_ns - timeline.view_start_ns < 10 * 60 * NS, timeout=3_000)
    assert timeline.view_start_ns <= first and timeline.view_end_ns >= min(first + 119 * NS, time_range.end_ns - 1)
    qtbot.waitUntil(lambda: window.scene.status("cnc01")[0] == "ready", timeout=30_000)  # type: ignore[union-attr]
    pen = window.trend.pens[0]
    qtbot.waitUntil(lambda: window.trend.curve_data(pen.tag_id)[0].size > 0, timeout=5_000)


def test_a_missing_model_shows_the_machine_without_it_and_says_why(
    qtbot: QtBot, tmp_path: Path, sessions: list[PlaybackSession]
) -> None:
    """The recorded model file is gone: the machine is there without a model, the playback
    bar names the file and its recorded hash, and every other machine loads."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(REPO / "models_glb" / "pump.glb", models / "pump.glb")
    text = demo_project_text(48400).replace('model = "../models_glb/pump.glb"', 'model = "models/pump.glb"')
    db, first, _ = record_demo_session(tmp_path, text)
    (models / "pump.glb").unlink()
    session = open_session(sessions, db, TimeRange(first - 3600 * NS, first + 3600 * NS, "two hours", "Europe/Berlin"))
    scene = session.window.scene
    assert scene is not None and scene.machines() == DEMO_MACHINES
    text_shown = session.bar.project_label.text()
    assert "Cooling water pump 1: 3D model pump.glb not found" in text_shown
    assert str(models / "pump.glb") in text_shown and "SHA-256" in text_shown
    session.window.show_machine("pump01")
    qtbot.waitUntil(lambda: scene.status("pump01")[0] == "failed", timeout=30_000)
    assert "pump.glb" in scene.status("pump01")[1]
    qtbot.waitUntil(lambda: scene.status("cnc01")[0] == "ready", timeout=30_000)
    qtbot.waitUntil(lambda: session.source.state == ReplayState.PLAYING, timeout=10_000)


def test_an_old_file_without_a_session_opens_the_generic_view_and_says_so(
    qtbot: QtBot, tmp_path: Path, sessions: list[PlaybackSession]
) -> None:
    """A recording from before sessions were recorded still plays, and the bar tells how to
    see the machines."""
    db = tmp_path / "old.sqlite"
    v1_file(db)
    t0 = 1_790_000_000_000_000_000
    tz = zone("Europe/Berlin")
    session = open_session(sessions, db, TimeRange(t0 - 3600 * NS, t0 + 3600 * NS, "two hours", str(tz)))
    assert session.window.project.machines == {}
    assert "give --project FILE" in session.bar.project_label.text()
    qtbot.waitUntil(lambda: session.source.state == ReplayState.PLAYING, timeout=10_000)
    assert session.source.first_ns == t0
