"""Payload decoding in the MQTT source: Sparkplug B captures, a corpus of bad payloads, random bytes.

Messages go through the source's own paho callback (`_on_message`, with real paho
MQTTMessage objects) and its one hand-over to the bus, without a broker in between: the
broker adds nothing to decoding, and this way each case takes milliseconds.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmi.config.connections import MqttConnection
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.tags import DataType, TagSpec
from hmi.sources import sparkplug
from hmi.sources.mqtt import MqttSource, parse_json, timestamp_ns
from tests.helpers import SHARED_TESTDATA
from tests.sources.common import Collector

SPARKPLUG = SHARED_TESTDATA / "sparkplug"


def captured() -> list[tuple[str, bytes, dict[str, Any]]]:
    rows = [
        line.rstrip("\n").split("\t")
        for line in (SPARKPLUG / "sparkplug_capture.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    expected = [json.loads(line) for line in (SPARKPLUG / "sparkplug_capture.decoded_by_tahu.jsonl").open()]
    assert len(rows) == len(expected) == 21
    return [(topic, bytes.fromhex(hexdata), exp) for (topic, hexdata), exp in zip(rows, expected, strict=True)]


def message(topic: str, payload: bytes | str) -> paho.MQTTMessage:
    msg = paho.MQTTMessage(topic=topic.encode())
    msg.payload = payload.encode() if isinstance(payload, str) else payload
    return msg


class Harness:
    """A source fed directly through its paho callback; `feed` flushes like the network loop does."""

    def __init__(self, tags: list[TagSpec], **conn: Any) -> None:
        self.bus = TagBus()
        self.collector = Collector(self.bus)
        config = MqttConnection.model_validate({"kind": "mqtt", "host": "127.0.0.1", **conn})
        self.source = MqttSource("broker", config, tags, self.bus)

    def feed(self, topic: str, payload: bytes | str) -> None:
        self.source._on_message(None, None, message(topic, payload))  # type: ignore[arg-type]
        self.source._flush()

    def reasons(self) -> dict[str, int]:
        return self.source.health.rejected_by_reason()


# -- Sparkplug B -------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(21))
def test_every_captured_sparkplug_message_decodes_as_tahu_does(index: int) -> None:
    """Each captured message (Tahu JS and pysparkplug encoders) decodes to Tahu's own decoding."""
    topic, payload, expected = captured()[index]
    decoded = sparkplug.decode_payload(payload)
    exp = expected["payload"]
    assert str(decoded.timestamp) == exp["timestamp"]
    assert (None if decoded.seq is None else str(decoded.seq)) == exp.get("seq")
    assert len(decoded.metrics) == len(exp["metrics"])
    for metric, em in zip(decoded.metrics, exp["metrics"], strict=True):
        assert (metric.name, metric.type_name) == (em.get("name"), em["type"])
        assert (None if metric.alias is None else str(metric.alias)) == em.get("alias")
        assert (None if metric.timestamp is None else str(metric.timestamp)) == em.get("timestamp")
        value = em["value"]
        if topic.endswith("DBIRTH/PyEdge/CNC02") and metric.name == "PartCount":
            # pysparkplug puts UInt32 in int_value as Sparkplug 3.0 says; Tahu's JS decoder reads
            # UInt32 from long_value and so reports null. We read the field that is there: 0.
            assert (metric.value, value) == (0, None)
            continue
        if isinstance(value, str) and em["type"] in ("Int64", "UInt64", "DateTime"):
            value = int(value)
        if em["type"] == "Float":
            assert metric.value == pytest.approx(value, rel=1e-6)
        else:
            assert metric.value == value
        for key, prop in em.get("properties", {}).items():
            assert (
                metric.properties[key]["value"] == pytest.approx(prop["value"])
                if isinstance(prop["value"], float)
                else metric.properties[key]["value"] == prop["value"]
            )


def sparkplug_harness() -> Harness:
    sub = {"topic": "spBv1.0/Acceptance/#", "format": "sparkplugb", "tag": "{device}.{metric}", "create_tags": True}
    return Harness([], subscriptions=[sub])


def test_sparkplug_capture_through_the_source() -> None:
    """Births name the aliases that data messages use; values land on {device}.{metric}; deaths mark COMM_LOST."""
    h = sparkplug_harness()
    for topic, payload, _ in captured():
        h.feed(topic, payload)
    c = h.collector
    # Tahu's DDATA carry aliases only (1 = SpindleSpeed, 3..5 = Axes/X..Z), resolved through its DBIRTH.
    assert c.values("cnc01.spindle_speed", None)[:5] == [
        0.0,
        12053.895085205004,
        12103.251711200515,
        12152.053075251488,
        12199.304663992212,
    ]
    assert c.values("cnc02.axes_y", None)[:2] == [0.0, 24.74880366672282]
    assert c.values("cnc01.program_name", None)[0] == "O1000 FACE MILL"
    assert c.values("cnc01.last_cycle_end", None)[0] == 1795413287.711
    assert h.bus.registry.by_name("cnc01.spindle_speed").unit == "rpm"
    # DDEATH/NDEATH at the end: the devices' tags keep their values but are COMM_LOST, online is false.
    assert c.latest("cnc01.spindle_speed") == (c.values("cnc01.spindle_speed", None)[-2], Quality.COMM_LOST)
    assert c.latest("cnc01.online") == (0.0, Quality.GOOD) and c.latest("cnc02.online") == (0.0, Quality.GOOD)
    assert c.latest("tahu_edge.online") == (0.0, Quality.GOOD)
    # The capture skips messages (DDEATH seq 64 after DDATA seq 5): counted as sequence gaps, not errors.
    assert h.reasons().get("sequence gap", 0) >= 1 and "unknown alias" not in h.reasons()


def test_rebirth_request_is_byte_for_byte_what_tahus_host_sends() -> None:
    """The captured NCMD of Eclipse Tahu's host application, rebuilt from its timestamp."""
    topic, payload, _ = captured()[12]
    assert topic == "spBv1.0/Acceptance/NCMD/TahuEdge"
    timestamp = sparkplug.decode_payload(payload).timestamp
    assert timestamp is not None
    assert sparkplug.encode_rebirth_request(timestamp) == payload


def encode_metric(alias: int, datatype: int, value: float | None) -> bytes:
    """A minimal Sparkplug B metric: alias, datatype, and a double_value or is_null."""

    varint = sparkplug.encode_varint
    body = b"\x10" + varint(alias) + b"\x20" + varint(datatype)
    body += b"\x38\x01" if value is None else b"\x69" + struct.pack("<d", value)
    return b"\x12" + varint(len(body)) + body


def test_sparkplug_is_null_unknown_alias_and_garbage() -> None:
    """An is_null metric is BAD, an alias without a birth is rejected and counted, garbage bytes are rejected."""
    h = sparkplug_harness()
    for topic, payload, _ in captured()[:4]:  # births of both edge nodes
        h.feed(topic, payload)
    h.feed("spBv1.0/Acceptance/DDATA/TahuEdge/CNC01", b"\x18\x02" + encode_metric(1, 10, None))
    assert h.collector.latest("cnc01.spindle_speed")[1] == Quality.BAD
    h.feed("spBv1.0/Acceptance/DDATA/TahuEdge/CNC01", b"\x18\x03" + encode_metric(99, 10, 1.0))
    h.feed("spBv1.0/Acceptance/DDATA/Unborn/Dev", b"\x18\x00" + encode_metric(1, 10, 1.0))
    assert h.reasons()["unknown alias"] == 2
    h.feed("spBv1.0/Acceptance/DDATA/TahuEdge/CNC01", b"\x12\xff\xff")
    assert h.reasons()["bad Sparkplug payload"] == 1


# -- bad payloads, one test each ----------------------------------------------------------------

TELEMETRY = {"topic": "factory/+/telemetry", "format": "json", "tag": "{topic[1]}.{key}"}


def telemetry_harness(**conn: Any) -> Harness:
    tags = [
        TagSpec("cnc01.speed", connection="broker"),
        TagSpec("cnc01.door", connection="broker", datatype=DataType.BOOL),
        TagSpec("cnc01.program", connection="broker", datatype=DataType.STRING),
    ]
    return Harness(tags, subscriptions=[TELEMETRY], **conn)


BAD_PAYLOADS: dict[str, tuple[bytes, str, bool]] = {
    # name: (payload, counted reason, whether a BAD sample is published)
    "invalid JSON": (b'{"speed": ', "invalid JSON", False),
    "not UTF-8": (b'{"speed": "\xff\xfe"}', "not UTF-8", False),
    "NaN": (b'{"speed": NaN}', "non-finite number", True),
    "Infinity": (b'{"speed": -Infinity}', "non-finite number", True),
    "1e400 overflows": (b'{"speed": 1e400}', "non-finite number", True),
    "int beyond a float": (b'{"speed": 1' + b"0" * 400 + b"}", "non-finite number", True),
    "deeply nested": (b'{"speed": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON nested too deeply", False),
    "top level not an object": (b"[1, 2, 3]", "JSON is not an object", False),
    "string for a number": (b'{"speed": "fast"}', "type", True),
    "number for a bool": (b'{"door": 7}', "type", True),
    "array for a number": (b'{"speed": [1, 2]}', "array", True),
    "object for a number": (b'{"speed": {"v": 1}}', "nested object", False),
    "unknown key": (b'{"torque": 1}', "unknown tag", False),
    "bad timestamp": (b'{"ts": "yesterday", "speed": 1}', "bad timestamp", False),
    "empty payload": (b"", "invalid JSON", False),
}


@pytest.mark.parametrize("name", list(BAD_PAYLOADS))
def test_bad_payload_is_dropped_or_bad_and_counted(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """A bad payload never raises; it is counted per topic under its reason and logged, and good data still flows."""
    payload, reason, marks_bad = BAD_PAYLOADS[name]
    h = telemetry_harness()
    h.feed("factory/cnc01/telemetry", payload)
    assert h.reasons().get(reason) == 1, h.reasons()
    assert h.source.health.rejected[("factory/cnc01/telemetry", reason)] == 1
    rows = [r for r in h.collector.rows if r[0] != h.bus.registry.id_of("cnc01.speed") or True]
    bad = [q for _, _, _, q in rows if q == Quality.BAD]
    assert bool(bad) == marks_bad
    if name == "bad timestamp":  # the value is kept, with the time of arrival and UNCERTAIN (hmi/core/values.py)
        assert h.collector.values("cnc01.speed", Quality.UNCERTAIN) == [1.0]
    logged = ("dropped a message", "does not fit", "recorded UNCERTAIN")
    assert any(any(text in r.getMessage() for text in logged) for r in caplog.records)
    h.feed("factory/cnc01/telemetry", b'{"speed": 3}')
    assert h.collector.values("cnc01.speed")[-1] == 3.0


def test_oversize_message_is_dropped() -> None:
    """A message over max_payload_bytes is dropped before it is parsed, and counted."""
    h = telemetry_harness(max_payload_bytes=64)
    h.feed("factory/cnc01/telemetry", b'{"speed": 1, "pad": "' + b"x" * 100 + b'"}')
    assert h.reasons() == {"oversize": 1} and not h.collector.rows


def test_unknown_topic_is_counted() -> None:
    """A message on a topic that no subscription or tag maps (a wider broker-side match) is counted, not decoded."""
    h = telemetry_harness()
    h.feed("factory/cnc01/other", b"1")
    assert h.reasons() == {"unknown topic": 1}


def test_rejections_are_logged_at_a_limited_rate(caplog: pytest.LogCaptureFixture) -> None:
    """A thousand identical bad messages produce one log line, and all thousand are counted."""
    h = telemetry_harness()
    for _ in range(1000):
        h.feed("factory/cnc01/telemetry", b"{")
    assert h.reasons() == {"invalid JSON": 1000}
    assert sum("dropped a message" in r.getMessage() for r in caplog.records) == 1


def test_json_loads_pitfalls_never_reach_the_bus_as_good() -> None:
    """What json.loads accepts silently (NaN, Infinity, 1e400 as inf) is BAD on the bus; deep nesting is a reason."""
    assert json.loads("1e400") == float("inf")  # the pitfall itself
    h = telemetry_harness()
    for text in ("NaN", "Infinity", "-Infinity", "1e400", "-1e999"):
        h.feed("factory/cnc01/telemetry", f'{{"speed": {text}, "door": true}}')
    assert all(q == Quality.BAD for _, _, q in h.collector.of("cnc01.speed"))
    assert h.collector.values("cnc01.door") == [1.0] * 5  # the rest of each message is fine
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json(b"[" * 50_000 + b"]" * 50_000)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(
    value=_JSON_VALUES,
    before=st.sampled_from(["", " ", "\n\t", "\ufeff"]),
    after=st.sampled_from(["", " ", "\r\n", "x", ",1", "}"]),
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-8-sig"]),
)
def test_parse_json_accepts_and_refuses_exactly_what_json_loads_does(
    value: Any, before: str, after: str, encoding: str
) -> None:
    """The fast path (the C scanner on the decoded text) must not widen or narrow json.loads."""
    payload = (before + json.dumps(value) + after).encode(encoding)
    try:
        expected = json.dumps(json.loads(payload))
    except ValueError:
        with pytest.raises(ValueError):
            parse_json(payload)
        return
    assert json.dumps(parse_json(payload)) == expected


def test_payload_timestamps_in_any_unit() -> None:
    """Payload times in s, ms, µs, ns or ISO 8601 with a zone all become ns since the epoch."""
    ns = 1_700_000_000_000_000_000
    assert {timestamp_ns(v) for v in (1.7e9, 1.7e12, 1.7e15, ns, "2023-11-14T22:13:20Z")} == {ns}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=512), topic_level=st.sampled_from(["cnc01", "x", "", "+"]))
def test_random_bytes_never_crash_the_source(payload: bytes, topic_level: str) -> None:
    """Whatever bytes arrive on a subscribed topic (JSON, value, Sparkplug), the callback returns normally."""
    h = HARNESS
    before = h.source.health.messages + h.source.health.rejected_total
    for topic in (f"factory/{topic_level}/telemetry", "plant/value", "spBv1.0/G/DDATA/n/d", "spBv1.0/G/NBIRTH/n"):
        h.feed(topic, payload)
    assert h.source.health.messages + h.source.health.rejected_total >= before


HARNESS = Harness(
    [TagSpec("plant.value", connection="broker", address="plant/value")],
    subscriptions=[
        TELEMETRY,
        {"topic": "spBv1.0/#", "format": "sparkplugb", "tag": "{device}.{metric}", "create_tags": True},
    ],
)


def test_capture_files_are_where_the_tests_expect_them() -> None:
    """The shared Sparkplug captures are present (the decoder tests above would otherwise prove nothing)."""
    assert Path(SPARKPLUG / "README.md").exists()


_TELEMETRY_VALUES = st.one_of(
    st.floats(),  # NaN and infinities included
    st.integers(min_value=-(2**1100), max_value=2**1100),  # beyond a float, too
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)


@given(messages=st.lists(st.tuples(_TELEMETRY_VALUES, _TELEMETRY_VALUES), min_size=1, max_size=6))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_repeated_message_shape_decodes_as_the_first_message_does(messages: list[tuple[Any, Any]]) -> None:
    """From the second message with the same keys on, a topic takes the planned fast path; what reaches
    the bus (values, qualities, reasons counted) must be exactly what a fresh source makes of each message."""
    tags = [TagSpec("cnc01.speed", connection="broker"), TagSpec("cnc01.feed", connection="broker")]
    warm = Harness(tags, subscriptions=[TELEMETRY])
    warm.feed("factory/cnc01/telemetry", b'{"ts": 1700000000000, "speed": 1.0, "feed": 2}')  # plans the shape
    fresh_reasons: Counter[str] = Counter()
    for i, (speed, feed) in enumerate(messages):
        body = json.dumps({"ts": 1_700_000_000_001 + i, "speed": speed, "feed": feed}).encode()
        fresh = Harness(tags, subscriptions=[TELEMETRY])  # no plan yet: decodes key by key
        fresh.feed("factory/cnc01/telemetry", body)
        fresh_reasons.update(fresh.reasons())
        before = len(warm.collector.rows)
        warm.feed("factory/cnc01/telemetry", body)
        assert repr(warm.collector.rows[before:]) == repr(fresh.collector.rows)  # repr: NaN != NaN
    assert warm.reasons() == dict(fresh_reasons)


def test_rows_that_cannot_form_a_batch_are_dropped_and_counted_not_retried_forever() -> None:
    """A decoder bug that leaves an unconvertible row behind costs that flush's rows (counted and
    logged), not every later flush: the source went on failing on the same rows before."""
    h = telemetry_harness()
    speed = h.bus.registry.id_of("cnc01.speed")
    h.source._rows.add(speed, 1, 10**400, 0)  # type: ignore[arg-type]  (what the old decoder let through)
    h.source._flush()
    assert h.reasons() == {"decoder error": 1}
    h.feed("factory/cnc01/telemetry", b'{"speed": 3}')
    assert h.collector.values("cnc01.speed") == [3.0]
