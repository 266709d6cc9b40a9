"""What a user may do is said before it is tried, and Help helps: in a real main window on a
runtime's command channel (real commands, sessions, users and audit trail), actions that need
a role are disabled with a tooltip naming it and look disabled, a viewer meets a "Log in…"
button where a write or an acknowledgement would be refused; About names version, build,
Python/Qt/VTK and the libraries' licences; the guide opens from the installation; the
shortcuts are a two-column table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QMenu

import hmi
from hmi.config import load_project
from hmi.ipc.mirror import BusMirror
from hmi.ui.about import AboutDialog, GuideWindow, ShortcutsDialog, licence_of
from hmi.ui.main_window import SHORTCUTS, MainWindow
from hmi.ui.write_dialog import WriteDialog
from tests.alarm_runtime import PASSWORD, InProcessRuntime
from tests.helpers import ARTIFACTS, DEMO_PROJECT
from tests.ui.runtime_window import log_in, window_on


@pytest.fixture
def attached(qtbot, main_window_factory, tmp_path: Path) -> Iterator[tuple[InProcessRuntime, MainWindow]]:
    rt = InProcessRuntime(tmp_path).start()
    try:
        with window_on(qtbot, main_window_factory, rt) as window:
            yield rt, window
    finally:
        rt.stop()


def menu_of(window: MainWindow, title: str) -> QMenu:
    for action in window.menuBar().actions():
        if action.text().replace("&", "") == title and action.menu() is not None:
            return action.menu()
    raise AssertionError(f"no menu {title}")


def test_a_viewer_learns_before_pressing_write_that_it_needs_a_login(qtbot, attached) -> None:
    """Not logged in: Write… is disabled saying "Needs operator: log in" and a Log in… button
    stands beside it; a viewer reads that a viewer may not; an operator may write."""
    rt, window = attached
    rt.publish("cnc01.feed_override", 100)
    qtbot.waitUntil(lambda: window.bus.latest("cnc01.feed_override") is not None, timeout=5000)
    dialog = window.open_write_dialog("cnc01.feed_override")
    assert isinstance(dialog, WriteDialog)
    qtbot.waitExposed(dialog)
    assert not dialog.write_button.isEnabled()
    assert dialog.write_button.toolTip() == "Needs operator: log in"
    assert dialog.login_button.isVisible()
    ARTIFACTS.mkdir(exist_ok=True)
    dialog.grab().save(str(ARTIFACTS / "write_dialog_viewer_log_in.png"))
    dialog.login_button.click()  # the login dialog, from where the write was refused
    login = dialog.role_gate.login_dialog
    assert login is not None and login.isVisible()
    login.user.setText("vic")
    login.password.setText(PASSWORD)
    login.submit()
    qtbot.waitUntil(lambda: window.alarm_feed.session.user == "vic", timeout=5000)
    assert not dialog.login_button.isVisible()
    assert not dialog.write_button.isEnabled()
    assert dialog.write_button.toolTip() == "Needs operator: vic is viewer"
    window.alarm_feed.session.logout()
    log_in(qtbot, window, "olga")
    assert dialog.write_button.isEnabled() and dialog.write_button.toolTip() == ""


def test_role_actions_are_disabled_say_which_role_and_look_disabled(qtbot, attached) -> None:
    """The alarm summary's actions and the Alarms menu's acknowledge entries wait for an
    operator (the Log in… button shows meanwhile); out of service waits for an engineer; a
    disabled menu entry is drawn in the disabled grey, not the text colour."""
    _rt, window = attached
    panel = window.alarm_panel
    assert not panel.ack_button.isEnabled() and panel.ack_button.toolTip() == "Needs operator: log in"
    assert panel.login_button.isVisible()
    alarms = menu_of(window, "Alarms")
    ack = next(a for a in alarms.actions() if a.text() == "Acknowledge selected")
    silence = next(a for a in alarms.actions() if a.text() == "Silence horn")
    assert not ack.isEnabled() and ack.toolTip() == "Needs operator: log in" and alarms.toolTipsVisible()
    assert silence.isEnabled()  # anyone may silence the horn in the control room

    # How they look: the disabled entry's text is clearly lighter than an enabled one's.
    alarms.popup(window.mapToGlobal(window.rect().center()))
    qtbot.waitExposed(alarms)
    image = alarms.grab().toImage()
    ARTIFACTS.mkdir(exist_ok=True)
    image.save(str(ARTIFACTS / "alarms_menu_logged_out.png"))

    def darkest(action) -> int:  # type: ignore[no-untyped-def]
        rect = alarms.actionGeometry(action)
        return min(
            QColor(image.pixel(x, y)).lightness()
            for y in range(rect.top(), rect.bottom())
            for x in range(rect.left(), rect.right())
        )

    assert darkest(ack) - darkest(silence) > 80, "a disabled entry must not look like an enabled one"
    alarms.hide()

    log_in(qtbot, window, "olga")
    assert ack.isEnabled() and panel.ack_button.isEnabled() and not panel.login_button.isVisible()
    assert not panel.out_of_service_button.isEnabled()
    assert panel.out_of_service_button.toolTip() == "Needs engineer: olga is operator"
    window.grab().save(str(ARTIFACTS / "main_window_operator.png"))


def test_about_names_version_build_runtimes_and_licences(qtbot, main_window_factory) -> None:
    """Help ▸ About: the version, "development" as build from a checkout, Python, Qt and VTK
    versions, and each bundled library with its version and licence."""
    window = main_window_factory(load_project(DEMO_PROJECT), BusMirror(), scene=False)
    dialog = window.show_about()
    assert isinstance(dialog, AboutDialog)
    qtbot.waitExposed(dialog)
    rows = {
        dialog.versions.item(r, 0).text(): dialog.versions.item(r, 1).text() for r in range(dialog.versions.rowCount())
    }
    assert rows["Version"] == hmi.__version__
    assert rows["Build"] == "development"
    assert {"Python", "Qt", "VTK"} <= set(rows) and rows["VTK"][0].isdigit()
    licences = {dialog.licences.item(r, 0).text(): dialog.licences.item(r, 2).text()
                for r in range(dialog.licences.rowCount())}  # fmt: skip
    assert "LGPL" in licences["PySide6_Essentials"] and licences["pyqtgraph"] == "MIT"
    assert "not stated" not in licences.values()
    ARTIFACTS.mkdir(exist_ok=True)
    dialog.grab().save(str(ARTIFACTS / "help_about.png"))


def test_a_licence_is_read_from_expression_field_or_classifiers() -> None:
    """License-Expression first, then a short License field, then the classifiers."""
    from email.message import Message

    def meta(**fields: str | list[str]) -> Message:
        message = Message()
        for key, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                message[key.replace("_", "-")] = item
        return message

    assert licence_of(meta(License_Expression="MIT", License="BSD")) == "MIT"  # type: ignore[arg-type]
    assert licence_of(meta(License="BSD-3-Clause")) == "BSD-3-Clause"  # type: ignore[arg-type]
    text = "Copyright (c) 2024\nPermission is hereby granted..."
    classifier = "License :: OSI Approved :: Apache Software License"
    assert licence_of(meta(License=text, Classifier=[classifier])) == "Apache Software License"  # type: ignore[arg-type]


def test_the_guide_opens_from_the_installation_and_the_shortcuts_are_a_table(qtbot, main_window_factory) -> None:
    """Help ▸ Operator's guide renders docs/window.md with its sections; Help ▸ Keyboard
    shortcuts lists every shortcut in two columns, nothing cut."""
    window = main_window_factory(load_project(DEMO_PROJECT), BusMirror(), scene=False)
    guide = window.show_guide()
    assert isinstance(guide, GuideWindow)
    qtbot.waitExposed(guide)
    text = guide.browser.toPlainText()
    assert "The window: an operator's guide" in text and "Writing a value" in text
    assert "missing from this installation" not in text
    ARTIFACTS.mkdir(exist_ok=True)
    guide.grab().save(str(ARTIFACTS / "help_guide.png"))
    shortcuts = window.show_shortcuts()
    assert isinstance(shortcuts, ShortcutsDialog)
    qtbot.waitExposed(shortcuts)
    table = shortcuts.table
    assert table.columnCount() == 2 and table.rowCount() == len(SHORTCUTS)
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == [keys for keys, _ in SHORTCUTS]
    metrics = table.fontMetrics()
    for r in range(table.rowCount()):
        for c in range(2):
            assert metrics.horizontalAdvance(table.item(r, c).text()) < table.columnWidth(c), "a shortcut is cut"
    assert table.verticalScrollBar().maximum() == 0, "the short list must not scroll"
    shortcuts.grab().save(str(ARTIFACTS / "help_shortcuts.png"))
