"""What the window repaints: the tag table announces only rows whose value, quality or time
changed (and that are in view), a tile's value label is not touched while its text stays, the
status bar's texts change at most once a second, a new trend sample repaints the right edge of
the plot only. Counted on the demo project's main window, fed through its local bus, and on a
trend of its own."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import cast

from hypothesis import given
from hypothesis import strategies as st
from PySide6.QtCore import QEvent, QObject, QPoint, QRect
from PySide6.QtGui import QPaintEvent, QRegion
from PySide6.QtWidgets import QApplication, QTableView, QWidget

from hmi.core.alarms.model import AlarmState, AlarmStatus, Mode, Priority
from hmi.core.bus import TagBus
from hmi.core.ringbuffer import TrendBuffers
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec
from hmi.ui.alarm_panel import COL_MARK, COL_MESSAGE, COL_PRIORITY, COLUMNS, AlarmTableModel
from hmi.ui.item_models import row_runs
from hmi.ui.main_window import MainWindow
from hmi.ui.tag_table import COL_TIME, COL_VALUE, TagTableModel
from hmi.ui.trend import TrendView
from tests.ui.test_trend_cost import NOW, Clock, pixel_s, settle, settle_layout
from tests.ui.test_window_cost import open_demo, publish


class PaintCounter(QObject):
    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.paints = 0
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False


def test_the_tag_table_announces_only_the_rows_that_changed(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Unchanged values: no `dataChanged` at all; one new value: its row's value..time cells only."""
    bus = TagBus(TagRegistry([TagSpec(f"m.t{k}", "bar") for k in range(6)]))
    model = TagTableModel(bus)
    bus.publish(SampleBatch.from_arrays(list(range(6)), 1, [float(k) for k in range(6)]))
    model.refresh()
    changes: list[tuple[int, int, int, int]] = []
    model.dataChanged.connect(lambda a, b, _roles=(): changes.append((a.row(), b.row(), a.column(), b.column())))
    for _ in range(10):
        model.refresh()
    assert changes == [], "nothing changed, nothing is announced"
    bus.publish(SampleBatch.from_arrays([2, 3], 2, [20.0, float("nan")]))
    model.refresh()
    model.refresh()
    assert changes == [(2, 3, COL_VALUE, COL_TIME)]
    changes.clear()
    model.rows_in_view = lambda: [0, 1]  # a view showing the first two rows
    bus.publish(SampleBatch.from_arrays([1, 4], 3, [10.0, 40.0]))
    model.refresh()
    assert changes == [(1, 1, COL_VALUE, COL_TIME)], "a row out of view is not announced"
    model.rows_in_view = None  # scrolled: row 4 comes into view and is announced once
    model.refresh()
    model.refresh()
    assert changes[1:] == [(4, 4, COL_VALUE, COL_TIME)]


def test_the_table_in_the_window_tells_its_model_the_rows_on_screen(qtbot, main_window_factory) -> None:  # type: ignore[no-untyped-def]
    """The tag browser hands its model the rows on screen: a value updated off screen costs nothing."""
    window = open_demo(qtbot, main_window_factory)
    browser = window.tag_browser
    rows = list(browser.table_model.rows_in_view())  # type: ignore[misc]
    assert rows and len(rows) < len(window.bus.registry)
    assert browser.tag_at(0) == window.bus.registry.spec(rows[0]).name
    window.docks["tags"].hide()
    assert list(browser.table_model.rows_in_view()) == []  # type: ignore[misc]


def test_a_tile_with_unchanged_values_is_not_repainted(qtbot, main_window_factory) -> None:  # type: ignore[no-untyped-def]
    window = open_demo(qtbot, main_window_factory)
    tile = window.overview.tiles["cnc01"]
    publish(window, {"cnc01.spindle_speed": 1000.0})
    window.overview.refresh()
    qtbot.waitUntil(lambda: tile.values[0].value_label.text() == "1 000", timeout=3_000)
    counters = [PaintCounter(v.value_label) for v in tile.values]
    qtbot.wait(600)  # settled: the first paint, and a tick of the window's own 2 Hz tile timer
    for c in counters:
        c.paints = 0
    for _ in range(5):
        window.overview.refresh()
        QApplication.processEvents()
    qtbot.wait(600)  # and a tick of the window's own timer
    assert [c.paints for c in counters] == [0] * len(counters)
    publish(window, {"cnc01.spindle_speed": 1200.0})
    window.overview.refresh()
    qtbot.waitUntil(lambda: counters[0].paints > 0, timeout=1_000)
    assert tile.values[0].value_label.text() == "1 200"


def test_the_status_bar_texts_change_at_most_once_a_second(qtbot, main_window_factory) -> None:  # type: ignore[no-untyped-def]
    window: MainWindow = open_demo(qtbot, main_window_factory)
    texts: list[str] = []
    window.rate_label.setText("")
    qtbot.waitUntil(lambda: window.rate_label.text() != "", timeout=2_000)
    for k in range(10):  # a steady stream of samples over 10 ticks of the 5 Hz status timer
        for j in range(k + 1):  # a rate that differs from tick to tick
            publish(window, {"cnc01.spindle_speed": 1000.0 + k + j / 10})
        window._refresh_slow()
        texts.append(window.rate_label.text())
        qtbot.wait(200)
    changes = sum(1 for a, b in pairwise(texts) if a != b)
    assert changes <= 2, f"the samples/s text changed {changes} times in 2 s: {texts}"


class PaintedRegion(QObject):
    """The part of a widget each paint event repainted."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.rects: list[QRect] = []
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.rects.append(cast(QPaintEvent, event).region().boundingRect())
        return False


def test_a_new_sample_repaints_only_the_right_edge_of_the_trend(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Between moves of the view, a new sample repaints a strip at the right edge, not the whole
    plot (grid, axes, other pens); a move of the view repaints it whole; every sample is drawn."""
    clock = Clock(NOW)
    buffers = TrendBuffers(10_000)
    specs = [(0, TagSpec("m.speed", "rpm", low=0, high=10)), (1, TagSpec("m.load", "rpm", low=0, high=10))]
    view = TrendView(buffers, specs, span_s=300, clock=clock)
    view.resize(800, 400)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    for i in range(400):  # the whole span: a curve across the plot
        t = NOW - 400 + i
        buffers.append_batch(SampleBatch.from_arrays([0, 1], [int(t * 1e9)] * 2, [4.0 + (i % 3), 3.0]))
    settle_layout(qtbot, view)
    clock.now = view.visible_range()[1] + 0.02 * pixel_s(view)  # at the start of a pixel column
    view.refresh()
    settle(qtbot)
    painted = PaintedRegion(view.plot_widget.viewport())
    plot_width = view.plot.vb.width()
    for value in (5.0, 4.5, 5.5):  # within what the pen showed: no new y extent
        clock.now += 0.1 * pixel_s(view)
        buffers.append_batch(SampleBatch.from_arrays([0], [int(clock.now * 1e9)], [value]))
        assert view.refresh()
        settle(qtbot)
        assert view.curve_data(0)[1][-1] == value or value in view.curve_data(0)[1][-3:]
    assert painted.rects, "each new sample is painted"
    assert max(r.width() for r in painted.rects) < 0.05 * plot_width, [r.width() for r in painted.rects]
    painted.rects.clear()
    clock.now += view.scroll_step_s()  # a step's worth of time: the view moves
    view.refresh()
    settle(qtbot)
    assert max(r.width() for r in painted.rects) > 0.9 * plot_width


def alarm_status(name: str, acked: bool, value: float = 1.0, priority: Priority = Priority.HIGH) -> AlarmStatus:
    state = AlarmState.ACK_ACTIVE if acked else AlarmState.UNACK_ACTIVE
    return AlarmStatus(name, name.rsplit(".", 1)[0], "hi", priority, str(state), state, Mode.IN_SERVICE, True, acked,
                       f"{name} high", value, 1, 1, 1, 1)  # fmt: skip


class PaintRegions(QObject):
    """The rectangles a widget was asked to paint."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.regions: list[QRegion] = []
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.regions.append(QRegion(cast(QPaintEvent, event).region()))
        return False


def test_the_alarm_blink_repaints_the_blinking_cells_only(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Unacknowledged alarms blink their mark and priority cells twice a second: only those
    cells repaint, not the whole summary (a full repaint of every row was most of the window's
    CPU with the 3D view hidden); with every alarm acknowledged nothing blinks."""
    model = AlarmTableModel()
    statuses = [alarm_status(f"m{k}.t.hi", acked=k % 2 == 1) for k in range(6)]
    model.refresh(statuses)
    view = QTableView()
    view.setModel(model)
    view.resize(900, 300)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    changes: list[tuple[int, int, int, int]] = []
    model.dataChanged.connect(lambda a, b, _roles=(): changes.append((a.row(), b.row(), a.column(), b.column())))
    unacked_rows = [model.row_of(s.name) for s in statuses if not s.acked]
    settle(qtbot)
    regions = PaintRegions(view.viewport())
    model.toggle_blink()
    settle(qtbot)
    assert sorted(changes) == sorted((r, r, c, c) for r in unacked_rows for c in (COL_MARK, COL_PRIORITY))
    message = QPoint(view.columnViewportPosition(COL_MESSAGE) + 2, view.rowViewportPosition(unacked_rows[0]) + 2)
    assert regions.regions, "the blink repainted something"
    assert not any(r.contains(message) for r in regions.regions), "the message cell was repainted"
    changes.clear()
    model.refresh([replace(s, acked=True, state="ACK_ACTIVE", alarm_state=AlarmState.ACK_ACTIVE) for s in statuses])
    changes.clear()
    model.toggle_blink()
    assert changes == [], "nothing unacknowledged: nothing blinks"


def test_the_alarm_summary_announces_only_the_alarms_that_changed(qtbot) -> None:  # type: ignore[no-untyped-def]
    """The alarm feed changes whenever any alarm does: the summary announces only its rows."""
    model = AlarmTableModel()
    statuses = [alarm_status(f"m{k}.t.hi", acked=False) for k in range(6)]
    model.refresh(statuses)
    changes: list[tuple[int, int, int, int]] = []
    model.dataChanged.connect(lambda a, b, _roles=(): changes.append((a.row(), b.row(), a.column(), b.column())))
    model.refresh(list(statuses))
    assert changes == []
    statuses[2] = replace(statuses[2], value=7.5)
    model.refresh(statuses)
    row = model.row_of(statuses[2].name)
    assert changes == [(row, row, 0, len(COLUMNS) - 1)]


@given(st.sets(st.integers(0, 60)))
def test_row_runs_cover_each_row_once_in_runs_of_adjacent_rows(rows: set[int]) -> None:
    runs = list(row_runs(rows))
    assert [r for first, last in runs for r in range(first, last + 1)] == sorted(rows)
    assert all(b[0] > a[1] + 1 for a, b in pairwise(runs)), "runs never touch: each is as long as it can be"
