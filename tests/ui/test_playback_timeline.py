"""The playback timeline zooms and pans, shows alarm markers in their priority's colour (calm
grey for the rest), and a click on a marker seeks there; 3D motion follows the replay's clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from hmi.core.alarms.model import AlarmTransition, Cause, Mode, Priority
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec
from hmi.historian import HistorianWriter
from hmi.sources.replay import Marker, ReplaySource, ReplayState
from hmi.ui import theme
from hmi.ui.playback import MIN_VIEW_NS, PlaybackClock, Timeline

NS = 1_000_000_000
T0 = 1_790_000_000_000_000_000
HOUR = 3600 * NS


def transition(ts: int, priority: Priority, cause: Cause, active: bool) -> Event:
    return AlarmTransition(
        ts, "m.t0.hi", "m.t0", cause, "NORMAL", "UNACK", active, False, Mode.IN_SERVICE, priority, 90.0, "t0 high", 1, 1
    ).to_event()


@pytest.fixture
def timeline(qtbot: QtBot) -> Iterator[Timeline]:
    widget = Timeline("Europe/Berlin")
    widget.resize(1000, widget.sizeHint().height())
    widget.set_range(T0, T0 + 8 * HOUR)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    widget.close()


def wheel(widget: Timeline, x: float, notches: int) -> None:
    pos = QPointF(x, widget.height() / 2)
    event = QWheelEvent(
        pos,
        widget.mapToGlobal(pos),
        QPoint(),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def test_wheel_zooms_around_the_mouse_drag_pans_and_fit_shows_the_data(qtbot: QtBot, timeline: Timeline) -> None:
    """Ten minutes of an eight-hour shift get the whole track after Fit; the wheel keeps the
    time under the mouse in place; a drag moves the view by the dragged distance."""
    timeline.set_data_extent(T0 + 2 * HOUR, T0 + 2 * HOUR + 600 * NS)
    timeline.fit()
    assert timeline.view_start_ns <= T0 + 2 * HOUR and timeline.view_end_ns >= T0 + 2 * HOUR + 600 * NS
    assert timeline.view_end_ns - timeline.view_start_ns < 700 * NS
    x = 300.0
    under = timeline.ts_at(x)
    wheel(timeline, x, 2)
    span = timeline.view_end_ns - timeline.view_start_ns
    assert span < 0.65 * 640 * NS
    assert abs(timeline.ts_at(x) - under) < span / 500, "the time under the mouse stays under it"
    before = (timeline.view_start_ns, timeline.view_end_ns)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=QPoint(600, 20))
    qtbot.mouseMove(timeline, QPoint(400, 20))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=QPoint(400, 20))
    moved = timeline.view_start_ns - before[0]
    expected = 200 / timeline._track().width() * span
    assert moved == pytest.approx(expected, rel=0.02) and timeline.view_end_ns - timeline.view_start_ns == span
    for _ in range(40):
        wheel(timeline, x, 3)
    assert timeline.view_end_ns - timeline.view_start_ns == MIN_VIEW_NS
    for _ in range(40):
        wheel(timeline, x, -3)
    assert (timeline.view_start_ns, timeline.view_end_ns) == (T0, T0 + 8 * HOUR), "never beyond the range"


def test_a_pan_is_not_a_seek_and_a_click_is(qtbot: QtBot, timeline: Timeline) -> None:
    """Dragging the track pans without jumping; a click jumps to the time clicked."""
    seeks: list[int] = []
    timeline.seek_requested.connect(seeks.append)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=QPoint(600, 20))
    qtbot.mouseMove(timeline, QPoint(500, 20))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=QPoint(500, 20))
    assert seeks == []
    target = timeline.ts_at(700)
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPoint(700, 20))
    assert seeks == [target]


def test_markers_take_their_priority_colour_and_a_click_on_one_seeks_to_it(qtbot: QtBot, timeline: Timeline) -> None:
    """An alarm becoming active is drawn in its priority's colour; its return and other events
    are calm grey; a click a few pixels beside a marker lands exactly on its time."""
    events = [
        transition(T0 + 1 * HOUR, Priority.URGENT, Cause.ACTIVATED, True),
        transition(T0 + 2 * HOUR, Priority.URGENT, Cause.CLEARED, False),
        transition(T0 + 3 * HOUR, Priority.MEDIUM, Cause.ACTIVATED, True),
        Event(EventCategory.SYSTEM, "historian", "writing again", Severity.INFO, T0 + 4 * HOUR),
    ]
    markers = [Marker.of(e) for e in events]
    assert [m.priority for m in markers] == [4, None, 2, None]
    timeline.set_markers(markers)
    image = timeline.grab().toImage()
    y = int(timeline._track().center().y())

    def drawn_in(ts: int, colour: str) -> bool:
        """The pixel at the marker is `colour` (within the display's colour depth: Xvfb's 16 bits)."""
        drawn, wanted = QColor(image.pixel(round(timeline.x_of(ts)), y)), QColor(colour)
        return all(abs(a - b) <= 8 for a, b in zip(drawn.getRgb()[:3], wanted.getRgb()[:3], strict=True))

    assert drawn_in(T0 + 1 * HOUR, theme.ALARM_URGENT)
    assert drawn_in(T0 + 3 * HOUR, theme.ALARM_MEDIUM)
    assert drawn_in(T0 + 2 * HOUR, theme.TEXT_DIM)
    assert drawn_in(T0 + 4 * HOUR, theme.TEXT_DIM)
    seeks: list[int] = []
    timeline.seek_requested.connect(seeks.append)
    x = round(timeline.x_of(T0 + 3 * HOUR)) + 3
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPoint(x, 20))
    assert seeks == [T0 + 3 * HOUR]


@pytest.fixture
def paused_source(tmp_path: Path) -> Iterator[ReplaySource]:
    path = tmp_path / "r.sqlite"
    writer = HistorianWriter(str(path), TagRegistry([TagSpec("m.speed", "rpm")]))
    writer.start()
    ts = T0 + np.arange(600) * NS
    writer.submit(SampleBatch.from_arrays(np.zeros(600, np.int32), ts, np.full(600, 1200.0), 0))
    writer.close()
    source = ReplaySource(path, T0, T0 + 600 * NS, TagBus(), speed=50.0).start()
    assert source.wait_opened(10)
    yield source
    source.close()


def test_the_motion_clock_stands_still_when_paused_and_runs_at_the_replay_speed(
    qtbot: QtBot, paused_source: ReplaySource
) -> None:
    """Paused: the 3D view's clock does not move. Playing at 50x: 50 s per wall second. A wall
    gap (a hidden view) counts as at most half a second."""
    wall = [100.0]
    clock = PlaybackClock(paused_source, wall=lambda: wall[0])
    assert paused_source.state == ReplayState.PAUSED
    wall[0] += 0.2
    assert clock() == 0.0
    paused_source.play()
    qtbot.waitUntil(lambda: paused_source.state == ReplayState.PLAYING, timeout=2_000)
    for _ in range(10):
        wall[0] += 0.1
        clock()
    assert clock.now_s == pytest.approx(50.0)
    paused_source.set_speed(2.0)
    qtbot.waitUntil(lambda: paused_source.speed == 2.0, timeout=2_000)
    wall[0] += 60.0  # the view was hidden for a minute
    assert clock() == pytest.approx(51.0)
    paused_source.pause()
    qtbot.waitUntil(lambda: paused_source.state == ReplayState.PAUSED, timeout=2_000)
    wall[0] += 0.3
    assert clock() == pytest.approx(51.0)


def test_the_3d_view_turns_the_spindle_by_the_clock_it_is_given(qtbot: QtBot, tmp_path: Path) -> None:
    """With a playback clock the spindle stands still while the clock stands, and a clock step
    of 1.5 s (50x for one 30 fps frame) turns it by 1.5 s of its speed, not the live cap of 0.5 s."""
    from hmi.scene.animate import MAX_STEP_S
    from hmi.scene.probe import VerdictCache
    from hmi.scene.transforms import rotation_about
    from hmi.sources.replay import MAX_SPEED
    from hmi.ui.scene_view import SceneView
    from tests.ui.test_scene_view import BINDINGS, MODELS, TAGS, dispose, publish

    bus = TagBus()
    bus.register(TAGS)
    view = SceneView(bus, cache=VerdictCache(tmp_path / "verdicts.json"))
    now = [0.0]
    view.set_clock(lambda: now[0], max_step_s=MAX_STEP_S * MAX_SPEED)
    view.resize(400, 300)
    view.show()
    try:
        with qtbot.waitSignal(view.model_loaded, timeout=30_000):
            view.add_machine("cnc01", MODELS / "cnc_mill.glb", BINDINGS["cnc01"][1], label="cnc01")
        view._timer.stop()
        publish(bus, {"cnc01.spindle_speed": 10.0})  # rpm: 1/6 turn in a second, 60 degrees
        view._on_frame_timer()
        rest = view.node_matrix("cnc01", "Spindle")
        for _ in range(5):
            view._on_frame_timer()
        assert np.allclose(view.node_matrix("cnc01", "Spindle"), rest), "the clock stands: so does the spindle"
        now[0] += 1.5
        view._on_frame_timer()
        assert np.allclose(view.node_matrix("cnc01", "Spindle"), rest @ rotation_about("z", np.radians(90)), atol=1e-9)
    finally:
        dispose(view)
