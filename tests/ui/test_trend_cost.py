"""What a live trend costs: it repaints when there is something new to show (a new sample, or
time enough passed to move the view a pixel), not on every tick of its 30 fps timer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QMimeData, QObject, QPointF, Qt
from PySide6.QtGui import QDropEvent

from hmi.config import load_project
from hmi.core.quality import Quality
from hmi.core.ringbuffer import TrendBuffers
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagSpec
from hmi.ipc.mirror import BusMirror
from hmi.paths import data_dir
from hmi.ui.mime import TAGS_MIME
from hmi.ui.trend import SCROLL_EVERY_S, TrendView
from hmi.ui.trend_groups import TrendGroupStore, os_user
from tests.helpers import DEMO_PROJECT

NOW = 1_800_000_000.0
TICK_S = 1 / 30


class PaintCounter(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.paints = 0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(buffers: TrendBuffers, t: float, value: float, quality: Quality = Quality.GOOD) -> None:
    buffers.append_batch(SampleBatch.from_arrays([0], [int(t * 1e9)], [value], [quality]))


@pytest.fixture
def trend(qtbot):
    clock = Clock(NOW)
    buffers = TrendBuffers(10_000)
    widget = TrendView(buffers, [(0, TagSpec("m.speed", "rpm", low=0, high=10))], span_s=300, clock=clock)
    widget.resize(800, 400)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    for i in range(50):
        sample(buffers, NOW - 5 + 0.1 * i, 5.0)
    widget.refresh()
    settle(qtbot)
    settle_layout(qtbot, widget)
    # At the start of a scroll step, with the layout settled.
    clock.now = widget.visible_range()[1] + 0.02 * pixel_s(widget)
    widget.refresh()
    settle(qtbot)
    counter = PaintCounter()
    widget.plot_widget.viewport().installEventFilter(counter)
    return widget, clock, counter


def settle(qtbot) -> None:
    qtbot.wait(50)  # lets Qt deliver the paint events a change scheduled


def settle_layout(qtbot, view: TrendView) -> None:
    """The first frames may be drawn before the plot has its final width (later on a loaded
    machine): wait until the width holds, so "a pixel of time" stays what it was."""
    width = -1.0
    while view.plot.vb.width() != width:
        width = view.plot.vb.width()
        view.refresh()
        settle(qtbot)


def pixel_s(view: TrendView) -> float:
    return view.span_s / view.plot.vb.width()


def test_an_idle_trend_does_not_repaint_until_the_view_moves_a_step(qtbot, trend) -> None:
    """A live view moves in whole pixels about once a second (SCADA trends update once a
    second): each move repaints the whole plot and its axes, so not on every tick."""
    view, clock, counter = trend
    step_s, px = view.scroll_step_s(), view.span_s / int(view.plot.vb.width())  # whole pixels
    assert step_s >= SCROLL_EVERY_S and step_s / px == pytest.approx(round(step_s / px))
    assert step_s < SCROLL_EVERY_S + px
    ticks = 10
    for _ in range(ticks):
        clock.now += 0.9 * step_s / ticks  # ten ticks together move less than a step
        assert not view.refresh()
        settle(qtbot)
    assert counter.paints == 0
    x1 = view.visible_range()[1]
    clock.now += step_s
    assert view.refresh(), "a step's worth of time moves the view"
    assert view.visible_range()[1] == pytest.approx(x1 + step_s)
    settle(qtbot)
    assert counter.paints >= 1


def test_a_long_span_still_scrolls_a_pixel_at_a_time(qtbot, trend) -> None:
    view, _, _ = trend
    view.set_span(8 * 3600)  # a pixel is longer than a second
    assert view.scroll_step_s() == pytest.approx(view.span_s / int(view.plot.vb.width()))


def test_a_new_sample_repaints_at_once_and_once(qtbot, trend) -> None:
    view, clock, counter = trend
    clock.now += TICK_S
    t = clock.now - 0.01  # the server's timestamp, just before it arrived
    sample(view.buffers, t, 7.5)
    assert view.refresh()
    qtbot.waitUntil(lambda: counter.paints >= 1, timeout=2000)  # a loaded machine paints late
    settle(qtbot)
    assert counter.paints == 1
    x, y = view.curve_data(0)
    x0, x1 = view.visible_range()
    assert x[-1] == pytest.approx(t) and y[-1] == 7.5
    assert x0 <= t <= x1, "the newest sample is inside the view, not past its right edge"
    clock.now += TICK_S
    assert not view.refresh()
    settle(qtbot)
    assert counter.paints == 1


def test_every_sample_and_every_gap_is_drawn_between_scrolls(qtbot, trend) -> None:
    """Samples arriving faster than the view scrolls are all drawn, bad ones as gaps."""
    view, clock, _ = trend
    start = clock.now
    for i in range(6):
        clock.now = start + (i + 1) * 0.05
        sample(view.buffers, clock.now - 0.005, float(i), Quality.BAD if i == 3 else Quality.GOOD)
        view.refresh()
    x, y = view.curve_data(0)
    tail = y[-6:]
    assert list(tail[[0, 1, 2, 4, 5]]) == [0.0, 1.0, 2.0, 4.0, 5.0]
    assert np.isnan(tail[3])
    assert x[-1] <= view.visible_range()[1]


def test_only_the_trend_group_on_screen_is_built_and_a_drop_on_another_lands(qtbot, main_window_factory) -> None:
    """Eight groups, one plot built at start; a tag dropped on an unbuilt group's tab becomes
    its pen (saved), and the group is built, with its pens and alarm limits, when shown."""
    project = load_project(DEMO_PROJECT)
    window = main_window_factory(project, BusMirror(), scene=False)
    qtbot.waitExposed(window)
    views = window.trend_tabs.views()
    current = window.trend_tabs.currentIndex()
    assert len(views) == len(project.trends) == 8
    assert [v.built for v in views] == [i == current for i in range(len(views))]

    pump = next(i for i in range(len(views)) if window.trend_tabs.tabText(i) == "Pump")
    assert pump != current
    bar = window.trend_tabs.tabBar()
    mime = QMimeData()
    mime.setData(TAGS_MIME, json.dumps(["cnc01.spindle_speed"]).encode())
    bar.dropEvent(QDropEvent(QPointF(bar.tabRect(pump).center()), Qt.DropAction.CopyAction, mime,
                             Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))  # fmt: skip
    assert not views[pump].built, "a drop on a tab does not switch to it"
    assert views[pump].pen_names()[-1] == "cnc01.spindle_speed"
    saved = TrendGroupStore.for_user(data_dir(), project, os_user()).load().groups[pump]
    assert saved.pens[-1] == "cnc01.spindle_speed"

    registry = window.bus.registry
    speed = registry.id_of("cnc01.spindle_speed")
    window.bus.publish(SampleBatch.from_arrays([speed], now_ns(), [1234.0]))
    window.trend_tabs.setCurrentIndex(pump)
    assert views[pump].built
    assert [p.spec.name for p in views[pump].pens] == saved.pens
    vibration = next(p for p in views[pump].pens if p.spec.name == "pump01.vibration_rms")
    assert len(vibration.limit_lines) == 2, "its HI and HIHI limits"
    # The pen's buffer filled while the group was unbuilt: the sample shows at once.
    qtbot.waitUntil(lambda: 1234.0 in views[pump].curve_data(speed)[1], timeout=2_000)


def test_the_first_live_frame_is_logged_when_the_trend_draws_a_good_value(qtbot, main_window_factory, caplog) -> None:
    """The start-up figure ends when a GOOD plant value is drawn, not at the next 5 Hz table
    refresh; a value that is not GOOD does not end it."""
    window = main_window_factory(load_project(DEMO_PROJECT), BusMirror(), scene=False)
    qtbot.waitExposed(window)
    window.table_timer.stop()  # only the trend can draw the value now
    caplog.set_level("INFO", logger="hmi.ui.main_window")
    tag = window.bus.registry.id_of(window.trend.pen_names()[0])

    def logged() -> bool:
        return any("first live frame" in r.getMessage() for r in caplog.records)

    window.bus.publish(SampleBatch.from_arrays([tag], now_ns(), [1.0], [Quality.COMM_LOST]))
    qtbot.wait(300)
    assert not logged()
    window.bus.publish(SampleBatch.from_arrays([tag], now_ns(), [2.0]))
    qtbot.waitUntil(logged, timeout=1_000)
    assert 2.0 in window.trend.curve_data(tag)[1]


def test_reloading_the_groups_builds_only_the_one_on_screen(qtbot, main_window_factory) -> None:
    """Trends > Reset (and a user logging in) rebuilds the tabs: removing the old ones must
    not build each in turn on its way out, nor the new ones."""
    window = main_window_factory(load_project(DEMO_PROJECT), BusMirror(), scene=False)
    qtbot.waitExposed(window)
    old = window.trend_tabs.views()
    built_before = [v.built for v in old]
    window.reset_trends()
    assert [v.built for v in old] == built_before
    views = window.trend_tabs.views()
    assert [v.built for v in views] == [i == window.trend_tabs.currentIndex() for i in range(len(views))]


def test_a_pen_put_on_the_trend_draws_on_the_next_tick_without_new_samples(qtbot, trend) -> None:
    """An idle tick is told from a few numbers; a pen replaced (same count of pens) is among
    them, so the new pen does not wait for the next sample or scroll."""
    view, clock, _ = trend
    view.buffers.watch(1)
    view.buffers.append_batch(SampleBatch.from_arrays([1], [int((clock.now - 1.0) * 1e9)], [3.0]))
    view.refresh()  # tag 1 is not on the trend yet: its sample only changes the buffers
    clock.now += 0.1 * pixel_s(view)
    assert not view.refresh(), "nothing new: an idle tick"
    view.set_pens([(1, TagSpec("m.other", "bar"))])
    clock.now += 0.1 * pixel_s(view)
    assert view.refresh(), "the new pen draws at once"
    assert view.curve_data(1)[1][-1] == 3.0
