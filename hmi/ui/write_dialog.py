"""Writing a value to the plant: tag, current value, new value and limits, confirmed.

Two steps in one dialog: enter the new value (checked against the tag's limits here for a
quick answer; the runtime checks again, with the role, and audits), then confirm a
sentence that names old and new value. The result stays on screen: Good, or the server's
bad status and why.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from hmi.core.bus import TagBus
from hmi.core.tags import DataType, TagSpec
from hmi.ui import theme
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.format import format_tag_value


def parse_value(spec: TagSpec, text: str) -> float | bool | str:
    """The typed value for `text`, checked against the tag's limits; ValueError says why not."""
    text = text.strip()
    if spec.datatype == DataType.STRING:
        return text
    if spec.datatype == DataType.BOOL:
        lowered = text.lower()
        if lowered in ("1", "true", "on", "yes"):
            return True
        if lowered in ("0", "false", "off", "no"):
            return False
        raise ValueError("enter true or false")
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if spec.datatype == DataType.INT and number != int(number):
        raise ValueError("enter a whole number")
    if spec.low is not None and spec.high is not None and not spec.low <= number <= spec.high:
        raise ValueError(f"outside the limits {spec.low:g} … {spec.high:g} {spec.unit}".rstrip())
    return int(number) if spec.datatype == DataType.INT else number


class WriteDialog(QDialog):
    def __init__(
        self, spec: TagSpec, bus: TagBus, feed: AlarmFeed, parent: QWidget | None = None, context: str = ""
    ) -> None:
        """`context` says why (e.g. the advisory whose recommendation this is); it goes into the audit record."""
        super().__init__(parent)
        self.spec = spec
        self.context = context
        self.bus = bus
        self.feed = feed
        self.value: float | bool | str | None = None
        self.result: Reply | None = None
        self.setWindowTitle(f"Write {spec.name}")
        form = QFormLayout(self)
        form.addRow("Tag", QLabel(f"{spec.name}  {spec.description}".strip()))
        self.current = QLabel()
        form.addRow("Current value", self.current)
        limits = (
            f"{spec.low:g} … {spec.high:g} {spec.unit}" if spec.low is not None and spec.high is not None else "none"
        )
        form.addRow("Limits", QLabel(limits.strip()))
        self.new_value = QLineEdit()
        self.new_value.setPlaceholderText(f"new value in {spec.unit}" if spec.unit else "new value")
        form.addRow("New value", self.new_value)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.message)
        buttons = QHBoxLayout()
        self.write_button = QPushButton("Write…")
        self.write_button.clicked.connect(self.ask_confirmation)
        self.confirm_button = QPushButton("Confirm write")
        self.confirm_button.clicked.connect(self.confirm)
        self.confirm_button.hide()
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        for button in (self.write_button, self.confirm_button, self.close_button):
            buttons.addWidget(button)
        form.addRow(buttons)
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

    def _say(self, text: str, bad: bool = False) -> None:
        self.message.setStyleSheet(f"color: {theme.ALARM_URGENT};" if bad else "")
        self.message.setText(text)

    def _back_to_entry(self) -> None:
        self.confirm_button.hide()
        self.write_button.show()
        self._say("")

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
        self._say(
            f"Write {shown} {self.spec.unit} to {self.spec.name} (now {self._current_text()})?".replace("  ", " ")
        )
        self.write_button.hide()
        self.confirm_button.show()

    def confirm(self) -> None:
        if self.value is None:
            return
        self.confirm_button.setEnabled(False)
        self._say("writing…")
        command = {"command": "write", "tag": self.spec.name, "value": self.value}
        if self.context:
            command["context"] = self.context
        self.feed.send(command, self._on_reply)

    def _on_reply(self, reply: Reply) -> None:
        self.result = reply
        self.confirm_button.setEnabled(True)
        self.confirm_button.hide()
        self.write_button.show()
        status = str(reply.get("status", "Good"))
        if reply.get("ok") and status == "Sent":  # hmi/sources/writes.py: nothing can confirm it
            self._say(f"Sent, not confirmed by the device: {reply.get('message', '')}".rstrip(": "))
        elif reply.get("ok"):
            self._say(f"Written: {status}")
        elif status.startswith("Uncertain"):
            self._say(f"Sent, NOT confirmed: {reply.get('message', '')}", bad=True)
        else:
            self._say(f"Not written: {reply.get('error', 'unknown error')}", bad=True)
