"""Positions and the station list in the window, against a runtime's operator side over the
real IPC channel: the list is a supervisor's (hidden from a viewer), the alarm summary and
banner show the station's position by default with "All positions" a click away."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtGui import QAction

from hmi.core.alarms import AlarmDefinition, Condition, Priority
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.security.positions import Position, StationBoard
from hmi.ui.alarm_banner import AlarmBanner
from hmi.ui.alarm_feed import AlarmFeed
from hmi.ui.alarm_panel import COL_TAG, AlarmPanel
from hmi.ui.role_gate import RoleGate
from hmi.ui.stations_panel import StationsPanel, StationWatch, follow_positions, gate_stations
from tests.alarm_runtime import PASSWORD, InProcessRuntime, demo_definitions


@dataclass
class Window:
    feed: AlarmFeed
    client: IpcClient
    watch: StationWatch
    panel: AlarmPanel
    banner: AlarmBanner
    stations: StationsPanel
    menu_action: QAction


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[InProcessRuntime]:
    definitions = [
        *demo_definitions(),  # cnc01's two, pump01's one
        AlarmDefinition("cnc01.spindle_speed.hi", "cnc01.spindle_speed", Condition.HI, Priority.LOW, limit=100),
    ]
    runtime = InProcessRuntime(tmp_path, definitions)
    runtime.commands.board = StationBoard([Position("cell1", "Machining", ("cnc01",)),
                                           Position("utilities", "", ("pump01",))])  # fmt: skip
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture
def win(qtbot, rt: InProcessRuntime) -> Iterator[Window]:
    mirror = BusMirror()
    client = IpcClient(rt.stream, rt.requests, mirror)
    feed = AlarmFeed(mirror, client)
    watch = StationWatch(feed)
    panel = AlarmPanel(feed)
    banner = AlarmBanner(feed)
    follow_positions(watch, panel, banner)
    stations = StationsPanel(watch)
    gate = RoleGate(feed.session, panel)
    action = QAction("Stations…", panel)
    gate_stations(gate, action)
    gate_stations(gate, stations)
    for widget in (panel, banner):
        qtbot.addWidget(widget)
        widget.show()
    client.start()
    qtbot.waitUntil(lambda: feed.alarms.epoch == rt.engine.epoch, timeout=10000)
    qtbot.waitUntil(lambda: bool(watch.positions), timeout=5000)
    yield Window(feed, client, watch, panel, banner, stations, action)
    client.stop()
    watch.close()
    feed.close()
    for widget in (panel, banner, stations):
        widget.close()
        widget.deleteLater()
    gc.collect()


def login(qtbot, win: Window, user: str) -> None:
    win.feed.session.login(user, PASSWORD)
    qtbot.waitUntil(lambda: win.feed.session.user == user, timeout=10000)


def test_the_station_list_is_shown_to_a_supervisor_and_hidden_from_a_viewer(qtbot, win: Window) -> None:
    """A viewer sees neither the list nor its menu entry; a supervisor sees this station with
    the users logged in here and its position, refreshed by the poll."""
    login(qtbot, win, "vic")
    assert not win.menu_action.isVisible() and win.stations.isHidden()
    polls = win.watch.replies
    qtbot.waitUntil(lambda: win.watch.replies >= polls + 2, timeout=5000)  # asked as a viewer
    assert win.watch.stations == [] and win.stations.model.rowCount() == 0
    win.feed.session.logout()
    login(qtbot, win, "sam")
    assert win.menu_action.isVisible()
    win.stations.show()
    station = win.feed.station
    qtbot.waitUntil(lambda: station in win.stations.model.stations(), timeout=5000)
    row = win.stations.model.stations().index(station)
    assert win.stations.model.text(row, 2) == "sam (supervisor)"
    assert win.stations.model.text(row, 4) == "attached"
    win.feed.send({"command": "take_position", "position": "utilities", "reason": "night shift"})
    qtbot.waitUntil(lambda: win.stations.model.text(row, 1) == "utilities", timeout=5000)
    win.stations.close()


def test_the_alarm_summary_and_banner_show_the_stations_position_by_default(
    qtbot, win: Window, rt: InProcessRuntime
) -> None:
    """Once this station takes cell1, the summary lists cnc01's alarms only and the banner counts
    them; "All positions" brings back every alarm."""
    rt.publish("cnc01.tool_temperature", 90.0)
    rt.publish("pump01.pressure", 1.0)
    rt.publish("cnc01.spindle_speed", 500.0)
    qtbot.waitUntil(lambda: win.panel.model.rowCount() == 3, timeout=5000)
    assert win.banner.count_label.text() == "3 unacknowledged"
    login(qtbot, win, "olga")
    dialog = win.stations.open_position_dialog(hand_over=False)
    dialog.position_box.setCurrentIndex(dialog.position_box.findData("cell1"))
    dialog.reason.setText("start of shift")
    dialog.send()
    qtbot.waitUntil(lambda: win.watch.position == "cell1", timeout=5000)
    qtbot.waitUntil(lambda: win.panel.model.rowCount() == 2, timeout=5000)
    tags = {win.panel.model.text(win.panel.model.status(r), COL_TAG) for r in range(2)}
    assert tags == {"cnc01.tool_temperature", "cnc01.spindle_speed"}
    assert win.banner.count_label.text() == "2 unacknowledged"
    assert win.panel.position_box.currentData() == "cell1"
    win.panel.position_box.setCurrentIndex(win.panel.position_box.findData(None))
    qtbot.waitUntil(lambda: win.panel.model.rowCount() == 3, timeout=5000)
    # The take is in the audit trail with the station and the reason.
    [record] = [r for r in rt.audit.records() if r.kind == "take_position"]
    assert record.user == "olga" and record.details_dict()["station"] == win.feed.station
    assert record.details_dict()["reason"] == "start of shift"
