"""The Demo menu on the real runtime and the real demo plant (`hmi sim` in its own process):
an engineer injects a fault from the menu and its alarm comes within seconds, audited with
user, station and reason; an operator finds the entries disabled, saying which role they
need, and the runtime refuses the command anyway (and records the refusal)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.config import load_project
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.runtime import Runtime
from hmi.security.roles import Role
from hmi.security.users import UserStore
from hmi.ui.main_window import MainWindow
from tests.alarm_runtime import PASSWORD
from tests.helpers import free_port, hmi_process, stop_process, wait_for_port, wait_until, write_demo_project
from tests.ui.runtime_window import log_in

# The fastest demo fault: the supply voltage drops at once, its LO alarm follows within seconds.
FAULT, ALARM = ("pump01", "undervoltage"), "pump01.supply_voltage.lo"


class DemoRuntime:
    """The demo project's runtime in this process (its loop in a thread) on a real demo plant."""

    def __init__(self, directory: Path) -> None:
        opcua = free_port()
        path = write_demo_project(directory, opcua)
        self.sim = hmi_process("sim", "--opcua-port", str(opcua), "--rate", "20")
        users = UserStore(directory / "users.json")
        users.add("erik", Role.ENGINEER, PASSWORD)
        users.add("olga", Role.OPERATOR, PASSWORD)
        stream, requests = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        wait_for_port(opcua, timeout=30)
        self.runtime = Runtime(load_project(path), stream, requests, users=users)
        self.project = self.runtime.project
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="demo-runtime", daemon=True)
        self._thread.start()
        wait_until(lambda: self.runtime.sources[0].connected, 30, message="runtime did not connect to the plant")

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        await self.runtime.run(self._stop)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
        stop_process(self.sim)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoRuntime]:
    running = DemoRuntime(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def window(qtbot, main_window_factory, demo: DemoRuntime) -> Iterator[MainWindow]:
    publisher = demo.runtime.publisher
    assert publisher is not None
    mirror = BusMirror()
    client = IpcClient(publisher.stream_address, publisher.request_address, mirror)
    win = main_window_factory(demo.project, mirror, client, scene=False)
    client.start()
    qtbot.waitUntil(lambda: mirror.link_up, timeout=10000)
    yield win
    client.stop()


def entry(window: MainWindow, inject: bool = True):  # type: ignore[no-untyped-def]
    machine, fault = FAULT
    menu = window.demo_menu
    assert menu is not None, "the demo project embeds the plant: it has a Demo menu"
    name = f"{'inject' if inject else 'clear'}:{machine}.{fault}"
    return next(a for a in menu.submenus[machine].actions() if a.objectName() == name)


def test_an_engineer_injects_a_fault_from_the_demo_menu_and_its_alarm_comes(qtbot, window, demo) -> None:
    """The menu lists each machine's faults; the engineer's Inject reaches the plant through the
    runtime, the alarm follows within seconds, and the audit trail says who, where and why."""
    menu = window.demo_menu
    assert menu is not None
    qtbot.waitUntil(lambda: menu.loaded, timeout=10000)
    assert [m.title() for m in menu.submenus.values()] == [m.label for m in demo.project.machines.values()]
    assert not entry(window).isEnabled() and entry(window).toolTip() == "Needs engineer: log in"
    log_in(qtbot, window, "erik", timeout_ms=10000)
    assert entry(window).isEnabled()
    entry(window).trigger()
    qtbot.waitUntil(lambda: (s := window.alarm_feed.alarms.get(ALARM)) is not None and s.active, timeout=30000)
    assert menu.last_result == "Demo: pump01 undervoltage injected"
    records = [r for r in demo.runtime.audit.records() if r.kind.startswith("demo_fault")]  # type: ignore[union-attr]
    assert [(r.kind, r.user, r.target, r.outcome) for r in records] == [
        ("demo_fault_request", "erik", "pump01.undervoltage", "ok"),
        ("demo_fault", "erik", "pump01.undervoltage", "ok"),
    ]
    details = records[-1].details_dict()
    assert details["station"] == window.alarm_feed.station and "Demo menu" in details["reason"]
    entry(window, inject=False).trigger()
    qtbot.waitUntil(lambda: menu.last_result == "Demo: pump01 undervoltage cleared", timeout=10000)


def test_an_operator_finds_the_demo_entries_disabled_and_the_runtime_refuses_them(qtbot, window, demo) -> None:
    """Disabled, with the role they need; sent anyway (another client), the runtime refuses and
    records it, and the plant is untouched."""
    menu = window.demo_menu
    assert menu is not None
    log_in(qtbot, window, "olga", timeout_ms=10000)
    qtbot.waitUntil(lambda: menu.loaded, timeout=10000)
    assert not entry(window).isEnabled()
    assert entry(window).toolTip() == "Needs engineer: olga is operator"
    replies: list[dict] = []
    menu.set_fault(*FAULT, True)  # what a click would send
    window.alarm_feed.send({"command": "demo_fault", "connection": menu.connection, "machine": FAULT[0],
                            "fault": FAULT[1], "inject": True}, replies.append)  # fmt: skip
    qtbot.waitUntil(lambda: bool(replies), timeout=10000)
    assert not replies[0]["ok"] and "needs the engineer role" in replies[0]["error"]
    records = [r for r in demo.runtime.audit.records() if r.kind == "demo_fault"]  # type: ignore[union-attr]
    assert [(r.user, r.outcome) for r in records] == [("olga", "refused"), ("olga", "refused")]
