"""Two-person writes in the window: the writes waiting for a second user, and the verifier's list.

A write to a tag declared `verify = true` does not go to the plant when the operator asks:
the runtime keeps it until a second user with the verifier role verifies it, rejects it, the
requester cancels it, or it lapses (hmi/security/verified_writes.py).

`PendingWrites` is the window's picture of those writes: the runtime's `pending_writes`
snapshot whenever the link comes up (with the reasons to pick from and the timeout), then the
OPERATOR events of each step (a request adds one; its verification, rejection, cancellation or
lapse removes it; the `write` event that carries its id is the plant's answer). Events arrive
on the IPC thread and wait in a queue; a UI timer applies them (the one crossing). One per
feed, shared by the write dialog and the list: `pending_writes_of(feed)`.

`PendingWritesDialog` is the list (User menu, "Pending write verifications…"): Verify and
Reject for a user with the verifier role, never for their own write (disabled, with a tooltip
naming the role), and Cancel for the requester. Calm grey: nothing here is an alarm.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi.core.events import Event, EventCategory, format_duration
from hmi.security.roles import Action, Role
from hmi.ui import theme
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.role_gate import RoleGate

APPLY_MS = 250
NS = 1_000_000_000
# The operator events that change the list (hmi.commands, "two-person (verified) writes").
_ENDS = {"write_verify", "write_verify_reject", "write_verify_cancel", "write_verify_lapse"}
_STEPS = {"write_verify_request", "write", *_ENDS}


class PendingWrites(QObject):
    """The writes waiting for verification, by id; `changed` fires (UI thread) when the list,
    the reasons or an outcome changed. `outcomes[id]` says how a write ended, for its requester."""

    changed = Signal()

    def __init__(self, feed: AlarmFeed) -> None:
        super().__init__(feed)
        self.feed = feed
        self.reasons: list[str] = []
        self.timeout_s = 0.0
        self.entries: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, str] = {}
        self._offset_ns = 0  # the runtime's clock minus ours, from the last snapshot
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._want_snapshot = feed.mirror.link_up
        self._subscription = feed.mirror.bus.subscribe_events(self._on_events, name="pending-writes")
        feed.mirror.on_link_change(self._on_link)
        feed.mirror.on_resynced(lambda: self._on_link(True))  # events may have been lost
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._apply)
        self._timer.start(APPLY_MS)

    def close(self) -> None:
        self._timer.stop()
        self._subscription.close()

    # -- IPC thread ------------------------------------------------------------------------

    def _on_events(self, events: list[Event] | Any) -> None:
        for event in events:
            if event.category == EventCategory.OPERATOR and event.details.get("action") in _STEPS:
                self._events.put(event)

    def _on_link(self, up: bool) -> None:
        if up:
            self._want_snapshot = True  # asked for on the UI thread, by the timer

    # -- UI thread ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Ask the runtime for the list (and the reasons) now."""
        self._want_snapshot = False
        self.feed.send({"command": "pending_writes"}, self._on_snapshot, with_session=False)

    def _on_snapshot(self, reply: Reply) -> None:
        if not reply.get("ok"):
            self._want_snapshot = True  # not connected: again on the next link-up or tick
            return
        self.reasons = [str(r) for r in reply.get("reasons", [])]
        self.timeout_s = float(reply.get("timeout_s", 0) or 0)
        self._offset_ns = int(reply.get("now_ns", time.time_ns())) - time.time_ns()
        self.entries = {str(p["id"]): dict(p) for p in reply.get("pending", [])}
        self.changed.emit()

    def _apply(self) -> None:
        if self._want_snapshot and self.feed.mirror.link_up:
            self.refresh()
        changed = False
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            changed = self._apply_event(event) or changed
        for ident in [i for i, p in self.entries.items() if self.remaining_s(p) <= 0]:
            del self.entries[ident]  # lapsed: the runtime's event follows on its next tick
            changed = True
        if changed:
            self.changed.emit()

    def _apply_event(self, event: Event) -> bool:
        d = event.details
        action, ok = d.get("action"), d.get("outcome") == "ok"
        if action == "write_verify_request" and ok and d.get("id"):
            self.entries[str(d["id"])] = {
                "id": str(d["id"]), "tag": event.source, "value": d.get("new"), "requester": event.user,
                "station": d.get("station", ""), "reason": d.get("reason", ""),
                "expires_ns": int(d.get("expires_ns", 0)),
            }  # fmt: skip
            return True
        ident = str(d.get("verify_id") or d.get("id") or "")
        if action == "write" and d.get("verify_id"):
            status = str(d.get("status", ""))
            if d.get("outcome") == "ok":
                self.outcomes[ident] = f"Written: {status} (verified by {d.get('verified_by')})"
            else:
                why = d.get("message") or d.get("reason") or status
                self.outcomes[ident] = f"Not written: {status + ': ' if status else ''}{why}".rstrip(": ")
            return True
        if action in _ENDS and ok and ident:
            self.entries.pop(ident, None)  # perhaps gone already: its time ran out here first
            if action == "write_verify_reject":
                self.outcomes[ident] = f"Rejected by {event.user}: {d.get('comment', '')}"
            elif action == "write_verify_cancel":
                self.outcomes[ident] = "Cancelled: not written"
            elif action == "write_verify_lapse":
                within = format_duration(d.get("timeout_s"))
                self.outcomes[ident] = f"Lapsed, not written: nobody verified it within {within}"
            return True
        return False

    def remaining_s(self, entry: dict[str, Any]) -> float:
        return (int(entry.get("expires_ns", 0)) - (time.time_ns() + self._offset_ns)) / NS

    def pending(self) -> list[dict[str, Any]]:
        return sorted(self.entries.values(), key=lambda p: p.get("expires_ns", 0))


def pending_writes_of(feed: AlarmFeed) -> PendingWrites:
    """The feed's one PendingWrites (made on first use)."""
    found = feed.findChild(PendingWrites)
    return found if isinstance(found, PendingWrites) else PendingWrites(feed)


COLUMNS = ("Tag", "Value", "Reason", "Requested by", "Station", "Lapses in")


class PendingWritesDialog(QDialog):
    """The writes waiting for a second user, with Verify, Reject and Cancel."""

    def __init__(self, feed: AlarmFeed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pendingWrites")
        self.setWindowTitle("Pending write verifications")
        self.feed = feed
        self.model = pending_writes_of(feed)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Writes that wait for a second user. A supervisor (or above) verifies another user's write: "
            "it is then sent to the plant. Nobody verifies their own."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("comment (a rejection says why)")
        layout.addWidget(self.comment)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        self.verify_button = QPushButton("Verify")
        self.reject_button = QPushButton("Reject…")
        self.cancel_button = QPushButton("Cancel my request")
        close = QPushButton("Close")
        self.role_gate = RoleGate(feed.session, self)
        others = lambda: self._selected_other() is not None  # noqa: E731
        self.role_gate.gate(self.verify_button, Action.VERIFY_WRITE, also=others,
                            tooltip="Send the selected write to the plant (another user's only)")  # fmt: skip
        self.role_gate.gate(self.reject_button, Action.VERIFY_WRITE, also=others,
                            tooltip="Turn the selected write down; the comment says why")  # fmt: skip
        self.role_gate.gate(self.cancel_button, Role.VIEWER, also=lambda: self._selected_own() is not None,
                            tooltip="Withdraw your own request")  # fmt: skip
        self.verify_button.clicked.connect(lambda: self._decide("verify_write"))
        self.reject_button.clicked.connect(lambda: self._decide("reject_write"))
        self.cancel_button.clicked.connect(lambda: self._decide("cancel_write"))
        close.clicked.connect(self.close)
        login = self.role_gate.login_button()
        for button in (login, self.verify_button, self.reject_button, self.cancel_button, close):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.table.itemSelectionChanged.connect(self.role_gate.refresh)
        self.model.changed.connect(self._fill)
        self._clock = QTimer(self)
        self._clock.timeout.connect(self._show_remaining)
        self._clock.start(1000)
        self.resize(760, 320)
        self._fill()
        self.model.refresh()

    def _selected(self) -> dict[str, Any] | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return self.model.entries.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def _selected_other(self) -> dict[str, Any] | None:
        entry = self._selected()
        return entry if entry is not None and entry.get("requester") != self.feed.session.user else None

    def _selected_own(self) -> dict[str, Any] | None:
        entry = self._selected()
        return entry if entry is not None and entry.get("requester") == self.feed.session.user else None

    def _fill(self) -> None:
        chosen = self._selected()
        keep = chosen["id"] if chosen is not None else None
        entries = self.model.pending()
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            cells = (entry["tag"], _text(entry.get("value")), entry.get("reason", ""), entry.get("requester", ""),
                     entry.get("station", ""), "")  # fmt: skip
            for column, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setData(Qt.ItemDataRole.UserRole, entry["id"])
                self.table.setItem(row, column, item)
            if entry["id"] == keep:
                self.table.selectRow(row)
        self._show_remaining()
        self.role_gate.refresh()

    def _show_remaining(self) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            entry = self.model.entries.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None
            cell = self.table.item(row, len(COLUMNS) - 1)
            if entry is not None and cell is not None:
                cell.setText(f"{max(self.model.remaining_s(entry), 0):.0f} s")

    def _decide(self, command: str) -> None:
        entry = self._selected()
        if entry is None:
            return
        request: dict[str, Any] = {"command": command, "id": entry["id"]}
        if self.comment.text().strip():
            request["comment"] = self.comment.text().strip()
        self._say("sending…")
        self.feed.send(request, self._on_reply)

    def _on_reply(self, reply: Reply) -> None:
        if not reply.get("ok"):
            what = "Not written" if "status" in reply else "Refused"  # verified, but the plant said no
            self._say(f"{what}: {reply.get('error', 'unknown error')}", bad=True)
        elif "status" in reply:
            self._say(f"Verified and written to {reply.get('tag', '')}: {reply['status']}")
        else:
            self._say("Done")
            self.comment.clear()

    def _say(self, text: str, bad: bool = False) -> None:
        self.message.setStyleSheet(f"color: {theme.ALARM_URGENT};" if bad else "")
        self.message.setText(text)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def open_pending_writes(feed: AlarmFeed, parent: QWidget) -> PendingWritesDialog:
    """Show the window's pending-writes list (one per window, made on first use)."""
    dialog = parent.findChild(PendingWritesDialog)
    if not isinstance(dialog, PendingWritesDialog):
        dialog = PendingWritesDialog(feed, parent)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
