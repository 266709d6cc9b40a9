"""Writing a value to the plant: tag, current value, new value and limits, confirmed.

Two steps in one dialog: enter the new value (checked against the tag's limits here for a
quick answer; the runtime checks again, with the role, and audits), then confirm a
sentence that names old and new value. The result stays on screen: Good, or the server's
bad status and why.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QLineEdit, QWidget

from hmi.core.bus import TagBus
from hmi.core.tags import DataType, TagSpec
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.confirm_dialog import ConfirmedActionDialog, parse_bool
from hmi.ui.format import format_tag_value


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
        self._ask(
            f"Write {shown} {self.spec.unit} to {self.spec.name} (now {self._current_text()})?".replace("  ", " ")
        )

    def confirm(self) -> None:
        if self.value is None:
            return
        command = {"command": "write", "tag": self.spec.name, "value": self.value}
        if self.context:
            command["context"] = self.context
        self._send(command, "writing…")

    def _show_reply(self, reply: Reply) -> None:
        status = str(reply.get("status", "Good"))
        if reply.get("ok") and status == "Sent":  # hmi/sources/writes.py: nothing can confirm it
            self._say(f"Sent, not confirmed by the device: {reply.get('message', '')}".rstrip(": "))
        elif reply.get("ok"):
            self._say(f"Written: {status}")
        elif status.startswith("Uncertain"):
            self._say(f"Sent, NOT confirmed: {reply.get('message', '')}", bad=True)
        else:
            self._say(f"Not written: {reply.get('error', 'unknown error')}", bad=True)
