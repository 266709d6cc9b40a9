"""The main window's alarm hook on a live runtime (real plant and runtime processes): the
alarm summary gets the runtime's alarms, an operator logs in, a write goes through the
runtime's guard and is audited, and the audit trail in the historian file verifies."""

from __future__ import annotations

import subprocess
import sys

from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.paths import data_dir
from hmi.security.audit import AuditTrail
from hmi.security.roles import Role
from hmi.security.users import UserStore
from tests.helpers import ARTIFACTS, REPO


def test_main_window_alarms_login_and_guarded_write(qtbot, main_window_factory, live_runtime) -> None:
    """Alarm summary, banner and user indicator work in the main window; a write is confirmed, answered and audited."""
    UserStore().add("olga", Role.OPERATOR, "operator-pass")  # the runtime reads the users file at each login
    mirror = BusMirror()
    client = IpcClient(live_runtime.stream, live_runtime.requests, mirror)
    win = main_window_factory(live_runtime.project, mirror, client)
    client.start()
    try:
        configured = len(live_runtime.project.alarms)
        qtbot.waitUntil(lambda: len(win.alarm_feed.alarms.statuses()) == configured, timeout=20000)
        win.alarm_panel.set_filters(state="All configured")
        qtbot.waitUntil(lambda: win.alarm_panel.model.rowCount() == configured, timeout=5000)
        assert win.user_indicator.label.text() == "not logged in (view only)"
        win.user_indicator.button.click()
        dialog = win.user_indicator.dialog
        dialog.user.setText("olga")
        dialog.password.setText("operator-pass")
        dialog.submit()
        qtbot.waitUntil(lambda: win.user_indicator.label.text() == "olga (operator)", timeout=10000)
        qtbot.waitUntil(lambda: win.bus.latest("cnc01.feed_override") is not None, timeout=20000)
        assert win.open_write_dialog("cnc01.spindle_speed") is None  # not writable
        write = win.open_write_dialog("cnc01.feed_override")
        write.new_value.setText("80")
        write.ask_confirmation()
        assert write.message.text().startswith("Write 80.0 % to cnc01.feed_override (now ")
        write.confirm()
        qtbot.waitUntil(lambda: write.result is not None, timeout=15000)
        status = write.result.get("status")
        expected = "Written: Good" if write.result["ok"] else f"Not written: {write.result['error']}"
        assert write.message.text() == expected
        ARTIFACTS.mkdir(exist_ok=True)
        win.screenshot().save(str(ARTIFACTS / "main_window_alarms.png"))
    finally:
        client.stop()
        win.alarm_feed.close()
    db = data_dir() / "demo.sqlite"
    trail = AuditTrail(db, create=False)
    records = trail.records()
    trail.close()
    assert [(r.kind, r.user) for r in records if r.kind in ("login", "write")] == [("login", "olga"), ("write", "olga")]
    assert records[-1].details_dict()["status"] == status
    result = subprocess.run([sys.executable, "-m", "hmi", "audit", "verify", "--db", str(db)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
