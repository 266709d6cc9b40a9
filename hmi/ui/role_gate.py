"""Who may do what, said before it is tried.

An action that needs a role (hmi.security.roles: acknowledge needs an operator, out of
service and stopping the system an engineer) is disabled while the logged-in user lacks it,
with a tooltip naming the role ("Needs operator: log in"), and where a viewer would be refused
a "Log in…" button stands in place of the action. The runtime still checks every command
(hmi.commands): this only tells the operator beforehand what it would say.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QPushButton, QWidget

from hmi.security.roles import REQUIRED_ROLE, Action, Role
from hmi.ui.alarm_feed import UserSession


def session_role(session: UserSession) -> Role | None:
    """The logged-in user's role (None: nobody, or a role this window does not know)."""
    if not session.logged_in:
        return None
    try:
        return Role.parse(session.role)
    except ValueError:
        return None


def refusal(session: UserSession, needed: Role) -> str:
    """Why `session` may not do an action that needs `needed` ("" when it may)."""
    role = session_role(session)
    if role is not None and role >= needed:
        return ""
    if not session.logged_in:
        return f"Needs {needed.label}: log in"
    return f"Needs {needed.label}: {session.user} is {session.role}"


class RoleGate(QObject):
    """Keeps actions and buttons in step with the session: enabled only for a user whose role
    may, otherwise disabled with the refusal as tooltip; `login_button()` shows while nobody
    is logged in."""

    def __init__(self, session: UserSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._targets: list[tuple[QAction | QWidget, Role, Callable[[], bool] | None, str, bool]] = []
        self._login_buttons: list[QPushButton] = []
        self.login_dialog: QWidget | None = None
        session.changed.connect(self.refresh)

    def gate(
        self,
        target: QAction | QWidget,
        needs: Action | Role,
        also: Callable[[], bool] | None = None,
        tooltip: str = "",
        hide: bool = False,
    ) -> None:
        """`target` needs the role of `needs`; `also()` (when given) must hold too, e.g. "a
        writable tag"; `tooltip` is shown while it is usable. `hide`: hidden, not disabled,
        while it is not (what a lower role has no business seeing, like the station list)."""
        needed = REQUIRED_ROLE[needs] if isinstance(needs, Action) else needs
        self._targets.append((target, needed, also, tooltip, hide))
        self._apply(target, needed, also, tooltip, hide)

    def login_button(self) -> QPushButton:
        """A "Log in…" button, for beside the gated actions, shown while nobody is logged in."""
        button = QPushButton("Log in…")
        button.setObjectName("loginInPlace")
        button.setToolTip("Log in to act here: the runtime checks your role")
        button.clicked.connect(self.open_login)
        self._login_buttons.append(button)
        if self.session.logged_in:
            button.hide()  # not setVisible(True) before it has a parent: that makes a window
        return button

    def open_login(self) -> None:
        from hmi.ui.login import LoginDialog

        parent = self.parent()
        window = parent.window() if isinstance(parent, QWidget) else None
        self.login_dialog = LoginDialog(self.session, window)
        self.login_dialog.open()

    def refresh(self) -> None:
        for target, needed, also, tooltip, hide in self._targets:
            self._apply(target, needed, also, tooltip, hide)
        for button in self._login_buttons:
            self._show_login(button)

    def _apply(
        self, target: QAction | QWidget, needed: Role, also: Callable[[], bool] | None, tooltip: str, hide: bool
    ) -> None:
        why = refusal(self.session, needed)
        if hide:
            target.setVisible(not why and (also is None or also()))
            return
        target.setEnabled(not why and (also is None or also()))
        target.setToolTip(why or tooltip)

    def _show_login(self, button: QPushButton) -> None:
        if button.parent() is not None:
            button.setVisible(not self.session.logged_in)
