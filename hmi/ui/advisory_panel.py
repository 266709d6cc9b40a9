"""The twin's advisories: probable cause, evidence, checks and a recommended action.

A self-contained widget on the window's AlarmFeed (its IPC client, session and command
channel). The runtime runs advisories on an alarm engine of their own and publishes its
transitions as ADVISORY events carrying the twin's finding (hmi.twin.advisories), so this
panel keeps an AlarmList of that category, fed on the IPC thread, and the runtime's
`advisories` snapshot when the link comes up. Acknowledging sends the ordinary
`acknowledge` command (the runtime checks the role and audits). A recommended command is
never sent by the twin: "Apply recommendation…" opens the write dialog with the value
filled in, and the operator confirms it there (write command, role check, audit naming
the advisory, source write).

Painting follows a timer: rows are rebuilt only when the list's version changed.
"""

from __future__ import annotations

import html
import logging
import threading
from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from hmi.core.alarms.alarm_list import AlarmList
from hmi.core.alarms.model import AlarmStatus
from hmi.core.events import Event, EventCategory
from hmi.ui import theme
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.format import format_time
from hmi.ui.write_dialog import WriteDialog

log = logging.getLogger(__name__)

COLUMNS = ("", "Time", "Machine", "Probable cause", "State", "Priority")
COL_MARK, COL_TIME, COL_MACHINE, COL_CAUSE, COL_STATE, COL_PRIORITY = range(6)
UNACK_MARK = "◆"
REFRESH_MS = 200


class AdvisoryPanel(QWidget):
    """Advisories that need attention (raised, or cleared but not acknowledged), newest first."""

    # How many advisories need attention, when it changes (UI thread): the dock's tab shows it.
    count_changed = Signal(int)

    def __init__(self, feed: AlarmFeed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.feed = feed
        self.advisories = AlarmList(category=EventCategory.ADVISORY)
        self._notes_lock = threading.Lock()
        self._notes: dict[str, dict[str, Any]] = {}  # advisory -> the twin's finding
        self._seen_version = -1
        self._snapshot_pending = False
        self._rows: list[AlarmStatus] = []
        self.attention_count = -1  # not counted yet
        self.write_dialog: WriteDialog | None = None

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COL_CAUSE, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(COL_MARK, 24)
        self.table.setColumnWidth(COL_STATE, 120)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._show_details())
        self.details = QTextBrowser()
        self.ack_button = QPushButton("Acknowledge")
        self.ack_button.clicked.connect(self.acknowledge_selected)
        self.apply_button = QPushButton("Apply recommendation…")
        self.apply_button.clicked.connect(self.apply_recommendation)
        self.message = QLabel()
        self.message.setWordWrap(True)

        splitter = QSplitter()
        splitter.addWidget(self.table)
        splitter.addWidget(self.details)
        splitter.setSizes([560, 440])
        buttons = QHBoxLayout()
        buttons.addWidget(self.ack_button)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.message, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)

        self._subscription = feed.mirror.bus.subscribe_events(self._on_events, name="advisory-panel")
        feed.mirror.on_link_change(self._on_link)
        feed.mirror.on_resynced(self.request_snapshot)  # advisory transitions may be among the lost
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(REFRESH_MS)
        if feed.mirror.link_up:
            self.request_snapshot()
        self._show_details()

    def close_feed(self) -> None:
        """Stop listening (UI thread), before the panel is dropped."""
        self._timer.stop()
        self._subscription.close()

    # -- IPC thread -------------------------------------------------------------------------

    def _on_events(self, events: list[Event] | Any) -> None:
        mine = [e for e in events if e.category == EventCategory.ADVISORY]
        if not mine:
            return
        with self._notes_lock:
            for event in mine:
                note = event.details.get("advisory")
                if isinstance(note, dict):
                    self._notes[event.source] = note
        self.advisories.apply_events(mine)
        if self.advisories.needs_snapshot and self.advisories.epoch is not None:
            self.request_snapshot()

    def _on_link(self, up: bool) -> None:
        if up:
            self.request_snapshot()

    def request_snapshot(self) -> None:
        client = self.feed.client
        if client is None or self._snapshot_pending:
            return
        self._snapshot_pending = True
        future = client.send_command({"command": "advisories"})

        def done(f: Future[Reply]) -> None:
            self._snapshot_pending = False
            try:
                reply = f.result()
            except Exception as exc:
                log.warning("advisory snapshot failed: %s", exc)
                return
            if reply.get("ok"):
                with self._notes_lock:
                    self._notes.update({str(k): v for k, v in dict(reply.get("annotations") or {}).items()})
                self.advisories.apply_snapshot(reply)

        future.add_done_callback(done)

    # -- UI thread ------------------------------------------------------------------------------

    def note(self, name: str) -> dict[str, Any]:
        with self._notes_lock:
            return dict(self._notes.get(name, {}))

    def refresh(self) -> None:
        version = self.advisories.version
        if version == self._seen_version:
            return
        self._seen_version = version
        selected = self.selected()
        rows = [s for s in self.advisories.statuses() if s.needs_attention]
        rows.sort(key=lambda s: (-s.since_ns, s.name))
        if len(rows) != self.attention_count:
            self.attention_count = len(rows)
            self.count_changed.emit(len(rows))
        self._rows = rows
        self.model.setRowCount(0)
        for status in rows:
            note = self.note(status.name)
            items = [QStandardItem("") for _ in COLUMNS]
            items[COL_MARK].setText(UNACK_MARK if status.unacknowledged else "")
            items[COL_TIME].setText(format_time(status.since_ns))
            items[COL_MACHINE].setText(status.machine)
            items[COL_CAUSE].setText(str(note.get("title") or status.message))
            items[COL_STATE].setText(status.state.replace("_", " "))
            items[COL_PRIORITY].setText(status.priority.label)
            colour = theme.ALARM_COLOURS.get(int(status.priority))
            if colour:
                items[COL_PRIORITY].setBackground(QBrush(QColor(colour)))
                items[COL_PRIORITY].setForeground(QBrush(QColor(theme.ALARM_TEXT_ON[int(status.priority)])))
            self.model.appendRow(items)
        if selected is not None:
            for row, status in enumerate(rows):
                if status.name == selected.name:
                    self.table.selectRow(row)
                    break
        elif rows:
            self.table.selectRow(0)
        self._show_details()

    def selected(self) -> AlarmStatus | None:
        indexes = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not indexes:
            return None
        row = indexes[0].row()
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def _show_details(self) -> None:
        status = self.selected()
        if status is None:
            self.details.setHtml("<p>No advisory needs attention.</p>")
            self.ack_button.setEnabled(False)
            self.apply_button.setEnabled(False)
            return
        note = self.note(status.name)
        esc = html.escape
        parts = [f"<h3>{esc(str(note.get('title') or status.message))} — {esc(status.machine)}</h3>"]
        parts.append(f"<p>State: {esc(status.state.replace('_', ' '))}; since {esc(format_time(status.since_ns))}</p>")
        evidence = note.get("evidence") or []
        if evidence:
            parts.append("<p><b>Evidence</b></p><ul>" + "".join(f"<li>{esc(str(e))}</li>" for e in evidence) + "</ul>")
        checks = note.get("checks") or status.guidance.splitlines()
        if checks:
            parts.append("<p><b>Checks</b></p><ol>" + "".join(f"<li>{esc(str(c))}</li>" for c in checks) + "</ol>")
        command = note.get("command")
        if command:
            parts.append(
                f"<p><b>Recommended</b>: set {esc(str(command['tag']))} to {command['value']:g}"
                f" — {esc(str(command.get('reason', '')))}. Not sent automatically: apply it to confirm.</p>"
            )
        parts.append("<p><i>Advisory only: the PLC stays in charge of safety.</i></p>")
        self.details.setHtml("".join(parts))
        self.ack_button.setEnabled(status.unacknowledged)
        self.apply_button.setEnabled(self._command_spec(command) is not None)

    def _command_spec(self, command: Any) -> Any:
        if not isinstance(command, dict):
            return None
        registry = self.feed.mirror.bus.registry
        tag = str(command.get("tag", ""))
        if tag not in registry or not registry.by_name(tag).writable:
            return None
        return registry.by_name(tag)

    def _say(self, text: str, bad: bool = False) -> None:
        self.message.setStyleSheet(f"color: {theme.ALARM_URGENT};" if bad else "")
        self.message.setText(text)

    def acknowledge_selected(self) -> None:
        status = self.selected()
        if status is None:
            return
        if not self.feed.session.logged_in:
            self._say("log in first: acknowledging needs the operator role", bad=True)
            return

        def done(reply: Reply) -> None:
            if reply.get("ok"):
                self._say(f"acknowledged {status.name}")
            else:
                self._say(f"not acknowledged: {reply.get('error', 'unknown error')}", bad=True)

        self.feed.send({"command": "acknowledge", "alarms": [status.name]}, done)

    def apply_recommendation(self) -> WriteDialog | None:
        """The write dialog with the recommended value filled in; the operator confirms it there."""
        status = self.selected()
        if status is None:
            return None
        command = self.note(status.name).get("command")
        spec = self._command_spec(command)
        if spec is None:
            return None
        assert isinstance(command, dict)
        dialog = WriteDialog(spec, self.feed.mirror.bus, self.feed, self, context=f"advisory {status.name}")
        dialog.new_value.setText(f"{float(command['value']):g}")
        self.write_dialog = dialog
        dialog.open()
        return dialog
