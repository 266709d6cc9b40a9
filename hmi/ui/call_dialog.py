"""Calling an OPC UA method on the plant: its arguments with their types, confirmed, and the result.

Follows the write dialog: the form comes from the method's signature (read through the
runtime, `method_signature`: the window never talks to a PLC), one editor per input argument
by type, a comment for the audit trail, then a confirmation that names the method and every
argument. Values are checked here for a quick answer; the runtime checks the role and the
types again, calls, and audits. The result stays on screen: the status and each output by
name, or why the call was refused (role, argument, the server's Bad status).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QWidget

from hmi.ui import theme
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.confirm_dialog import ConfirmedActionDialog, parse_bool

INTEGER_TYPES = frozenset({"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64"})
FLOAT_TYPES = frozenset({"Float", "Double"})
TEXT_HINTS = {
    "String": "text",
    "DateTime": "time, ISO 8601 (2024-01-02T03:04:05Z)",
}


def parse_argument(argument: dict[str, Any], text: str) -> Any:
    """The typed value for `text` as argument `argument` declares it; ValueError says why not.
    Unknown types go as text: the runtime coerces them or says why it cannot."""
    dtype = str(argument.get("data_type") or "")
    text = text.strip()
    if dtype == "Boolean":
        return parse_bool(text, "choose true or false")
    if dtype in INTEGER_TYPES:
        try:
            return int(text)  # exact: an Int64 beyond 2^53 must not pass through a float
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if dtype in FLOAT_TYPES:
        try:
            return float(text.replace(",", "."))
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    return text


def type_text(argument: dict[str, Any]) -> str:
    rank = argument.get("value_rank", -1)
    return f"{argument.get('data_type') or '?'}{'[]' if isinstance(rank, int) and rank >= 0 else ''}"


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)


class CallDialog(ConfirmedActionDialog):
    def __init__(
        self,
        feed: AlarmFeed,
        connection: str,
        object_id: str,
        method_id: str,
        name: str = "",
        parent: QWidget | None = None,
    ) -> None:
        """`object_id`: the object the method is called on (its parent in the address space)."""
        super().__init__(feed, parent)
        self.connection = connection
        self.object_id = object_id
        self.method_id = method_id
        self.name = name or method_id
        self.signature: dict[str, Any] | None = None
        self.values: list[Any] | None = None
        self.editors: list[QLineEdit | QComboBox] = []
        self.setWindowTitle(f"Call {self.name}")
        self.setMinimumWidth(440)
        method = QLabel(f"{self.name}  on {connection}")
        method.setToolTip(f"method {method_id}\nobject {object_id}")
        self.form.addRow("Method", method)
        self.arguments_row = self.form.rowCount()
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("why (goes into the audit trail)")
        self.comment.textEdited.connect(self._back_to_entry)
        self.form.addRow("Comment", self.comment)
        self.outputs = QLabel()
        self.outputs.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.form.addRow("Outputs", self.outputs)
        self.form.setRowVisible(self.outputs, False)  # until a call returns some
        self.call_button = self._add_message_and_buttons("Call…", "Confirm call")
        self.set_action_ready(False)  # until the signature is in
        self._say("reading the method's arguments…")
        command = {"command": "method_signature", "connection": connection, "object": object_id, "method": method_id}
        feed.send(command, self._on_signature)

    def _on_signature(self, reply: Reply) -> None:
        if not reply.get("ok"):
            self._say(f"Cannot read the method's arguments: {reply.get('error', 'no answer')}", bad=True)
            return
        self.signature = reply
        self.name = str(reply.get("name") or self.name)
        self.setWindowTitle(f"Call {self.name}")
        inputs = list(reply.get("inputs") or [])
        row = self.arguments_row
        if not inputs:
            self.form.insertRow(row, "Arguments", QLabel("none"))
        for i, argument in enumerate(inputs):
            editor = self._editor(argument)
            self.editors.append(editor)
            line = QHBoxLayout()
            line.addWidget(editor, 1)
            kind = QLabel(type_text(argument))
            kind.setStyleSheet(f"color: {theme.TEXT_DIM};")
            line.addWidget(kind)
            label = QLabel(str(argument.get("name") or f"argument {i + 1}"))
            label.setToolTip(str(argument.get("description") or ""))
            self.form.insertRow(row, label, line)
            row += 1
            if argument.get("description"):
                note = QLabel(str(argument["description"]))
                note.setStyleSheet(f"color: {theme.TEXT_DIM};")
                note.setWordWrap(True)
                self.form.insertRow(row, "", note)
                row += 1
        self.set_action_ready(True)
        self._say("")

    def _editor(self, argument: dict[str, Any]) -> QLineEdit | QComboBox:
        dtype = str(argument.get("data_type") or "")
        tip = str(argument.get("description") or "")
        if dtype == "Boolean":
            box = QComboBox()
            box.addItems(["false", "true"])
            box.currentIndexChanged.connect(self._back_to_entry)
            box.setToolTip(tip)
            return box
        edit = QLineEdit()
        if dtype in INTEGER_TYPES:
            hint = "whole number"
        elif dtype in FLOAT_TYPES:
            hint = "number"
        else:
            hint = TEXT_HINTS.get(dtype, "text; the runtime checks the type")
        edit.setPlaceholderText(hint)
        edit.setToolTip(tip)
        edit.textEdited.connect(self._back_to_entry)
        return edit

    def ask_confirmation(self) -> None:
        if self.signature is None:
            return
        if not self.feed.session.logged_in:
            self._say("log in first: calling a method needs the operator role", bad=True)
            return
        inputs = list(self.signature.get("inputs") or [])
        values = []
        for i, (argument, editor) in enumerate(zip(inputs, self.editors, strict=True)):
            text = editor.currentText() if isinstance(editor, QComboBox) else editor.text()
            try:
                values.append(parse_argument(argument, text))
            except ValueError as exc:
                self._say(f"{argument.get('name') or f'argument {i + 1}'}: {exc}", bad=True)
                return
        self.values = values
        shown = ", ".join(
            f"{a.get('name') or f'argument {i + 1}'} = {value_text(v)}"
            for i, (a, v) in enumerate(zip(inputs, values, strict=True))
        )
        self._ask(f"Call {self.name}({shown}) on {self.connection}?")

    def confirm(self) -> None:
        if self.values is None:
            return
        self.form.setRowVisible(self.outputs, False)
        self._send(
            {
                "command": "call",
                "connection": self.connection,
                "object": self.object_id,
                "method": self.method_id,
                "arguments": self.values,
                "comment": self.comment.text().strip(),
            },
            "calling…",
        )

    def _show_reply(self, reply: Reply) -> None:
        outputs = list(reply.get("outputs") or [])
        declared = {str(a.get("name")): a for a in (self.signature or {}).get("outputs") or []}
        if outputs:
            lines = []
            for output in outputs:
                name = str(output.get("name"))
                kind = f"  ({type_text(declared[name])})" if name in declared else ""
                lines.append(f"{name} = {value_text(output.get('value'))}{kind}")
            self.outputs.setText("\n".join(lines))
            self.form.setRowVisible(self.outputs, True)
        if reply.get("ok"):
            self._say(f"Called: {reply.get('status', 'Good')}")
        elif "status" in reply:  # sent: the server (or the link to it) answered Bad
            self._say(f"Call failed: {reply.get('error', reply['status'])}", bad=True)
        else:  # refused by the runtime before anything was sent (role, arguments)
            self._say(f"Not called: {reply.get('error', 'unknown error')}", bad=True)
