"""The Advisories panel against the real Runtime over the real IPC channel: a pump fault shows
up with its probable cause, evidence and checks; the operator acknowledges it and carries out
its recommendation through the write dialog; the runtime checks, writes and audits."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.config import load_project
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.runtime import Runtime
from hmi.security.roles import Role
from hmi.security.users import UserStore
from hmi.sim.pump import CentrifugalPump
from hmi.ui.advisory_panel import COL_CAUSE, COL_STATE, AdvisoryPanel
from hmi.ui.alarm_feed import AlarmFeed
from hmi.ui.theme import apply_theme
from tests.alarm_runtime import PASSWORD, FakePlantWriter
from tests.helpers import ARTIFACTS, DEMO_PROJECT, free_port
from tests.twin.feed import PlantFeed

ADVISORY = "pump01.advisory.cavitation"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Runtime, FakePlantWriter]]:
    users = UserStore(tmp_path / "users.json")
    users.add("olga", Role.OPERATOR, PASSWORD)
    writer = FakePlantWriter()
    stream, requests = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    rt = Runtime(load_project(DEMO_PROJECT), stream, requests, users=users, writer=writer)
    assert rt.publisher is not None
    rt.publisher.start()
    yield rt, writer
    rt.publisher.stop()
    rt.advisories.close()
    rt.twin.close()
    if rt.audit is not None:
        rt.audit.close()


def test_advisory_is_shown_acknowledged_and_its_recommendation_applied(qtbot, qapp, runtime) -> None:  # type: ignore[no-untyped-def]
    """Cavitation appears in the panel with evidence and checks; acknowledge and the confirmed
    recommended write go through the runtime's commands (role, write, audit)."""
    rt, writer = runtime
    apply_theme(qapp)
    mirror = BusMirror()
    assert rt.publisher is not None
    client = IpcClient(rt.publisher.stream_address, rt.publisher.request_address, mirror)
    feed = AlarmFeed(mirror, client)
    panel = AdvisoryPanel(feed)
    qtbot.addWidget(panel)
    panel.resize(1100, 380)
    panel.show()
    client.start()
    try:
        qtbot.waitUntil(lambda: mirror.link_up, timeout=10000)
        pump = PlantFeed(rt.project, {"pump01": CentrifugalPump("pump01", seed=2)}, bus=rt.bus, own_twin=False,
                         start_ns=time.time_ns() - 600 * 10**9)  # fmt: skip
        pump.run(360)
        pump.machines["pump01"].inject_fault("cavitation")
        pump.run(40)
        qtbot.waitUntil(lambda: panel.model.rowCount() == 1, timeout=10000)
        assert panel.model.index(0, COL_CAUSE).data() == "Probable cavitation"
        assert panel.model.index(0, COL_STATE).data() == "UNACK ACTIVE"
        text = panel.details.toPlainText()
        assert "suction pressure" in text and "Suction strainer" in text
        assert "set pump01.speed_setpoint to 2500" in text
        ARTIFACTS.mkdir(exist_ok=True)
        panel.grab().save(str(ARTIFACTS / "advisory_panel.png"))

        panel.acknowledge_selected()
        assert "log in first" in panel.message.text()
        feed.session.login("olga", PASSWORD)
        qtbot.waitUntil(lambda: feed.session.user == "olga", timeout=10000)
        panel.acknowledge_selected()
        qtbot.waitUntil(lambda: panel.model.index(0, COL_STATE).data() == "ACK ACTIVE", timeout=10000)

        dialog = panel.apply_recommendation()
        assert dialog is not None and dialog.new_value.text() == "2500"
        assert writer.writes == []  # nothing is sent before the operator confirms
        dialog.ask_confirmation()
        dialog.confirm()
        qtbot.waitUntil(lambda: dialog.result is not None, timeout=10000)
        assert dialog.result is not None and dialog.result["ok"], dialog.result
        assert writer.writes == [("pump01.speed_setpoint", 2500.0)]
        assert rt.audit is not None
        write = [r for r in rt.audit.records() if r.kind == "write"][-1]
        assert write.user == "olga" and write.details_dict()["context"] == f"advisory {ADVISORY}"
        dialog.close()
    finally:
        client.stop()
        panel.close_feed()
        feed.close()
        panel.close()
        panel.deleteLater()
        feed.deleteLater()
        gc.collect()
