"""Leaving the window and stopping the system: two different things, asked differently.

Closing the window closes only the window (the runtime keeps recording and raising alarms);
stopping the system ends recording, so it takes an engineer, a confirmation and a reason,
and the runtime audits it (hmi.commands.OperatorCommands._stop_system). Standard dialogs, no
colours (ISA-101).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QMessageBox, QVBoxLayout, QWidget

CLOSE_QUESTION = "Close this window?"
CLOSE_DETAIL = "The runtime keeps recording and raising alarms; reopen the window with hmi run."


def close_confirmation(parent: QWidget) -> QMessageBox:
    """The question before the window closes (window-modal, not yet shown: call open())."""
    box = QMessageBox(QMessageBox.Icon.Question, "Close window", CLOSE_QUESTION, QMessageBox.StandardButton.NoButton)
    box.setParent(parent, box.windowFlags())
    box.setInformativeText(CLOSE_DETAIL)
    box.setObjectName("closeConfirmation")
    close = box.addButton("Close window", QMessageBox.ButtonRole.AcceptRole)
    close.setObjectName("closeWindow")
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)  # Enter keeps the window: closing is the deliberate choice
    box.setEscapeButton(cancel)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    return box


class StopSystemDialog(QDialog):
    """Confirmation and reason for stopping plant connections, runtime and historian."""

    def __init__(self, user: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Stop system")
        self.setObjectName("stopSystemDialog")
        layout = QVBoxLayout(self)
        text = QLabel(
            "Stop the whole system?\n\n"
            "The plant connections close, recording and alarm handling stop, and every window on "
            "this runtime closes. Start it again with hmi run.\n\n"
            f"Recorded in the audit trail as stopped by {user}, with this reason:"
        )
        text.setWordWrap(True)
        layout.addWidget(text)
        self.reason = QLineEdit()
        self.reason.setObjectName("reason")
        self.reason.setPlaceholderText("reason (required)")
        layout.addWidget(self.reason)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.stop_button = self.buttons.addButton("Stop system", QDialogButtonBox.ButtonRole.AcceptRole)
        self.stop_button.setObjectName("stopSystem")
        self.stop_button.setEnabled(False)
        self.stop_button.setAutoDefault(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.reason.textChanged.connect(lambda text: self.stop_button.setEnabled(bool(text.strip())))
        layout.addWidget(self.buttons)

    def reason_text(self) -> str:
        return self.reason.text().strip()
