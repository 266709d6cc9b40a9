"""Login dialog and the user indicator (who is logged in, log in / log out).

The runtime checks the password and issues the session; the window only keeps the
session's token. Failed logins are audited and throttled by the runtime; the dialog shows
its answer ("wrong user name or password", "try again in 40 s").
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from hmi.ui import theme
from hmi.ui.alarm_feed import UserSession
from hmi.ui.dialog_fit import grow_to_fit


class LoginDialog(QDialog):
    def __init__(self, session: UserSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Log in")
        layout = QFormLayout(self)
        self.user = QLineEdit()
        self.user.setObjectName("user")
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        layout.addRow("User", self.user)
        layout.addRow("Password", self.password)
        self.message = QLabel()
        self.message.setStyleSheet(f"color: {theme.ALARM_URGENT};")
        self.message.setWordWrap(True)
        layout.addRow(self.message)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Log in")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout.addRow(self.buttons)

    def submit(self) -> None:
        user = self.user.text().strip()
        if not user or not self.password.text():
            self._say("enter user name and password")
            return
        self.buttons.setEnabled(False)
        self._say("checking…")
        self.session.login(user, self.password.text(), self._on_result)

    def _on_result(self, ok: bool, error: str) -> None:
        self.buttons.setEnabled(True)
        self.password.clear()
        if ok:
            self.message.clear()
            self.accept()
        else:
            self._say(error or "login failed")
            self.password.setFocus()

    def _say(self, text: str) -> None:
        self.message.setText(text)
        QTimer.singleShot(0, self._fit_height)  # the refusal may wrap onto a second line

    def _fit_height(self) -> None:
        grow_to_fit(self)


class UserIndicator(QWidget):
    """`user (role)` and a Log in / Log out button, for the main window's header."""

    def __init__(self, session: UserSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        row.addWidget(self.label)
        self.button = QPushButton()
        self.button.clicked.connect(self._on_clicked)
        row.addWidget(self.button)
        self.dialog: LoginDialog | None = None
        session.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        if self.session.logged_in:
            self.label.setText(f"{self.session.user} ({self.session.role})")
            self.button.setText("Log out")
        else:
            self.label.setText("not logged in (view only)")
            self.button.setText("Log in…")

    def _on_clicked(self) -> None:
        if self.session.logged_in:
            self.session.logout()
        else:
            self.dialog = LoginDialog(self.session, self.window())
            self.dialog.open()
