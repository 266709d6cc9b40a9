"""The two-step flow of the dialogs that act on the plant (write a value, call a method).

Enter what to do, press the action button ("Write…", "Call…") for a sentence that names it,
confirm, and the command goes to the runtime through the operator feed; the reply stays on
screen. A subclass builds its own rows on `form`, then calls `_add_message_and_buttons`; its
`ask_confirmation` ends in `_ask`, its `confirm` in `_send`, and `_show_reply` says the outcome.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDialog, QFormLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from hmi.security.roles import Action
from hmi.ui import theme
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.dialog_fit import grow_to_fit
from hmi.ui.role_gate import RoleGate


def parse_bool(text: str, hint: str) -> bool:
    """What an operator may type for a boolean (1/0, true/false, on/off, yes/no), in either
    dialog alike; anything else raises ValueError(`hint`)."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "on", "yes"):
        return True
    if lowered in ("0", "false", "off", "no"):
        return False
    raise ValueError(hint)


class ConfirmedActionDialog(QDialog):
    def __init__(self, feed: AlarmFeed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.feed = feed
        self.result: Reply | None = None  # type: ignore[assignment]  # the reply; QDialog.result() is never used
        self.form = QFormLayout(self)

    def _add_message_and_buttons(self, action: str, confirm: str) -> QPushButton:
        """The message row and the action / confirm / close buttons, below the rows built so
        far; returns the action button, which the subclass names for what it does."""
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.form.addRow(self.message)
        buttons = QHBoxLayout()
        self._action_button = QPushButton(action)
        self._action_button.clicked.connect(self.ask_confirmation)
        self.confirm_button = QPushButton(confirm)
        self.confirm_button.clicked.connect(self.confirm)
        self.confirm_button.hide()
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        # Both act on the plant with the write role: a viewer learns it before pressing, from the
        # disabled button's tooltip and a "Log in…" beside it (the runtime checks again).
        self._action_ready = True
        self.role_gate = RoleGate(self.feed.session, self)
        self.role_gate.gate(self._action_button, Action.WRITE, also=lambda: self._action_ready)
        self.login_button = self.role_gate.login_button()
        for button in (self.login_button, self._action_button, self.confirm_button, self.close_button):
            buttons.addWidget(button)
        self.form.addRow(buttons)
        return self._action_button

    def set_action_ready(self, ready: bool) -> None:
        """Whether the action button may be used as far as the dialog goes (the role aside)."""
        self._action_ready = ready
        self.role_gate.refresh()

    def _say(self, text: str, bad: bool = False) -> None:
        self.message.setStyleSheet(f"color: {theme.ALARM_URGENT};" if bad else "")
        self.message.setText(text)
        # After Qt's deferred show of newly inserted rows, not now: see _fit_height.
        QTimer.singleShot(0, self._fit_height)

    def _fit_height(self) -> None:
        grow_to_fit(self)

    def _back_to_entry(self) -> None:
        """Any edit after the question withdraws it: what would be confirmed is no longer what was asked."""
        self.confirm_button.hide()
        self._action_button.show()
        self._say("")

    def _ask(self, question: str) -> None:
        self._say(question)
        self._action_button.hide()
        self.confirm_button.show()

    def _send(self, command: dict[str, Any], busy: str) -> None:
        """Send the confirmed command; the button stays disabled until the reply, so it goes once."""
        self.confirm_button.setEnabled(False)
        self._say(busy)
        self.feed.send(command, self._on_reply)

    def _on_reply(self, reply: Reply) -> None:
        self.result = reply
        self.confirm_button.setEnabled(True)
        self.confirm_button.hide()
        self._action_button.show()
        self._show_reply(reply)

    def ask_confirmation(self) -> None:
        raise NotImplementedError

    def confirm(self) -> None:
        raise NotImplementedError

    def _show_reply(self, reply: Reply) -> None:
        raise NotImplementedError
