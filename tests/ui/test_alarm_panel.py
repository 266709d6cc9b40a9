"""The alarm panel, banner, horn, login, write dialog and journal against a runtime's
operator side over the real IPC channel: the runtime decides, the window shows."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest

from hmi.core.alarms import AlarmDefinition, Condition, Priority
from hmi.core.alarms.model import AlarmStatus
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagSpec
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.ui.alarm_banner import AlarmBanner
from hmi.ui.alarm_feed import AlarmFeed
from hmi.ui.alarm_journal import AlarmJournal
from hmi.ui.alarm_panel import COL_MESSAGE, COL_STATE, COL_TAG, COL_TIME, AlarmPanel
from hmi.ui.annunciator import Annunciator, SystemPlayer
from hmi.ui.login import LoginDialog
from hmi.ui.theme import apply_theme
from hmi.ui.write_dialog import WriteDialog
from tests.alarm_runtime import PASSWORD, InProcessRuntime
from tests.helpers import ARTIFACTS

HI = "cnc01.tool_temperature.hi"
HIHI = "cnc01.tool_temperature.hihi"


@dataclass
class Window:
    rt: InProcessRuntime
    feed: AlarmFeed
    panel: AlarmPanel
    banner: AlarmBanner
    horn: Annunciator
    plays: list[float]
    client: IpcClient


def open_window(qtbot, rt: InProcessRuntime) -> tuple[Window, IpcClient]:
    mirror = BusMirror()
    client = IpcClient(rt.stream, rt.requests, mirror)
    feed = AlarmFeed(mirror, client)
    plays: list[float] = []
    horn = Annunciator(feed, player=lambda: plays.append(time.monotonic()), repeat_s=0.3)
    panel = AlarmPanel(feed)
    banner = AlarmBanner(feed, horn)
    qtbot.addWidget(panel)
    qtbot.addWidget(banner)
    panel.resize(1100, 420)
    panel.show()
    banner.show()
    client.start()
    qtbot.waitUntil(lambda: feed.alarms.epoch == rt.engine.epoch, timeout=10000)
    return Window(rt, feed, panel, banner, horn, plays, client), client


@pytest.fixture
def win(qtbot, qapp, tmp_path: Path) -> Iterator[Window]:
    apply_theme(qapp)
    rt = InProcessRuntime(tmp_path).start()
    window, _client = open_window(qtbot, rt)
    yield window
    close_window(window)
    rt.stop()


def close_window(window: Window) -> None:
    """Tear down on the UI thread: Qt objects left to the garbage collector could be
    destroyed on the IPC thread of a later test ("Timers cannot be stopped from another thread")."""
    window.client.stop()
    window.feed.close()
    for widget in (window.panel, window.banner):
        widget.close()
        widget.deleteLater()
    window.feed.deleteLater()
    del window
    gc.collect()


def login(qtbot, win: Window, user: str) -> None:
    """Through the login dialog, as a person would."""
    dialog = LoginDialog(win.feed.session)
    qtbot.addWidget(dialog)
    dialog.user.setText(user)
    dialog.password.setText(PASSWORD)
    dialog.submit()
    qtbot.waitUntil(lambda: win.feed.session.user == user, timeout=10000)


def row_state(win: Window, name: str) -> str | None:
    row = win.panel.model.row_of(name)
    return None if row is None else win.panel.model.index(row, COL_STATE).data()


def test_operator_acknowledges_from_the_panel(qtbot, win: Window) -> None:
    """An operator selects the new alarm and acknowledges it: the row turns ACK ACTIVE and the ack is audited."""
    win.rt.publish("cnc01.tool_temperature", 85)
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    assert win.panel.model.index(win.panel.model.row_of(HI), 0).data() == "◆"
    login(qtbot, win, "olga")
    win.panel.select([HI])
    win.panel.comment.setText("coolant nozzle cleaned")
    win.panel.ack_button.click()
    qtbot.waitUntil(lambda: row_state(win, HI) == "ACK ACTIVE", timeout=5000)
    qtbot.waitUntil(lambda: win.panel.last_reply is not None, timeout=5000)  # the reply travels apart from the state
    assert win.panel.last_reply["ok"]
    assert win.panel.model.index(win.panel.model.row_of(HI), 0).data() == ""
    assert "acknowledged by olga: coolant nozzle cleaned" in win.panel.details.toPlainText()
    acks = [r for r in win.rt.audit.records() if r.kind == "acknowledge"]
    assert [(r.user, r.target, r.outcome) for r in acks] == [("olga", HI, "ok")]
    ARTIFACTS.mkdir(exist_ok=True)
    win.panel.grab().save(str(ARTIFACTS / "alarm_panel.png"))


def test_viewer_is_refused(qtbot, win: Window) -> None:
    """A viewer's acknowledgement is refused by the runtime; the panel says why and the alarm stays unacknowledged."""
    win.rt.publish("cnc01.tool_temperature", 85)
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    login(qtbot, win, "vic")
    win.panel.select([HI])
    win.panel.acknowledge_selected()
    qtbot.waitUntil(lambda: win.panel.last_reply is not None, timeout=5000)
    assert win.panel.result_label.text() == "refused: acknowledge needs the operator role; vic is viewer"
    assert row_state(win, HI) == "UNACK ACTIVE"
    assert win.rt.audit.records()[-1].outcome == "refused"


def test_shelve_expires_and_the_alarm_returns_unacknowledged(qtbot, win: Window) -> None:
    """Shelved for 1 s the alarm leaves the summary; when the shelf runs out it is back, unacknowledged."""
    win.rt.publish("cnc01.tool_temperature", 85)
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    login(qtbot, win, "olga")
    win.panel.select([HI])
    win.panel.shelve_selected(duration_s=1.0, reason="thermocouple being replaced")
    qtbot.waitUntil(lambda: row_state(win, HI) is None, timeout=5000)
    assert win.banner.unacknowledged == 0
    win.panel.set_filters(state="Shelved")
    qtbot.waitUntil(lambda: row_state(win, HI) == "SHELVED", timeout=5000)
    win.panel.set_filters(state="Active and unacknowledged")
    time.sleep(1.1)
    win.rt.alarms.tick()  # the runtime's timer task does this every 100 ms
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    assert win.banner.unacknowledged == 1
    kinds = [r.kind for r in win.rt.audit.records()]
    assert kinds == ["login", "shelve"]


def test_banner_count_and_horn_follow_the_alarms(qtbot, win: Window) -> None:
    """The banner counts unacknowledged alarms and names the latest; the horn sounds for urgent/high until silenced."""
    silence = win.banner.silence_button
    assert win.banner.count_label.text() == "No unacknowledged alarms"
    assert (silence.text(), silence.isEnabled()) == ("Horn quiet", False)
    win.rt.publish("pump01.pressure", 1.0)  # low priority: no horn
    qtbot.waitUntil(lambda: win.banner.count_label.text() == "1 unacknowledged", timeout=5000)
    assert win.plays == []
    assert (silence.text(), silence.isEnabled()) == ("Horn quiet", False)
    win.rt.publish("cnc01.tool_temperature", 99)  # hi and hihi
    qtbot.waitUntil(lambda: win.banner.count_label.text() == "3 unacknowledged", timeout=5000)
    qtbot.waitUntil(lambda: len(win.plays) >= 2, timeout=5000)  # sounded, then repeated
    assert (silence.text(), silence.isEnabled()) == ("Silence (sounding)", True)
    silence.click()
    silenced = len(win.plays)
    qtbot.wait(700)
    assert len(win.plays) == silenced and not win.horn.sounding
    assert (silence.text(), silence.isEnabled()) == ("Horn quiet", False)
    login(qtbot, win, "olga")
    win.panel.select([HIHI])
    win.panel.acknowledge_selected()
    qtbot.waitUntil(lambda: win.banner.count_label.text() == "2 unacknowledged", timeout=5000)
    assert win.banner.latest_label.text().startswith(HI) or win.banner.latest_label.text().startswith("pump01")
    win.panel.confirm = lambda question: True  # the confirmation box, answered Yes
    win.panel.acknowledge_all_visible()
    qtbot.waitUntil(lambda: win.banner.count_label.text() == "No unacknowledged alarms", timeout=5000)


def test_write_dialog_shows_limits_confirms_and_reports_the_result(qtbot, win: Window) -> None:
    """The write dialog refuses out-of-limit values, asks to confirm old -> new, and shows Good or the bad status."""
    win.rt.publish("cnc01.feed_override", 100)
    qtbot.waitUntil(lambda: win.feed.mirror.bus.latest("cnc01.feed_override") is not None, timeout=5000)
    spec = win.feed.mirror.bus.registry.by_name("cnc01.feed_override")
    dialog = WriteDialog(spec, win.feed.mirror.bus, win.feed)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.current.text() == "100.0 %"
    dialog.new_value.setText("80")
    dialog.ask_confirmation()
    assert "log in first" in dialog.message.text()
    login(qtbot, win, "olga")
    dialog.new_value.setText("151")
    dialog.ask_confirmation()
    assert dialog.message.text() == "outside the limits 0 … 150 %"
    dialog.new_value.setText("80")
    dialog.ask_confirmation()
    assert dialog.message.text() == "Write 80.0 % to cnc01.feed_override (now 100.0 %)?"
    dialog.confirm_button.click()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=5000)
    assert dialog.message.text() == "Written: Good"
    assert win.rt.writer.writes == [("cnc01.feed_override", 80.0)]
    win.rt.writer.status = "BadOutOfRange"
    dialog.result = None
    dialog.new_value.setText("90")
    dialog.ask_confirmation()
    dialog.confirm()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=5000)
    assert dialog.message.text() == "Not written: BadOutOfRange: the server refused the value"
    assert [r.outcome for r in win.rt.audit.records() if r.kind == "write"] == ["ok", "failed"]


def test_idle_logout(qtbot, win: Window) -> None:
    """Without input for the idle time the window logs the user out, and the runtime audits why."""
    login(qtbot, win, "olga")
    win.feed.session.idle_logout_s = 0.3
    qtbot.waitUntil(lambda: not win.feed.session.logged_in, timeout=5000)
    qtbot.waitUntil(lambda: win.rt.audit.records()[-1].kind == "logout", timeout=5000)
    # The window says where it runs (host and display); the runtime records it with the action.
    station = win.feed.station
    assert station and win.rt.audit.records()[-1].details_dict() == {"reason": "idle", "station": station}


def test_an_operator_at_work_stays_logged_in(qtbot, win: Window) -> None:
    """Key presses keep the session alive past the idle time; when they stop, the user is logged
    out. Input is watched only while someone is logged in (the watch costs CPU on every event)."""
    assert not win.feed.session.listening
    login(qtbot, win, "olga")
    win.feed.session.idle_logout_s = 1.2
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        QTest.keyClick(win.panel.comment, Qt.Key.Key_Shift)
        qtbot.wait(100)
        assert win.feed.session.logged_in, "typing keeps the session"
    qtbot.waitUntil(lambda: not win.feed.session.logged_in, timeout=5000)
    assert not win.feed.session.listening


def test_journal_lists_and_exports_what_happened(qtbot, win: Window, tmp_path: Path) -> None:
    """Alarm events arriving over the channel join the journal's current range live; it filters
    by category and text, and exports the rows shown as CSV."""
    journal = AlarmJournal(None, win.feed.mirror.bus)  # no historian yet: live events only
    qtbot.addWidget(journal)
    win.rt.publish("cnc01.tool_temperature", 99)
    win.rt.publish("cnc01.tool_temperature", 20)
    qtbot.waitUntil(lambda: journal.model.rowCount() >= 4, timeout=5000)
    journal.category_box.setCurrentText("Alarms")
    win.rt.publish("cnc01.tool_temperature", 99)
    win.rt.publish("cnc01.tool_temperature", 20)
    qtbot.waitUntil(lambda: journal.model.rowCount() == 4, timeout=5000)  # only those since the filter changed
    journal.text_filter.setText("hihi")
    journal.refresh()
    win.rt.publish("cnc01.tool_temperature", 99)
    win.rt.publish("cnc01.tool_temperature", 20)
    qtbot.waitUntil(lambda: journal.model.rowCount() == 2, timeout=5000)
    path = tmp_path / "journal.csv"
    assert journal.export_csv(path) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("time,time_utc,category,source,what,state")
    assert ",alarm,cnc01.tool_temperature.hihi,cleared," in lines[1]
    assert ",alarm,cnc01.tool_temperature.hihi,activated,UNACK ACTIVE,urgent," in lines[2]


FLOOD = 10_000


def test_flood_of_10000_alarms_loses_nothing_and_the_window_keeps_responding(qtbot, qapp, tmp_path: Path) -> None:
    """10,000 alarms in one second: every one reaches the window and the audit, the UI thread never stalls long."""
    apply_theme(qapp)
    tags = [TagSpec(f"m{i // 100:03d}.t{i:05d}", unit="bar") for i in range(FLOOD)]
    defs = [AlarmDefinition(f"{t.name}.hi", t.name, Condition.HI, Priority.HIGH if i % 10 else Priority.URGENT,
                            limit=1.0) for i, t in enumerate(tags)]  # fmt: skip
    rt = InProcessRuntime(tmp_path, defs, tags).start()
    win, _client = open_window(qtbot, rt)
    try:
        login(qtbot, win, "olga")
        stalls: list[float] = []
        last = [time.perf_counter()]

        def probe() -> None:
            now = time.perf_counter()
            stalls.append(now - last[0])
            last[0] = now

        timer = QTimer()
        timer.timeout.connect(probe)
        timer.start(5)
        qtbot.wait(100)
        start = now_ns()

        def plant() -> None:
            for chunk in range(10):  # ten batches of 1,000 within one second, off the UI thread as in a runtime
                ids = np.arange(chunk * 1000, (chunk + 1) * 1000)
                rt.bus.publish(SampleBatch.from_arrays(ids, start + ids * 100_000, np.full(1000, 5.0)))
                time.sleep(0.05)

        source = threading.Thread(target=plant)
        source.start()
        qtbot.waitUntil(lambda: not source.is_alive(), timeout=30000)
        qtbot.waitUntil(lambda: win.banner.unacknowledged == FLOOD, timeout=30000)
        qtbot.waitUntil(lambda: win.panel.model.rowCount() == FLOOD, timeout=10000)
        activations = [e for e in rt.events if e.details.get("cause") == "activated"]
        assert len(activations) == FLOOD
        assert win.panel.flood_label.isVisible()
        timer.stop()
        worst_ms = max(stalls) * 1000
        print(f"longest UI-thread stall during the flood: {worst_ms:.0f} ms")
        # The bound is 100 ms; bench/alarms.py measures it with the runtime in its own
        # process, as in the product. Here the runtime's engine, publisher and this window share
        # one process (one GIL) on a shared 2-core machine, hence the wide margin.
        assert worst_ms < 600
        win.panel.confirm = lambda question: True
        win.panel.acknowledge_all_visible()
        qtbot.waitUntil(lambda: win.banner.unacknowledged == 0, timeout=30000)
        acks = [r for r in rt.audit.records() if r.kind == "acknowledge"]
        assert len(acks) == FLOOD and rt.audit.verify()[1] == []
    finally:
        close_window(win)
        rt.stop()


def acknowledged_comments(win: Window) -> dict[str, str]:
    """Alarm -> the comment on its acknowledged event, as the runtime published it."""
    return {e.source: e.details.get("comment", "") for e in win.rt.events
            if e.category == "alarm" and e.details.get("cause") == "acknowledged"}  # fmt: skip


def test_a_comment_belongs_to_one_acknowledgement(qtbot, win: Window) -> None:
    """Ack A with a comment, then ack-all B and C without one: only A carries the comment, and the question says so."""
    win.rt.publish("cnc01.tool_temperature", 99)  # hi and hihi
    win.rt.publish("pump01.pressure", 1.0)  # lo
    qtbot.waitUntil(lambda: win.banner.unacknowledged == 3, timeout=5000)
    login(qtbot, win, "olga")
    sent: list[dict] = []
    send = win.feed.send
    win.feed.send = lambda command, *args, **kwargs: (sent.append(command), send(command, *args, **kwargs))[1]
    win.panel.select([HI])
    win.panel.comment.setText("coolant nozzle cleaned")
    win.panel.ack_button.click()
    qtbot.waitUntil(lambda: row_state(win, HI) == "ACK ACTIVE", timeout=5000)
    # The state change and the command's reply travel separately; the field clears on the reply.
    qtbot.waitUntil(lambda: win.panel.comment.text() == "", timeout=5000)  # used once, then gone
    questions: list[str] = []
    win.panel.confirm = lambda question: questions.append(question) or True
    win.panel.acknowledge_all_visible()
    qtbot.waitUntil(lambda: win.banner.unacknowledged == 0, timeout=5000)
    assert questions == ["Acknowledge all 2 unacknowledged alarms shown, with no comment?"]
    assert [(c["alarms"], c["comment"]) for c in sent] == [
        ([HI], "coolant nozzle cleaned"),
        ([HIHI, "pump01.pressure.lo"], ""),
    ]
    qtbot.waitUntil(lambda: len(acknowledged_comments(win)) == 3, timeout=5000)
    assert acknowledged_comments(win) == {HI: "coolant nozzle cleaned", HIHI: "", "pump01.pressure.lo": ""}


def test_ack_all_question_shows_the_comment(qtbot, win: Window) -> None:
    """The ack-all confirmation names the count and quotes the comment that will go on every alarm."""
    win.rt.publish("cnc01.tool_temperature", 99)
    qtbot.waitUntil(lambda: win.banner.unacknowledged == 2, timeout=5000)
    login(qtbot, win, "olga")
    win.panel.comment.setText("coolant pump restarted")
    questions: list[str] = []
    win.panel.confirm = lambda question: questions.append(question) or False  # answered No
    win.panel.acknowledge_all_visible()
    assert questions == ['Acknowledge all 2 unacknowledged alarms shown, with the comment "coolant pump restarted"?']
    assert win.panel.comment.text() == "coolant pump restarted"  # nothing sent: the comment stays
    assert win.banner.unacknowledged == 2


def test_a_refused_acknowledgement_keeps_the_comment(qtbot, win: Window) -> None:
    """When the runtime refuses, the comment stays in its field so the operator can retry."""
    win.rt.publish("cnc01.tool_temperature", 85)
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    login(qtbot, win, "vic")
    win.panel.select([HI])
    win.panel.comment.setText("checked on site")
    win.panel.acknowledge_selected()
    qtbot.waitUntil(lambda: win.panel.last_reply is not None, timeout=5000)
    assert win.panel.result_label.text().startswith("refused:")
    assert win.panel.comment.text() == "checked on site"


def test_comment_required_alarm_says_why_it_is_refused(qtbot, qapp, tmp_path: Path) -> None:
    """An alarm that needs a comment is not acknowledged without one; the panel says so and the alarm stays unacked."""
    apply_theme(qapp)
    defs = [AlarmDefinition("pump01.pressure.lo", "pump01.pressure", Condition.LO, Priority.URGENT, limit=2,
                            comment_required=True)]  # fmt: skip
    rt = InProcessRuntime(tmp_path, defs).start()
    win, _client = open_window(qtbot, rt)
    try:
        rt.publish("pump01.pressure", 1.0)
        qtbot.waitUntil(lambda: row_state(win, "pump01.pressure.lo") == "UNACK ACTIVE", timeout=5000)
        login(qtbot, win, "olga")
        win.panel.select(["pump01.pressure.lo"])
        win.panel.acknowledge_selected()
        qtbot.waitUntil(lambda: win.panel.last_reply is not None, timeout=5000)
        assert win.panel.result_label.text() == "refused: pump01.pressure.lo needs a comment to be acknowledged"
        assert row_state(win, "pump01.pressure.lo") == "UNACK ACTIVE"
        win.panel.comment.setText("suction valve opened")
        win.panel.acknowledge_selected()
        qtbot.waitUntil(lambda: row_state(win, "pump01.pressure.lo") == "ACK ACTIVE", timeout=5000)
        qtbot.waitUntil(lambda: win.panel.comment.text() == "", timeout=5000)  # cleared on the reply
    finally:
        close_window(win)
        rt.stop()


def test_engineer_takes_an_alarm_out_of_service_and_back(qtbot, win: Window) -> None:
    """An engineer's "Out of service…" (reason required, engineer role) and "Return to service" work from the panel."""
    win.rt.publish("cnc01.tool_temperature", 85)
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    login(qtbot, win, "olga")
    win.panel.select([HI])
    win.panel.out_of_service_selected(reason="sensor replaced")
    qtbot.waitUntil(lambda: win.panel.last_reply is not None, timeout=5000)
    assert win.panel.result_label.text() == "refused: out of service needs the engineer role; olga is operator"
    login(qtbot, win, "erik")
    win.panel.out_of_service_button.click()  # opens the reason dialog: OK stays off without a reason
    dialog = win.panel.reason_dialog
    assert dialog is not None and not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    dialog.reason.setText("sensor replaced, work order 4711")
    dialog.accept()
    qtbot.waitUntil(lambda: row_state(win, HI) is None, timeout=5000)
    win.panel.set_filters(state="Out of service")
    qtbot.waitUntil(lambda: row_state(win, HI) == "OUT OF SERVICE", timeout=5000)
    win.panel.select([HI])
    win.panel.return_to_service_button.click()
    qtbot.waitUntil(lambda: row_state(win, HI) is None, timeout=5000)  # back in service: not in this view
    kinds = [(r.kind, r.outcome) for r in win.rt.audit.records() if "service" in r.kind]
    assert kinds == [("out_of_service", "refused"), ("out_of_service", "ok"), ("return_to_service", "ok")]


def test_shelved_list_is_one_click_away(qtbot, win: Window) -> None:
    """The "Shelved (n)" button counts shelved alarms and shows them, ready to unshelve."""
    win.rt.publish("cnc01.tool_temperature", 85)
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    assert win.panel.shelved_button.text() == "Shelved (0)"
    login(qtbot, win, "olga")
    win.panel.select([HI])
    win.panel.shelve_selected(duration_s=3600, reason="thermocouple being replaced")
    qtbot.waitUntil(lambda: win.panel.shelved_button.text() == "Shelved (1)", timeout=5000)
    win.panel.shelved_button.click()
    assert win.panel.state_box.currentText() == "Shelved"
    assert row_state(win, HI) == "SHELVED"
    win.panel.select([HI])
    win.panel.unshelve_button.click()
    qtbot.waitUntil(lambda: win.panel.shelved_button.text() == "Shelved (0)", timeout=5000)


def flagged(status: AlarmStatus, **flags: bool) -> AlarmStatus:
    """The status with nuisance flags set. `fleeting` is being added to AlarmStatus in
    parallel; until it is a field, a subclass carries it as an attribute."""
    names = {f.name for f in fields(AlarmStatus)}
    if all(name in names for name in flags):
        return replace(status, **flags)
    cls = type("FlaggedStatus", (AlarmStatus,), {k: v for k, v in flags.items() if k not in names})
    values = {f.name: getattr(status, f.name) for f in fields(status)}
    return cls(**{**values, **{k: v for k, v in flags.items() if k in names}})


def test_chattering_and_fleeting_alarms_are_flagged(qtbot, win: Window) -> None:
    """A chattering alarm says so in its message and in the panel's count; a fleeting one says [fleeting]."""
    win.rt.publish("cnc01.tool_temperature", 85)
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    status = replace(win.feed.alarms.get(HI), first_out=False)
    chattering = flagged(status, chattering=True)
    fleeting = flagged(status, fleeting=True)
    model = win.panel.model
    assert model.text(chattering, COL_MESSAGE) == status.message + " [chattering]"
    assert model.text(fleeting, COL_MESSAGE) == status.message + " [fleeting]"
    assert model.text(status, COL_MESSAGE) == status.message
    assert "1 chattering" in win.panel.count_text([chattering, fleeting])
    assert "chattering" not in win.panel.count_text([status])


def test_time_and_tag_columns_fit_their_content(qtbot, win: Window) -> None:
    """Time and Tag are wide enough for their text: nothing the operator needs is cut off."""
    win.rt.publish("cnc01.tool_temperature", 99)
    qtbot.waitUntil(lambda: win.panel.model.rowCount() == 2, timeout=5000)
    qtbot.wait(300)
    table = win.panel.table
    for col in (COL_TIME, COL_TAG):
        needed = max(table.sizeHintForColumn(col), table.horizontalHeader().sectionSizeHint(col))
        assert table.columnWidth(col) >= needed, (col, table.columnWidth(col), needed)


def test_horn_without_audio_output_says_so(qtbot, win: Window, tmp_path: Path) -> None:
    """On a machine with no audio player the horn still annunciates, and says nobody can hear it."""
    (tmp_path / "bin").mkdir()
    win.horn.player = SystemPlayer(env={"PATH": str(tmp_path / "bin")})
    assert win.horn.audio_text() == "horn: no audio output (no audio player found (paplay, pw-play, aplay))"
    win.rt.publish("cnc01.tool_temperature", 85)
    qtbot.waitUntil(lambda: win.horn.sounding, timeout=5000)
    assert win.banner.silence_button.text() == "Silence (no audio)"


def test_horn_priorities_follow_the_setting(qtbot, win: Window) -> None:
    """With horn_min_priority urgent, a high alarm stays quiet and an urgent one sounds."""
    win.horn.min_priority = Priority.URGENT
    win.rt.publish("cnc01.tool_temperature", 85)  # hi: high
    qtbot.waitUntil(lambda: row_state(win, HI) == "UNACK ACTIVE", timeout=5000)
    qtbot.wait(300)
    assert win.plays == [] and not win.horn.sounding
    win.rt.publish("cnc01.tool_temperature", 99)  # hihi: urgent
    qtbot.waitUntil(lambda: win.horn.sounding, timeout=5000)
    assert len(win.plays) >= 1


def test_an_alarm_without_a_value_shows_no_unit_in_the_value_column(qapp) -> None:
    """A bad-quality alarm has no reading: the Value cell is empty, not a lone '°C'."""
    import dataclasses

    from hmi.ui.alarm_panel import COL_VALUE, AlarmTableModel
    from tests.core.test_alarm_engine import Shift, temp_hi

    status = Shift([temp_hi()]).engine.status("cnc01.tool_temperature.hi")
    model = AlarmTableModel()
    model.state_filter = "All configured"
    model.refresh([dataclasses.replace(status, value=None), dataclasses.replace(status, name="x", value=81.25)])
    texts = {model.status(row).name: model.data(model.index(row, COL_VALUE)) for row in range(model.rowCount())}
    assert texts == {"cnc01.tool_temperature.hi": "", "x": "81.25 °C"}
