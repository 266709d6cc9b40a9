"""MQTT source against a real Mosquitto: JSON templates, json paths, status, security, writes, chaos."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hmi.config.connections import MqttAddress, MqttConnection
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.tags import DataType, TagSpec
from hmi.sources.mqtt import MqttSource
from tests.conftest import MosquittoBroker
from tests.helpers import async_wait_until, run_async
from tests.sources.common import Collector, running


class Publisher:
    """A plain paho client publishing for the tests (QoS 1, acknowledged)."""

    def __init__(self, host: str, port: int, user: str | None = None, password: str | None = None, **tls: Any) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        if user:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(**tls)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: Any, qos: int = 1, retain: bool = False) -> None:
        if not isinstance(payload, bytes | str):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def mqtt_conn(broker: MosquittoBroker, **kw: Any) -> MqttConnection:
    return MqttConnection.model_validate(
        {"kind": "mqtt", "host": broker.host, "port": broker.port, "reconnect_max_delay_s": 0.5, **kw}
    )


def spec(name: str, address: str = "", **kw: Any) -> TagSpec:
    return TagSpec(name, connection="broker", address=address, **kw)


TELEMETRY = {"topic": "factory/+/telemetry", "format": "json", "tag": "{topic[1]}.{key}", "qos": 1}
STATUS = {"topic": "factory/+/status", "format": "status"}


def test_json_telemetry_maps_keys_to_tags_with_payload_time(mosquitto_broker: Any) -> None:
    """`factory/+/telemetry` JSON keys become `{machine}.{key}` tags, stamped with the payload's ts."""
    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    tags = [
        spec("cnc01.spindle_speed"),
        spec("cnc01.door_open", datatype=DataType.BOOL),
        spec("cnc01.program_name", datatype=DataType.STRING),
        spec("pump01.flow"),
    ]
    source = MqttSource("broker", mqtt_conn(broker, subscriptions=[TELEMETRY]), tags, bus)
    pub = Publisher(broker.host, broker.port)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.2)
            pub.send(
                "factory/cnc01/telemetry",
                {
                    "ts": 1700000000.5,
                    "spindle_speed": 12000,
                    "door_open": False,
                    "program_name": "O1000",
                    "unknown_signal": 1,
                },
            )
            pub.send("factory/pump01/telemetry", {"ts": "2024-01-02T03:04:05Z", "flow": 42.5})
            await async_wait_until(lambda: collector.values("pump01.flow"), 10)

    try:
        run_async(scenario())
    finally:
        pub.close()
    assert collector.of("cnc01.spindle_speed")[1] == (1_700_000_000_500_000_000, 12000.0, Quality.GOOD)
    assert collector.values("cnc01.door_open") == [0.0]
    assert collector.values("cnc01.program_name") == ["O1000"]
    assert collector.of("pump01.flow")[1][0] == 1_704_164_645_000_000_000
    assert source.health.rejected_by_reason() == {"unknown tag": 1}


def test_tag_addresses_with_json_path_and_plain_values(mosquitto_broker: Any) -> None:
    """A tag's address is a topic; a json_path picks a nested value, no path means a plain payload."""
    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    tags = [
        spec("line1.speed", "plant/line1", source_address=MqttAddress("plant/line1", "$.drive.speed")),
        spec("line1.second", "plant/line1", source_address=MqttAddress("plant/line1", "values[1]")),
        spec("line1.temp", "plant/line1/temp"),
        spec("line1.run", "plant/line1/run", datatype=DataType.BOOL),
    ]
    source = MqttSource("broker", mqtt_conn(broker, protocol="3.1.1"), tags, bus)
    pub = Publisher(broker.host, broker.port)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.2)
            pub.send("plant/line1", {"drive": {"speed": 3.5}, "values": [1, 2, 3]})
            pub.send("plant/line1/temp", "21.5")
            pub.send("plant/line1/run", "true")
            await async_wait_until(lambda: collector.values("line1.run"), 10)

    try:
        run_async(scenario())
    finally:
        pub.close()
    assert collector.values("line1.speed") == [3.5]
    assert collector.values("line1.second") == [2.0]
    assert collector.values("line1.temp") == [21.5]
    assert collector.values("line1.run") == [1.0]


def test_status_and_last_will_turn_a_machine_offline(mosquitto_broker: Any) -> None:
    """A retained `offline` (as a Last Will sends) turns the machine's tags COMM_LOST and its online tag false."""
    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    tags = [spec("cnc01.spindle_speed"), spec("pump01.flow")]
    source = MqttSource("broker", mqtt_conn(broker, subscriptions=[TELEMETRY, STATUS]), tags, bus)
    machine = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    machine.will_set("factory/cnc01/status", "offline", qos=1, retain=True)
    machine.connect(broker.host, broker.port, keepalive=2)
    machine.loop_start()
    machine.publish("factory/cnc01/status", "online", qos=1, retain=True).wait_for_publish(5)
    pub = Publisher(broker.host, broker.port)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: collector.values("cnc01.online") == [1.0], 10, source.last_error)
            pub.send("factory/cnc01/telemetry", {"spindle_speed": 100})
            pub.send("factory/pump01/telemetry", {"flow": 1})
            await async_wait_until(lambda: collector.values("pump01.flow"), 10)
            machine.loop_stop()
            machine.socket().close()  # dies without DISCONNECT: the broker sends the Will
            await async_wait_until(lambda: collector.latest("cnc01.online") == (0.0, Quality.GOOD), 10)
            assert collector.latest("cnc01.spindle_speed") == (100.0, Quality.COMM_LOST)
            assert collector.latest("pump01.flow") == (1.0, Quality.GOOD)

    try:
        run_async(scenario())
    finally:
        pub.close()


def test_password_and_acl_forbidden_topic_yields_no_data_and_a_log_line(
    mosquitto_broker: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With a password file and an ACL, allowed topics deliver; a forbidden one gives no data and a clear log line."""
    broker = mosquitto_broker("auth")
    monkeypatch.setenv("HMI_PASSWORD_BROKER", "hmi-pass")
    bus = TagBus()
    collector = Collector(bus)
    tags = [spec("cnc01.spindle_speed"), spec("vault.code", "secret/code")]
    conn = mqtt_conn(broker, user="hmi", password_ref="broker", subscriptions=[TELEMETRY], silent_topic_warning_s=1.0)
    source = MqttSource("broker", conn, tags, bus)
    pub = Publisher(broker.host, broker.port, "plant", "plant-pass")

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)
            pub.send("secret/code", "1234")
            pub.send("factory/cnc01/telemetry", {"spindle_speed": 5})
            await async_wait_until(lambda: collector.values("cnc01.spindle_speed"), 10)
            await asyncio.sleep(1.0)

    with caplog.at_level(logging.WARNING, logger="hmi.sources.mqtt"):
        try:
            run_async(scenario())
        finally:
            pub.close()
    assert collector.values("vault.code") == []
    # Mosquitto grants the subscription and silently withholds the messages; the source names the topic.
    lines = [r.getMessage() for r in caplog.records]
    assert any("no message on 'secret/code'" in m and "ACL" in m and "user 'hmi'" in m for m in lines), lines
    assert not any("factory/+/telemetry" in m for m in lines), lines


def test_wrong_password_is_refused_clearly(mosquitto_broker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong password is refused with the broker's reason, the user and the password reference."""
    broker = mosquitto_broker("auth")
    monkeypatch.setenv("HMI_PASSWORD_BROKER", "nope")
    bus = TagBus()
    collector = Collector(bus)
    source = MqttSource("broker", mqtt_conn(broker, user="hmi", password_ref="broker"), [], bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: "refused" in source.last_error, 10, source.last_error)
            await asyncio.sleep(1.0)

    run_async(scenario())
    assert "user 'hmi'" in source.last_error and "password_ref 'broker'" in source.last_error
    assert sum("refused" in m for m in collector.messages()) == 1


@pytest.mark.parametrize("client_cert", [False, True])
def test_tls_with_ca_and_optional_client_certificate(mosquitto_broker: Any, client_cert: bool) -> None:
    """TLS to a broker whose CA the project names (and a client certificate where the broker asks for one)."""
    broker = mosquitto_broker("tls", require_client_cert=client_cert)
    bus = TagBus()
    collector = Collector(bus)
    tls: dict[str, Any] = {"ca": str(broker.ca)}
    if client_cert:
        tls.update(cert=str(broker.client_cert), key=str(broker.client_key))
    source = MqttSource("broker", mqtt_conn(broker, tls=tls, subscriptions=[TELEMETRY]), [spec("cnc01.x")], bus)
    pub_tls: dict[str, Any] = {"ca_certs": str(broker.ca)}
    if client_cert:
        pub_tls.update(certfile=str(broker.client_cert), keyfile=str(broker.client_key))
    pub = Publisher(broker.host, broker.port, **pub_tls)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.2)
            pub.send("factory/cnc01/telemetry", {"x": 1})
            await async_wait_until(lambda: collector.values("cnc01.x"), 10)

    try:
        run_async(scenario())
    finally:
        pub.close()


def test_tls_with_an_unknown_ca_does_not_connect(mosquitto_broker: Any, tmp_path: Path) -> None:
    """A broker whose certificate the configured CA did not sign is refused with the TLS reason."""
    from tests.conftest import make_test_pki

    broker = mosquitto_broker("tls")
    other = tmp_path / "other-ca"
    other.mkdir()
    wrong_ca = make_test_pki(other)[0]
    source = MqttSource("broker", mqtt_conn(broker, tls={"ca": str(wrong_ca)}), [], TagBus())

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in source.last_error, 10, source.last_error)
            assert not source.connected

    run_async(scenario())


@pytest.mark.parametrize(
    ("command_format", "expected"),
    [
        ("json", b'{"feed_override": 80.0}'),
        ("set", b'{"command": "set", "signal": "feed_override", "value": 80.0}'),
    ],
)
def test_write_publishes_a_command_with_qos1(mosquitto_broker: Any, command_format: str, expected: bytes) -> None:
    """A write to a writable tag publishes a command to its machine's command topic and waits for PUBACK."""
    broker = mosquitto_broker()
    bus = TagBus()
    tags = [spec("cnc01.feed_override", writable=True, low=0, high=150), spec("cnc01.spindle_speed")]
    conn = mqtt_conn(
        broker, subscriptions=[TELEMETRY], command_topic="factory/{machine}/command", command_format=command_format
    )
    source = MqttSource("broker", conn, tags, bus)
    got: list[tuple[str, bytes, int]] = []
    listener = paho.Client(CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, m: got.append((m.topic, m.payload, m.qos))
    listener.connect(broker.host, broker.port)
    listener.subscribe("factory/+/command", qos=1)
    listener.loop_start()

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            result = await source.write("cnc01.feed_override", "80")
            assert result.ok and result.value == 80.0
            refused = await source.write("cnc01.feed_override", 200)
            assert not refused.ok and "high limit" in refused.message
            assert not (await source.write("cnc01.spindle_speed", 1)).ok
            await async_wait_until(lambda: got, 5)

    try:
        run_async(scenario())
    finally:
        listener.loop_stop()
    assert got == [("factory/cnc01/command", expected, 1)]


def test_health_tags_count_messages_and_rejections(mosquitto_broker: Any) -> None:
    """The health tags report connected, message rate, age of the last message and rejected totals."""
    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    source = MqttSource("broker", mqtt_conn(broker, subscriptions=[TELEMETRY]), [spec("cnc01.x")], bus)
    pub = Publisher(broker.host, broker.port)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.2)
            for i in range(20):
                pub.send("factory/cnc01/telemetry", {"x": i}, qos=0)
            pub.send("factory/cnc01/telemetry", b"{not json")
            await async_wait_until(lambda: (collector.latest("broker.rejected_total") or (0,))[0] == 1.0, 5)
            await asyncio.sleep(1.1)

    try:
        run_async(scenario())
    finally:
        pub.close()
    rates = collector.values("broker.messages_per_s")
    assert max(rates) > 0
    ages = [v for v in collector.values("broker.last_message_age_s") if v == v]
    assert ages and min(ages) < 2.0
    assert 1.0 in collector.values("broker.connected")


def test_broker_killed_then_restarted(mosquitto_broker: Any) -> None:
    """Killing the broker turns tags COMM_LOST within two keep-alives; 5 s later it restarts and tags are GOOD
    again, and every message published while we were connected arrived exactly once."""
    broker = mosquitto_broker()
    keepalive = 2
    bus = TagBus()
    collector = Collector(bus)
    conn = mqtt_conn(broker, subscriptions=[{**TELEMETRY, "qos": 1}], keepalive_s=keepalive)
    source = MqttSource("broker", conn, [spec("cnc01.n")], bus)

    async def publish(first: int, count: int) -> None:
        pub = Publisher(broker.host, broker.port)
        try:
            for n in range(first, first + count):
                await asyncio.to_thread(pub.send, "factory/cnc01/telemetry", {"n": n})
        finally:
            pub.close()

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.2)
            await publish(0, 50)
            await async_wait_until(lambda: len(collector.values("cnc01.n")) == 50, 10)
            broker.kill()
            killed = time.monotonic()
            await async_wait_until(lambda: collector.latest("cnc01.n")[1] == Quality.COMM_LOST, 2 * keepalive)
            assert time.monotonic() - killed < 2 * keepalive
            assert collector.latest("broker.connected")[0] == 0.0
            await asyncio.sleep(5)
            broker.start()
            await async_wait_until(lambda: source.connected, 15, source.last_error)
            await asyncio.sleep(0.3)
            await publish(1000, 50)
            await async_wait_until(lambda: len(collector.values("cnc01.n")) == 100, 10)
            await asyncio.sleep(0.3)
            assert collector.latest("cnc01.n") == (1049.0, Quality.GOOD)

    run_async(scenario(), timeout=90)
    assert collector.values("cnc01.n") == [float(n) for n in [*range(50), *range(1000, 1050)]]
    assert source.connects == 2


def test_sparkplug_host_asks_a_node_it_joined_late_for_a_rebirth(mosquitto_broker: Any) -> None:
    """Alias-only DDATA from an edge node whose births the HMI missed: the source publishes the
    rebirth NCMD once (not per message), and the births that answer it make the aliases resolve."""
    from hmi.sources import sparkplug
    from tests.sources.test_mqtt_payloads import captured

    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    sub = {"topic": "spBv1.0/Acceptance/#", "format": "sparkplugb", "tag": "{device}.{metric}", "create_tags": True}
    source = MqttSource("broker", mqtt_conn(broker, subscriptions=[sub]), [], bus)
    commands: list[tuple[str, bytes]] = []
    listener = paho.Client(CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, m: commands.append((m.topic, m.payload))
    listener.connect(broker.host, broker.port)
    listener.subscribe("spBv1.0/+/NCMD/+")
    listener.loop_start()
    publisher = Publisher(broker.host, broker.port)
    messages = [(topic, payload) for topic, payload, _ in captured()]
    tahu_data = [m for m in messages if m[0] == "spBv1.0/Acceptance/DDATA/TahuEdge/CNC01"]
    tahu_rebirth = messages[13:15]  # the NBIRTH and DBIRTH Tahu's node sent after the captured NCMD
    assert [t.split("/")[2] for t, _ in tahu_rebirth] == ["NBIRTH", "DBIRTH"]

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)  # the subscription is in place
            publisher.send(*tahu_data[0])
            await async_wait_until(lambda: commands, 5, "no rebirth request")
            publisher.send(*tahu_data[1])
            await asyncio.sleep(0.5)
            assert len(commands) == 1, "one request per edge node, not one per message"
            assert not collector.values("cnc01.spindle_speed", None), "aliases cannot resolve before a birth"
            for topic, payload in tahu_rebirth:
                publisher.send(topic, payload)
            publisher.send(*tahu_data[2])
            await async_wait_until(lambda: collector.values("cnc01.spindle_speed"), 5, "aliases still unresolved")

    try:
        run_async(scenario())
    finally:
        listener.loop_stop()
        publisher.close()
    topic, payload = commands[0]
    assert topic == "spBv1.0/Acceptance/NCMD/TahuEdge"
    request = sparkplug.decode_payload(payload)
    assert [(m.name, m.type_name, m.value) for m in request.metrics] == [("Node Control/Rebirth", "Boolean", True)]
