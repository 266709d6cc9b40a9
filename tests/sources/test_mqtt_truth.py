"""MQTT values tell the truth (issue #16): device quality, retained messages, the shared value
rule (hmi/core/values.py), JSON status payloads and one handling per route.

Decoding cases go through the source's own paho callback with real paho MQTTMessage objects
(as in test_mqtt_payloads.py); what depends on the broker (retained delivery, overlapping
subscriptions) runs against a real Mosquitto, and the retained case is inspected in a real
historian file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hmi.config.connections import MqttAddress, MqttConnection
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.tags import DataType, TagSpec
from hmi.core.values import INEXACT_INTEGER, NON_FINITE, TIMESTAMP_OUT_OF_WINDOW
from hmi.historian import HistorianReader, HistorianWriter
from hmi.sources.mqtt import MqttSource, payload_quality
from tests.helpers import async_wait_until, run_async
from tests.sources.common import Collector, running
from tests.sources.test_mqtt import Publisher, mqtt_conn

TOPIC = "factory/cnc01/telemetry"
TELEMETRY = {"topic": "factory/+/telemetry", "format": "json", "tag": "{topic[1]}.{key}"}


def message(topic: str, payload: bytes | str, retain: bool = False) -> paho.MQTTMessage:
    msg = paho.MQTTMessage(topic=topic.encode())
    msg.payload = payload.encode() if isinstance(payload, str) else payload
    msg.retain = retain
    return msg


class Harness:
    """A source fed directly through its paho callback; `feed` flushes like the network loop does."""

    def __init__(self, tags: list[TagSpec] | None = None, **conn: Any) -> None:
        self.bus = TagBus()
        self.collector = Collector(self.bus)
        if tags is None:
            tags = [
                TagSpec("cnc01.speed", connection="broker"),
                TagSpec("cnc01.feed", connection="broker"),
                TagSpec("cnc01.door", connection="broker", datatype=DataType.BOOL),
            ]
        config = MqttConnection.model_validate({"kind": "mqtt", "host": "127.0.0.1", **conn})
        self.source = MqttSource("broker", config, tags, self.bus)

    def feed(self, topic: str, payload: Any, retain: bool = False) -> None:
        if not isinstance(payload, bytes | str):
            payload = json.dumps(payload)
        self.source._on_message(None, None, message(topic, payload, retain))  # type: ignore[arg-type]
        self.source._flush()

    def reasons(self) -> dict[str, int]:
        return self.source.health.rejected_by_reason()

    def qualities(self, tag: str) -> list[int]:
        return [q for _, _, q in self.collector.of(tag)]


def json_sub(**kw: Any) -> dict[str, Any]:
    return {**TELEMETRY, **kw}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- device quality ---------------------------------------------------------------------------

QUALITY_FORMS = {
    "good": Quality.GOOD,
    "Good": Quality.GOOD,
    "GOOD": Quality.GOOD,
    "bad": Quality.BAD,
    "uncertain": Quality.UNCERTAIN,
    "GoodClamped": Quality.GOOD,
    "UncertainLastUsableValue": Quality.UNCERTAIN,
    "BadSensorFailure": Quality.BAD,
    "BadCommunicationError": Quality.COMM_LOST,
    "0x80000000": Quality.BAD,
    "0x40000000": Quality.UNCERTAIN,
    0: Quality.GOOD,
    2147483648: Quality.BAD,
    0x808A0000: Quality.COMM_LOST,  # BadNotConnected
    0x40000000: Quality.UNCERTAIN,
}


@pytest.mark.parametrize("value", list(QUALITY_FORMS), ids=repr)
def test_payload_quality_of_a_json_subscription_applies_to_every_value(value: Any) -> None:
    """`quality_key` names the device's own quality; its common forms map without a quality_map."""
    h = Harness(subscriptions=[json_sub(quality_key="q")])
    for _ in range(2):  # the second message takes the planned fast path
        h.feed(TOPIC, {"ts": now_ms(), "speed": 1.5, "q": value, "feed": 2})
    expected = QUALITY_FORMS[value]
    assert h.qualities("cnc01.speed") == [expected, expected]
    assert h.qualities("cnc01.feed") == [expected, expected]
    assert h.collector.values("cnc01.speed", None) == [1.5, 1.5]  # the value is kept with its quality
    assert "cnc01.q" not in h.bus.registry and h.reasons() == {}


@pytest.mark.parametrize("value", ["weird", "goodish", 7.5, -1, 2**40, None, True, [1], {"a": 1}], ids=repr)
def test_unknown_payload_quality_is_bad_counted_and_logged_once(value: Any, caplog: pytest.LogCaptureFixture) -> None:
    """An unknown quality is never GOOD: BAD, counted per topic as `unknown quality`, logged once."""
    h = Harness(subscriptions=[json_sub(quality_key="q")])
    for _ in range(50):
        h.feed(TOPIC, {"speed": 1.5, "q": value})
    assert set(h.qualities("cnc01.speed")) == {Quality.BAD}
    assert h.reasons() == {"unknown quality": 50}
    assert sum("unknown quality" in r.getMessage() for r in caplog.records) == 1


def test_quality_map_is_authoritative() -> None:
    """With a quality_map, its entries decide (numbers as strings); a value it does not list is BAD."""
    quality_map = {"ok": "GOOD", "stale": "UNCERTAIN", "0": "BAD", "1": "GOOD", "offline": "COMM_LOST"}
    h = Harness(subscriptions=[json_sub(quality_key="q", quality_map=quality_map)])
    for q in ("ok", "stale", 0, 1, "offline", "good", 2):
        h.feed(TOPIC, {"speed": 1.0, "q": q})
    assert h.qualities("cnc01.speed") == [
        Quality.GOOD,
        Quality.UNCERTAIN,
        Quality.BAD,
        Quality.GOOD,
        Quality.COMM_LOST,
        Quality.BAD,  # "good" is not in the map
        Quality.BAD,  # 2 would be OPC UA Good without a map
    ]
    assert h.reasons() == {"unknown quality": 2}


def test_message_without_its_quality_key_is_good_and_quality_never_improves_a_bad_value() -> None:
    """No quality key in a message: the device says nothing against it. A NaN with quality good stays BAD."""
    h = Harness(subscriptions=[json_sub(quality_key="q")])
    h.feed(TOPIC, {"speed": 1.0})
    h.feed(TOPIC, b'{"speed": NaN, "q": "good"}')
    assert h.qualities("cnc01.speed") == [Quality.GOOD, Quality.BAD]
    assert h.reasons() == {NON_FINITE: 1}


def test_quality_key_for_tags_addressed_one_by_one() -> None:
    """The connection's quality_key applies to tags with an address and a json_path."""
    tags = [
        TagSpec(
            "line1.speed",
            connection="broker",
            address="plant/line1",
            source_address=MqttAddress("plant/line1", "drive.speed"),
        )
    ]
    h = Harness(tags, quality_key="status", quality_map={"192": "GOOD", "0": "BAD"})
    h.feed("plant/line1", {"drive": {"speed": 3.5}, "status": 192})
    h.feed("plant/line1", {"drive": {"speed": 3.6}, "status": 0})
    assert h.collector.of("line1.speed")[0][1:] == (3.5, Quality.GOOD)
    assert h.collector.of("line1.speed")[1][1:] == (3.6, Quality.BAD)


def test_quality_map_needs_a_quality_key() -> None:
    """A quality_map without the key it maps is a mistake in the project file."""
    with pytest.raises(ValidationError, match="quality_map needs quality_key"):
        MqttConnection.model_validate(
            {"kind": "mqtt", "host": "h", "subscriptions": [json_sub(quality_map={"ok": "GOOD"})]}
        )
    with pytest.raises(ValidationError):
        MqttConnection.model_validate(
            {"kind": "mqtt", "host": "h", "subscriptions": [json_sub(quality_key="q", quality_map={"ok": "FINE"})]}
        )


_GOOD_NAME = re.compile(r"Good(?:[A-Z][A-Za-z0-9]*)?")


def means_good(value: Any) -> bool:
    """The oracle: what the docs say a GOOD device quality may look like without a map."""
    if isinstance(value, str):
        if value.lower() == "good" or _GOOD_NAME.fullmatch(value):
            return True
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", value):
            return int(value, 16) <= 0x3FFFFFFF
        return bool(re.fullmatch(r"[0-9]+", value)) and int(value) <= 0x3FFFFFFF
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value <= 0x3FFFFFFF
    if isinstance(value, float):
        return value.is_integer() and 0 <= value <= 0x3FFFFFFF
    return False


_QUALITY_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(min_value=0, max_value=0xFFFFFFFF).map(hex),
    st.integers(min_value=0, max_value=0xFFFFFFFF).map(str),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["good", "GOOD", "Bad", "uncertain", "GoodLocalOverride", "Goodness", "Good_x", "BadFoo"]),
    st.from_regex(r"(Good|Bad|Uncertain)[A-Za-z]{0,8}", fullmatch=True),
)


@given(value=_QUALITY_VALUES)
@settings(max_examples=500)
def test_every_quality_value_maps_and_only_a_good_one_is_good(value: Any) -> None:
    """Every device quality value maps to a Quality (unknown: None, recorded BAD), and GOOD only
    ever comes from a value that means good."""
    quality = payload_quality(value)
    assert quality is None or isinstance(quality, Quality)
    assert (quality == Quality.GOOD) == means_good(value) or (quality != Quality.GOOD and not means_good(value))
    if quality == Quality.GOOD:
        assert means_good(value)


@given(value=_QUALITY_VALUES)
@settings(max_examples=100, deadline=None)
def test_recorded_quality_is_good_only_for_a_good_device_quality(value: Any) -> None:
    """Through the source: a value is recorded GOOD only when the device's quality means good."""
    h = HARNESS
    before = len(h.collector.rows)
    h.feed(TOPIC, {"ts": now_ms(), "speed": 1.0, "q": value})
    (row,) = h.collector.rows[before:]
    assert (row[3] == Quality.GOOD) == means_good(value)


HARNESS = Harness(subscriptions=[json_sub(quality_key="q")])


# -- retained messages ---------------------------------------------------------------------------


def test_retained_message_without_a_payload_time_is_uncertain_until_a_live_one() -> None:
    """A retained message may be a week old: without a payload time it is UNCERTAIN; live ones are GOOD."""
    tags = [
        TagSpec("line1.temp", connection="broker", address="plant/line1/temp"),
        TagSpec("cnc01.speed"),
        TagSpec("cnc01.flow"),
    ]
    h = Harness(
        tags, subscriptions=[json_sub(), {"topic": "plant/+/flow", "format": "value", "tag": "{topic[1]}.flow"}]
    )
    h.feed("plant/line1/temp", "21.5", retain=True)
    h.feed("plant/line1/temp", "21.6")
    h.feed(TOPIC, {"speed": 1.0}, retain=True)
    h.feed(TOPIC, {"speed": 2.0})
    stamp = now_ms() - 60_000
    h.feed(TOPIC, {"speed": 3.0, "ts": stamp}, retain=True)  # its own time tells its age
    h.feed("plant/cnc01/flow", "5", retain=True)
    h.feed("plant/cnc01/flow", "6")
    assert [r[1:] for r in h.collector.of("cnc01.flow")] == [(5.0, Quality.UNCERTAIN), (6.0, Quality.GOOD)]
    assert [r[1:] for r in h.collector.of("line1.temp")] == [(21.5, Quality.UNCERTAIN), (21.6, Quality.GOOD)]
    speed = h.collector.of("cnc01.speed")
    assert [r[1:] for r in speed] == [(1.0, Quality.UNCERTAIN), (2.0, Quality.GOOD), (3.0, Quality.GOOD)]
    assert speed[2][0] == stamp * 1_000_000
    assert h.reasons() == {}  # not a rejection: nothing is wrong with the message


def test_retained_messages_from_mosquitto_are_recorded_uncertain(mosquitto_broker: Any, tmp_path: Path) -> None:
    """Published retained before the HMI subscribes, a value reaches the historian UNCERTAIN; the first
    live message is GOOD. A retained status message (the Last Will pattern) stays GOOD."""
    broker = mosquitto_broker()
    pub = Publisher(broker.host, broker.port)
    pub.send("plant/line1/temp", "21.5", retain=True)
    pub.send(TOPIC, {"speed": 7.0}, retain=True)
    pub.send("factory/cnc01/status", "online", retain=True)
    bus = TagBus()
    tags = [TagSpec("line1.temp", connection="broker", address="plant/line1/temp"), TagSpec("cnc01.speed")]
    source = MqttSource(
        "broker",
        mqtt_conn(broker, subscriptions=[json_sub(), {"topic": "factory/+/status", "format": "status"}]),
        tags,
        bus,
    )
    collector = Collector(bus)
    db = tmp_path / "h.sqlite"
    writer = HistorianWriter(str(db), bus.registry, commit_interval_s=0.05)
    writer.attach(bus)
    writer.start()

    def good(tag: str) -> bool:
        return bool(collector.values(tag))

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: collector.values("cnc01.speed", Quality.UNCERTAIN), 10, source.last_error)
            await async_wait_until(lambda: collector.values("line1.temp", Quality.UNCERTAIN), 10)
            pub.send("plant/line1/temp", "22.5")
            pub.send(TOPIC, {"speed": 8.0})
            await async_wait_until(lambda: good("line1.temp") and good("cnc01.speed"), 10)

    try:
        run_async(scenario(), 30)
        assert writer.flush()
    finally:
        writer.close()
        pub.close()
    with HistorianReader(db) as reader:
        temp = reader.read("line1.temp", 1, 2**62)
        speed = reader.read("cnc01.speed", 1, 2**62)
        online = reader.read("cnc01.online", 1, 2**62)

    def data(series: Any) -> list[tuple[float, int]]:  # without the COMM_LOST marks of start and stop
        pairs = zip(series.values.tolist(), series.quality.tolist(), strict=True)
        return [(v, q) for v, q in pairs if q != Quality.COMM_LOST]

    assert data(temp) == [(21.5, Quality.UNCERTAIN), (22.5, Quality.GOOD)]
    assert data(speed) == [(7.0, Quality.UNCERTAIN), (8.0, Quality.GOOD)]
    assert online.values.tolist() == [1.0] and online.quality.tolist() == [Quality.GOOD]


# -- the shared value rule -----------------------------------------------------------------------


@pytest.mark.parametrize("big", [2**70, 2**63 - 1, -(2**60)], ids=repr)
def test_integer_beyond_2_53_is_the_nearest_float_uncertain_and_counted(
    big: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A JSON integer a float cannot hold exactly is recorded approximate (UNCERTAIN), on the fast path too."""
    h = Harness(subscriptions=[json_sub()])
    for _ in range(3):  # the second and third take the planned fast path
        h.feed(TOPIC, {"ts": now_ms(), "speed": big, "feed": 1.0})
    assert h.collector.of("cnc01.speed")[-1][1:] == (float(big), Quality.UNCERTAIN)
    assert h.qualities("cnc01.speed") == [Quality.UNCERTAIN] * 3
    assert h.qualities("cnc01.feed") == [Quality.GOOD] * 3
    assert h.reasons() == {INEXACT_INTEGER: 3}
    assert sum(INEXACT_INTEGER in r.getMessage() for r in caplog.records) == 1


def test_exact_integers_stay_good_and_an_int_beyond_a_float_stays_bad() -> None:
    """2^53 itself is exact (GOOD); an integer beyond float range is non-finite (BAD)."""
    h = Harness(subscriptions=[json_sub()])
    h.feed(TOPIC, {"speed": 2**53, "feed": -(2**53)})
    h.feed(TOPIC, b'{"speed": 1' + b"0" * 400 + b', "feed": 1}')
    assert h.collector.of("cnc01.speed")[0][1:] == (float(2**53), Quality.GOOD)
    assert h.qualities("cnc01.speed")[1] == Quality.BAD
    assert h.reasons() == {NON_FINITE: 1}


def _iso(year: int) -> str:
    return f"{year:04d}-01-02T00:00:00Z"


@pytest.mark.parametrize(
    "stamp",
    [
        253_402_300_800 * 10**9 + 10**18,  # ns beyond the year 9999
        86_400,  # 1970-01-02 in s
        _iso(1990),  # far past (default window: ten years)
        _iso(2999),  # far ahead
    ],
    ids=repr,
)
def test_payload_time_outside_the_window_is_refused(stamp: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A payload time outside the connection's window: arrival time, UNCERTAIN, counted, logged once per topic."""
    h = Harness(subscriptions=[json_sub()])
    for _ in range(3):
        before = time.time_ns()
        h.feed(TOPIC, {"ts": stamp, "speed": 1.0, "feed": 2.0})
        after = time.time_ns()
        (ts, value, quality), *_ = h.collector.of("cnc01.speed")[-1:]
        assert before <= ts <= after and value == 1.0 and quality == Quality.UNCERTAIN
    assert h.qualities("cnc01.feed") == [Quality.UNCERTAIN] * 3
    assert h.reasons() == {TIMESTAMP_OUT_OF_WINDOW: 3}
    assert sum(TIMESTAMP_OUT_OF_WINDOW in r.getMessage() for r in caplog.records) == 1


def test_timestamp_window_is_the_connections() -> None:
    """timestamp_max_age_s / timestamp_max_ahead_s narrow the window; inside it the payload time is kept."""
    h = Harness(subscriptions=[json_sub()], timestamp_max_age_s=60, timestamp_max_ahead_s=1)
    h.feed(TOPIC, {"ts": now_ms() - 3_600_000, "speed": 1.0})
    h.feed(TOPIC, {"ts": now_ms() + 60_000, "speed": 2.0})
    stamp = now_ms() - 30_000
    h.feed(TOPIC, {"ts": stamp, "speed": 3.0})
    rows = h.collector.of("cnc01.speed")
    assert [q for _, _, q in rows] == [Quality.UNCERTAIN, Quality.UNCERTAIN, Quality.GOOD]
    assert rows[2][0] == stamp * 1_000_000
    assert h.reasons() == {TIMESTAMP_OUT_OF_WINDOW: 2}


def test_timestamp_window_applies_to_tags_addressed_one_by_one() -> None:
    """The connection's timestamp_key and window also judge a json_path tag's payload time."""
    tags = [
        TagSpec(
            "line1.speed", connection="broker", address="plant/line1", source_address=MqttAddress("plant/line1", "v")
        )
    ]
    h = Harness(tags)
    h.feed("plant/line1", {"v": 1.0, "ts": 86_400})
    h.feed("plant/line1", {"v": 2.0, "ts": "not a time"})
    assert h.qualities("line1.speed") == [Quality.UNCERTAIN, Quality.UNCERTAIN]
    assert h.reasons() == {TIMESTAMP_OUT_OF_WINDOW: 1, "bad timestamp": 1}


@pytest.mark.parametrize("stamp", ["yesterday", "10000-01-01T00:00:00Z", "2024-01-02T03:04:05", True, -5], ids=repr)
def test_unparseable_payload_time_is_arrival_time_uncertain(stamp: Any) -> None:
    """A payload time that cannot be read is treated as one outside the window: arrival time, UNCERTAIN."""
    h = Harness(subscriptions=[json_sub()])
    for _ in range(2):
        before = time.time_ns()
        h.feed(TOPIC, {"ts": stamp, "speed": 1.0})
        ts, value, quality = h.collector.of("cnc01.speed")[-1]
        assert ts >= before and (value, quality) == (1.0, Quality.UNCERTAIN)
    assert h.reasons() == {"bad timestamp": 2}


def test_json_true_on_a_float_tag_is_one(caplog: pytest.LogCaptureFixture) -> None:
    """Documented coercion (docs/project-file.md): a JSON bool on a numeric tag is 1.0/0.0, GOOD, not counted."""
    h = Harness(subscriptions=[json_sub()])
    for _ in range(2):
        h.feed(TOPIC, {"speed": True, "feed": False})
    assert [r[1:] for r in h.collector.of("cnc01.speed")] == [(1.0, Quality.GOOD)] * 2
    assert [r[1:] for r in h.collector.of("cnc01.feed")] == [(0.0, Quality.GOOD)] * 2
    assert h.reasons() == {}


# -- status payloads -----------------------------------------------------------------------------


def status_sub(**kw: Any) -> dict[str, Any]:
    return {"topic": "factory/+/status", "format": "status", **kw}


def test_json_status_payload_with_a_path_and_value_lists() -> None:
    """`status_path` picks the state from JSON; `online`/`offline` accept lists of values."""
    h = Harness(
        subscriptions=[
            status_sub(status_path="state", online=["RUNNING", "IDLE"], offline=["STOPPED", "OFFLINE"]),
        ]
    )
    for state in ("RUNNING", "STOPPED", "IDLE", "OFFLINE"):
        h.feed("factory/cnc01/status", {"state": state, "since": 1})
    assert h.collector.values("cnc01.online") == [1.0, 0.0, 1.0, 0.0]
    h.feed("factory/cnc01/status", {"state": "EXPLODED"})
    h.feed("factory/cnc01/status", {"mode": "RUNNING"})
    h.feed("factory/cnc01/status", "RUNNING")
    assert h.collector.values("cnc01.online") == [1.0, 0.0, 1.0, 0.0]
    assert h.reasons() == {"unknown status": 1, "status path not found": 1, "invalid JSON": 1}


def test_plain_status_defaults_still_work_and_unknown_ones_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    """Without status_path the payload is the plain text `online`/`offline`; anything else is counted and logged."""
    h = Harness(subscriptions=[status_sub()])
    for text in ("online", "offline", "maybe", "maybe"):
        h.feed("factory/cnc01/status", text)
    assert h.collector.values("cnc01.online") == [1.0, 0.0]
    assert h.reasons() == {"unknown status": 2}
    assert sum("unknown status" in r.getMessage() for r in caplog.records) == 1


def test_online_and_offline_must_not_overlap() -> None:
    """A value listed as both online and offline cannot be decided: refused in the project file."""
    with pytest.raises(ValidationError, match="both online and offline"):
        MqttConnection.model_validate(
            {"kind": "mqtt", "host": "h", "subscriptions": [status_sub(online=["A", "B"], offline="B")]}
        )


# -- one handling per route ----------------------------------------------------------------------


def test_each_message_is_handled_once_per_route(mosquitto_broker: Any) -> None:
    """A tag addressed to a status topic, a status subscription with a wildcard over it, and a json
    subscription given twice (exact and wildcard): one message makes one sample per route."""
    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    tags = [
        TagSpec("cnc01.status_text", connection="broker", address="factory/cnc01/status", datatype=DataType.STRING),
        TagSpec("cnc01.speed", connection="broker"),
    ]
    subs = [
        status_sub(qos=1),
        json_sub(topic=TOPIC, qos=1),
        json_sub(qos=0),
    ]
    source = MqttSource("broker", mqtt_conn(broker, subscriptions=subs), tags, bus)
    pub = Publisher(broker.host, broker.port)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)
            pub.send("factory/cnc01/status", "online")
            pub.send(TOPIC, {"speed": 1.0})
            pub.send(TOPIC, {"speed": 2.0})
            await async_wait_until(lambda: len(collector.values("cnc01.speed")) >= 2, 10)
            await asyncio.sleep(0.5)  # time for any second copy to arrive

    try:
        run_async(scenario(), 30)
    finally:
        pub.close()
    assert collector.values("cnc01.status_text") == ["online"]
    assert collector.values("cnc01.online") == [1.0]
    assert collector.values("cnc01.speed") == [1.0, 2.0]
    assert source.health.messages == 3
    assert source.health.rejected_by_reason() == {}


def test_json_status_and_a_tag_on_the_same_topic_from_mosquitto(mosquitto_broker: Any) -> None:
    """Through a real broker: a JSON status (`{"state": "RUNNING"}`) mapped by status_path and
    value lists sets `<machine>.online`, and a tag reading the same topic gets each message once."""
    broker = mosquitto_broker()
    bus = TagBus()
    collector = Collector(bus)
    tags = [
        TagSpec(
            "cnc01.state",
            connection="broker",
            address="factory/cnc01/status",
            datatype=DataType.STRING,
            source_address=MqttAddress("factory/cnc01/status", "state"),
        ),
    ]
    status = status_sub(qos=1, status_path="state", online=["RUNNING", "IDLE"], offline="STOPPED")
    source = MqttSource("broker", mqtt_conn(broker, subscriptions=[status]), tags, bus)
    pub = Publisher(broker.host, broker.port)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            await asyncio.sleep(0.3)
            for state in ("RUNNING", "HALTED", "IDLE", "STOPPED"):
                pub.send("factory/cnc01/status", {"state": state})
            await async_wait_until(lambda: len(collector.values("cnc01.online")) >= 3, 10)
            await asyncio.sleep(0.5)  # time for any second copy to arrive

    try:
        run_async(scenario(), 30)
    finally:
        pub.close()
    assert collector.values("cnc01.online") == [1.0, 1.0, 0.0]
    assert collector.values("cnc01.state") == ["RUNNING", "HALTED", "IDLE", "STOPPED"]
    assert source.health.rejected_by_reason() == {"unknown status": 1}


def test_overlapping_filters_are_subscribed_once_with_the_highest_qos() -> None:
    """The broker gets one subscription per message path: a filter covered by another is left out
    (MQTT 5 brokers deliver one copy per matching subscription), and the covering one takes the higher QoS."""
    tags = [TagSpec("cnc01.state", connection="broker", address="factory/cnc01/status")]
    h = Harness(
        tags,
        subscriptions=[
            status_sub(qos=0),
            json_sub(topic=TOPIC, qos=2),
            json_sub(topic="factory/#", qos=1),
            {"topic": "other/+/x", "format": "value", "tag": "{topic[1]}.x"},
        ],
    )
    assert sorted(h.source._filters) == [("factory/#", 2), ("other/+/x", 0)]


def test_unknown_status_rejections_name_the_accepted_values(caplog: pytest.LogCaptureFixture) -> None:
    """The log line of an unknown status says which values would have been understood."""
    caplog.set_level(logging.WARNING)
    h = Harness(subscriptions=[status_sub(status_path="state", online="RUNNING", offline=["STOPPED"])])
    h.feed("factory/cnc01/status", {"state": "HALTED"})
    (line,) = [r.getMessage() for r in caplog.records if "unknown status" in r.getMessage()]
    assert "'HALTED'" in line and "RUNNING" in line and "STOPPED" in line


_MESSAGE_VALUES = st.one_of(
    st.floats(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


@given(
    messages=st.lists(
        st.tuples(_MESSAGE_VALUES, _MESSAGE_VALUES, _QUALITY_VALUES, st.sampled_from([None, 86_400, "now"])),
        min_size=1,
        max_size=5,
    )
)
@settings(max_examples=200, deadline=None)
def test_fast_path_with_quality_and_time_keys_decodes_as_a_fresh_source(messages: list[tuple[Any, ...]]) -> None:
    """With a quality key and a time key in the shape, the planned fast path records exactly what a
    fresh source (key by key) makes of each message: values, qualities and reasons counted."""
    tags = [TagSpec("cnc01.speed", connection="broker"), TagSpec("cnc01.feed", connection="broker")]
    sub = json_sub(quality_key="q")
    warm = Harness(tags, subscriptions=[sub])
    warm.feed(TOPIC, {"ts": now_ms(), "speed": 1.0, "q": "good", "feed": 2})  # plans the shape
    for speed, feed, quality, stamp in messages:
        ts = now_ms() if stamp == "now" else stamp
        body = json.dumps({"ts": ts, "speed": speed, "q": quality, "feed": feed}).encode()
        fresh = Harness(tags, subscriptions=[sub])
        fresh.feed(TOPIC, body)
        before = len(warm.collector.rows)
        warm_reasons = Counter(warm.reasons())
        warm.feed(TOPIC, body)
        got = [(t, v, q) for t, _, v, q in warm.collector.rows[before:]]
        expected = [(t, v, q) for t, _, v, q in fresh.collector.rows]
        assert repr(got) == repr(expected)  # repr: NaN != NaN; times differ by the arrival clock
        assert Counter(warm.reasons()) - warm_reasons == Counter(fresh.reasons())
