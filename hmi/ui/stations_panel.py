"""Operator positions and the stations attached to the runtime, as the window sees them.

`StationWatch` asks the runtime once a second (`stations`, hmi.commands) which position this
station holds and which positions the project has; for a supervisor the reply also lists
every station heard from, with its logged-in users, position and last-seen time. The poll is
a small command answered on the IPC thread; the UI thread only compares the reply with the
last one, so nothing repaints while nothing changed. It is also the station's sign of life
for the other stations' lists.

`StationsPanel` shows that list (a dock a supervisor sees; hidden below that role:
hmi.ui.role_gate) and `PositionDialog` takes a position or hands one over; both are commands
the runtime checks and audits.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from hmi.security.roles import Action
from hmi.ui.alarm_banner import AlarmBanner
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.alarm_panel import AlarmPanel
from hmi.ui.role_gate import RoleGate

POLL_MS = 1000  # the brief's ceiling: at most once a second, and a tiny reply
NS = 1_000_000_000
COLUMNS = ("Station", "Position", "Users", "Last seen", "State")

Index = QModelIndex | QPersistentModelIndex


class StationWatch(QObject):
    """This station's position, the project's positions and (for a supervisor) the stations.
    `changed` fires on the UI thread when any of them changed."""

    changed = Signal()

    def __init__(self, feed: AlarmFeed, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.feed = feed
        self.position = ""  # the position the runtime says this station holds
        self.positions: dict[str, dict[str, Any]] = {}  # name -> {"name", "area", "machines"}
        self.stations: list[dict[str, Any]] = []  # empty unless a supervisor is logged in
        self.now_ns = 0  # the runtime's clock at the last list (last seen is shown relative to it)
        self._in_flight = False
        self.replies = 0  # answered polls (the status a test or a status line can wait on)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.poll)
        self._timer.start(POLL_MS)
        feed.session.changed.connect(self.poll)
        self.poll()

    def close(self) -> None:
        self._timer.stop()

    def machines_of(self, position: str) -> frozenset[str] | None:
        known = self.positions.get(position)
        return frozenset(known["machines"]) if known is not None else None

    def poll(self) -> None:
        if self._in_flight or self.feed.client is None or not self.feed.mirror.link_up:
            return  # one at a time: a slow runtime is not asked again and again
        self._in_flight = True
        self.feed.send({"command": "stations"}, self._on_reply)

    def _on_reply(self, reply: Reply) -> None:
        self._in_flight = False
        self.replies += 1
        if not reply.get("ok"):
            return
        position = str(reply.get("position", ""))
        positions = {str(p["name"]): p for p in reply.get("positions", [])}
        stations = list(reply.get("stations", []))
        if (position, positions, stations) == (self.position, self.positions, self.stations):
            return
        self.position, self.positions, self.stations = position, positions, stations
        self.now_ns = int(reply.get("now_ns", time.time_ns()))
        self.changed.emit()


def last_seen_text(last_seen_ns: int, now_ns: int) -> str:
    seconds = max(now_ns - last_seen_ns, 0) / NS
    if seconds < 2:
        return "now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


class StationTableModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self._rows: list[dict[str, Any]] = []
        self._now_ns = 0

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        return self.text(index.row(), index.column())

    def text(self, row: int, col: int) -> str:
        s = self._rows[row]
        if col == 0:
            return str(s["station"])
        if col == 1:
            return str(s.get("position") or "—")
        if col == 2:
            return ", ".join(f"{u['user']} ({u['role']})" for u in s.get("users", [])) or "nobody logged in"
        if col == 3:
            return last_seen_text(int(s.get("last_seen_ns", 0)), self._now_ns)
        # ISA-101: words, not colour; a lost station is an abnormal state the text says.
        return "attached" if s.get("attached") else "LOST"

    def set_rows(self, rows: list[dict[str, Any]], now_ns: int) -> None:
        self.beginResetModel()  # a few rows, changed at most once a second
        self._rows, self._now_ns = rows, now_ns
        self.endResetModel()

    def stations(self) -> list[str]:
        return [str(s["station"]) for s in self._rows]


class StationsPanel(QWidget):
    """The stations attached to the runtime, their users, positions and last-seen time."""

    def __init__(self, watch: StationWatch, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.watch = watch
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.model = StationTableModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)  # no blank band right of the table
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.summary = QLabel()
        row.addWidget(self.summary, 1)
        self.hand_over_button = QPushButton("Hand over position…")
        self.hand_over_button.clicked.connect(lambda: self.open_position_dialog(hand_over=True))
        row.addWidget(self.hand_over_button)
        layout.addLayout(row)
        self.dialog: PositionDialog | None = None
        watch.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        stations = self.watch.stations
        self.model.set_rows(stations, self.watch.now_ns)
        attached = sum(1 for s in stations if s.get("attached"))
        lost = len(stations) - attached
        self.summary.setText(f"{attached} attached" + (f", {lost} lost" if lost else ""))

    def open_position_dialog(self, hand_over: bool) -> PositionDialog:
        self.dialog = PositionDialog(self.watch, hand_over, self)
        self.dialog.open()
        return self.dialog


class PositionDialog(QDialog):
    """Take a position for this station, or hand one over to another attached station; the
    reason is recorded with who and where (required for a hand-over)."""

    def __init__(self, watch: StationWatch, hand_over: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.watch = watch
        self.hand_over = hand_over
        self.last_reply: Reply | None = None
        self.setWindowTitle("Hand over position" if hand_over else "Take position")
        form = QFormLayout(self)
        self.position_box = QComboBox()
        holders = {s.get("position"): s["station"] for s in watch.stations if s.get("position")}
        for name, p in watch.positions.items():
            held = holders.get(name) or ("this station" if name == watch.position else "")
            area = f" — {p['area']}" if p.get("area") else ""
            self.position_box.addItem(f"{name}{area}" + (f" (held by {held})" if held else ""), name)
        index = self.position_box.findData(watch.position)
        self.position_box.setCurrentIndex(max(index, 0))
        form.addRow("Position", self.position_box)
        self.station_box = QComboBox()
        self.station_box.setEditable(True)  # a holder (no station list) types the station's name
        for s in watch.stations:
            if s.get("attached"):
                self.station_box.addItem(str(s["station"]), str(s["station"]))
        if hand_over:
            form.addRow("To station", self.station_box)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("why (recorded with your name and station)")
        form.addRow("Reason", self.reason)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        form.addRow(self.result_label)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.send)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def command(self) -> dict[str, Any]:
        command: dict[str, Any] = {"position": self.position_box.currentData() or "", "reason": self.reason.text()}
        if self.hand_over:
            return {**command, "command": "hand_over_position", "to_station": self.station_box.currentText().strip()}
        return {**command, "command": "take_position"}

    def send(self) -> None:
        self.watch.feed.send(self.command(), self._on_reply)

    def _on_reply(self, reply: Reply) -> None:
        self.last_reply = reply
        if reply.get("ok"):
            self.watch.poll()
            self.accept()
        else:
            self.result_label.setText(str(reply.get("error", "refused")))


class StationsDialog(QDialog):
    """The station list in a window of its own (User ▸ Stations…), not modal."""

    def __init__(self, watch: StationWatch, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Stations")
        self.resize(640, 280)
        layout = QVBoxLayout(self)
        self.panel = StationsPanel(watch, self)
        layout.addWidget(self.panel)


def follow_positions(watch: StationWatch, panel: AlarmPanel, banner: AlarmBanner) -> None:
    """The alarm summary and banner show this station's position by default, following it
    when it is taken or handed over."""

    def apply() -> None:
        positions = {name: frozenset(p["machines"]) for name, p in watch.positions.items()}
        panel.set_positions(positions, watch.position)
        banner.set_position(watch.position, positions.get(watch.position))

    watch.changed.connect(apply)


def gate_stations(gate: RoleGate, target: QAction | QWidget) -> None:
    """The station list is for a supervisor: hidden, not only disabled, below that role."""
    gate.gate(target, Action.VIEW_STATIONS, hide=True)
