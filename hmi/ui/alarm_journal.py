"""The alarm and event journal: what happened over a time range, filterable, exportable.

It reads through a `JournalSource(start_ns, end_ns) -> events`. Until the historian's
reader is wired in (issue 5: `HistorianReader.events(start, end)` has exactly this shape),
the source is the window's EventLog: the events this window has seen since it started.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QDateTime, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from hmi.core.events import Event, EventCategory
from hmi.ui.format import format_time

JournalSource = Callable[[int, int], list[Event]]
COLUMNS = ("Time", "Category", "Source", "What", "State", "Priority", "User", "Message", "Comment")
RANGES_S = {"Last 10 min": 600, "Last hour": 3600, "Last 8 h": 8 * 3600, "Last 24 h": 86400, "Custom": 0}
CATEGORIES = {"All categories": None, "Alarms": EventCategory.ALARM, "Operator": EventCategory.OPERATOR,
              "System": EventCategory.SYSTEM}  # fmt: skip

Index = QModelIndex | QPersistentModelIndex


def event_row(e: Event) -> list[str]:
    d = e.details
    what = str(d.get("cause", "")) or ("flood" if "flood" in d else "")
    state = str(d.get("to", "")).replace("_", " ")
    comment = str(d.get("comment", "") or d.get("reason", ""))
    return [format_time(e.ts_ns), str(e.category), e.source, what, state, str(d.get("priority", "")), e.user,
            e.message, comment]  # fmt: skip


class JournalModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._rows: list[list[str]] = []

    def set_events(self, events: list[Event]) -> None:
        self.beginResetModel()
        self.events = events
        self._rows = [event_row(e) for e in events]
        self.endResetModel()

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
        return self._rows[index.row()][index.column()]


class AlarmJournal(QWidget):
    def __init__(self, source: JournalSource, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.model = JournalModel()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.range_box = QComboBox()
        self.range_box.addItems(list(RANGES_S))
        self.range_box.setCurrentText("Last hour")
        self.range_box.currentTextChanged.connect(self._on_range)
        bar.addWidget(self.range_box)
        now = QDateTime.currentDateTime()
        self.start_edit = QDateTimeEdit(now.addSecs(-3600))
        self.end_edit = QDateTimeEdit(now)
        for edit in (self.start_edit, self.end_edit):
            edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
            edit.setCalendarPopup(True)
            edit.setEnabled(False)
            bar.addWidget(edit)
        self.category_box = QComboBox()
        self.category_box.addItems(list(CATEGORIES))
        bar.addWidget(self.category_box)
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("filter: alarm, machine, user, text…")
        bar.addWidget(self.text_filter, 1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        bar.addWidget(self.refresh_button)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._ask_export)
        bar.addWidget(self.export_button)
        layout.addLayout(bar)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(7, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)
        self.count_label = QLabel()
        layout.addWidget(self.count_label)
        self.category_box.currentIndexChanged.connect(self.refresh)
        self.text_filter.returnPressed.connect(self.refresh)

    def _on_range(self, text: str) -> None:
        custom = RANGES_S[text] == 0
        self.start_edit.setEnabled(custom)
        self.end_edit.setEnabled(custom)
        self.refresh()

    def time_range(self) -> tuple[int, int]:
        seconds = RANGES_S[self.range_box.currentText()]
        if seconds:
            end = time.time_ns() + 1
            return end - seconds * 1_000_000_000, end
        start = self.start_edit.dateTime().toMSecsSinceEpoch() * 1_000_000
        end = self.end_edit.dateTime().toMSecsSinceEpoch() * 1_000_000
        return start, end

    def refresh(self) -> None:
        start, end = self.time_range()
        events = self.source(start, end)
        category = CATEGORIES[self.category_box.currentText()]
        needle = self.text_filter.text().strip().lower()
        shown = [
            e
            for e in events
            if (category is None or e.category == category) and (not needle or needle in " ".join(event_row(e)).lower())
        ]
        self.model.set_events(shown)
        self.count_label.setText(f"{len(shown)} of {len(events)} event(s) in the range")

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export journal", "journal.csv", "CSV files (*.csv)")
        if path:
            self.export_csv(Path(path))

    def export_csv(self, path: Path) -> int:
        """Write the events shown (all columns, UTC ISO times) as CSV; returns the row count."""
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["time_utc", "category", "source", "what", "state", "priority", "user", "message",
                             "comment", "severity"])  # fmt: skip
            for e in self.model.events:
                row = event_row(e)
                row[0] = datetime.fromtimestamp(e.ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")
                writer.writerow([*row, str(e.severity)])
        return len(self.model.events)
