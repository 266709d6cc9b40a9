"""Writing a value to the plant: tag, current value, new value and limits, confirmed.

Two steps in one dialog: enter the new value (checked against the tag's limits here for a
quick answer; the runtime checks again, with the role, and audits), then confirm a
sentence that names old and new value. The result stays on screen: Good, or the server's
bad status and why.

A tag declared `verify = true` also asks for a reason from the project's list, and the
confirmed request is not written: it waits for a second user's verification
(hmi/ui/pending_writes.py), and the dialog says so, then how it ended.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QLabel, QLineEdit, QWidget

from hmi.core.bus import TagBus
from hmi.core.tags import DataType, TagSpec
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.confirm_dialog import ConfirmedActionDialog, parse_bool
from hmi.ui.format import format_tag_value
from hmi.ui.pending_writes import PendingWrites, pending_writes_of


def parse_value(spec: TagSpec, text: str) -> float | bool | str:
    """The typed value for `text`, checked against the tag's limits; ValueError says why not."""
    text = text.strip()
    if spec.datatype == DataType.STRING:
        return text
    if spec.datatype == DataType.BOOL:
        return parse_bool(text, "enter true or false")
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if spec.datatype == DataType.INT and number != int(number):
        raise ValueError("enter a whole number")
    if spec.low is not None and spec.high is not None and not spec.low <= number <= spec.high:
        raise ValueError(f"outside the limits {spec.low:g} … {spec.high:g} {spec.unit}".rstrip())
    return int(number) if spec.datatype == DataType.INT else number


class WriteDialog(ConfirmedActionDialog):
    def __init__(
        self, spec: TagSpec, bus: TagBus, feed: AlarmFeed, parent: QWidget | None = None, context: str = ""
    ) -> None:
        """`context` says why (e.g. the advisory whose recommendation this is); it goes into the audit record."""
        super().__init__(feed, parent)
        self.spec = spec
        self.context = context
        self.bus = bus
        self.value: float | bool | str | None = None
        self.setWindowTitle(f"Write {spec.name}")
        self.form.addRow("Tag", QLabel(f"{spec.name}  {spec.description}".strip()))
        self.current = QLabel()
        self.form.addRow("Current value", self.current)
        limits = (
            f"{spec.low:g} … {spec.high:g} {spec.unit}" if spec.low is not None and spec.high is not None else "none"
        )
        self.form.addRow("Limits", QLabel(limits.strip()))
        self.new_value = QLineEdit()
        self.new_value.setPlaceholderText(f"new value in {spec.unit}" if spec.unit else "new value")
        self.form.addRow("New value", self.new_value)
        # Two-person writes: the reasons are the runtime's list ([writes] verify_reasons).
        self.pending_id = ""
        self.reason: QComboBox | None = None
        self.pending: PendingWrites | None = None
        if spec.verify:
            self.pending = pending_writes_of(feed)
            self.reason = QComboBox()
            self.reason.setPlaceholderText("choose a reason")
            self.form.addRow("Reason", self.reason)
            note = QLabel("A second user (supervisor or above) must verify this write before it is sent.")
            note.setWordWrap(True)
            self.form.addRow("Verification", note)
            self.pending.changed.connect(self._on_pending_changed)
            self._on_pending_changed()
            if not self.pending.reasons:
                self.pending.refresh()
        self.write_button = self._add_message_and_buttons("Write…", "Confirm write")
        self.new_value.textEdited.connect(self._back_to_entry)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._show_current)
        self._timer.start(500)
        self._show_current()

    def _current_text(self) -> str:
        latest = self.bus.latest(self.spec.name)
        if latest is None:
            return "unknown"
        return f"{format_tag_value(latest.value, self.spec)} {self.spec.unit}".strip()

    def _show_current(self) -> None:
        self.current.setText(self._current_text())

    def ask_confirmation(self) -> None:
        if not self.feed.session.logged_in:
            self._say("log in first: writing needs the operator role", bad=True)
            return
        try:
            self.value = parse_value(self.spec, self.new_value.text())
        except ValueError as exc:
            self._say(str(exc), bad=True)
            return
        shown = format_tag_value(self.value, self.spec) if not isinstance(self.value, str) else self.value
        if self.reason is not None:
            if not self.reason.currentText():
                self._say("choose a reason: this write needs verification by a second user", bad=True)
                return
            self._ask(
                f"Ask to write {shown} {self.spec.unit} to {self.spec.name} (now {self._current_text()}) for "
                f"“{self.reason.currentText()}”? It is sent once a second user verifies it.".replace("  ", " ")
            )
            return
        self._ask(
            f"Write {shown} {self.spec.unit} to {self.spec.name} (now {self._current_text()})?".replace("  ", " ")
        )

    def confirm(self) -> None:
        if self.value is None:
            return
        command = {"command": "write", "tag": self.spec.name, "value": self.value}
        if self.context:
            command["context"] = self.context
        if self.reason is not None:
            command["reason"] = self.reason.currentText()
        self.pending_id = ""
        self._send(command, "writing…")

    def _on_pending_changed(self) -> None:
        """The runtime's reasons (kept as chosen when they come again), and how a request ended."""
        assert self.reason is not None and self.pending is not None
        reasons = self.pending.reasons
        if [self.reason.itemText(i) for i in range(self.reason.count())] != reasons:
            chosen = self.reason.currentText()
            self.reason.clear()
            self.reason.addItems(reasons)
            self.reason.setCurrentIndex(reasons.index(chosen) if chosen in reasons else -1)
        outcome = self.pending.outcomes.get(self.pending_id) if self.pending_id else None
        if outcome is not None:
            self._say(outcome, bad=not outcome.startswith("Written"))

    def _show_reply(self, reply: Reply) -> None:
        status = str(reply.get("status", "Good"))
        if reply.get("ok") and reply.get("pending"):
            self.pending_id = str(reply.get("id", ""))
            lapse = f"{float(reply.get('timeout_s', 0)):g} s"
            self._say(f"Waiting for verification by a second user: not written yet (lapses in {lapse})")
            self._on_pending_changed()  # it may have been decided already
        elif reply.get("ok") and status == "Sent":  # hmi/sources/writes.py: nothing can confirm it
            self._say(f"Sent, not confirmed by the device: {reply.get('message', '')}".rstrip(": "))
        elif reply.get("ok"):
            self._say(f"Written: {status}")
        elif status.startswith("Uncertain"):
            self._say(f"Sent, NOT confirmed: {reply.get('message', '')}", bad=True)
        else:
            self._say(f"Not written: {reply.get('error', 'unknown error')}", bad=True)
