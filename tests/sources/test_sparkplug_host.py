"""Sparkplug B host duties against a real Mosquitto: bdSeq-checked deaths, births with duplicate
aliases, empty messages, the host's own STATE birth and death, and the shared value rule.

Edge nodes here are plain paho clients that encode their payloads with `encode_payload` below
(the wire format of Tahu's sparkplug_b.proto), so each test decides exactly what the HMI gets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.values import INEXACT_INTEGER, NON_FINITE, TIMESTAMP_OUT_OF_WINDOW
from hmi.historian import HistorianReader, HistorianWriter
from hmi.sources import sparkplug
from hmi.sources.mqtt import MqttSource
from tests.helpers import async_wait_until, run_async
from tests.sources.common import Collector, running
from tests.sources.test_mqtt import mqtt_conn
from tests.sources.test_mqtt_payloads import Harness

GROUP = "Plant"
SUB = {"topic": f"spBv1.0/{GROUP}/#", "format": "sparkplugb", "tag": "{device}.{metric}", "create_tags": True}

# Metric: (name or None, alias or None, datatype, value or None for is_null, timestamp ms or None)
MetricSpec = tuple[str | None, int | None, int, Any, int | None]


def _metric(name: str | None, alias: int | None, datatype: int, value: Any, ts: int | None) -> bytes:
    body = b""
    if name is not None:
        raw = name.encode()
        body += b"\x0a" + sparkplug.encode_varint(len(raw)) + raw
    if alias is not None:
        body += b"\x10" + sparkplug.encode_varint(alias)
    if ts is not None:
        body += b"\x18" + sparkplug.encode_varint(ts)
    body += b"\x20" + sparkplug.encode_varint(datatype)
    if value is None:
        body += b"\x38\x01"
    elif datatype == 11:
        body += b"\x70" + sparkplug.encode_varint(int(value))
    elif datatype in (4, 8, 13):
        body += b"\x58" + sparkplug.encode_varint(int(value))  # long_value
    elif datatype in (1, 2, 3, 5, 6, 7):
        body += b"\x50" + sparkplug.encode_varint(int(value) & 0xFFFFFFFF)
    elif datatype == 9:
        body += b"\x65" + struct.pack("<f", value)
    elif datatype == 12:
        raw = str(value).encode()
        body += b"\x7a" + sparkplug.encode_varint(len(raw)) + raw
    else:
        body += b"\x69" + struct.pack("<d", value)
    return b"\x12" + sparkplug.encode_varint(len(body)) + body


def encode_payload(metrics: list[MetricSpec], seq: int | None = None, ts: int | None = None) -> bytes:
    out = b"\x08" + sparkplug.encode_varint(ts if ts is not None else time.time_ns() // 1_000_000)
    out += b"".join(_metric(*m) for m in metrics)
    if seq is not None:
        out += b"\x18" + sparkplug.encode_varint(seq)
    return out


def nbirth(bdseq: int) -> bytes:
    return encode_payload([("bdSeq", None, 4, bdseq, None), ("Node Control/Rebirth", None, 11, False, None)], seq=0)


def ndeath(bdseq: int) -> bytes:
    return encode_payload([("bdSeq", None, 4, bdseq, None)])


DBIRTH_METRICS: list[MetricSpec] = [("Speed", 1, 10, 100.0, None), ("Temp", 2, 10, 20.0, None)]


class EdgeNode:
    """A Sparkplug edge node on its own MQTT session: NDEATH with its bdSeq as the Last Will."""

    def __init__(self, broker: Any, node: str, bdseq: int) -> None:
        self.node = node
        self.bdseq = bdseq
        self.seq = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{node}-{bdseq}", protocol=paho.MQTTv311)
        self.client.will_set(f"spBv1.0/{GROUP}/NDEATH/{node}", ndeath(bdseq), qos=1)
        self.commands: list[bytes] = []
        self.client.on_message = lambda c, u, m: self.commands.append(bytes(m.payload))
        self.client.connect(broker.host, broker.port, keepalive=60)
        self.client.subscribe(f"spBv1.0/{GROUP}/NCMD/{node}")
        self.client.loop_start()

    def send(self, kind: str, metrics: list[MetricSpec] | None, device: str | None = None) -> None:
        topic = f"spBv1.0/{GROUP}/{kind}/{self.node}" + (f"/{device}" if device else "")
        if kind == "NBIRTH":
            payload, self.seq = nbirth(self.bdseq), 0
        else:
            self.seq = (self.seq + 1) % 256
            payload = encode_payload(metrics or [], seq=self.seq)
        self.client.publish(topic, payload, qos=0).wait_for_publish(5)

    def die(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the Last Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def host_source(broker: Any, bus: TagBus, **kw: Any) -> MqttSource:
    return MqttSource("broker", mqtt_conn(broker, subscriptions=[SUB], **kw), [], bus)


def test_a_late_ndeath_of_an_earlier_session_does_not_blank_a_live_node(mosquitto_broker: Any) -> None:
    """The edge node reconnects (bdSeq 1) before the broker fires the Last Will of its first
    session (bdSeq 0): that NDEATH is ignored and counted, the node and its device stay online and
    GOOD; the death of the current session then does turn them offline and COMM_LOST."""
    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    source = host_source(broker, bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)
            first = EdgeNode(broker, "Edge1", bdseq=0)
            first.send("NBIRTH", None)
            await async_wait_until(lambda: collector.latest("edge1.online") == (1.0, Quality.GOOD), 5)
            second = EdgeNode(broker, "Edge1", bdseq=1)  # a new session, e.g. after a network change
            second.send("NBIRTH", None)
            second.send("DBIRTH", DBIRTH_METRICS, "Dev1")
            await async_wait_until(lambda: collector.values("dev1.speed") == [100.0], 5)
            first.die()  # the broker now publishes the first session's NDEATH (bdSeq 0)
            await async_wait_until(lambda: source.health.rejected_by_reason().get("stale death"), 5, "no NDEATH seen")
            second.send("DDATA", [(None, 1, 10, 101.0, None)], "Dev1")
            await async_wait_until(lambda: collector.values("dev1.speed") == [100.0, 101.0], 5)
            assert collector.latest("edge1.online") == (1.0, Quality.GOOD)
            assert collector.latest("dev1.online") == (1.0, Quality.GOOD)
            assert collector.latest("dev1.speed") == (101.0, Quality.GOOD)
            second.die()  # the current session's death
            await async_wait_until(lambda: collector.latest("dev1.speed") == (101.0, Quality.COMM_LOST), 5)
            assert collector.latest("edge1.online") == (0.0, Quality.GOOD)
            assert collector.latest("dev1.online") == (0.0, Quality.GOOD)

    run_async(scenario())
    assert source.health.rejected_by_reason()["stale death"] == 1


def test_a_dbirth_with_duplicate_aliases_is_refused_until_a_good_rebirth(
    mosquitto_broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A DBIRTH that gives alias 1 to two metrics is refused (counted, logged with the alias), the
    device's values turn BAD, its alias data are refused, a rebirth is requested once, and the good
    birth that answers makes the device's values GOOD again."""
    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    source = host_source(broker, bus)
    edge = EdgeNode(broker, "Edge1", bdseq=0)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)
            edge.send("NBIRTH", None)
            edge.send("DBIRTH", DBIRTH_METRICS, "Dev1")
            await async_wait_until(lambda: collector.latest("dev1.temp") == (20.0, Quality.GOOD), 5)
            # The device restarts with a broken alias map: Temp and Pressure both get alias 2.
            edge.send(
                "DBIRTH",
                [("Speed", 1, 10, 5.0, None), ("Temp", 2, 10, 21.0, None), ("Pressure", 2, 10, 3.0, None)],
                "Dev1",
            )
            await async_wait_until(lambda: edge.commands, 5, "no rebirth request")
            edge.send("DDATA", [(None, 2, 10, 22.0, None)], "Dev1")  # which metric? nobody can tell
            await async_wait_until(lambda: source.health.rejected_by_reason().get("birth refused"), 5)
            assert collector.latest("dev1.temp") == (20.0, Quality.BAD), "the last value, no longer trusted"
            assert collector.latest("dev1.speed") == (100.0, Quality.BAD)
            assert 22.0 not in collector.values("dev1.temp", None)
            assert "dev1.pressure" not in bus.registry
            edge.send("NBIRTH", None)  # the rebirth the host asked for
            edge.send("DBIRTH", [("Speed", 1, 10, 6.0, None), ("Temp", 2, 10, 23.0, None)], "Dev1")
            edge.send("DDATA", [(None, 2, 10, 24.0, None)], "Dev1")
            await async_wait_until(lambda: collector.latest("dev1.temp") == (24.0, Quality.GOOD), 5)

    try:
        run_async(scenario())
    finally:
        edge.die()
    assert len(edge.commands) == 1, "one rebirth request, rate-limited per node"
    request = sparkplug.decode_payload(edge.commands[0])
    assert [(m.name, m.value) for m in request.metrics] == [("Node Control/Rebirth", True)]
    assert source.health.rejected_by_reason()["duplicate alias"] == 1
    assert any("alias(es) 2" in r.getMessage() for r in caplog.records)


def test_an_nbirth_with_duplicate_aliases_refuses_the_node_until_a_good_birth() -> None:
    """A node birth with a repeated alias: nothing of that session is trusted (its node data are
    refused and counted), until an NBIRTH without duplicates."""
    h = Harness([], subscriptions=[SUB])
    bad = encode_payload([("bdSeq", None, 4, 0, None), ("A", 7, 10, 1.0, None), ("B", 7, 10, 2.0, None)], seq=0)
    h.feed(f"spBv1.0/{GROUP}/NBIRTH/Edge1", bad)
    h.feed(f"spBv1.0/{GROUP}/NDATA/Edge1", encode_payload([(None, 7, 10, 3.0, None)], seq=1))
    assert h.reasons()["duplicate alias"] == 1 and h.reasons()["birth refused"] == 1
    assert "edge1.a" not in h.bus.registry and h.collector.latest("edge1.online") is None
    good = encode_payload([("bdSeq", None, 4, 0, None), ("A", 7, 10, 1.0, None), ("B", 8, 10, 2.0, None)], seq=0)
    h.feed(f"spBv1.0/{GROUP}/NBIRTH/Edge1", good)
    h.feed(f"spBv1.0/{GROUP}/NDATA/Edge1", encode_payload([(None, 7, 10, 3.0, None)], seq=1))
    assert h.collector.values("edge1.a") == [1.0, 3.0]
    assert h.collector.latest("edge1.online") == (1.0, Quality.GOOD)


def test_empty_sparkplug_messages_are_counted_not_decoded() -> None:
    """A 0-byte NBIRTH/DDATA is counted as "empty payload" and puts nobody online; a 0-byte STATE
    (a host's retained state being cleared) is not an error and is not counted."""
    h = Harness([], subscriptions=[{**SUB, "topic": "spBv1.0/#"}])
    h.feed(f"spBv1.0/{GROUP}/NBIRTH/Edge1", b"")
    h.feed(f"spBv1.0/{GROUP}/DDATA/Edge1/Dev1", b"")
    h.feed("spBv1.0/STATE/other-host", b"")
    h.feed("spBv1.0/STATE/other-host", b'{"online": true, "timestamp": 1}')
    assert h.reasons() == {"empty payload": 2}
    assert h.collector.latest("edge1.online") is None


def test_host_state_birth_will_and_clean_death(mosquitto_broker: Any) -> None:
    """With sparkplug_host_id set, the source publishes a retained STATE birth with its Last
    Will's timestamp; a dropped connection makes the broker publish the Will (online false), after
    which the reconnected source is born again; a clean stop publishes the death explicitly."""
    broker = mosquitto_broker()
    bus = TagBus()
    source = host_source(broker, bus, sparkplug_host_id="scada-primary")
    states: list[tuple[dict[str, Any], bool]] = []
    listener = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    listener.on_message = lambda c, u, m: states.append((json.loads(m.payload), m.retain))
    listener.connect(broker.host, broker.port)
    listener.subscribe("spBv1.0/STATE/scada-primary", qos=1)
    listener.loop_start()

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: states, 10, "no STATE birth")
            assert states[0][0]["online"] is True
            birth_ts = states[0][0]["timestamp"]
            assert abs(birth_ts - time.time() * 1000) < 10_000
            # Cut the source's TCP connection: the broker publishes its Will.
            sock = source._client.socket() if source._client else None
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)
            await async_wait_until(lambda: len(states) >= 3, 10, f"states: {states}")
            will, reborn = states[1][0], states[2][0]
            assert will == {"online": False, "timestamp": birth_ts}, "the Will carries the CONNECT time"
            assert reborn["online"] is True and reborn["timestamp"] > birth_ts
            await async_wait_until(lambda: source.connected, 10)

    try:
        run_async(scenario())
        wait = time.monotonic() + 5
        while states[-1][0]["online"] and time.monotonic() < wait:
            time.sleep(0.05)
    finally:
        listener.loop_stop()
    # (On reconnecting, the retained Will comes back on the host's own STATE subscription and
    # the host answers it with one more birth, as Sparkplug 3.0 asks: births may repeat.)
    assert states[-1][0]["online"] is False and states[-1][0]["timestamp"] >= states[2][0]["timestamp"]
    assert all(s["online"] for s, _ in states[2:-1])
    # What a late joiner (an edge node waiting for its primary host) finds: the retained death.
    retained: list[dict[str, Any]] = []
    late = paho.Client(CallbackAPIVersion.VERSION2)
    late.on_message = lambda c, u, m: retained.append(json.loads(m.payload)) if m.retain else None
    late.connect(broker.host, broker.port)
    late.subscribe("spBv1.0/STATE/scada-primary", qos=1)
    late.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not retained and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        late.loop_stop()
    assert retained and retained[0]["online"] is False


def test_no_state_without_a_host_id(mosquitto_broker: Any) -> None:
    """A connection without sparkplug_host_id (not the primary host) publishes no STATE at all."""
    broker = mosquitto_broker()
    source = host_source(broker, TagBus())
    seen: list[str] = []
    listener = paho.Client(CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, m: seen.append(m.topic)
    listener.connect(broker.host, broker.port)
    listener.subscribe("spBv1.0/STATE/#", qos=1)
    listener.loop_start()

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.5)

    try:
        run_async(scenario())
        time.sleep(0.3)
    finally:
        listener.loop_stop()
    assert seen == []


# -- the shared value rule (hmi/core/values.py) on Sparkplug metrics ------------------------------


def born_harness(**conn: Any) -> Harness:
    h = Harness([], subscriptions=[SUB], **conn)
    h.feed(f"spBv1.0/{GROUP}/NBIRTH/Edge1", nbirth(0))
    h.feed(
        f"spBv1.0/{GROUP}/DBIRTH/Edge1/Dev1",
        encode_payload([("Count", 1, 4, 0, None), ("Speed", 2, 10, 0.0, None)], seq=1),
    )
    return h


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_every_int64_metric_is_exact_or_uncertain_and_counted(value: int) -> None:
    """Any Int64 metric: within ±2^53 recorded exactly and GOOD; beyond, the nearest float,
    UNCERTAIN and counted under the shared reason."""
    h = born_harness()
    h.feed(f"spBv1.0/{GROUP}/DDATA/Edge1/Dev1", encode_payload([(None, 1, 4, value, None)], seq=2))
    recorded, quality = h.collector.latest("dev1.count")  # type: ignore[misc]
    assert recorded == float(value)
    exact = abs(value) <= 2**53
    assert quality == (Quality.GOOD if exact else Quality.UNCERTAIN)
    assert h.reasons().get(INEXACT_INTEGER, 0) == (0 if exact else 1)


def test_non_finite_metrics_are_bad_and_counted() -> None:
    """NaN and ±Inf in Double and Float metrics are BAD and counted, whatever the device says."""
    h = born_harness()
    for n, bad in enumerate([float("nan"), float("inf"), float("-inf")]):
        h.feed(f"spBv1.0/{GROUP}/DDATA/Edge1/Dev1", encode_payload([(None, 2, 10, bad, None)], seq=2 + n))
        assert h.collector.latest("dev1.speed")[1] == Quality.BAD  # type: ignore[index]
    assert h.reasons()[NON_FINITE] == 3


def test_metric_timestamps_outside_the_window_take_the_arrival_time_and_are_recorded_uncertain(
    tmp_path: Path,
) -> None:
    """A metric stamped in the year 10000, one from 1971 and a payload time a day ahead are
    each recorded at their arrival time, UNCERTAIN, and counted; a good time is kept as sent.
    The historian file says the same."""
    h = born_harness(timestamp_max_age_s=86400.0, timestamp_max_ahead_s=60.0)
    writer = HistorianWriter(str(tmp_path / "h.sqlite"), h.bus.registry, commit_interval_s=0.01)
    writer.attach(h.bus)
    writer.start()
    now_ms = time.time_ns() // 1_000_000
    year_10000_ms = 253_402_300_800_000
    topic = f"spBv1.0/{GROUP}/DDATA/Edge1/Dev1"
    good_ts = now_ms - 1000
    h.feed(topic, encode_payload([(None, 2, 10, 4.0, good_ts)], seq=2))
    before = time.time_ns()
    h.feed(topic, encode_payload([(None, 2, 10, 1.0, year_10000_ms)], seq=3))
    h.feed(topic, encode_payload([(None, 2, 10, 2.0, 31_536_000_000)], seq=4))
    h.feed(topic, encode_payload([(None, 2, 10, 3.0, None)], seq=5, ts=now_ms + 86_400_000))
    after = time.time_ns()
    writer.close()
    assert h.reasons()[TIMESTAMP_OUT_OF_WINDOW] == 3
    with HistorianReader(tmp_path / "h.sqlite") as reader:
        series = reader.read("dev1.speed", 0, 2**62)
    rows = {float(v): (int(t), int(q)) for v, t, q in zip(series.values, series.ts, series.quality, strict=True)}
    for value in (1.0, 2.0, 3.0):
        ts, quality = rows[value]
        assert before <= ts <= after and quality == Quality.UNCERTAIN, (value, ts, quality)
    assert rows[4.0] == (good_ts * 1_000_000, Quality.GOOD)
