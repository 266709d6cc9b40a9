"""MQTT writes against a real Mosquitto and a paho "device" that applies, ignores or answers
commands: a write says "Good" only when the device confirmed it (its tag's own next value, or
its reply), "Sent" when nothing can confirm it, and "UncertainNotConfirmed" when nothing did."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hmi.commands import OperatorCommands, WriteOutcome
from hmi.core.bus import TagBus
from hmi.core.events import EventCategory, Severity
from hmi.core.tags import TagSpec
from hmi.security.audit import AuditTrail
from hmi.security.roles import Role
from hmi.security.sessions import LoginThrottle, Sessions
from hmi.security.users import UserStore
from hmi.sources.mqtt import MqttSource
from hmi.sources.writes import CONFIRMED, NOT_CONFIRMED, REFUSED_BY_DEVICE, SENT, WriteResult
from tests.helpers import async_wait_until, run_async
from tests.sources.common import Collector, running
from tests.sources.test_mqtt import TELEMETRY, mqtt_conn, spec

Reply = Callable[[paho.Client, paho.MQTTMessage], None]


class Device:
    """A paho client playing the machine: it receives commands and does what the test says."""

    def __init__(self, broker: Any, on_command: Reply) -> None:
        self.commands: list[tuple[str, Any]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)

        def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
            self.commands.append((msg.topic, json.loads(msg.payload)))
            on_command(client, msg)

        self.client.on_message = on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("factory/+/command", qos=1)
        self.client.loop_start()

    def telemetry(self, **values: Any) -> None:
        self.client.publish("factory/cnc01/telemetry", json.dumps(values), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def applies(client: paho.Client, msg: paho.MQTTMessage) -> None:
    """A device that first reports its old value (still on its way), then the commanded one."""
    ((signal, value),) = json.loads(msg.payload).items()
    client.publish("factory/cnc01/telemetry", json.dumps({signal: 100.0}), qos=1)
    client.publish("factory/cnc01/telemetry", json.dumps({signal: value}), qos=1)


def ignores(client: paho.Client, msg: paho.MQTTMessage) -> None:
    """A device that keeps reporting its old value (interlocked, or the command never arrived)."""
    ((signal, _),) = json.loads(msg.payload).items()
    client.publish("factory/cnc01/telemetry", json.dumps({signal: 100.0}), qos=1)


def tags() -> list[TagSpec]:
    return [
        spec("cnc01.feed_override", writable=True, low=0, high=150),
        spec("cnc01.start", writable=True, low=0, high=1),  # command-only: the device never reports it
    ]


def write_with(broker: Any, on_command: Reply, writes: list[tuple[str, float]], **conn: Any) -> list[WriteResult]:
    bus = TagBus()
    config = mqtt_conn(
        broker, subscriptions=[TELEMETRY], command_topic="factory/{machine}/command", write_confirm_s=1.0, **conn
    )
    source = MqttSource("broker", config, tags(), bus)
    collector = Collector(bus)
    device = Device(broker, on_command)
    results: list[WriteResult] = []

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)  # the device's subscription is in place
            device.telemetry(feed_override=100.0)
            await async_wait_until(lambda: collector.values("cnc01.feed_override"), 5)
            for tag, value in writes:
                results.append(await source.write(tag, value))

    try:
        run_async(scenario())
    finally:
        device.close()
    assert len(device.commands) == len(writes), "every write reached the device"
    return results


def test_a_write_is_confirmed_by_the_tags_own_next_value(mosquitto_broker: Any) -> None:
    """The device applies the command and reports it: "Good", and only once the new value shows
    (the old value reported in between does not confirm anything)."""
    (result,) = write_with(mosquitto_broker(), applies, [("cnc01.feed_override", 80.0)])
    assert (result.ok, result.status, result.value) == (True, CONFIRMED, 80.0)
    assert "shows 80.0" in result.message


def test_a_write_the_device_ignores_is_not_confirmed(mosquitto_broker: Any) -> None:
    """The broker acknowledges the command but the device keeps showing 100: not "Good", but
    Uncertain, saying what the tag shows instead."""
    (result,) = write_with(mosquitto_broker(), ignores, [("cnc01.feed_override", 80.0)])
    assert (result.ok, result.status) == (False, NOT_CONFIRMED)
    assert "did not show 80.0 within 1 s (it shows 100.0)" in result.message


def test_a_write_to_a_tag_without_values_is_sent_not_confirmed(mosquitto_broker: Any) -> None:
    """A command-only tag (the device never reports it) cannot be read back: "Sent", and says why."""
    (result,) = write_with(mosquitto_broker(), applies, [("cnc01.start", 1)])
    assert (result.ok, result.status) == (True, SENT)
    assert "not confirmed" in result.message and "command_reply_topic" in result.message


def answers(status: str, message: str = "") -> Reply:
    """A device that answers on factory/<machine>/reply, echoing MQTT 5 correlation data."""

    def on_command(client: paho.Client, msg: paho.MQTTMessage) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = getattr(msg.properties, "CorrelationData", None)
        response_topic = str(getattr(msg.properties, "ResponseTopic", ""))
        assert response_topic == "factory/cnc01/reply"
        body = {"status": status, "message": message, "signal": next(iter(json.loads(msg.payload)))}
        client.publish(response_topic, json.dumps(body), qos=1, properties=properties)

    return on_command


def test_a_reply_topic_confirms_or_refuses_a_write(mosquitto_broker: Any) -> None:
    """With command_reply_topic, the device's reply decides: {"status": "ok"} confirms the write
    (even for a command-only tag), anything else is a refusal with the device's message."""
    broker = mosquitto_broker()
    reply = {"command_reply_topic": "factory/{machine}/reply"}
    (ok,) = write_with(broker, answers("ok"), [("cnc01.start", 1)], **reply)
    assert (ok.ok, ok.status) == (True, CONFIRMED) and "factory/cnc01/reply" in ok.message
    (refused,) = write_with(broker, answers("error", "door open"), [("cnc01.feed_override", 80.0)], **reply)
    assert (refused.ok, refused.status) == (False, REFUSED_BY_DEVICE) and "door open" in refused.message
    (silent,) = write_with(broker, ignores, [("cnc01.feed_override", 80.0)], **reply)
    assert (silent.ok, silent.status) == (False, NOT_CONFIRMED) and "no reply on factory/cnc01/reply" in silent.message


def test_the_audit_and_the_operator_event_say_sent_or_not_confirmed(mosquitto_broker: Any, tmp_path: Path) -> None:
    """Through the operator command: an unconfirmed write is audited as "unconfirmed" with a WARNING
    event (not "ok", not "failed"); a write nothing can confirm is audited with status "Sent"."""
    broker = mosquitto_broker()
    bus = TagBus()
    config = mqtt_conn(
        broker, subscriptions=[TELEMETRY], command_topic="factory/{machine}/command", write_confirm_s=1.0
    )
    source = MqttSource("broker", config, tags(), bus)
    collector = Collector(bus)
    device = Device(broker, ignores)
    users = UserStore(tmp_path / "users.json")
    users.add("olga", Role.OPERATOR, "correct horse")
    audit = AuditTrail(tmp_path / "historian.sqlite")
    loop_box: list[asyncio.AbstractEventLoop] = []

    def writer(spec: TagSpec, value: float | bool | str) -> WriteOutcome:  # as the runtime's write_to_source
        result = asyncio.run_coroutine_threadsafe(source.write(spec.name, value), loop_box[0]).result(10)
        return WriteOutcome(result.ok, result.status, result.message)

    commands = OperatorCommands(Sessions(users, 900.0, LoginThrottle(3, 30.0)), audit, bus, writer=writer)
    replies: list[dict[str, Any]] = []

    async def scenario() -> None:
        loop_box.append(asyncio.get_running_loop())
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)
            device.telemetry(feed_override=100.0)
            await async_wait_until(lambda: collector.values("cnc01.feed_override"), 5)
            login = commands.handle({"command": "login", "user": "olga", "password": "correct horse"})
            assert login is not None
            for tag, value in [("cnc01.feed_override", 80), ("cnc01.start", 1)]:
                command = {"command": "write", "session": login["session"], "tag": tag, "value": value}
                replies.append(await asyncio.to_thread(commands.handle, command))  # type: ignore[arg-type]

    try:
        run_async(scenario())
    finally:
        device.close()
    unconfirmed, sent = replies
    assert (unconfirmed["ok"], unconfirmed["status"]) == (False, NOT_CONFIRMED)
    assert (sent["ok"], sent["status"]) == (True, SENT)
    writes = [r for r in audit.records() if r.kind == "write"]
    assert [(r.target, r.outcome, r.details_dict()["status"]) for r in writes] == [
        ("cnc01.feed_override", "unconfirmed", NOT_CONFIRMED),
        ("cnc01.start", "ok", SENT),
    ]
    events = [
        e for e in collector.events if e.category == EventCategory.OPERATOR and e.details.get("action") == "write"
    ]
    assert [e.severity for e in events] == [Severity.WARNING, Severity.INFO]
    assert "unconfirmed" in events[0].message and "did not show 80" in events[0].message
    assert events[1].message.endswith(": Sent")
    audit.close()
