"""Calling a plant method from the window: the tag browser's "Call…" on a browsed Method opens
the call dialog, which shows each input argument with its type and description, asks for
confirmation, and shows the outputs by name, or why not. Real parts throughout: the test
OPC UA server, the runtime (hmi.runtime.Runtime) over the IPC channel, the main window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLineEdit

from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.security.audit import AuditTrail
from hmi.ui.call_dialog import CallDialog, parse_argument
from tests.alarm_runtime import PASSWORD
from tests.helpers import ARTIFACTS
from tests.method_plant import ADJUST, OBJECT, MethodPlant
from tests.ui.test_tag_browser import find_child


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[MethodPlant]:
    running = MethodPlant(tmp_path, with_ipc=True).start()
    yield running
    running.stop()


def open_adjust(qtbot, window) -> CallDialog:  # type: ignore[no-untyped-def]
    """Browse Objects/Test, select Adjust and press Call…, as an operator would."""
    browser = window.tag_browser
    model = browser.space_model
    browser.tabs.setCurrentIndex(1)  # the address space browses on first show
    root = model.invisibleRootItem()
    qtbot.waitUntil(lambda: find_child(model, root, "Test") is not None, timeout=10000)
    folder = find_child(model, root, "Test")
    browser.tree.expand(folder.index())
    qtbot.waitUntil(lambda: find_child(model, folder, "Adjust") is not None, timeout=10000)
    adjust = find_child(model, folder, "Adjust")
    assert not browser.call_button.isEnabled()
    browser.tree.setCurrentIndex(adjust.index())
    assert browser.call_button.isEnabled()
    variable = find_child(model, folder, "setpoint")
    browser.tree.setCurrentIndex(variable.index())
    assert not browser.call_button.isEnabled(), "only methods can be called"
    browser.tree.setCurrentIndex(adjust.index())
    browser.call_button.click()
    dialog = browser.call_dialog
    assert dialog is not None and (dialog.object_id, dialog.method_id) == ("ns=2;s=Test", "ns=2;s=Test/adjust")
    qtbot.waitUntil(lambda: dialog.call_button.isEnabled(), timeout=10000)
    return dialog


def texts(dialog: CallDialog) -> list[str]:
    """Every label in the dialog's form, top to bottom."""
    out = []
    for row in range(dialog.form.rowCount()):
        for role in (dialog.form.ItemRole.LabelRole, dialog.form.ItemRole.FieldRole, dialog.form.ItemRole.SpanningRole):
            item = dialog.form.itemAt(row, role)
            if item is None:
                continue
            widgets = [item.widget()] if item.widget() else [item.layout().itemAt(i).widget()
                                                              for i in range(item.layout().count())]  # fmt: skip
            out += [w.text() for w in widgets if w is not None and hasattr(w, "text") and w.text()]
    return out


def test_an_operator_calls_a_method_from_the_tag_browser(qtbot, main_window_factory, plant: MethodPlant) -> None:
    """The dialog lists setpoint (Double) and reason (String) with their descriptions; after
    confirming, it shows Good and accepted = true; a Bad status and a viewer's refusal are shown
    as such; the runtime audited each with the comment."""
    mirror = BusMirror()
    assert plant.runtime.publisher is not None
    client = IpcClient(plant.runtime.publisher.stream_address, plant.runtime.publisher.request_address, mirror)
    window = main_window_factory(plant.runtime.project, mirror, client, scene=False)
    client.start()
    qtbot.waitUntil(lambda: mirror.link_up, timeout=10000)
    feed = window.alarm_feed
    feed.session.login("olga", PASSWORD)
    qtbot.waitUntil(lambda: feed.session.logged_in, timeout=10000)
    dialog = open_adjust(qtbot, window)
    shown = texts(dialog)
    for text in ("setpoint", "Double", "new setpoint in %", "reason", "String", "why"):
        assert text in shown, shown
    assert dialog.windowTitle() == "Call Adjust"
    setpoint, reason = dialog.editors
    assert isinstance(setpoint, QLineEdit) and isinstance(reason, QLineEdit)
    setpoint.setText("fast")
    dialog.ask_confirmation()
    assert dialog.message.text() == "setpoint: 'fast' is not a number" and not dialog.confirm_button.isVisible()
    setpoint.setText("42,5")
    reason.setText("trim after tool change")
    dialog.comment.setText("batch 7")
    dialog.ask_confirmation()
    assert dialog.message.text() == 'Call Adjust(setpoint = 42.5, reason = "trim after tool change") on plc?'
    assert plant.peer.adjusted == [], "nothing is sent before the confirmation"
    ARTIFACTS.mkdir(exist_ok=True)
    qtbot.wait(100)  # let the deferred show and layout of the inserted rows happen before the picture
    dialog.grab().save(str(ARTIFACTS / "call_dialog_confirm.png"))
    dialog.confirm_button.click()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=10000)
    assert dialog.message.text() == "Called: Good"
    assert dialog.outputs.text() == "accepted = true  (Boolean)" and dialog.outputs.isVisible()
    assert plant.peer.adjusted == [(42.5, "trim after tool change")]
    dialog.grab().save(str(ARTIFACTS / "call_dialog.png"))

    dialog.result = None
    setpoint.setText("1500")
    dialog.ask_confirmation()
    dialog.confirm()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=10000)
    assert dialog.message.text().startswith("Call failed: BadOutOfRange")
    assert not dialog.outputs.isVisible()
    dialog.grab().save(str(ARTIFACTS / "call_dialog_bad.png"))

    feed.session.logout()
    qtbot.waitUntil(lambda: not feed.session.logged_in, timeout=10000)
    dialog.ask_confirmation()
    assert "log in first" in dialog.message.text()
    feed.session.login("vic", PASSWORD)
    qtbot.waitUntil(lambda: feed.session.logged_in, timeout=10000)
    dialog.result = None
    setpoint.setText("50")
    dialog.ask_confirmation()
    dialog.confirm()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=10000)
    assert dialog.message.text() == "Not called: calling a method needs the operator role; vic is viewer"
    assert plant.peer.adjusted == [(42.5, "trim after tool change")]
    plant.stop()
    trail = AuditTrail(plant.db, create=False)
    try:
        calls = [r for r in trail.records() if r.kind == "call"]
    finally:
        trail.close()
    assert [(r.user, r.outcome, r.details_dict().get("comment")) for r in calls] == [
        ("olga", "ok", "batch 7"), ("olga", "failed", "batch 7"), ("vic", "refused", "batch 7"),
    ]  # fmt: skip


def test_a_boolean_argument_gets_a_choice_and_numbers_stay_exact() -> None:
    """Booleans are true/false, whole numbers go as exact ints (an Int64 beyond 2^53 too), text as typed."""
    assert parse_argument({"data_type": "Boolean"}, "true") is True
    assert parse_argument({"data_type": "Int64"}, str(2**53 + 1)) == 2**53 + 1
    with pytest.raises(ValueError, match="not a whole number"):
        parse_argument({"data_type": "Int32"}, "1.5")
    assert parse_argument({"data_type": "LocalizedText"}, " as typed ") == "as typed"


def test_a_method_without_a_feed_cannot_be_called(qtbot) -> None:
    """A tag browser without the operator feed (playback, no runtime) offers no Call…."""
    from hmi.core.bus import TagBus
    from hmi.ui.tag_browser import TagBrowser

    browser = TagBrowser(TagBus(), ["plc"], None)
    qtbot.addWidget(browser)
    assert browser.open_call_dialog({"node_class": "Method", "connection": "plc", "object": OBJECT,
                                     "node_id": ADJUST, "display_name": "Adjust"}) is None  # fmt: skip
    assert not browser.call_button.isVisibleTo(browser)
