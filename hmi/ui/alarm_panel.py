"""The alarm summary: active and unacknowledged alarms, and what the operator does with them.

Rows sort by priority (urgent first), then by time (newest first). ISA-101 colours mark
priority and nothing else; an unacknowledged alarm carries a ◆ and its priority cell
blinks until acknowledged. Filters by operator position (the station's own by default:
hmi/ui/stations_panel.py), machine, priority and state; a details pane shows
the selected alarm's guidance and history. Actions go to the runtime as commands with
the logged-in user's session: the runtime checks the role and audits, and its answer
(done, or why not) is shown under the table. A comment belongs to one action: the field
clears once the runtime has done it, and stays when the runtime refused so the operator
can retry. Whether an alarm needs a comment is the engine's rule (AlarmEngine.acknowledge);
the panel shows its refusal and, before an ack-all, warns how many will be refused.

Painting follows a timer, not the event rate: the model rebuilds its rows only when the
alarm list's version changed (at most 5 times a second), so a flood of 10,000 alarms
costs one sort per refresh, not one repaint per alarm.
"""

from __future__ import annotations

import html
import time
from collections.abc import Set
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics
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
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from hmi.core.alarms.model import AlarmState, AlarmStatus, Mode, Priority
from hmi.core.events import format_duration
from hmi.core.tags import DataType
from hmi.security.roles import Action
from hmi.ui import theme
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.format import format_time, format_value
from hmi.ui.item_models import row_runs
from hmi.ui.role_gate import RoleGate

COLUMNS = ("", "Time", "Machine", "Tag", "Message", "Value", "State", "Priority")
COL_MARK, COL_TIME, COL_MACHINE, COL_TAG, COL_MESSAGE, COL_VALUE, COL_STATE, COL_PRIORITY = range(8)
UNACK_MARK = "◆"
BLINK_MS = 500
CELL_PADDING_PX = 16  # what a table cell adds around its text, with room to spare

Index = QModelIndex | QPersistentModelIndex

STATE_FILTERS: dict[str, Any] = {
    "Active and unacknowledged": lambda s: s.needs_attention,
    "Unacknowledged": lambda s: s.unacknowledged,
    "Active": lambda s: s.active and s.mode == Mode.IN_SERVICE,
    "Shelved": lambda s: s.mode == Mode.SHELVED,
    "Suppressed by design": lambda s: s.mode == Mode.SUPPRESSED,
    "Out of service": lambda s: s.mode == Mode.OUT_OF_SERVICE,
    "All configured": lambda s: True,
}
PRIORITY_FILTERS: dict[str, Priority | None] = {
    "All priorities": None,
    "Urgent": Priority.URGENT,
    "High and above": Priority.HIGH,
    "Medium and above": Priority.MEDIUM,
}


# Every State cell text (AlarmTableModel.text): the alarm states and modes, latched or not.
STATE_TEXTS = frozenset(
    state.replace("_", " ") + latched for state in [*AlarmState, *Mode] for latched in ("", " (latched)")
)


def sort_key(status: AlarmStatus) -> tuple[int, int, str]:
    """Priority first (urgent on top), then newest first, then name (stable order)."""
    return (-int(status.priority), -status.since_ns, status.name)


class AlarmTableModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self._rows: list[AlarmStatus] = []
        self.blink_on = True
        self.state_filter = "Active and unacknowledged"
        self.machine_filter: str | None = None
        self.machines_filter: frozenset[str] | None = None  # an operator position's machines
        self.min_priority: Priority | None = None
        self._brushes = {p: QBrush(QColor(c)) for p, c in theme.ALARM_COLOURS.items()}
        self._text_brushes = {p: QBrush(QColor(c)) for p, c in theme.ALARM_TEXT_ON.items()}
        self._dim = QBrush(QColor(theme.ALARM_SHELVED))
        self._bold = QFont()
        self._bold.setBold(True)

    # -- Qt model ---------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        s = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(s, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return s.guidance or s.message
        if role == Qt.ItemDataRole.FontRole and s.unacknowledged:
            return self._bold
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_VALUE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if s.mode != Mode.IN_SERVICE:
            return self._dim if role == Qt.ItemDataRole.ForegroundRole else None
        if col in (COL_MARK, COL_PRIORITY) and (s.acked or self.blink_on) and (s.active or not s.acked):
            if role == Qt.ItemDataRole.BackgroundRole:
                return self._brushes[int(s.priority)]
            if role == Qt.ItemDataRole.ForegroundRole:
                return self._text_brushes[int(s.priority)]
        return None

    def text(self, s: AlarmStatus, col: int) -> str:
        if col == COL_MARK:
            return UNACK_MARK if s.unacknowledged else ""
        if col == COL_TIME:
            return format_time(s.since_ns or s.changed_ns)
        if col == COL_MACHINE:
            return s.machine
        if col == COL_TAG:
            return s.tag
        if col == COL_MESSAGE:
            flags = (" [first out]" if s.first_out and s.active else "") + (" [chattering]" if s.chattering else "")
            return s.message + flags + (" [fleeting]" if s.fleeting else "")
        if col == COL_VALUE:
            if s.value is None:
                return ""  # no reading (bad quality, communication lost): no lone unit either
            return f"{format_value(s.value, DataType.FLOAT)} {s.unit}".strip()
        if col == COL_STATE:
            return s.state.replace("_", " ") + (" (latched)" if s.latched else "")
        if col == COL_PRIORITY:
            return s.priority.label.upper()
        return ""

    # -- content ------------------------------------------------------------------------------

    def rows(self) -> list[AlarmStatus]:
        """The alarms shown, in row order."""
        return self._rows

    def status(self, row: int) -> AlarmStatus:
        return self._rows[row]

    def names(self) -> list[str]:
        return [s.name for s in self._rows]

    def row_of(self, name: str) -> int | None:
        for row, s in enumerate(self._rows):
            if s.name == name:
                return row
        return None

    def visible(self, status: AlarmStatus) -> bool:
        if not STATE_FILTERS[self.state_filter](status):
            return False
        if self.machine_filter and status.machine != self.machine_filter:
            return False
        if self.machines_filter is not None and status.machine not in self.machines_filter:
            return False
        return self.min_priority is None or status.priority >= self.min_priority

    def refresh(self, statuses: list[AlarmStatus]) -> None:
        """Rebuild the rows from `statuses` (UI thread); keeps the selection on the same alarms."""
        rows = sorted((s for s in statuses if self.visible(s)), key=sort_key)
        old_names = [s.name for s in self._rows]
        new_names = [s.name for s in rows]
        if old_names == new_names:
            old, self._rows = self._rows, rows
            # Only the rows whose alarm changed: the feed changes when any alarm does, and a
            # whole-table repaint (text shaped for every cell) is costly on software rendering.
            changed = [row for row, (a, b) in enumerate(zip(old, rows, strict=True)) if a is not b and a != b]
            for first, last in row_runs(changed):
                self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))
            return
        # A different set or order of rows: reset (for the view far cheaper than a layout
        # change of thousands of rows); the panel puts the selection back by alarm name.
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def toggle_blink(self) -> None:
        """Blink the mark and priority cells of unacknowledged alarms, and nothing else: the
        view repaints just the cells announced (two narrow columns, not the rows between)."""
        self.blink_on = not self.blink_on
        blinking = [row for row, s in enumerate(self._rows) if s.unacknowledged]
        for first, last in row_runs(blinking):
            for col in (COL_MARK, COL_PRIORITY):
                self.dataChanged.emit(self.index(first, col), self.index(last, col))


class ReasonDialog(QDialog):
    """Why (required, and recorded), for taking alarms out of service; `fields` are rows asked
    before the reason (ShelveDialog's duration)."""

    def __init__(
        self,
        title: str,
        names: list[str],
        parent: QWidget | None = None,
        *,
        placeholder: str = "why (required): e.g. transmitter removed for calibration, work order 4711",
        fields: tuple[tuple[str, QWidget], ...] = (),
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        layout = QFormLayout(self)
        layout.addRow(QLabel(_names_text(names)))
        for label, widget in fields:
            layout.addRow(label, widget)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText(placeholder)
        layout.addRow("Reason", self.reason)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addRow(self.buttons)
        self.reason.textChanged.connect(self._update)
        self._update()

    def _update(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.reason.text().strip()))


def _names_text(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


class ShelveDialog(ReasonDialog):
    """How long and why: both are required (and recorded)."""

    PRESETS_S = (15 * 60, 3600, 4 * 3600, 8 * 3600, 24 * 3600)

    def __init__(self, names: list[str], max_shelve_s: float, parent: QWidget | None = None) -> None:
        # Built before the dialog so that it is laid out (and focused) before the reason.
        duration = QComboBox()
        for seconds in self.PRESETS_S:
            if seconds <= max_shelve_s:
                duration.addItem(format_duration(seconds), seconds)
        if duration.count() == 0:
            duration.addItem(format_duration(max_shelve_s), max_shelve_s)
        super().__init__(
            "Shelve alarms", names, parent,
            placeholder="why (required): e.g. sensor replaced, work order 4711", fields=(("Shelve for", duration),),
        )  # fmt: skip
        self.duration = duration

    def duration_s(self) -> float:
        return float(self.duration.currentData())


class AlarmPanel(QWidget):
    """The alarm summary with its actions. `reply_received` carries each command's reply (tests, banner)."""

    reply_received = Signal(dict)

    def __init__(self, feed: AlarmFeed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.feed = feed
        self.model = AlarmTableModel()
        self.last_reply: Reply | None = None
        self._measured: dict[int, set[str]] = {}  # per column: the texts whose width it holds

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        filters = QHBoxLayout()
        # An operator position's machines (shown by default: the station's own position), or all.
        self.position_box = QComboBox()
        self.position_box.addItem("All positions", None)
        self.position_box.setToolTip("The alarms of one operator position's machines, or of all")
        self.position_box.hide()  # until the project has positions
        self.position_box.currentIndexChanged.connect(self._on_filter_changed)
        filters.addWidget(self.position_box)
        self.positions: dict[str, frozenset[str]] = {}
        self.own_position = ""
        self.machine_box = QComboBox()
        self.machine_box.addItem("All machines", None)
        self.priority_box = QComboBox()
        for label, value in PRIORITY_FILTERS.items():
            self.priority_box.addItem(label, value)
        self.state_box = QComboBox()
        self.state_box.addItems(list(STATE_FILTERS))
        for box in (self.machine_box, self.priority_box, self.state_box):
            box.currentIndexChanged.connect(self._on_filter_changed)
            filters.addWidget(box)
        # The shelved list one click away (ISA-18.2: shelved alarms must stay in view somewhere).
        self.shelved_button = QPushButton("Shelved (0)")
        self.shelved_button.setCheckable(True)
        self.shelved_button.setToolTip("Show the shelved alarms (to unshelve them); click again to go back")
        self.shelved_button.clicked.connect(self._on_shelved_clicked)
        filters.addWidget(self.shelved_button)
        self.flood_label = QLabel()
        self.flood_label.setObjectName("flood")
        self.flood_label.hide()
        filters.addWidget(self.flood_label)
        filters.addStretch(1)
        self.count_label = QLabel()
        filters.addWidget(self.count_label)
        layout.addLayout(filters)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            self.table.setColumnWidth(col, 24)  # then as wide as their text: _fit_columns
        # Message takes the rest (_fit_message), not by Stretch: a stretched section kept its
        # width when the table shrank below the other columns, pushing them out of view.
        header.sectionResized.connect(self._on_section_resized)
        self.table.viewport().installEventFilter(self)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._show_details())
        splitter.addWidget(self.table)
        self.details = QTextBrowser()
        self.details.setMinimumWidth(240)
        splitter.addWidget(self.details)
        splitter.setSizes([800, 240])
        splitter.setStretchFactor(0, 1)  # a wider window widens the table (its Message), not the details
        splitter.setStretchFactor(1, 0)
        layout.addWidget(splitter, 1)

        actions = QHBoxLayout()
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("comment (with acknowledge / reset)")
        actions.addWidget(self.comment, 1)
        self.ack_button = QPushButton("Acknowledge")
        self.ack_button.clicked.connect(self.acknowledge_selected)
        self.ack_all_button = QPushButton("Acknowledge all visible…")
        self.ack_all_button.clicked.connect(self.acknowledge_all_visible)
        self.shelve_button = QPushButton("Shelve…")
        self.shelve_button.clicked.connect(self.shelve_selected)
        self.unshelve_button = QPushButton("Unshelve")
        self.unshelve_button.clicked.connect(self.unshelve_selected)
        self.reset_button = QPushButton("Reset latch")
        self.reset_button.clicked.connect(self.reset_selected)
        self.out_of_service_button = QPushButton("Out of service…")
        self.out_of_service_button.clicked.connect(lambda: self.out_of_service_selected())
        self.return_to_service_button = QPushButton("Return to service")
        self.return_to_service_button.clicked.connect(self.return_to_service_selected)
        for button in self._action_buttons():
            actions.addWidget(button)
        # Each action says beforehand which role it needs; "Log in…" stands beside them while
        # nobody is logged in (the runtime checks the role again: hmi/commands.py).
        self.role_gate = RoleGate(feed.session, self)
        for button, action in ((self.ack_button, Action.ACKNOWLEDGE), (self.ack_all_button, Action.ACKNOWLEDGE),
                               (self.shelve_button, Action.SHELVE), (self.unshelve_button, Action.UNSHELVE),
                               (self.reset_button, Action.RESET)):  # fmt: skip
            self.role_gate.gate(button, action)
        for button in (self.out_of_service_button, self.return_to_service_button):
            self.role_gate.gate(button, Action.OUT_OF_SERVICE, tooltip="the reason is recorded")
        self.login_button = self.role_gate.login_button()
        actions.insertWidget(1, self.login_button)
        layout.addLayout(actions)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        layout.addWidget(self.result_label)
        self.reason_dialog: ReasonDialog | None = None

        feed.changed.connect(self.refresh)
        self._blink = QTimer(self)
        self._blink.timeout.connect(self.model.toggle_blink)
        self._blink.start(BLINK_MS)
        self.refresh()
        self._fit_columns()

    # -- refresh ------------------------------------------------------------------------------

    def refresh(self) -> None:
        statuses = self.feed.alarms.statuses()
        self._update_machines(statuses)
        selected = self.selected_names()
        before = self.model.rowCount()
        self.model.refresh(statuses)
        if selected and (self.model.rowCount() != before or self.selected_names() != selected):
            self.select(selected)
        if self.model.rowCount() != before:
            self._fit_columns()
        self.count_label.setText(self.count_text(statuses))
        shelved = self.feed.alarms.counts(self.model.machines_filter).shelved
        self.shelved_button.setText(f"Shelved ({shelved})")
        self.shelved_button.setChecked(self.model.state_filter == "Shelved")
        flooded = self.feed.alarms.in_flood()
        position = self.position_box.currentData()
        if position is not None:
            flooded = [p for p in flooded if p == position]  # each position counts its own flood
        self.flood_label.setVisible(bool(flooded))
        self.flood_label.setText("ALARM FLOOD: " + ", ".join(flooded) if flooded else "")
        self._show_details()

    def count_text(self, statuses: list[AlarmStatus]) -> str:
        counts = self.feed.alarms.counts(self.model.machines_filter)
        text = f"{self.model.rowCount()} shown   {counts.unacknowledged} unacknowledged   {counts.shelved} shelved"
        chattering = sum(1 for s in statuses if s.chattering)
        return text + (f"   {chattering} chattering" if chattering else "")

    def _fit_columns(self) -> None:
        """Every column but Message as wide as its header and its widest text; Message takes
        the rest. Columns grow, never shrink, so they do not jump while rows come and go.
        State and Priority hold every text they can show from the start, Time today's format
        (older alarms add the date); the others what the rows brought. Measured with the bold
        font's metrics (unacknowledged rows are bold), each text once: Qt's own size hint
        walked the rows and cost 60-80 ms of UI thread in a 10,000-alarm flood."""
        font = QFont(self.table.font())
        font.setBold(True)
        metrics = QFontMetrics(font)
        rows = self.model.rows()
        texts: dict[int, Set[str]] = {
            COL_MARK: {UNACK_MARK},
            COL_TIME: {format_time(time.time_ns())} | {self.model.text(s, COL_TIME) for s in rows[:50]},
            COL_MACHINE: {s.machine for s in rows},
            COL_TAG: {s.tag for s in rows},
            COL_VALUE: {self.model.text(s, COL_VALUE) for s in rows[:200]},  # values come and go: a sample
            COL_STATE: STATE_TEXTS,
            COL_PRIORITY: {p.label.upper() for p in Priority},
        }
        header = self.table.horizontalHeader()
        for col, column_texts in texts.items():
            measured = self._measured.setdefault(col, set())
            new = column_texts - measured
            measured |= new
            widest = max((metrics.horizontalAdvance(text) for text in new), default=0) + CELL_PADDING_PX
            needed = max(widest, header.sectionSizeHint(col))
            if needed > self.table.columnWidth(col):
                self.table.setColumnWidth(col, needed)

    def _on_section_resized(self, col: int, _old: int, _new: int) -> None:
        if col != COL_MESSAGE:  # an operator widened another column: Message gives the room
            self._fit_message()

    def _fit_message(self) -> None:
        """Message takes the width the other columns leave, at least its header's (the table
        scrolls sideways only when the other columns alone are wider than it)."""
        header = self.table.horizontalHeader()
        others = sum(header.sectionSize(col) for col in range(len(COLUMNS)) if col != COL_MESSAGE)
        width = max(self.table.viewport().width() - others, header.sectionSizeHint(COL_MESSAGE))
        if width != header.sectionSize(COL_MESSAGE):
            header.resizeSection(COL_MESSAGE, width)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_message()
        return super().eventFilter(watched, event)

    def _on_shelved_clicked(self, checked: bool) -> None:
        self.set_filters(state="Shelved" if checked else "Active and unacknowledged")

    def _update_machines(self, statuses: list[AlarmStatus]) -> None:
        machines = sorted({s.machine for s in statuses})
        known = [self.machine_box.itemData(i) for i in range(1, self.machine_box.count())]
        if machines != known:
            current = self.machine_box.currentData()
            self.machine_box.blockSignals(True)
            self.machine_box.clear()
            self.machine_box.addItem("All machines", None)
            for machine in machines:
                self.machine_box.addItem(machine, machine)
            index = self.machine_box.findData(current)
            self.machine_box.setCurrentIndex(max(index, 0))
            self.machine_box.blockSignals(False)

    def set_positions(self, positions: dict[str, frozenset[str]], own: str) -> None:
        """The project's positions (name -> machines) and this station's own; the filter follows
        the station's position whenever that changes (taken, handed over), "All" stays a click away."""
        if positions != self.positions:
            current = self.position_box.currentData()
            self.position_box.blockSignals(True)
            self.position_box.clear()
            self.position_box.addItem("All positions", None)
            for name in positions:
                self.position_box.addItem(f"Position {name}", name)
            self.position_box.setCurrentIndex(max(self.position_box.findData(current), 0))
            self.position_box.blockSignals(False)
            self.positions = dict(positions)
            self.position_box.setVisible(bool(positions))
        if own != self.own_position:
            self.own_position = own
            self.position_box.setCurrentIndex(max(self.position_box.findData(own or None), 0))
        self._on_filter_changed()

    def _on_filter_changed(self) -> None:
        self.model.machines_filter = self.positions.get(self.position_box.currentData() or "")
        self.model.machine_filter = self.machine_box.currentData()
        self.model.min_priority = self.priority_box.currentData()
        self.model.state_filter = self.state_box.currentText()
        self.refresh()

    def set_filters(
        self, machine: str | None = None, min_priority: Priority | None = None, state: str | None = None
    ) -> None:
        if machine is not None:
            self.machine_box.setCurrentIndex(max(self.machine_box.findData(machine), 0))
        if min_priority is not None:
            self.priority_box.setCurrentIndex(max(self.priority_box.findData(min_priority), 0))
        if state is not None:
            self.state_box.setCurrentText(state)

    def _action_buttons(self) -> tuple[QPushButton, ...]:
        return (self.ack_button, self.ack_all_button, self.shelve_button, self.unshelve_button, self.reset_button,
                self.out_of_service_button, self.return_to_service_button)  # fmt: skip

    # -- selection and details -------------------------------------------------------------------

    def selected_names(self) -> list[str]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.model.status(row).name for row in rows if row < self.model.rowCount()]

    def select(self, names: list[str]) -> None:
        selection = QItemSelection()
        last = len(COLUMNS) - 1
        for name in names:
            row = self.model.row_of(name)
            if row is not None:
                selection.select(self.model.index(row, 0), self.model.index(row, last))
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.table.selectionModel().select(selection, flags)

    def _show_details(self) -> None:
        names = self.selected_names()
        if len(names) != 1:
            self.details.setHtml("<i>Select one alarm to see its guidance and history.</i>" if not names else
                                 f"<i>{len(names)} alarms selected.</i>")  # fmt: skip
            return
        status = self.feed.alarms.get(names[0])
        if status is None:
            return
        self.details.setHtml(details_html(status, self.feed.alarms.history(status.name)))

    # -- actions ------------------------------------------------------------------------------------

    def _send(self, command: dict[str, Any]) -> None:
        if not self.feed.session.logged_in:
            self._show_reply({"ok": False, "error": "log in first"})
            return
        self.result_label.setText(f"{command['command'].replace('_', ' ')}: sent…")
        comment = command.get("comment")
        if not comment:
            self.feed.send(command, self._show_reply)
            return

        def on_reply(reply: Reply) -> None:
            # The comment was for this action only: once done, it must not ride along on
            # the next one. Refused, it stays for the retry (unless the operator already
            # typed something else).
            if reply.get("ok") and self.comment.text().strip() == comment:
                self.comment.clear()
            self._show_reply(reply)

        self.feed.send(command, on_reply)

    def _show_reply(self, reply: Reply) -> None:
        self.last_reply = reply
        if reply.get("ok"):
            done = reply.get("done")
            text = f"done: {len(done)} alarm(s)" if isinstance(done, list) else "done"
            errors = reply.get("errors") or {}
            if errors:
                text += f"; refused: {'; '.join(f'{k}: {v}' for k, v in list(errors.items())[:3])}"
            if reply.get("audit_error"):
                text += f"   WARNING: {reply['audit_error']}"
            self.result_label.setStyleSheet("")
        else:
            text = f"refused: {reply.get('error', 'unknown error')}"
            self.result_label.setStyleSheet(f"color: {theme.ALARM_URGENT};")
        self.result_label.setText(text)
        self.reply_received.emit(reply)

    def acknowledge_selected(self) -> None:
        names = [n for n in self.selected_names() if (s := self.feed.alarms.get(n)) is not None and s.unacknowledged]
        if not names:
            self._show_reply({"ok": False, "error": "select unacknowledged alarms first"})
            return
        self._send({"command": "acknowledge", "alarms": names, "comment": self.comment.text().strip()})

    def acknowledge_all_visible(self) -> None:
        names = [s.name for s in self.model.rows() if s.unacknowledged]
        if not names:
            self._show_reply({"ok": False, "error": "no unacknowledged alarm is shown"})
            return
        comment = self.comment.text().strip()
        question = f"Acknowledge all {len(names)} unacknowledged alarms shown, " + (
            f'with the comment "{comment}"?' if comment else "with no comment?"
        )
        need = 0 if comment else sum(1 for n in names if (s := self.feed.alarms.get(n)) and s.comment_required)
        if need:
            question += f"\n{need} of them need a comment and will not be acknowledged without one."
        if not self.confirm(question):
            return
        self._send({"command": "acknowledge", "alarms": names, "comment": comment})

    def confirm(self, question: str) -> bool:
        answer = QMessageBox.question(self, "Confirm", question)
        return answer == QMessageBox.StandardButton.Yes

    def shelve_selected(self, duration_s: float | None = None, reason: str | None = None) -> None:
        names = self.selected_names()
        if not names:
            self._show_reply({"ok": False, "error": "select alarms to shelve first"})
            return
        if duration_s is None or reason is None:
            dialog = ShelveDialog(names, self.feed.alarms.max_shelve_s, self)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return
            duration_s, reason = dialog.duration_s(), dialog.reason.text().strip()
        self._send({"command": "shelve", "alarms": names, "duration_s": duration_s, "reason": reason})

    def unshelve_selected(self) -> None:
        names = [
            n for n in self.selected_names() if (s := self.feed.alarms.get(n)) is not None and s.mode == Mode.SHELVED
        ]
        if not names:
            self._show_reply({"ok": False, "error": "select shelved alarms first (the Shelved button shows them)"})
            return
        self._send({"command": "unshelve", "alarms": names})

    def out_of_service_selected(self, reason: str | None = None) -> None:
        """Asks for the reason (required) unless given; the runtime allows engineers only."""
        names = [
            n
            for n in self.selected_names()
            if (s := self.feed.alarms.get(n)) is not None and s.mode != Mode.OUT_OF_SERVICE
        ]
        if not names:
            self._show_reply({"ok": False, "error": "select alarms in service first"})
            return
        command = {"command": "out_of_service", "alarms": names, "out": True}
        if reason is not None:
            self._send({**command, "reason": reason})
            return
        # Window-modal open(), not exec(): the alarm list keeps refreshing behind the dialog;
        # the alarms are the ones selected when it opened.
        dialog = ReasonDialog("Take alarms out of service", names, self)
        self.reason_dialog = dialog
        dialog.accepted.connect(lambda: self._send({**command, "reason": dialog.reason.text().strip()}))
        dialog.open()

    def return_to_service_selected(self) -> None:
        names = [
            n
            for n in self.selected_names()
            if (s := self.feed.alarms.get(n)) is not None and s.mode == Mode.OUT_OF_SERVICE
        ]
        if not names:
            self._show_reply(
                {"ok": False, "error": "select alarms out of service first (state filter: Out of service)"}
            )
            return
        self._send({"command": "out_of_service", "alarms": names, "out": False})

    def reset_selected(self) -> None:
        names = self.selected_names()
        if not names:
            self._show_reply({"ok": False, "error": "select latched alarms first"})
            return
        self._send({"command": "reset", "alarms": names, "comment": self.comment.text().strip()})


def details_html(status: AlarmStatus, history: list[Any]) -> str:
    e = html.escape
    colour = theme.ALARM_COLOURS[int(status.priority)]
    lines = [
        f"<p><b>{e(status.name)}</b> "
        f"<span style='background:{colour}'>&nbsp;{status.priority.label.upper()}&nbsp;</span></p>",
        f"<p>{e(status.message)}</p>",
        f"<p>State: <b>{e(status.state.replace('_', ' '))}</b>"
        + (" (latched: reset after acknowledging)" if status.latched else "")
        + (" — first out" if status.first_out else "")
        + "</p>",
    ]
    if status.mode == Mode.SHELVED and status.shelved_until_ns:
        lines.append(
            f"<p>Shelved by {e(status.user)} until {format_time(status.shelved_until_ns)}: {e(status.reason)}</p>"
        )
    elif status.mode == Mode.OUT_OF_SERVICE:
        lines.append(f"<p>Out of service ({e(status.user)}): {e(status.reason)}</p>")
    if status.comment_required:
        lines.append("<p><i>A comment is required to acknowledge this alarm.</i></p>")
    if status.guidance:
        lines.append(f"<p><b>What to check:</b><br>{e(status.guidance)}</p>")
    if history:
        lines.append("<p><b>History</b> (since this window connected)</p><table cellspacing='2'>")
        for t in reversed(history[-50:]):
            who = f" by {e(t.user)}" if t.user else ""
            note = f": {e(t.comment)}" if t.comment else ""
            lines.append(
                f"<tr><td>{format_time(t.ts_ns)}</td><td>{e(str(t.cause))}{who}{note}</td>"
                f"<td>{e(t.to_state.replace('_', ' '))}</td></tr>"
            )
        lines.append("</table>")
    return "".join(lines)
