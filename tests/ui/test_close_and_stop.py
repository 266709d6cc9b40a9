"""Leaving the window and stopping the system, in a real main window on a runtime's command
channel: the window manager's close asks first and closes only the window; "Stop system…"
asks for a reason and is decided (and audited) by the runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from hmi.ui.main_window import MainWindow
from hmi.ui.stop_dialog import CLOSE_DETAIL
from tests.alarm_runtime import InProcessRuntime
from tests.ui.runtime_window import log_in, window_on
from tests.x11 import close_like_window_manager


@pytest.fixture
def attached(qtbot, main_window_factory, tmp_path: Path) -> Iterator[tuple[InProcessRuntime, MainWindow, list[str]]]:
    """A main window on an in-process runtime whose stop_system records who asked."""
    rt = InProcessRuntime(tmp_path).start()
    stops: list[str] = []
    rt.commands.stop_system = stops.append
    try:
        with window_on(qtbot, main_window_factory, rt) as window:
            yield rt, window, stops
    finally:
        rt.stop()


def test_the_window_managers_close_asks_and_closes_only_the_window(qtbot, attached) -> None:
    """A close from the window manager asks first (saying the runtime keeps recording);
    Cancel keeps the window, "Close window" closes it, and the runtime is not told to stop."""
    rt, window, stops = attached
    close_like_window_manager(int(window.winId()))
    qtbot.waitUntil(lambda: window.close_box is not None and window.close_box.isVisible(), timeout=5000)
    box = window.close_box
    assert box.informativeText() == CLOSE_DETAIL
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(200)
    assert window.isVisible(), "Cancel must keep the window"

    close_like_window_manager(int(window.winId()))
    qtbot.waitUntil(lambda: window.close_box is not box and window.close_box.isVisible(), timeout=5000)
    qtbot.waitUntil(lambda: window.isVisible(), timeout=1000)
    window.close_box.findChild(type(box.button(QMessageBox.StandardButton.Cancel)), "closeWindow").click()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert stops == []
    assert not [r for r in rt.audit.records() if r.kind == "stop_system"]


def test_quitting_the_application_closes_the_window_without_asking(qtbot, attached) -> None:
    """A close that is not the operator's (the supervisor's SIGTERM quits the application,
    --exit-after) never waits on the question."""
    _rt, window, _stops = attached
    window.close()
    assert not window.isVisible()
    assert window.close_box is None


def test_stop_system_needs_an_engineer_and_a_reason(qtbot, attached) -> None:
    """An operator's "Stop system…" is refused by the runtime and says so; an engineer's,
    with a reason, reaches the runtime's stop; both are in the audit trail."""
    rt, window, stops = attached
    window.stop_system()
    assert window.stop_message is not None and "log in first" in window.stop_message.text()
    window.stop_message.close()

    assert not window.stop_system_action.isEnabled()
    assert window.stop_system_action.toolTip() == "Needs engineer: log in"
    log_in(qtbot, window, "olga")
    # The menu entry says beforehand that an operator may not; the runtime decides all the same.
    assert not window.stop_system_action.isEnabled()
    assert window.stop_system_action.toolTip() == "Needs engineer: olga is operator"
    window.stop_system()
    dialog = window.stop_dialog
    assert dialog is not None and not dialog.stop_button.isEnabled(), "no stop without a reason"
    dialog.reason.setText("end of shift maintenance")
    dialog.stop_button.click()
    qtbot.waitUntil(lambda: window.stop_message is not None and window.stop_message.isVisible(), timeout=5000)
    assert "needs the engineer role" in window.stop_message.text()
    window.stop_message.close()
    assert stops == []

    window.alarm_feed.session.logout()
    log_in(qtbot, window, "erik")
    assert window.stop_system_action.isEnabled()
    window.stop_system_action.trigger()
    window.stop_dialog.reason.setText("pump01 seal replacement")
    window.stop_dialog.stop_button.click()
    qtbot.waitUntil(lambda: stops == ["erik"], timeout=5000)
    records = [(r.user, r.outcome, r.details_dict()["reason"]) for r in rt.audit.records() if r.kind == "stop_system"]
    assert records[0][:2] == ("olga", "refused")
    assert records[1] == ("erik", "ok", "pump01 seal replacement")
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == "System stopping, requested by erik", timeout=5000)
