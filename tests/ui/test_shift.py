"""A shift a supervisor can trust, end to end: the demo plant with faults, the runtime and
real windows, two operators acknowledging with and without comments, a shelve, the window
closed and reopened, the runtime restarted, a window killed while alarms arrive. The
journal of the last window still shows the whole shift with the right comments against
the right alarms, and the historian lost nothing the runtime published."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.config import load_project
from hmi.core.events import Event, EventCategory
from hmi.historian.reader import HistorianReader
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.paths import data_dir
from hmi.security.roles import Role
from hmi.security.users import UserStore
from tests.helpers import free_port, hmi_process, stop_process, wait_for_port, write_demo_project

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="kills processes with POSIX signals")

# Each fault raises one alarm within seconds at --speed 5 (tests/sim/test_demo_alarms.py); the
# CNC going offline raises its bad-quality alarm after the alarm's 10 s on-delay.
UNDERVOLTAGE = "pump01.supply_voltage.lo"
CNC_OFFLINE = "cnc01.tool_temperature.bad_quality"
CAVITATION = "pump01.suction_pressure.lo"
FAULTS = ("pump01.undervoltage@5s", "cnc01.offline@5s", "pump01.cavitation@5s")


class Plant:
    def __init__(self, tmp_path: Path) -> None:
        opcua, self.stream, self.requests = free_port(), free_port(), free_port()
        self.path = write_demo_project(tmp_path, opcua, stream_port=self.stream, request_port=self.requests)
        self.project = load_project(self.path)
        faults = [arg for fault in FAULTS for arg in ("--fault", fault)]
        self.sim = hmi_process("sim", "--opcua-port", str(opcua), "--rate", "20", "--speed", "5", *faults)
        wait_for_port(opcua)
        self.runtime = self.start_runtime()

    def start_runtime(self):
        runtime = hmi_process("run", "--project", str(self.path), "--headless")
        wait_for_port(self.requests)
        return runtime

    @property
    def stream_address(self) -> str:
        return f"tcp://127.0.0.1:{self.stream}"

    @property
    def request_address(self) -> str:
        return f"tcp://127.0.0.1:{self.requests}"

    def stop(self) -> None:
        stop_process(self.runtime)
        stop_process(self.sim)


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    store = UserStore()
    store.add("admin", Role.ADMIN, "admin-pass-1")
    store.add("olga", Role.OPERATOR, "olga-pass-1")
    store.add("piet", Role.OPERATOR, "piet-pass-1")
    running = Plant(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def recorded_events(category: EventCategory | None = None) -> list[Event]:
    with HistorianReader(data_dir() / "demo.sqlite") as reader:
        return reader.events(0, time.time_ns() + 1, categories=None if category is None else [category])


def open_window(qtbot, factory, plant: Plant):
    mirror = BusMirror()
    client = IpcClient(plant.stream_address, plant.request_address, mirror)
    window = factory(plant.project, mirror, client)
    client.start()
    return window, client


def log_in(qtbot, window, user: str, password: str) -> None:
    results: list[tuple[bool, str]] = []
    window.alarm_feed.session.login(user, password, lambda ok, error: results.append((ok, error)))
    qtbot.waitUntil(lambda: bool(results), timeout=10000)
    assert results == [(True, "")]


def wait_reply(qtbot, panel, action) -> dict:
    with qtbot.waitSignal(panel.reply_received, timeout=10000) as blocker:
        action()
    return blocker.args[0]


def test_a_shift_two_operators_a_closed_window_and_a_runtime_restart(qtbot, main_window_factory, plant) -> None:
    shift_began = time.time_ns()
    # -- first window: the alarms come in, two operators handle them -------------------------
    window, client = open_window(qtbot, main_window_factory, plant)
    panel = window.alarm_panel
    alarms = window.alarm_feed.alarms

    def unacknowledged(name: str) -> bool:
        status = alarms.get(name)
        return status is not None and status.unacknowledged and status.active

    qtbot.waitUntil(lambda: all(unacknowledged(n) for n in (UNDERVOLTAGE, CNC_OFFLINE, CAVITATION)), timeout=60000)
    panel.set_filters(state="All configured")

    log_in(qtbot, window, "olga", "olga-pass-1")
    qtbot.waitUntil(lambda: panel.model.row_of(UNDERVOLTAGE) is not None, timeout=5000)
    panel.select([UNDERVOLTAGE])
    panel.comment.setText("supply checked with the electrician")
    reply = wait_reply(qtbot, panel, panel.acknowledge_selected)
    assert reply["ok"] and reply["done"] == [UNDERVOLTAGE]
    assert panel.comment.text() == "", "a comment belongs to one action"
    window.alarm_feed.session.logout()

    log_in(qtbot, window, "piet", "piet-pass-1")
    panel.set_filters(state="Unacknowledged")
    qtbot.waitUntil(lambda: set(panel.model.names()) >= {CNC_OFFLINE, CAVITATION}, timeout=5000)
    questions: list[str] = []
    panel.confirm = lambda question: questions.append(question) or True
    reply = wait_reply(qtbot, panel, panel.acknowledge_all_visible)
    assert reply["ok"] and set(reply["done"]) >= {CNC_OFFLINE, CAVITATION}
    assert "no comment" in questions[0]
    panel.set_filters(state="All configured")
    qtbot.waitUntil(lambda: panel.model.row_of(CAVITATION) is not None, timeout=5000)
    panel.select([CAVITATION])
    reply = wait_reply(qtbot, panel, lambda: panel.shelve_selected(900, "pump on manual, work order 4711"))
    assert reply["ok"], reply

    # -- the window is closed; the runtime records on, and is restarted ------------------------
    client.stop()
    window.alarm_feed.close()
    window.close()  # as the operator would, once confirmed (the factory deletes it at the end)
    time.sleep(1.5)  # the historian commits every second
    before_restart = recorded_events()
    plant.runtime.send_signal(signal.SIGTERM)
    assert plant.runtime.wait(15) == 0
    after_stop = recorded_events()
    assert len(after_stop) >= len(before_restart)
    plant.runtime = plant.start_runtime()

    # -- a second window opens later: the journal shows the whole shift ----------------------
    window, client = open_window(qtbot, main_window_factory, plant)
    journal = window.alarm_journal
    qtbot.waitUntil(lambda: not journal.loading and journal.range_ns != (0, 0), timeout=20000)
    if journal.range_ns[0] > shift_began:  # the plant's shift changed during this test
        journal.set_range(shift_began, time.time_ns() + 60 * 10**9)
    recorded = len(after_stop)
    qtbot.waitUntil(lambda: not journal.loading and journal.total + journal.hidden >= recorded, timeout=20000)
    while journal.has_more:
        journal.load_more()
        qtbot.waitUntil(lambda: not journal.loading, timeout=10000)
    shown = journal.model.events
    keys = {(e.ts_ns, e.source, e.message) for e in shown}
    hidden = [e for e in after_stop if (e.ts_ns, e.source, e.message) not in keys]
    # Only the design-suppression changes of inactive alarms are hidden (by default).
    assert all(e.details.get("cause") in ("suppressed", "unsuppressed") for e in hidden), hidden[:3]

    alarm_events = [e for e in shown if e.category == EventCategory.ALARM]
    acks = {e.source: e for e in alarm_events if e.details.get("cause") == "acknowledged"}
    assert acks[UNDERVOLTAGE].user == "olga"
    assert acks[UNDERVOLTAGE].details["comment"] == "supply checked with the electrician"
    for name in (CNC_OFFLINE, CAVITATION):
        assert acks[name].user == "piet"
        assert not acks[name].details.get("comment"), f"{name} took a comment that was not given for it"

    operator = [e for e in shown if e.category == EventCategory.OPERATOR]
    done = [(e.details["action"], e.user, e.source) for e in reversed(operator) if e.details["outcome"] == "ok"]
    assert done[:4] == [("login", "olga", "session"), ("acknowledge", "olga", UNDERVOLTAGE),
                        ("logout", "olga", "session"), ("login", "piet", "session")]  # fmt: skip
    assert ("shelve", "piet", CAVITATION) in done
    shelve = next(e for e in operator if e.details["action"] == "shelve")
    assert shelve.details["reason"] == "pump on manual, work order 4711"
    assert all(e.details["station"] for e in operator)

    # The restarted runtime took up the states the operators left.
    qtbot.waitUntil(lambda: (s := window.alarm_feed.alarms.get(CAVITATION)) is not None and s.mode == "SHELVED",
                    timeout=20000)  # fmt: skip
    assert window.alarm_feed.alarms.get(UNDERVOLTAGE).acked
    client.stop()


def test_killing_a_window_while_alarms_arrive_loses_no_record(plant) -> None:
    """The window records nothing itself: killed with SIGKILL while the faults raise alarms,
    the historian still holds every alarm transition the runtime made."""
    window = hmi_process(
        "window", "--project", str(plant.path), "--ipc-stream", plant.stream_address,
        "--ipc-requests", plant.request_address
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not recorded_events(EventCategory.ALARM):
            time.sleep(0.5)
        window.send_signal(signal.SIGKILL)
        window.wait(10)
    finally:
        stop_process(window)
    assert plant.runtime.poll() is None, "the runtime must outlive the window"
    time.sleep(3)  # more transitions while no window is attached
    plant.runtime.send_signal(signal.SIGTERM)
    out = stop_process(plant.runtime)
    transitions = recorded_events(EventCategory.ALARM)
    assert transitions, out
    # Every alarm's revisions are recorded without a hole: nothing published was lost.
    by_alarm: dict[tuple[str, int], list[int]] = {}
    for e in transitions:
        if "revision" in e.details:
            by_alarm.setdefault((e.source, e.details["epoch"]), []).append(int(e.details["revision"]))
    for name, revisions in by_alarm.items():
        assert sorted(revisions) == list(range(min(revisions), max(revisions) + 1)), name
