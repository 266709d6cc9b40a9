"""Failover of a plant connection to a redundant server or broker (`endpoints`, `brokers`).

Real peers: two OPC UA server processes serving the same node ids, two Mosquitto brokers.
The active one is killed; the values must continue from the other within two keep-alive
periods, be COMM_LOST for the gap only, and the health tags must name the new server and
count the switch and the loss.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from hmi.config.connections import MqttConnection, OpcUaConnection
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.sources.health import SourceHealth
from hmi.sources.mqtt import MqttSource
from hmi.sources.opcua import OpcUaSource
from tests.helpers import async_wait_until, free_port, run_async
from tests.sources.common import Collector, running
from tests.sources.test_mqtt import TELEMETRY, Publisher, spec
from tests.sources.test_opcua_chaos import COUNTER, start_peer

KEEPALIVE_S = 1.0


def health(collector: Collector, connection: str) -> dict[str, Any]:
    """The connection's failover health values as the bus holds them now."""
    out = {}
    for name in ("active_server", "failovers", "comm_lost_total", "comm_lost_s"):
        latest = collector.latest(f"{connection}.{name}")
        out[name] = None if latest is None else latest[0]
    return out


def assert_one_gap(rows: list[tuple[int, Any, int]]) -> None:
    """From the first GOOD value on: GOOD, then one unbroken COMM_LOST stretch (the failover), then GOOD."""
    qualities = [q for _, _, q in rows]
    qualities = qualities[qualities.index(Quality.GOOD) :]
    lost = [i for i, q in enumerate(qualities) if q == Quality.COMM_LOST]
    assert lost, "the gap was not marked COMM_LOST"
    assert set(qualities[: lost[0]]) == {Quality.GOOD}
    assert set(qualities[lost[0] : lost[-1] + 1]) == {Quality.COMM_LOST}
    assert set(qualities[lost[-1] + 1 :]) == {Quality.GOOD}


@given(st.lists(st.one_of(st.none(), st.sampled_from(["a:1", "b:2", "c:3"])), max_size=30))
def test_health_counts_every_switch_and_every_loss(steps: list[str | None]) -> None:
    """For any run of connections (a server name) and losses (None): `failovers` counts the connections to
    another server than the last one used, `comm_lost_total` the losses after a connection, and the health
    tags say the same as the counters."""
    bus = TagBus()
    health = SourceHealth("c", bus, servers=3)
    up, last, switches, losses = False, "", 0, 0
    for step in steps:
        if step is None:
            losses += up
            up = False
            health.set_connected(False)
        else:
            switches += bool(last) and step != last
            last, up = step, True
            health.set_connected(True, step)
    assert (health.failovers, health.comm_lost_total, health.active_server) == (switches, losses, last)
    health.tick()
    assert bus.latest("c.failovers").value == switches
    assert bus.latest("c.comm_lost_total").value == losses
    assert bus.latest("c.active_server").value == (last if up else "")


@given(
    st.lists(
        st.tuples(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), st.integers(1, 65535)),
        min_size=1, max_size=4, unique=True,
    )
)  # fmt: skip
def test_brokers_read_as_written(brokers: list[tuple[str, int]]) -> None:
    """Every `brokers` entry "host:port" becomes that (host, port), in the order written; `host` is the first."""
    conn = MqttConnection.model_validate({"kind": "mqtt", "brokers": [f"{h}:{p}" for h, p in brokers]})
    assert list(conn.broker_addresses) == brokers
    assert conn.host == brokers[0][0]


def two_servers(
    tmp_path: Path,
) -> tuple[subprocess.Popen[str], subprocess.Popen[str], str, str, OpcUaSource, Collector]:
    """Two OPC UA server processes serving the counter (b counts from 100,000), and a source
    with both as redundant endpoints, a in use first."""
    port_a, port_b = free_port(), free_port()
    a = start_peer(port_a, tmp_path / "a", start=0)
    b = start_peer(port_b, tmp_path / "b", start=100_000)
    url_a, url_b = f"opc.tcp://127.0.0.1:{port_a}/test", f"opc.tcp://127.0.0.1:{port_b}/test"
    bus = TagBus()
    conn = OpcUaConnection(
        kind="opcua", endpoints=[url_a, url_b], keepalive_s=KEEPALIVE_S, reconnect_max_delay_s=1.0,
        publishing_interval_ms=50,
    )  # fmt: skip
    return a, b, url_a, url_b, OpcUaSource("plc", conn, [COUNTER], bus), Collector(bus)


def test_opcua_failover_continues_from_the_other_server(tmp_path: Path) -> None:
    """Killing the active one of two OPC UA servers: the counter continues GOOD from the other within two
    keep-alives, COMM_LOST only between, and the health tags name the new server, one failover, one loss."""
    a, b, url_a, url_b, source, collector = two_servers(tmp_path)
    gap = 0.0

    async def scenario() -> None:
        nonlocal gap
        async with running(source):
            await async_wait_until(lambda: len(collector.values("test.counter")) >= 10, 15, source.last_error)
            assert health(collector, "plc")["active_server"] == url_a
            on_a = source._subscriptions[0]
            a.kill()
            killed = time.monotonic()
            await async_wait_until(
                lambda: any(v >= 100_000 for v in collector.values("test.counter")), 2 * KEEPALIVE_S, source.last_error
            )
            gap = time.monotonic() - killed
            await async_wait_until(lambda: len([v for v in collector.values("test.counter") if v >= 100_000]) >= 10)
            await asyncio.sleep(1.2)  # one health tick: comm_lost_s as published
            assert health(collector, "plc") == {
                "active_server": url_b,
                "failovers": 1.0,
                "comm_lost_total": 1.0,
                "comm_lost_s": health(collector, "plc")["comm_lost_s"],
            }
            assert 0 < health(collector, "plc")["comm_lost_s"] <= gap + 0.1
            assert source.connected and source.endpoint == url_b
            # asyncua tells the lost session's subscriptions BadShutdown from its own task, which may run
            # after the session on B has begun: that must not end it.
            shutdown = ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadShutdown))
            late = ua.NotificationMessage(SequenceNumber=1, NotificationData=[shutdown])
            await on_a.publish_callback(ua.PublishResult(on_a.subscription_id, NotificationMessage=late))
            await asyncio.sleep(0.5)
            assert source.connected and source.connects == 2 and health(collector, "plc")["comm_lost_total"] == 1.0
            assert_one_gap(collector.of("test.counter"))  # before the stop marks them COMM_LOST again

    try:
        run_async(scenario(), timeout=60)
    finally:
        for peer in (a, b):
            peer.kill()
            peer.wait()
    assert gap < 2 * KEEPALIVE_S
    assert any(f"established ({url_b})" in m for m in collector.messages())


def test_opcua_failover_from_a_hung_server_within_two_keep_alives(tmp_path: Path) -> None:
    """A server that hangs (its socket open, no answers) is found out by its missing keep-alives
    alone: with another server to go to, the values continue within two keep-alive periods."""
    a, b, _, url_b, source, collector = two_servers(tmp_path)
    gap = 0.0

    async def scenario() -> None:
        nonlocal gap
        async with running(source):
            await async_wait_until(lambda: len(collector.values("test.counter")) >= 10, 15, source.last_error)
            a.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            await async_wait_until(
                lambda: any(v >= 100_000 for v in collector.values("test.counter")), 3 * KEEPALIVE_S, source.last_error
            )
            gap = time.monotonic() - frozen
            assert health(collector, "plc")["active_server"] == url_b

    try:
        run_async(scenario(), timeout=60)
    finally:
        for peer in (a, b):
            peer.send_signal(signal.SIGCONT)
            peer.kill()
            peer.wait()
    assert gap < 2 * KEEPALIVE_S, f"{gap:.2f} s to the other server"


def test_opcua_endpoints_all_down_then_one_comes_back(tmp_path: Path) -> None:
    """With every listed server down the source keeps trying them in turn (backing off after each round),
    and connects to whichever comes up, here the second."""
    port_a, port_b = free_port(), free_port()
    conn = OpcUaConnection(
        kind="opcua", endpoints=[f"opc.tcp://127.0.0.1:{port_a}/test", f"opc.tcp://127.0.0.1:{port_b}/test"],
        keepalive_s=KEEPALIVE_S, reconnect_max_delay_s=1.0,
    )  # fmt: skip
    bus = TagBus()
    source = OpcUaSource("plc", conn, [COUNTER], bus)
    collector = Collector(bus)
    peer: subprocess.Popen[str] | None = None

    async def scenario() -> None:
        nonlocal peer
        async with running(source):
            await asyncio.sleep(1.0)
            assert not source.connected and collector.latest("test.counter")[1] == Quality.COMM_LOST
            peer = await asyncio.to_thread(start_peer, port_b, tmp_path, 500)
            await async_wait_until(lambda: collector.values("test.counter"), 10, source.last_error)
            assert source.endpoint.endswith(f":{port_b}/test")
            assert health(collector, "plc")["failovers"] == 0.0  # first connection: not a switch

    try:
        run_async(scenario(), timeout=60)
    finally:
        if peer is not None:
            peer.kill()
            peer.wait()


def test_mqtt_failover_continues_from_the_other_broker(mosquitto_broker: Any) -> None:
    """Killing the active one of two brokers (the device publishes to both): values continue GOOD from the
    other within two keep-alives, COMM_LOST only between, and the health tags name the new broker."""
    brokers = [mosquitto_broker(), mosquitto_broker()]
    keepalive = 2
    bus = TagBus()
    collector = Collector(bus)
    conn = MqttConnection.model_validate(
        {
            "kind": "mqtt",
            "brokers": [f"{b.host}:{b.port}" for b in brokers],
            "reconnect_max_delay_s": 0.5,
            "keepalive_s": keepalive,
            "subscriptions": [TELEMETRY],
        }
    )
    source = MqttSource("broker", conn, [spec("cnc01.n")], bus)
    publishers = [Publisher(b.host, b.port) for b in brokers]
    stop_publishing = asyncio.Event()
    gap = 0.0

    async def publish() -> None:
        n = 0
        while not stop_publishing.is_set():
            n += 1
            for pub in publishers:  # the same value to both brokers, as a device with two uplinks would
                if pub.client.is_connected():
                    pub.client.publish("factory/cnc01/telemetry", f'{{"n": {n}}}', qos=0)
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        nonlocal gap
        async with running(source):
            publishing = asyncio.create_task(publish())
            try:
                await async_wait_until(lambda: len(collector.values("cnc01.n")) >= 10, 10, source.last_error)
                assert health(collector, "broker")["active_server"] == f"{brokers[0].host}:{brokers[0].port}"
                brokers[0].kill()
                killed = time.monotonic()
                await async_wait_until(lambda: health(collector, "broker")["failovers"] == 1.0, 2 * keepalive)
                count = len(collector.values("cnc01.n"))
                await async_wait_until(lambda: len(collector.values("cnc01.n")) > count, 2 * keepalive)
                gap = time.monotonic() - killed
                assert health(collector, "broker")["active_server"] == f"{brokers[1].host}:{brokers[1].port}"
                assert health(collector, "broker")["comm_lost_total"] == 1.0
                await asyncio.sleep(0.3)
                assert collector.latest("cnc01.n")[1] == Quality.GOOD
                assert_one_gap(collector.of("cnc01.n"))  # before the stop marks them COMM_LOST again
            finally:
                stop_publishing.set()
                await publishing

    try:
        run_async(scenario(), timeout=60)
    finally:
        for pub in publishers:
            pub.client.loop_stop()
    assert gap < 2 * keepalive


def test_sparkplug_host_asks_for_births_on_the_new_broker(mosquitto_broker: Any) -> None:
    """After a failover to another broker the Sparkplug host asks each edge node it knew for its births at once
    (an NCMD rebirth on the new broker, before any data), and the births it gets there resolve the aliases."""
    from hmi.sources import sparkplug
    from tests.sources.test_sparkplug_host import DBIRTH_METRICS, SUB, EdgeNode

    brokers = [mosquitto_broker(), mosquitto_broker()]
    bus = TagBus()
    collector = Collector(bus)
    conn = MqttConnection.model_validate(
        {"kind": "mqtt", "brokers": [f"{b.host}:{b.port}" for b in brokers], "reconnect_max_delay_s": 0.5,
         "keepalive_s": 2, "subscriptions": [SUB]}
    )  # fmt: skip
    source = MqttSource("broker", conn, [], bus)
    # One edge node with an uplink to each broker (its session on each has its own bdSeq).
    uplinks = [EdgeNode(brokers[0], "Edge1", bdseq=0), EdgeNode(brokers[1], "Edge1", bdseq=7)]

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)  # subscribed
            uplinks[0].send("NBIRTH", None)
            uplinks[0].send("DBIRTH", DBIRTH_METRICS, "Dev1")
            await async_wait_until(lambda: collector.values("dev1.speed") == [100.0], 5)
            assert not uplinks[1].commands
            brokers[0].kill()
            await async_wait_until(lambda: uplinks[1].commands, 5, "no rebirth request on the new broker")
            request = sparkplug.decode_payload(uplinks[1].commands[0])
            assert [(m.name, m.value) for m in request.metrics] == [("Node Control/Rebirth", True)]
            uplinks[1].send("NBIRTH", None)
            uplinks[1].send("DBIRTH", DBIRTH_METRICS, "Dev1")
            uplinks[1].send("DDATA", [(None, 1, 10, 105.0, None)], "Dev1")
            await async_wait_until(lambda: collector.latest("dev1.speed") == (105.0, Quality.GOOD), 5)
            assert len(uplinks[1].commands) == 1  # the births answered it: no second request

    try:
        run_async(scenario(), timeout=60)
    finally:
        for uplink in uplinks:
            uplink.client.loop_stop()
