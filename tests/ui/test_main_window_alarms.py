"""The main window's alarm hook on a live runtime (real plant and runtime processes): the
alarm summary gets the runtime's alarms, an operator logs in, a write goes through the
runtime's guard and is audited, and the audit trail in the historian file verifies."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hmi.config.alarms import alarm_definitions, alarm_settings
from hmi.config.loader import load_project
from hmi.core.samples import now_ns
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.paths import data_dir
from hmi.security.audit import AuditTrail
from hmi.security.roles import Role
from hmi.security.users import UserStore
from hmi.ui import theme
from hmi.ui.annunciator import SystemPlayer
from tests.alarm_runtime import InProcessRuntime
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
        # The demo plant accepts feed_override writes within its limits: anything but Good is a defect.
        assert write.result["ok"], write.result
        status = write.result["status"]
        assert status == "Good"
        assert write.message.text() == "Written: Good"
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


SHOTS = ARTIFACTS  # screenshots to look at (not committed)


def test_demo_window_colours_the_alarming_part_and_says_the_horn_cannot_sound(
    qtbot, qapp, main_window_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The demo project's window on a machine with no audio player says so in its status bar; a pump
    bearing alarm colours the pump casing (bearing frame) in 3D, not the motor, and the horn button
    shows it would be sounding."""
    project = load_project(REPO / "config" / "demo.toml")
    rt = InProcessRuntime(tmp_path / "rt", alarm_definitions(project), project.tag_specs(), alarm_settings(project))
    rt.start()
    mirror = BusMirror()
    client = IpcClient(rt.stream, rt.requests, mirror)
    (tmp_path / "bin").mkdir()
    with caplog.at_level(logging.WARNING, logger="hmi.ui.main_window"):
        player = SystemPlayer(env={"PATH": str(tmp_path / "bin")})
        win = main_window_factory(project, mirror, client, sound_player=player)
    try:
        assert win.horn_label.text() == "horn: no audio output (no audio player found (paplay, pw-play, aplay))"
        assert win.horn_label.isVisible()
        assert "no audio output" in caplog.text
        client.start()
        qtbot.waitUntil(lambda: win.alarm_feed.alarms.epoch == rt.engine.epoch, timeout=10000)
        win.show_machine("pump01")
        qtbot.waitUntil(lambda: win.scene.status("pump01")[0] == "ready", timeout=30000)
        motor = win.scene.node_colour("pump01", "Motor")
        start = now_ns() - 30 * 10**9  # past the alarm's 10 s on-delay, in the samples' own time
        for ts in (start, start + 15 * 10**9):
            rt.publish("pump01.speed", 1480, ts)
            rt.publish("pump01.bearing_temperature", 78.0, ts)
        rt.alarms.tick()  # the runtime's timer task does this every 100 ms: the on-delay has passed
        qtbot.waitUntil(lambda: win.alarm_panel.model.rowCount() == 1, timeout=5000)
        high = pytest.approx(tuple(int(theme.ALARM_HIGH[i : i + 2], 16) / 255 for i in (1, 3, 5)))
        qtbot.waitUntil(lambda: win.scene.node_colour("pump01", "Casing") == high, timeout=5000)
        assert win.scene.node_colour("pump01", "Motor") == pytest.approx(motor)
        assert win.alarm_banner.silence_button.text() == "Silence (no audio)"
        qtbot.wait(300)
        SHOTS.mkdir(exist_ok=True)
        win.screenshot().save(str(SHOTS / "main_window_pump_bearing_alarm.png"))
        # Back to normal, held past the alarm's 60 s off-delay (in the samples' own time).
        rt.publish("pump01.bearing_temperature", 50.0, start + 16 * 10**9)
        rt.alarms.tick(start + 80 * 10**9)
        qtbot.waitUntil(lambda: win.scene.node_colour("pump01", "Casing") != high, timeout=5000)
    finally:
        client.stop()
        win.alarm_feed.close()
        rt.stop()
