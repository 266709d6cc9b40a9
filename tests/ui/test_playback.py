"""The playback window: PLAYBACK banner with the replayed time, a trend that moves, seeking
from the timeline, alarm markers, and opening without freezing the window."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt, QTimer

from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec
from hmi.historian import HistorianWriter
from hmi.historian import reader as reader_module
from hmi.historian.reader import TimeRange
from hmi.sources.replay import ReplayState
from hmi.ui.replay_window import PlaybackSession
from tests.ui.conftest import dispose_widget

NS = 1_000_000_000
T0 = 1_790_000_000_000_000_000  # 2026-09-21T14:13:20Z
MINUTES = 10


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "rec.sqlite"
    specs = [TagSpec("cnc01.spindle_speed", "rpm"), TagSpec("cnc01.tool_temperature", "°C"), TagSpec("cnc01.axis_x")]
    writer = HistorianWriter(str(path), TagRegistry(specs), timezone="Europe/Berlin")
    writer.start()
    ts = T0 + np.arange(MINUTES * 60) * NS
    for tag in range(3):
        writer.submit(SampleBatch.from_arrays(np.full(ts.shape, tag), ts, np.sin(np.arange(ts.shape[0]) / 30) + tag, 0))
    writer.submit_events(
        [Event(EventCategory.ALARM, "cnc01.tool_temperature.hi", "Tool hot", Severity.WARNING, T0 + 120 * NS)]
    )
    writer.close()
    return path


def session_for(path: Path, speed: float = 50.0) -> PlaybackSession:
    time_range = TimeRange(T0, T0 + MINUTES * 60 * NS, "2026-09-21 16:13:20 CEST to 16:23:20 CEST", "Europe/Berlin")
    return PlaybackSession(str(path), time_range, None, speed=speed)


def test_playback_window_shows_the_banner_and_the_trend_moves(qtbot, recording: Path) -> None:  # type: ignore[no-untyped-def]
    """The window says PLAYBACK with the replayed time, the trend advances with the replay,
    and a click on the timeline jumps there (trend included)."""
    session = session_for(recording)
    window = session.window
    window.show()
    session.start()
    try:
        bar = session.bar
        assert bar.banner.isVisible() and bar.banner.text() == "PLAYBACK"
        assert window.windowTitle().startswith("PLAYBACK")
        qtbot.waitUntil(lambda: session.source.state == ReplayState.PLAYING, timeout=5000)
        assert "PLAYBACK" in window.banner.text()
        pen = window.trend.pens[0]
        qtbot.waitUntil(lambda: window.trend.curve_data(pen.tag_id)[0].size > 10, timeout=5000)
        first_end = window.trend.curve_data(pen.tag_id)[0].max()
        qtbot.waitUntil(lambda: window.trend.curve_data(pen.tag_id)[0].max() > first_end + 20, timeout=5000)
        qtbot.waitUntil(lambda: bar.time_label.text().startswith("2026-09-21 16:1"), timeout=2000)
        assert bar.time_label.text().endswith("CEST")
        assert [m.category for m in bar.timeline.markers] == [EventCategory.ALARM]

        bar.play_button.click()  # pause
        qtbot.waitUntil(lambda: session.source.state == ReplayState.PAUSED, timeout=2000)
        timeline = bar.timeline
        x = int(timeline.x_of(T0 + 8 * 60 * NS))
        qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPoint(x, timeline.height() // 2))
        target = T0 + 8 * 60 * NS
        qtbot.waitUntil(lambda: abs(session.source.position_ns - target) < 5 * NS, timeout=3000)
        qtbot.waitUntil(
            lambda: abs(window.trend.curve_data(pen.tag_id)[0].max() - session.source.position_ns / 1e9) < 2,
            timeout=3000,
        )
        x_data, _ = window.trend.curve_data(pen.tag_id)
        assert x_data.min() >= session.source.position_ns / 1e9 - 300 - 1, "only the trend's span before the jump"
    finally:
        session.close()
        dispose_widget(session.window)


def test_opening_a_slow_recording_shows_progress_and_never_blocks(
    qtbot,
    recording: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """While a (slow) recording opens, the UI keeps its timers running and shows progress."""
    real_events = reader_module.HistorianReader.events

    def slow_events(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(1.5)  # a slow disk, or a huge events table
        return real_events(self, *args, **kwargs)

    monkeypatch.setattr(reader_module.HistorianReader, "events", slow_events)
    session = session_for(recording)
    session.window.show()
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    session.start()
    try:
        qtbot.waitUntil(lambda: session.bar.progress.isVisible() and session.bar.progress.value() > 0, timeout=2000)
        assert not session.bar.play_button.isEnabled()
        qtbot.waitUntil(lambda: session.source.state == ReplayState.PLAYING, timeout=10000)
        timer.stop()
        gaps = np.diff(ticks)
        assert ticks and gaps.max() < 0.5, f"the UI stalled for {gaps.max():.2f} s while opening"
        qtbot.waitUntil(lambda: not session.bar.progress.isVisible(), timeout=2000)
        assert session.bar.play_button.isEnabled()
    finally:
        session.close()
        dispose_widget(session.window)
