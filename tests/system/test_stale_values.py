"""A value past its `stale_after_s` turns UNCERTAIN, live and in the record (#16 item 3).

The end-to-end case is the one a site meets: a device behind a healthy broker stops
publishing. Its connection stays up, so nothing else would ever say its last value is old.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hmi.config.loader import load_project
from hmi.core.bus import TagBus
from hmi.core.events import EventCategory
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.staleness import StaleWatcher
from hmi.core.tags import TagSpec
from hmi.historian import HistorianReader
from hmi.historian.writer import HistorianWriter
from hmi.runtime import Runtime
from tests.helpers import async_wait_until, run_async

S = 1_000_000_000


def _bus(*specs: TagSpec) -> TagBus:
    bus = TagBus()
    bus.register(specs)
    return bus


def test_a_value_older_than_its_limit_turns_uncertain_and_the_next_value_is_good_again(tmp_path: Path) -> None:
    bus = _bus(TagSpec("press01.force", connection="plc"), TagSpec("press01.mode", connection="plc", datatype="string"))
    writer = HistorianWriter(str(tmp_path / "h.sqlite"), bus.registry, commit_interval_s=0.01)
    writer.start()
    writer.attach(bus)
    events = []
    bus.subscribe_events(events.extend)
    watcher = StaleWatcher(bus, {"press01.force": 5.0, "press01.mode": 5.0}, {}, {"plc"})
    t0 = now_ns()
    bus.publish(SampleBatch.from_rows([(0, t0, 12.5, Quality.GOOD), (1, t0, "AUTO", Quality.GOOD)]))

    assert watcher.tick(t0 + 4 * S) is None, "younger than its limit: still good"
    marked = watcher.tick(t0 + 6 * S)
    assert marked is not None and len(marked) == 2
    force, mode = bus.latest("press01.force"), bus.latest("press01.mode")
    assert force is not None and force.quality == Quality.UNCERTAIN and force.value == 12.5
    assert mode is not None and mode.quality == Quality.UNCERTAIN and mode.value == "AUTO", "text kept"
    assert watcher.tick(t0 + 60 * S) is None, "marked once, not again every check"
    assert [e.category for e in events] == [EventCategory.SYSTEM]
    assert "press01" in events[0].message and "press01.force" in events[0].details["tags"]

    bus.publish(SampleBatch.from_rows([(0, t0 + 61 * S, 13.0, Quality.GOOD)]))
    assert bus.latest("press01.force").quality == Quality.GOOD  # type: ignore[union-attr]
    writer.close()
    with HistorianReader(tmp_path / "h.sqlite") as reader:
        series = reader.read("press01.force", 0, 2**62)
        assert series.quality.tolist() == [Quality.GOOD, Quality.UNCERTAIN, Quality.GOOD]
        assert series.ts.tolist() == [t0, t0 + 6 * S, t0 + 61 * S]
        assert reader.read("press01.mode", 0, 2**62).quality.tolist() == [Quality.GOOD, Quality.UNCERTAIN]


def test_an_old_value_is_stale_as_soon_as_it_arrives_and_a_bad_value_is_left_alone() -> None:
    bus = _bus(TagSpec("tank01.level", connection="mqtt"), TagSpec("tank01.temp", connection="mqtt"))
    watcher = StaleWatcher(bus, {"tank01.level": 30.0, "tank01.temp": 30.0}, {}, {"mqtt"})
    now = now_ns()
    week_old = now - 7 * 86400 * S  # a retained message with its own (old) time
    bus.publish(SampleBatch.from_rows([(0, week_old, 1.5, Quality.GOOD), (1, week_old, np.nan, Quality.BAD)]))
    marked = watcher.tick(now)
    assert marked is not None and marked.tag_ids.tolist() == [0]
    assert bus.latest("tank01.temp").quality == Quality.BAD  # type: ignore[union-attr]


def test_a_machine_limit_covers_its_data_tags_and_tags_created_later_but_not_health_or_status() -> None:
    bus = _bus(
        TagSpec("pump01.flow", connection="broker"),
        TagSpec("pump01.pressure", connection="broker"),
        TagSpec("pump01.online", connection="broker", datatype="bool"),
        TagSpec("pump01.efficiency", connection="twin"),
        TagSpec("broker.connected", connection="broker", datatype="bool"),
    )
    watcher = StaleWatcher(bus, {"pump01.pressure": 120.0}, {"pump01": 10.0, "broker": 10.0}, {"broker"})
    created = bus.registry.register(TagSpec("pump01.vibration", connection="broker"))  # a template made it
    assert watcher.limit_s("pump01.flow") == 10.0
    assert watcher.limit_s("pump01.pressure") == 120.0, "the tag's own limit wins"
    assert watcher.limit_s("pump01.vibration") == 10.0
    for name in ("pump01.online", "pump01.efficiency", "broker.connected"):
        assert watcher.limit_s(name) is None, name
    now = now_ns()
    old = now - 11 * S
    bus.publish(SampleBatch.from_arrays([0, 1, 2, 3, 4, created], old, [1.0, 2.0, 1.0, 0.5, 1.0, 3.0]))
    marked = watcher.tick(now)
    assert marked is not None and sorted(marked.tag_ids.tolist()) == [0, created]


def test_a_device_that_goes_silent_behind_a_healthy_broker_is_shown_and_recorded_stale(
    mosquitto: tuple[str, int], tmp_path: Path, private_data_dir: Path
) -> None:
    host, port = mosquitto
    project_file = tmp_path / "site.toml"
    project_file.write_text(
        f"""
[project]
name = "stale"
[historian]
url = "sqlite:///{tmp_path / "h.sqlite"}"
[runtime]
stream_port = 0
request_port = 0
[connections.broker]
kind = "mqtt"
host = "{host}"
port = {port}
reconnect_max_delay_s = 0.5
[[connections.broker.subscriptions]]
topic = "site/+/telemetry"
format = "json"
tag = "{{topic[1]}}.{{key}}"
create_tags = true
qos = 1
[machines.pump01]
stale_after_s = 1.0
[tags."pump01.flow"]
connection = "broker"
"""
    )
    project = load_project(project_file)
    runtime = Runtime(project, stream_address=None, request_address=None)
    device = paho.Client(CallbackAPIVersion.VERSION2)
    device.connect(host, port)
    device.loop_start()

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        await async_wait_until(lambda: runtime.bus.latest("broker.connected") is not None, 10)
        await asyncio.sleep(0.3)  # subscribed
        for _ in range(8):  # the device speaks every 0.2 s, then falls silent
            payload = json.dumps({"flow": 3.5, "speed": 1450})
            device.publish("site/pump01/telemetry", payload, qos=1).wait_for_publish(5)
            await asyncio.sleep(0.2)
            flow = runtime.bus.latest("pump01.flow")
            assert flow is not None and flow.quality == Quality.GOOD, "talking: never stale"
        silent_at = time.time_ns()
        await async_wait_until(
            lambda: (v := runtime.bus.latest("pump01.speed")) is not None and v.quality == Quality.UNCERTAIN, 5
        )
        assert runtime.bus.latest("pump01.flow").quality == Quality.UNCERTAIN  # type: ignore[union-attr]
        assert runtime.bus.latest("broker.connected").value == 1.0, "the broker link stayed up"  # type: ignore[union-attr]
        assert time.time_ns() - silent_at >= 0.8 * S
        stop.set()
        await task

    try:
        run_async(main())
    finally:
        device.loop_stop()
        device.disconnect()
    flow_id = runtime.bus.registry.id_of("pump01.flow")
    assert runtime.counter.counts()[flow_id] == 8, "stale marks are not samples received"
    with HistorianReader(tmp_path / "h.sqlite") as reader:
        for name in ("pump01.flow", "pump01.speed"):
            quality = reader.read(name, 0, 2**62).quality.tolist()
            good = quality.index(Quality.GOOD)
            assert Quality.UNCERTAIN in quality[good:], f"{name}: {quality}"
            stale_at = good + quality[good:].index(Quality.UNCERTAIN)
            assert set(quality[good:stale_at]) == {Quality.GOOD}, f"{name}: {quality}"
        stale_events = [e for e in reader.events(0, 2**62, categories=["system"]) if e.details.get("reason") == "stale"]
        assert stale_events and "pump01.flow" in stale_events[0].details["tags"]
