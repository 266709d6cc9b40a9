"""Trends an operator owns (issue #18): saved groups per user and project, y zoom and
auto-scale, a cursor that stays in the plot and reads history, limit lines that name their
pen, drops on any trend, exports with history into the documents folder."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDragMoveEvent, QDropEvent, QImage

from hmi.config import load_project
from hmi.core.ringbuffer import TrendBuffers
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec
from hmi.historian.reader import HistoryLookup
from hmi.historian.writer import HistorianWriter
from hmi.ipc.mirror import BusMirror
from hmi.ui.mime import TAGS_MIME
from hmi.ui.trend import TrendView, documents_dir
from hmi.ui.trend_groups import TrendGroup, TrendGroupStore, TrendSettings
from tests.helpers import DEMO_PROJECT

NOW = 1_800_000_000.0
SPECS = [TagSpec("cnc01.spindle_temp", "°C", low=0, high=100), TagSpec("cnc01.load", "%")]


@pytest.fixture
def view(qtbot):
    widget = TrendView(TrendBuffers(10_000), list(enumerate(SPECS)), span_s=300, clock=lambda: NOW)
    widget.resize(900, 450)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    widget.refresh()
    return widget


def record(path: Path, specs: list[TagSpec], start_s: float, seconds: int, value: float) -> None:
    """`seconds` of 1 Hz samples of every tag, written by the real historian writer."""
    writer = HistorianWriter(str(path), TagRegistry(specs), commit_interval_s=0.02)
    writer.start()
    ts = ((start_s + np.arange(seconds)) * 1e9).astype(np.int64)
    for i in range(len(specs)):
        writer.submit(SampleBatch.from_arrays(np.full(ts.shape, i), ts, np.full(ts.shape, value + i)))
    writer.close()


# -- groups per user and project ------------------------------------------------------------------


def test_a_pen_added_survives_a_restart_of_the_window(qtbot, main_window_factory) -> None:
    """Build a window, add a pen, close it; a new window has the pen (and the project's others)."""
    project = load_project(DEMO_PROJECT)
    first = main_window_factory(project, BusMirror(), scene=False)
    before = first.trend.pen_names()
    first.add_pens(first.trend, ["pump01.flow"])
    first.close()  # as the operator closes it (the factory deletes it at the end)
    second = main_window_factory(project, BusMirror(), scene=False)
    assert second.trend.pen_names() == [*before, "pump01.flow"]


def test_removed_reordered_renamed_new_and_deleted_groups_are_kept(qtbot, main_window_factory) -> None:
    project = load_project(DEMO_PROJECT)
    window = main_window_factory(project, BusMirror(), scene=False)
    names = window.trend.pen_names()
    window.trend.remove_pen(window.bus.registry.id_of(names[0]))
    window.trend.move_pen(window.bus.registry.id_of(names[2]), -1)
    window.rename_trend("Spindle")
    window.new_trend("Mine")
    window.add_pens(window.trends[-1], ["pump01.flow"])
    window.trend_tabs.setCurrentIndex(1)
    window.delete_trend()  # the project's "Robot"
    expected = [(window.trend_tabs.tabText(i), v.pen_names()) for i, v in enumerate(window.trends)]
    assert expected[0] == ("Spindle", [names[2], names[1]])
    assert "Robot" not in [name for name, _ in expected] and expected[-1] == ("Mine", ["pump01.flow"])
    window.close()
    again = main_window_factory(project, BusMirror(), scene=False)
    assert [(again.trend_tabs.tabText(i), v.pen_names()) for i, v in enumerate(again.trends)] == expected
    again.reset_trends()
    assert again.trend_tabs.tabText(1) == "Robot" and again.trend.pen_names() == names


def test_each_user_has_own_groups(tmp_path: Path) -> None:
    project = load_project(DEMO_PROJECT)
    anna = TrendGroupStore.for_user(tmp_path, project, "anna")
    anna.save(TrendSettings([TrendGroup("A", ["pump01.flow"])]))
    assert TrendGroupStore.for_user(tmp_path, project, "anna").load().groups[0].pens == ["pump01.flow"]
    assert TrendGroupStore.for_user(tmp_path, project, "ben").load().groups[0].name == project.trends[0].name


@pytest.mark.parametrize("content", ["{not json", '{"version": 99, "groups": []}', '{"version": 1}', "[]"])
def test_a_corrupt_file_is_set_aside_and_the_project_trends_used(tmp_path: Path, caplog, content: str) -> None:
    project = load_project(DEMO_PROJECT)
    store = TrendGroupStore.for_user(tmp_path, project, "anna")
    store.path.parent.mkdir(parents=True)
    store.path.write_text(content, encoding="utf-8")
    settings = store.load()
    assert [g.name for g in settings.groups] == [t.name for t in project.trends]
    assert not store.path.exists()
    aside = list(store.path.parent.glob("anna.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text(encoding="utf-8") == content
    assert "unreadable" in caplog.text


def test_the_file_is_versioned_and_written_whole(tmp_path: Path) -> None:
    store = TrendGroupStore(tmp_path / "t.json", [TrendGroup("T")])
    store.save(TrendSettings([TrendGroup("X", ["a", "b"], 60.0)], export_dir="/tmp"))
    data = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert data["version"] == 1 and data["groups"][0] == {"name": "X", "pens": ["a", "b"], "span_s": 60.0}
    assert not (tmp_path / "t.json.tmp").exists()


# -- y zoom and auto-scale ---------------------------------------------------------------------------


def wheel_over(view: TrendView, axis, notches: int) -> None:
    from PySide6.QtWidgets import QGraphicsSceneWheelEvent

    event = QGraphicsSceneWheelEvent(QEvent.Type.GraphicsSceneWheel)
    centre = axis.sceneBoundingRect().center()
    event.setScenePos(centre)
    event.setDelta(120 * notches)
    event.setOrientation(Qt.Orientation.Vertical)
    axis.wheelEvent(event)


def test_the_wheel_over_an_axis_zooms_only_that_axis_and_keeps_live(view) -> None:
    before_temp, before_load = view.y_range("°C"), view.y_range("%")
    wheel_over(view, view.scales["°C"].axis, 2)
    lo, hi = view.y_range("°C")
    assert hi - lo < 0.8 * (before_temp[1] - before_temp[0])
    assert view.y_range("%") == before_load
    assert view.live, "zooming y does not stop the time axis following now"
    assert not view.scales["°C"].auto


def test_auto_scale_fits_the_axis_to_the_data(view) -> None:
    t = ((NOW - 100 + np.arange(100)) * 1e9).astype(np.int64)
    view.buffers.append_batch(SampleBatch.from_arrays(np.zeros(100), t, 40 + np.arange(100) / 10))
    view.refresh()
    assert view.y_range("°C")[1] - view.y_range("°C")[0] > 90  # the engineering range, 0..100
    assert view.context_menu().actions()[0].text() == "Auto-scale Y"
    view.auto_scale()
    lo, hi = view.y_range("°C")
    assert 39 < lo < 40 and 49.9 < hi < 51


# -- cursor ----------------------------------------------------------------------------------------------


def test_the_cursor_readout_stays_inside_the_plot_and_clear_of_the_legend(qtbot, view) -> None:
    """Near the right edge it flips to the left of the line; it never covers the legend."""
    area = view.plot_rect()
    for fraction in (0.02, 0.5, 0.99):
        x0, x1 = view.visible_range()
        view.show_cursor(x0 + fraction * (x1 - x0))
        label = view.cursor_label.geometry()
        assert area.contains(label), (fraction, label, area)
        assert not label.intersects(view.legend_rect()), fraction


def test_the_cursor_disappears_when_the_mouse_leaves(qtbot, view) -> None:
    view.show_cursor(NOW - 10)
    assert view.cursor_label.isVisible()
    qtbot.mouseMove(view.plot_widget.viewport(), QPoint(300, 200))
    from PySide6.QtWidgets import QApplication

    QApplication.sendEvent(view.plot_widget.viewport(), QEvent(QEvent.Type.Leave))
    assert not view.cursor_label.isVisible() and not view.cursor_line.isVisible()


def test_the_cursor_and_csv_read_backfilled_history(qtbot, view, tmp_path: Path) -> None:
    """Over history from a real historian file the cursor shows its values (it showed —),
    and the CSV holds every recorded sample in view (it left history out)."""
    db = tmp_path / "h.sqlite"
    record(db, SPECS, NOW - 3 * 3600, 600, 55.0)  # ten minutes, three hours ago
    t = ((NOW - 60 + np.arange(60)) * 1e9).astype(np.int64)
    view.buffers.append_batch(SampleBatch.from_arrays(np.zeros(60), t, np.full(60, 20.0)))
    view.history = HistoryLookup(db)
    view.set_span(8 * 3600)
    view.refresh()
    qtbot.waitUntil(lambda: view.history_idle() and all(p.history is not None for p in view.pens), timeout=10000)
    text = view.show_cursor(NOW - 3 * 3600 + 300)
    assert "cnc01.spindle_temp: 55.0 °C" in text and "cnc01.load: 56.00 %" in text
    assert "cnc01.spindle_temp: 20.0 °C" in view.show_cursor(NOW - 1)
    rows = view.export_csv(tmp_path / "t.csv")
    with open(tmp_path / "t.csv", encoding="utf-8") as fh:
        data = list(csv.DictReader(fh))
    temp = [r for r in data if r["tag"] == "cnc01.spindle_temp"]
    assert rows == len(data) == 600 + 60 + 600
    assert len(temp) == 660 and temp[0]["value"] == "55.0" and temp[-1]["value"] == "20.0"
    view.history.close()


# -- limits, drops, docks, exports ------------------------------------------------------------------


def test_limit_lines_name_their_pen_in_its_colour(view) -> None:
    view.set_limits(0, [(65.0, "HI 65", "#f08c1e")])
    label = view.pens[0].limit_lines[0].label
    assert label.toPlainText() == "cnc01.spindle_temp HI 65"
    assert label.color.name() == view.pens[0].colour


def tags_mime(names: list[str]) -> QMimeData:
    mime = QMimeData()
    mime.setData(TAGS_MIME, json.dumps(names).encode())
    return mime


def test_tags_and_trends_are_separate_docks_and_a_drag_over_a_tab_switches_to_it(qtbot, main_window_factory) -> None:
    window = main_window_factory(load_project(DEMO_PROJECT), BusMirror(), scene=False)
    qtbot.waitExposed(window)
    assert window.docks["tags"] not in window.tabifiedDockWidgets(window.docks["trends"])
    assert window.docks["tags"].isVisible() and window.docks["trends"].isVisible()
    bar = window.trend_tabs.tabBar()
    centre = QPointF(bar.tabRect(2).center())
    mime = tags_mime(["pump01.flow"])
    move = QDragMoveEvent(centre.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                          Qt.KeyboardModifier.NoModifier)  # fmt: skip
    bar.dragMoveEvent(move)
    assert window.trend_tabs.currentIndex() == 2
    bar.dropEvent(QDropEvent(centre, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier))  # fmt: skip
    assert window.trends[2].pen_names()[-1] == "pump01.flow"


def test_exports_start_in_the_documents_folder_then_where_the_last_went(view, tmp_path: Path) -> None:
    assert view.suggested_path("png").parent == documents_dir()
    view._remember_folder(str(tmp_path / "x.png"))
    assert view.suggested_path("csv").parent == tmp_path


def test_the_png_carries_title_time_range_and_pens(view, tmp_path: Path) -> None:
    view.title_label.setText("Spindle")
    title, span, pens = view.caption()
    assert title == "Spindle" and "cnc01.spindle_temp [°C]" in pens and "cnc01.load [%]" in pens
    assert time.strftime("%Y-%m-%d", time.localtime(NOW)) in span
    assert view.export_png(tmp_path / "t.png")
    image = QImage(str(tmp_path / "t.png"))
    assert image.height() > view.plot_widget.height() + 40 and image.width() == view.plot_widget.width()
