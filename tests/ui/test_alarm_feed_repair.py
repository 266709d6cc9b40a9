"""Gap repair on the runtime -> window channel, alarm side: transitions lost on the way (a
raised alarm, an acknowledgement) and a COMM_LOST mark are repaired by fresh snapshots, so
the window's alarm list and values end up equal to the runtime's within a second."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch, now_ns
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.ui.alarm_feed import AlarmFeed
from tests.alarm_runtime import InProcessRuntime
from tests.ipc.test_channel import CONVERGE_S, latest_values, lost

HI = "cnc01.tool_temperature.hi"


def alarm_states(statuses) -> dict[str, tuple]:
    """What the alarm summary shows of each alarm."""
    return {s.name: (s.state, str(s.alarm_state), str(s.mode), s.active, s.acked, s.revision) for s in statuses}


def converged(rt: InProcessRuntime, mirror: BusMirror, feed: AlarmFeed) -> bool:
    with rt.alarms.lock:
        runtime_alarms = alarm_states(rt.engine.statuses())
    return latest_values(mirror.bus) == latest_values(rt.bus) and alarm_states(feed.alarms.statuses()) == runtime_alarms


@pytest.fixture
def window(qtbot, qapp, tmp_path: Path) -> Iterator[tuple[InProcessRuntime, IpcClient, BusMirror, AlarmFeed]]:
    rt = InProcessRuntime(tmp_path).start()
    mirror = BusMirror()
    client = IpcClient(rt.stream, rt.requests, mirror)
    feed = AlarmFeed(mirror, client)
    client.start()
    try:
        qtbot.waitUntil(lambda: feed.alarms.epoch == rt.engine.epoch, timeout=10000)
        yield rt, client, mirror, feed
    finally:
        # On the UI thread, so no Qt object of the feed is destroyed on the IPC thread.
        client.stop()
        feed.close()
        feed.deleteLater()
        gc.collect()
        rt.stop()


def test_lost_alarm_transitions_and_a_lost_comm_lost_mark_are_repaired(qtbot, window) -> None:
    """An alarm raised, a COMM_LOST mark and then an acknowledgement all lost on the way:
    each time the window's values and alarm list (states, acked) match the runtime's within a second."""
    rt, client, mirror, feed = window
    rt.publish("pump01.pressure", 5.0)
    rt.publish("cnc01.tool_temperature", 40.0)
    qtbot.waitUntil(lambda: converged(rt, mirror, feed), timeout=5000)

    with lost(rt.publisher):
        rt.publish("cnc01.tool_temperature", 90.0)  # raises HI: transition and value both lost
        pump = rt.bus.registry.id_of("pump01.pressure")
        rt.bus.publish(SampleBatch.from_arrays([pump], [now_ns()], [5.0], Quality.COMM_LOST))
    lost_at = time.monotonic()
    assert feed.alarms.get(HI).active is False  # the window has not heard of it
    qtbot.waitUntil(lambda: converged(rt, mirror, feed), timeout=5000)
    assert time.monotonic() - lost_at < CONVERGE_S
    assert feed.alarms.get(HI).active and not feed.alarms.get(HI).acked
    assert mirror.bus.latest("pump01.pressure").quality == Quality.COMM_LOST

    session = rt.login("olga")
    with lost(rt.publisher):
        reply = rt.handle({"command": "acknowledge", "session": session, "alarms": [HI], "comment": "seen"})
    assert reply["ok"], reply
    lost_at = time.monotonic()
    qtbot.waitUntil(lambda: converged(rt, mirror, feed), timeout=5000)
    assert time.monotonic() - lost_at < CONVERGE_S
    assert feed.alarms.get(HI).acked
    assert client.stats.repairs >= 2
