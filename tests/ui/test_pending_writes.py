"""Two-person writes in the window: the write dialog of a `verify = true` tag asks for a reason
from the runtime's list and says the write waits for a second user; the pending list of a
second window offers Verify only to a verifier (a viewer sees it disabled, with the role named,
and nobody may verify their own), and a verification writes the value and tells the requester's
dialog. Real runtime commands over the real IPC channel, two windows' feeds."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.security.roles import Role
from hmi.security.verified_writes import VerifiedWrites
from hmi.ui.alarm_feed import AlarmFeed
from hmi.ui.pending_writes import PendingWritesDialog
from hmi.ui.write_dialog import WriteDialog
from tests.alarm_runtime import PASSWORD, InProcessRuntime
from tests.test_verified_writes import REASONS, TAG, VERIFIED_TAGS


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[InProcessRuntime]:
    runtime = InProcessRuntime(tmp_path, tags=VERIFIED_TAGS)
    if runtime.users.get("sam") is None:
        runtime.users.add("sam", Role.SUPERVISOR, PASSWORD)
    runtime.commands.verified = VerifiedWrites(REASONS, 120.0)
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture
def feeds(qtbot, rt: InProcessRuntime) -> Iterator[list[AlarmFeed]]:
    """Two windows' command feeds on the runtime (the requester's and the verifier's)."""
    made: list[tuple[AlarmFeed, IpcClient]] = []
    for _ in range(2):
        mirror = BusMirror()
        client = IpcClient(rt.stream, rt.requests, mirror)
        made.append((AlarmFeed(mirror, client), client))
        client.start()
    for feed, _client in made:
        qtbot.waitUntil(lambda f=feed: f.mirror.link_up, timeout=10000)
    yield [feed for feed, _ in made]
    for feed, client in made:
        client.stop()
        feed.close()
        feed.deleteLater()
    gc.collect()


def log_in(qtbot, feed: AlarmFeed, user: str) -> None:
    feed.session.login(user, PASSWORD)
    qtbot.waitUntil(lambda: feed.session.user == user, timeout=5000)


def test_the_dialog_asks_a_reason_and_the_verifier_verifies_from_the_list(qtbot, rt, feeds) -> None:
    """Olga's dialog offers the configured reasons, refuses to ask without one, and says the
    request waits; in the second window a viewer sees Verify disabled with the role named, the
    supervisor verifies, the value is written once and Olga's dialog says so."""
    requester, verifier = feeds
    log_in(qtbot, requester, "olga")
    rt.publish(TAG, 100)
    qtbot.waitUntil(lambda: requester.mirror.bus.latest(TAG) is not None, timeout=5000)
    spec = requester.mirror.bus.registry.by_name(TAG)
    assert spec.verify  # the window learns it with the tag
    dialog = WriteDialog(spec, requester.mirror.bus, requester)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.reason is not None
    qtbot.waitUntil(lambda: dialog.reason.count() == len(REASONS), timeout=5000)
    assert [dialog.reason.itemText(i) for i in range(dialog.reason.count())] == REASONS
    dialog.new_value.setText("80")
    dialog.ask_confirmation()
    assert dialog.message.text() == "choose a reason: this write needs verification by a second user"
    dialog.reason.setCurrentIndex(0)
    dialog.ask_confirmation()
    assert dialog.message.text().startswith("Ask to write 80.0 % to cnc01.feed_override (now ")
    dialog.confirm()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=5000)
    assert dialog.message.text() == ("Waiting for verification by a second user: not written yet (lapses in 120 s)")
    assert rt.writer.writes == []

    log_in(qtbot, verifier, "vic")
    pending = PendingWritesDialog(verifier)
    qtbot.addWidget(pending)
    pending.show()
    qtbot.waitUntil(lambda: pending.table.rowCount() == 1, timeout=5000)
    assert [pending.table.item(0, c).text() for c in range(5)] == [TAG, "80", REASONS[0], "olga", requester.station]
    pending.table.selectRow(0)
    assert not pending.verify_button.isEnabled()
    assert pending.verify_button.toolTip() == "Needs supervisor: vic is viewer"

    verifier.session.logout()
    log_in(qtbot, verifier, "sam")
    qtbot.waitUntil(pending.verify_button.isEnabled, timeout=2000)
    pending.verify_button.click()
    qtbot.waitUntil(lambda: pending.message.text().startswith("Verified and written"), timeout=5000)
    assert pending.message.text() == "Verified and written to cnc01.feed_override: Good"
    assert rt.writer.writes == [(TAG, 80.0)]
    qtbot.waitUntil(lambda: dialog.message.text() == "Written: Good (verified by sam)", timeout=5000)
    qtbot.waitUntil(lambda: pending.table.rowCount() == 0, timeout=5000)
    for widget in (dialog, pending):
        widget.close()


def test_the_requester_may_not_verify_but_may_cancel_from_the_list(qtbot, rt, feeds) -> None:
    """A supervisor's own request: Verify stays disabled for them, Cancel withdraws it."""
    window, _other = feeds
    log_in(qtbot, window, "sam")
    reply = rt.handle({"command": "write", "session": rt.login("sam"), "tag": TAG, "value": 70, "reason": REASONS[1]})
    assert reply["pending"]
    pending = PendingWritesDialog(window)
    qtbot.addWidget(pending)
    pending.show()
    qtbot.waitUntil(lambda: pending.table.rowCount() == 1, timeout=5000)
    pending.table.selectRow(0)
    assert not pending.verify_button.isEnabled() and not pending.reject_button.isEnabled()
    assert pending.cancel_button.isEnabled()
    pending.cancel_button.click()
    qtbot.waitUntil(lambda: pending.table.rowCount() == 0, timeout=5000)
    assert rt.commands.verified.pending() == [] and rt.writer.writes == []
    pending.close()
