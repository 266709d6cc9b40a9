"""MQTT source (paho-mqtt 2.x, callback API version 2): topics to tags, JSON, plain values,
Sparkplug B, machine status, and commands for writes.

Threads: paho's network loop runs in one thread of ours (`_network_loop`, which calls
`client.loop()` itself instead of `loop_start()`, so that reconnecting with backoff and
jitter and flushing coalesced samples happen in the same place). Every paho callback runs
on that thread, decodes into plain Python lists, and never raises: anything unexpected is
counted and logged. Decoded rows are coalesced and cross to the bus in exactly one
function, `_hand_over`: at once when the socket has nothing more to read, else after at
most `_FLUSH_ROWS` rows or `_FLUSH_S` seconds, so a burst costs one batch per few hundred
messages and a lone message waits for nothing. `run()` (the runtime's asyncio loop) starts
and stops the thread and publishes the health tags; `write()` publishes a command from the
loop (paho's publish is thread-safe) and waits for the broker's PUBACK in a worker thread.

Bad input (oversize, invalid JSON, NaN/Infinity/1e400, deep nesting, wrong types, unknown
topics or tags, malformed Sparkplug) is dropped or published as BAD, counted per topic and
reason in the health counters, and logged at a limited rate.

What a value is worth follows hmi/core/values.py: integers beyond 2^53 are kept approximate
and UNCERTAIN; a payload time that cannot be read or lies outside the connection's window
gives way to the time of arrival, UNCERTAIN. A payload's own quality (`quality_key`) applies
to every value of its message (`payload_quality`; unknown means BAD). A retained message
without a time of its own is UNCERTAIN (it may be a week old) until the first live one;
status messages excepted (the Last Will keeps them true). Filters another one covers are not
subscribed, so a broker that sends a copy per matching subscription sends one, and each
message is decoded once per route.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import select
import socket
import ssl
import threading
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hmi.config.models import MqttConnection, MqttSubscription
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import Quality, quality_from_opcua_status
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.sockets import disable_nagle
from hmi.core.tags import TAG_NAME_RE, DataType, TagSpec
from hmi.core.values import INEXACT_INTEGER, MAX_EXACT_INT, NON_FINITE, TIMESTAMP_OUT_OF_WINDOW, exact_in_float
from hmi.sources import sparkplug
from hmi.sources.backoff import Backoff
from hmi.sources.credentials import CredentialError, resolve_password
from hmi.sources.health import RateLimitedLog, SourceHealth, comm_lost_batch
from hmi.sources.writes import (
    CONFIRMED,
    NOT_CONFIRMED,
    REFUSED_BY_DEVICE,
    SENT,
    NotConnected,
    WriteRejected,
    WriteResult,
    check_limits,
)

log = logging.getLogger(__name__)

_FLUSH_ROWS = 4096
_FLUSH_S = 0.002
_BURST_PACKETS = 64
_ACK_EVERY_PACKETS = 16  # below Mosquitto's default in-flight window of 20 QoS 1 messages
_REBIRTH_MIN_INTERVAL_S = 10.0  # per edge node: a birth takes a moment to arrive
_IDLE_TIMEOUT_S = 0.25
_BACKOFF_FIRST_S = 0.25
_TOPIC_CACHE_MAX = 10_000
_MAX_EXACT_INT = MAX_EXACT_INT  # the largest int a float64 holds exactly
_TEMPLATE_FIELD = re.compile(r"\{(\w+)(?:\[(\d+)\])?\}")


_NO_PLAN = object()
_GOOD, _UNCERTAIN = Quality.GOOD, Quality.UNCERTAIN  # module globals: cheaper than the enum's attributes


class PayloadError(ValueError):
    """Why a payload was dropped; the message is the reason counted per topic."""


# -- payload decoding (pure functions, any thread) ------------------------------------------


_SCAN_JSON = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner; typeshed omits it


def parse_json(payload: bytes | bytearray) -> Any:
    """json.loads with the errors it can raise turned into reasons.

    json.loads reads NaN, Infinity and 1e400 (as inf) without complaint; the source checks
    every number it maps for finiteness instead of hooking the parser, which would cost a
    Python call per number. Deep nesting raises RecursionError, not ValueError.

    The usual payload (UTF-8, no surrounding white space) goes straight to the decoder's C
    scanner, skipping json.loads' encoding detection and wrappers; anything else takes
    json.loads itself, so what is accepted and why not stays exactly json.loads'.
    """
    try:
        try:
            text = payload.decode()
            doc, end = _SCAN_JSON(text, 0)
            if end == len(text):
                return doc
        except (UnicodeDecodeError, StopIteration, ValueError):
            pass
        return json.loads(payload)
    except RecursionError:
        raise PayloadError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise PayloadError("not UTF-8") from None
    except ValueError as exc:  # JSONDecodeError
        raise PayloadError(f"invalid JSON ({str(exc)[:60]})") from None


def parse_plain(payload: bytes | bytearray) -> float | bool | str:
    """A bare value: a number, true/false, or text."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError("not UTF-8") from None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise PayloadError(f"non-finite number {text[:20]}")
    return value


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def compile_json_path(path: str) -> tuple[str | int, ...]:
    """ "a.b[2].c" or "$.a.b" -> ("a", "b", 2, "c")."""
    path = path.removeprefix("$").removeprefix(".")
    parts: list[str | int] = []
    for key, index in _PATH_PART.findall(path):
        parts.append(int(index) if index else key)
    if not parts:
        raise ValueError(f"empty JSON path {path!r}")
    return tuple(parts)


def extract(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or part >= len(doc):
                raise KeyError(part)
        elif not isinstance(doc, dict):
            raise KeyError(part)
        doc = doc[part]
    return doc


def timestamp_ns(value: Any) -> int:
    """A payload timestamp: epoch s, ms, µs or ns (told apart by magnitude), or ISO 8601 text."""
    if isinstance(value, bool):
        raise PayloadError("bad timestamp")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise PayloadError("bad timestamp")
        if value < 1e11:
            return int(value * 1e9)
        if value < 1e14:
            return int(value * 1e6)
        if value < 1e17:
            return int(value * 1e3)
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PayloadError("bad timestamp") from None
        if parsed.tzinfo is None:
            raise PayloadError("timestamp without a time zone")
        return int(parsed.timestamp() * 1e9)
    raise PayloadError("bad timestamp")


# -- device quality in a payload (quality_key) ------------------------------------------------

_QUALITY_WORDS = {"good": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}
# OPC UA status names: a severity, then CamelCase detail ("GoodClamped", "BadSensorFailure").
_STATUS_NAME = re.compile(r"(Good|Uncertain|Bad)(?:[A-Z][A-Za-z0-9]*)?")
_STATUS_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
# The names of the codes hmi.core.quality maps to COMM_LOST (the data source is gone, not the value bad).
_COMM_LOST_NAMES = frozenset(
    {
        "BadCommunicationError",
        "BadServerNotConnected",
        "BadNoCommunication",
        "BadNotConnected",
        "BadConnectionClosed",
        "BadSecureChannelClosed",
        "BadTimeout",
        "BadOutOfService",
        "BadDeviceFailure",
    }
)


def payload_quality(value: Any, mapping: dict[str, Quality] | None = None) -> Quality | None:
    """The device's own quality of a message's values; None when it is not understood.

    With a `quality_map` only its entries count (a device with its own codes, e.g. 0 = bad,
    would otherwise be read as OPC UA Good). Without one: "good"/"uncertain"/"bad" in any
    case, OPC UA status names (Good*, Uncertain*, Bad*; the no-communication ones COMM_LOST)
    and OPC UA status codes by their severity bits, as numbers or as decimal or 0x-hex text.
    """
    if mapping is not None:
        return mapping.get(quality_text(value))  # type: ignore[arg-type]  # None is never a key
    if type(value) is str:
        word = _QUALITY_WORDS.get(value.lower())
        if word is not None:
            return word
        name = _STATUS_NAME.fullmatch(value)
        if name is not None:
            return Quality.COMM_LOST if value in _COMM_LOST_NAMES else _QUALITY_WORDS[name.group(1).lower()]
        if _STATUS_NUMBER.fullmatch(value) is None:
            return None
        try:
            code = int(value, 16) if value[1:2] in ("x", "X") else int(value)
        except ValueError:  # more digits than int() converts
            return None
    elif type(value) is int:
        code = value
    elif type(value) is float and value.is_integer():
        code = int(value)
    else:
        return None
    return quality_from_opcua_status(code) if 0 <= code <= 0xFFFFFFFF else None


def quality_text(value: Any) -> str | None:
    """How a payload's quality value is looked up in a quality_map (TOML keys are text)."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _quality_map(mapping: Mapping[str, str] | None) -> dict[str, Quality] | None:
    return None if mapping is None else {k: Quality[v] for k, v in mapping.items()}


def filter_covers(wide: str, narrow: str) -> bool:
    """Whether every topic the filter `narrow` matches also matches `wide` (False when unsure)."""
    wl, nl = wide.split("/"), narrow.split("/")
    if wl[0] in ("+", "#") and nl[0].startswith("$"):
        return False  # wildcards at the first level do not match $SYS-like topics
    for i, level in enumerate(wl):
        if level == "#":
            return True
        if i >= len(nl) or nl[i] == "#" or (level != "+" and level != nl[i]):
            return False
    return len(nl) == len(wl)


def snake(name: str) -> str:
    """ "SpindleSpeed" -> "spindle_speed", "Axes/X" -> "axes_x", "CNC01" -> "cnc01"."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def render(template: str, topic_levels: list[str], **fields: str) -> str:
    """Fill a tag template: {topic[i]} is a topic level, other {names} come from `fields`."""

    def one(match: re.Match[str]) -> str:
        name, index = match.group(1), match.group(2)
        if index is not None:
            if name != "topic":
                raise KeyError(name)
            return topic_levels[int(index)]
        return fields[name]

    return _TEMPLATE_FIELD.sub(one, template)


# -- what one received value becomes ---------------------------------------------------------


class _Rows:
    """Decoded samples waiting to cross to the bus (paho's thread only).

    Tag ids collect in a C int array (a whole JSON message's ids are one memcpy from its
    plan), time stamps and qualities as runs (a message's values share both), values in a
    list: a 50-value message costs a few C calls here, and `take` builds the arrays without
    converting a Python int per row.
    """

    __slots__ = ("count", "ids", "q_lens", "q_runs", "since", "texts", "ts_lens", "ts_runs", "values")

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.ids = array("i")
        self.values: list[float] = []
        self.ts_runs: list[int] = []
        self.ts_lens: list[int] = []
        self.q_runs: list[int] = []
        self.q_lens: list[int] = []
        self.texts: dict[int, str] = {}
        self.since = 0.0
        self.count = 0

    def add(self, tag_id: int, ts: int, value: float, quality: int) -> None:
        self.ids.append(tag_id)
        self.values.append(value)
        self._runs(ts, quality, 1)

    def add_message(self, plan_ids: array[int], ts: int, values: list[float], quality: int = 0) -> None:
        """A whole message of values of one quality for the tags in `plan_ids`, in order."""
        self.ids.extend(plan_ids)
        self.values.extend(values)
        self._runs(ts, quality, len(values))

    def _runs(self, ts: int, quality: int, n: int) -> None:
        if not self.count:
            self.since = time.monotonic()  # the first row waiting: the flush deadline counts from here
        self.count += n
        if self.ts_runs and self.ts_runs[-1] == ts:
            self.ts_lens[-1] += n
        else:
            self.ts_runs.append(ts)
            self.ts_lens.append(n)
        if self.q_runs and self.q_runs[-1] == quality:
            self.q_lens[-1] += n
        else:
            self.q_runs.append(quality)
            self.q_lens.append(n)

    def add_text(self, tag_id: int, ts: int, text: str, quality: int) -> None:
        self.texts[self.count] = text
        self.add(tag_id, ts, math.nan, quality)

    def take(self) -> SampleBatch:
        batch = SampleBatch(
            np.frombuffer(self.ids, np.int32).copy(),
            np.repeat(np.asarray(self.ts_runs, np.int64), self.ts_lens),
            np.asarray(self.values, np.float64),
            np.repeat(np.asarray(self.q_runs, np.uint8), self.q_lens),
            self.texts or None,
        )
        self._clear()
        return batch


@dataclass(slots=True)
class _Route:
    """One way a topic is handled: a subscription of the project, or one tag's address."""

    kind: str  # json | value | sparkplugb | status | tag
    filter: str = ""
    sub: MqttSubscription | None = None
    seen: bool = False  # a message arrived since the last (re)subscription
    tags: list[tuple[int, tuple[str | int, ...] | None]] = field(default_factory=list)  # kind "tag"
    quality_map: dict[str, Quality] | None = None
    status_path: tuple[str | int, ...] | None = None
    # Routes with equal settings but the topic (and QoS) make the same samples: one per topic.
    same_as: str = ""


@dataclass(slots=True)
class _EdgeNode:
    seq: int | None = None
    born: bool = False  # its NBIRTH was seen: aliases and sequence are known
    rebirth_asked_at: float = -math.inf
    aliases: dict[int, str] = field(default_factory=dict)
    devices: dict[str, dict[int, str]] = field(default_factory=dict)
    bdseq: int | None = None  # of its current NBIRTH: an NDEATH with another one is stale
    refused: set[str] = field(default_factory=set)  # devices ("" = the node) whose last birth was refused


class MqttSource:
    def __init__(
        self,
        name: str,
        config: MqttConnection,
        tags: list[TagSpec],
        bus: TagBus,
        project_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.bus = bus
        self.project_dir = project_dir
        self.tags = list(tags)
        self.tag_ids = bus.register(self.tags)
        self.health = SourceHealth(name, bus)
        self.connected_tag = self.health.connected_tag
        self._spec_by_id: dict[int, TagSpec] = dict(zip(self.tag_ids, self.tags, strict=True))
        self._datatype: dict[int, DataType] = {i: s.datatype for i, s in self._spec_by_id.items()}
        self._own_ids: set[int] = set(self.tag_ids)
        self.connected = False
        self.connects = 0
        self.last_error = ""
        self.notifications = 0
        self._ratelog = RateLimitedLog(log)
        self._max_payload = config.max_payload_bytes
        self._rows = _Rows()
        self._events: list[Event] = []
        self._exact: dict[str, list[_Route]] = {}
        self._wild: list[tuple[str, _Route]] = []
        self._topic_cache: dict[str, list[_Route]] = {}
        self._name_cache: dict[tuple[str, str], int] = {}  # (topic, key) -> tag id, -1 unknown
        # topic -> (JSON key -> tag id or -1 unknown, key tuple -> fast plan)
        self._json_topics: dict[str, tuple[dict[str, int], dict[tuple[str, ...], Any]]] = {}
        self._numeric = {i for i, t in self._datatype.items() if t in (DataType.FLOAT, DataType.INT)}
        self._edge_nodes: dict[tuple[str, str], _EdgeNode] = {}
        self._timestamp_window = config.timestamp_window()
        self._max_age_ns = self._timestamp_window.max_age_ns  # the same window, for the hot path
        self._max_ahead_ns = self._timestamp_window.max_ahead_ns
        self._pending_writes: list[_PendingWrite] = []  # writes waiting for the device to confirm
        self._writes_lock = threading.Lock()
        self._state_ts_ms = 0  # Sparkplug STATE: the timestamp of the Last Will sent with CONNECT
        self._online_ids: dict[str, int] = {}
        self._tag_quality_map = _quality_map(config.quality_map)  # tags addressed one by one
        self._retain = False  # the message being decoded is a retained one (paho's thread)
        self._filters: list[tuple[str, int]] = []
        self._pending_subscribe: list[tuple[str, int]] = []
        self._subscribed_at = 0.0
        self._silent_checked = True
        self._reported: str | None = None
        self._build_routes()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._refused: str | None = None  # a CONNACK refusal: back off to the maximum

    @property
    def rejected(self) -> int:
        return self.health.rejected_total

    # -- routes ---------------------------------------------------------------------------------

    def _build_routes(self) -> None:
        subs = self.config.subscriptions
        for sub in subs:
            same_as = repr(sub.model_dump(exclude={"topic", "qos"}))
            self._filters.append((sub.topic, sub.qos))
            if any(o is not sub and _redundant(sub, o, same_as) for o in subs):
                continue  # another subscription makes the same samples on every topic this one matches
            status_path = compile_json_path(sub.status_path) if sub.status_path else None
            route = _Route(sub.format, sub.topic, sub, quality_map=_quality_map(sub.quality_map), same_as=same_as)
            route.status_path = status_path
            self._add_route(sub.topic, route)
        by_topic: dict[str, _Route] = {}
        for tag_id, spec in self._spec_by_id.items():
            if not spec.address:
                continue  # filled by a subscription's template
            path = spec.extra.get("json_path")
            tag_route = by_topic.get(spec.address)
            if tag_route is None:
                tag_route = by_topic[spec.address] = _Route("tag", spec.address, same_as=f"tag:{spec.address}")
                self._add_route(spec.address, tag_route)
                self._filters.append((spec.address, 0))
            tag_route.tags.append((tag_id, compile_json_path(str(path)) if path else None))
        self._filters = _broker_filters(self._filters)

    def _add_route(self, topic: str, route: _Route) -> None:
        if "+" in topic or "#" in topic:
            self._wild.append((topic, route))
        else:
            self._exact.setdefault(topic, []).append(route)

    def _routes_for(self, topic: str) -> list[_Route]:
        routes = self._topic_cache.get(topic)
        if routes is None:
            routes = list(self._exact.get(topic, ()))
            routes += [r for f, r in self._wild if paho.topic_matches_sub(f, topic)]
            if len(routes) > 1:  # equal subscriptions overlapping on this topic: the first one decodes
                kept: dict[str, _Route] = {}
                routes = [kept.setdefault(r.same_as, r) for r in routes if r.same_as not in kept]
            if len(self._topic_cache) >= _TOPIC_CACHE_MAX:
                self._topic_cache.clear()  # bounded: a flood of distinct topics must not grow memory
            self._topic_cache[topic] = routes
        return routes

    def _tag_id(self, name: str, topic: str, create: bool, unit: str = "", datatype: DataType = DataType.FLOAT) -> int:
        """The id of a templated tag name, registering it when the subscription creates tags."""
        tag_id = self.bus.registry.get_id(name)
        if tag_id is not None and (tag_id in self._own_ids or create):
            self._own_ids.add(tag_id)
            return tag_id
        if tag_id is None and create and TAG_NAME_RE.match(name):
            spec = TagSpec(name, unit=unit, datatype=datatype, connection=self.name, address=topic)
            tag_id = self.bus.registry.register(spec)
            self._datatype[tag_id] = datatype
            if datatype in (DataType.FLOAT, DataType.INT):
                self._numeric.add(tag_id)
            self._spec_by_id[tag_id] = spec
            self._own_ids.add(tag_id)
            return tag_id
        return -1

    # -- paho callbacks (paho's thread; never raise) -------------------------------------------

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        try:
            payload = msg.payload
            if len(payload) > self._max_payload:
                self._reject(topic, "oversize", f"{len(payload)} bytes > max_payload_bytes")
                return
            routes = self._routes_for(topic)
            if not routes:
                self._reject(topic, "unknown topic", "no subscription or tag maps it")
                return
            received = now_ns()
            before = self._rows.count
            self._retain = msg.retain
            for route in routes:
                route.seen = True
                kind = route.kind
                if kind == "json":
                    self._decode_json(topic, payload, route, received)
                elif kind == "tag":
                    self._decode_tags(topic, payload, route, received)
                elif kind == "value":
                    self._decode_value(topic, payload, route.sub, received)  # type: ignore[arg-type]
                elif kind == "status":
                    self._decode_status(topic, payload, route, received)
                else:
                    self._decode_sparkplug(topic, payload, route.sub, received)  # type: ignore[arg-type]
            self.health.received(1, self._rows.count - before)
        except PayloadError as exc:
            self._reject(topic, str(exc).split(" (")[0], str(exc))
        except Exception as exc:  # a decoder bug must not reach paho's thread
            self._reject(topic, "decoder error", repr(exc))
            log.debug("%s: decoder error on %s", self.name, topic, exc_info=True)

    def _reject(self, topic: str, reason: str, detail: str = "") -> None:
        self.health.reject(topic, reason)
        self._ratelog(
            logging.WARNING, f"{topic}:{reason}", "%s: dropped a message on %s: %s", self.name, topic, detail or reason
        )

    def _put(self, tag_id: int, ts: int, value: Any, topic: str, quality: int = Quality.GOOD) -> None:
        """One value for a tag, checked against the tag's data type."""
        dtype = self._datatype.get(tag_id, DataType.FLOAT)
        rows = self._rows
        if type(value) is int and not -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT and dtype != DataType.STRING:
            try:
                number = float(value)
            except OverflowError:  # beyond a float: non-finite, as json.loads makes of 1e400
                number = math.inf
            if number - number == 0 and tag_id in self._numeric:  # the shared rule: approximate, UNCERTAIN
                self._flag(tag_id, topic, INEXACT_INTEGER, f"{str(value)[:30]} kept as {number!r}")
                quality = max(quality, Quality.UNCERTAIN)
            value = number
        if type(value) is float or type(value) is int:
            if value - value != 0:  # NaN, Infinity, and 1e400 (which json.loads reads as inf)
                self._bad(tag_id, ts, topic, NON_FINITE)
            elif dtype == DataType.STRING:
                rows.add_text(tag_id, ts, str(value), quality)
            elif dtype == DataType.BOOL and value not in (0, 1):
                self._bad(tag_id, ts, topic, "type")
            else:
                rows.add(tag_id, ts, float(value), quality)
        elif type(value) is bool:
            if dtype == DataType.STRING:
                rows.add_text(tag_id, ts, "true" if value else "false", quality)
            else:
                rows.add(tag_id, ts, 1.0 if value else 0.0, quality)
        elif type(value) is str:
            if dtype == DataType.STRING:
                rows.add_text(tag_id, ts, value, quality)
            else:
                self._bad(tag_id, ts, topic, "type")
        elif value is None:
            rows.add(tag_id, ts, math.nan, Quality.BAD)
        else:
            self._bad(tag_id, ts, topic, "type")

    def _bad(self, tag_id: int, ts: int, topic: str, reason: str) -> None:
        self._rows.add(tag_id, ts, math.nan, Quality.BAD)
        spec = self.bus.registry.spec(tag_id)
        self.health.reject(topic, reason)
        self._ratelog(
            logging.WARNING,
            f"{tag_id}:{reason}",
            "%s: %s on %s: value does not fit the tag's type %s (marked BAD)",
            self.name,
            spec.name,
            topic,
            spec.datatype,
        )

    def _payload_time(self, doc: dict[str, Any], key: str | None, topic: str, received: int) -> tuple[int, int]:
        """A JSON message's sample time and the quality it allows (hmi/core/values.py).

        No time in the payload: the time of arrival, GOOD, but UNCERTAIN for a retained message
        (the broker may have kept it for a week). A time that cannot be read or lies outside the
        connection's window: the time of arrival, UNCERTAIN, counted once per message.
        """
        value = None if key is None else doc.get(key)
        if value is None:
            return received, _UNCERTAIN if self._retain else _GOOD
        if type(value) is int and 100_000_000_000 <= value < 100_000_000_000_000:
            ts = value * 1_000_000  # epoch ms, the usual case: the window check inline (hot path)
            if received - self._max_age_ns <= ts <= received + self._max_ahead_ns:
                return ts, _GOOD
        else:
            try:
                ts = timestamp_ns(value)
            except PayloadError as exc:
                self._doubt(topic, "bad timestamp", f"{key}={str(value)[:40]!r} ({exc}); using the time of arrival")
                return received, Quality.UNCERTAIN
        window = self._timestamp_window
        if not window.accepts(ts, received):
            self._doubt(
                topic, TIMESTAMP_OUT_OF_WINDOW, f"{key}={window.describe(ts)} is refused; using the time of arrival"
            )
            return received, Quality.UNCERTAIN
        return ts, _GOOD

    def _device_quality(self, value: Any, mapping: dict[str, Quality] | None, key: str, topic: str) -> int:
        """The quality a payload's own quality field gives every value of the message."""
        quality = payload_quality(value, mapping)
        if quality is None:  # not understood: it may well say "bad", so it must not pass as good
            self._doubt(topic, "unknown quality", f"{key}={str(value)[:40]!r}", Quality.BAD)
            return Quality.BAD
        return quality

    def _doubt(self, topic: str, reason: str, detail: str, quality: Quality = Quality.UNCERTAIN) -> None:
        """A message whose values are kept but not trusted: counted per topic and reason, logged once."""
        self.health.reject(topic, reason)
        self._ratelog(
            logging.WARNING,
            f"{topic}:{reason}",
            "%s: %s on %s: %s (its values recorded %s)",
            self.name,
            reason,
            topic,
            detail,
            quality.name,
        )

    def _decode_json(self, topic: str, payload: bytes | bytearray, route: _Route, received: int) -> None:
        doc = parse_json(payload)
        if not isinstance(doc, dict):
            raise PayloadError("JSON is not an object")
        sub: MqttSubscription = route.sub  # type: ignore[assignment]
        ts_key = sub.timestamp_key
        q_key = sub.quality_key
        ts, quality = self._payload_time(doc, ts_key, topic, received)
        if q_key is not None and q_key in doc:
            quality = max(quality, self._device_quality(doc[q_key], route.quality_map, q_key, topic))
        state = self._json_topics.get(topic)
        if state is None:
            if len(self._json_topics) >= _TOPIC_CACHE_MAX:
                self._json_topics.clear()  # bounded: a flood of distinct topics must not grow memory
            state = self._json_topics[topic] = ({}, {})
        keys, plans = state
        rows = self._rows
        # Fast path: the same keys as before, all mapping to numeric tags, all values finite
        # numbers. Then the whole message is a few C-level list operations, not a loop.
        shape = tuple(doc)
        plan = plans.get(shape, _NO_PLAN)
        if plan is _NO_PLAN:
            plan = self._json_plan(shape, ts_key, q_key, keys) if len(plans) < 64 else None
            if plan is not _NO_PLAN:
                plans[shape] = plan
        if plan is not None and plan is not _NO_PLAN:
            plan_ids, skip = plan
            vals = list(doc.values())
            for pos in skip:  # the time and quality keys, last first
                del vals[pos]
            # hypot refuses strings, None, lists and objects (TypeError) and ints beyond a float
            # (OverflowError); it is NaN or infinite if a value is. Being at least the largest
            # magnitude, below 2^53 it also proves that every int is exact in a float (the shared
            # rule: bigger ones are UNCERTAIN), in one C call and without a sum's cancellation.
            # Bools pass, as 1.0/0.0, which is what the loop makes of a bool for a numeric tag, too.
            try:
                size = math.hypot(*vals)
            except (TypeError, OverflowError):
                size = math.nan
            if size < _MAX_EXACT_INT:
                rows.add_message(plan_ids, ts, vals, quality)
                return
        numeric = self._numeric
        for key, value in doc.items():
            tag_id = keys.get(key)
            # The hot path: a known numeric tag and a finite float or an int a float holds exactly
            # (bools are not `float`/`int` here; bigger ints take _put, which converts them).
            if (
                tag_id is not None
                and tag_id >= 0
                and tag_id in numeric
                and (type(value) is float or (type(value) is int and -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT))
            ):
                if value - value == 0:  # finite: inf - inf and nan - nan are nan
                    rows.add(tag_id, ts, value, quality)
                    continue
                self._bad(tag_id, ts, topic, NON_FINITE)
                continue
            if key in (ts_key, q_key):
                continue
            if type(value) is dict:
                self._reject(topic, "nested object", f"key {key!r} holds an object; map it with a json_path tag")
                continue
            if tag_id is None:
                tag_id = keys[key] = self._template_id(
                    sub, topic, topic.split("/"), _datatype_of(value), key=snake(key)
                )
            if tag_id < 0:
                self._reject(topic, "unknown tag", f"key {key!r} maps to no tag of the project")
                continue
            if type(value) is list:
                self._bad(tag_id, ts, topic, "array")
                continue
            self._put(tag_id, ts, value, topic, quality)

    def _json_plan(self, shape: tuple[str, ...], ts_key: str | None, q_key: str | None, keys: dict[str, int]) -> Any:
        """Tag ids for a message with these keys, if every key but the time and quality is a numeric tag."""
        out: list[int] = []
        skip: list[int] = []
        for pos, key in enumerate(shape):
            if key in (ts_key, q_key):
                skip.append(pos)
                continue
            tag_id = keys.get(key)
            if tag_id is None:
                return _NO_PLAN  # not decoded yet: decode key by key this time, plan next time
            if tag_id not in self._numeric:
                return None
            out.append(tag_id)
        return array("i", out), tuple(reversed(skip))

    def _template_id(
        self, sub: MqttSubscription, topic: str, levels: list[str], datatype: DataType = DataType.FLOAT, **fields: str
    ) -> int:
        try:
            name = render(sub.tag or "", levels, **fields)
        except (KeyError, IndexError):
            return -1
        return self._tag_id(name, topic, sub.create_tags, datatype=datatype)

    def _decode_value(self, topic: str, payload: bytes, sub: MqttSubscription, received: int) -> None:
        key = (topic, "")
        tag_id = self._name_cache.get(key)
        if tag_id is None:
            tag_id = self._name_cache[key] = self._template_id(sub, topic, topic.split("/"))
        if tag_id < 0:
            raise PayloadError("unknown tag")
        # A plain value has no time of its own: a retained one is of unknown age.
        self._put(tag_id, received, parse_plain(payload), topic, Quality.UNCERTAIN if self._retain else Quality.GOOD)

    def _decode_tags(self, topic: str, payload: bytes | bytearray, route: _Route, received: int) -> None:
        doc: Any = None
        fresh = Quality.UNCERTAIN if self._retain else Quality.GOOD  # without a time of its own
        ts, quality = received, int(fresh)
        for tag_id, path in route.tags:
            if path is None:
                self._put(tag_id, received, parse_plain(payload), topic, fresh)
                continue
            if doc is None:  # the time and quality of the message, judged once for all its tags
                doc = parse_json(payload)
                if isinstance(doc, dict):
                    ts, quality = self._payload_time(doc, self.config.timestamp_key, topic, received)
                    q_key = self.config.quality_key
                    if q_key is not None and q_key in doc:
                        quality = max(quality, self._device_quality(doc[q_key], self._tag_quality_map, q_key, topic))
            try:
                value = extract(doc, path)
            except (KeyError, IndexError, TypeError):
                self.health.reject(topic, "json path not found")
                continue
            if isinstance(value, dict | list):
                self._bad(tag_id, ts, topic, "type")
                continue
            self._put(tag_id, ts, value, topic, quality)

    def _decode_status(self, topic: str, payload: bytes | bytearray, route: _Route, received: int) -> None:
        """A machine's online state: the plain payload, or the value at `status_path` in JSON.

        A retained status stays GOOD: it is the birth/Last Will pattern, where the broker itself
        replaces a dead device's retained "online" by its will.
        """
        sub: MqttSubscription = route.sub  # type: ignore[assignment]
        try:
            machine = render(sub.machine, topic.split("/"))
        except (KeyError, IndexError):
            raise PayloadError("status topic without a machine") from None
        if route.status_path is None:
            state: Any = payload.decode("utf-8", "replace").strip()
        else:
            try:
                state = extract(parse_json(payload), route.status_path)
            except (KeyError, IndexError, TypeError):
                raise PayloadError(f"status path not found ({sub.status_path!r})") from None
            state = quality_text(state) if not isinstance(state, str) else state
        if state in sub.online_values:
            self._set_online(machine, True, received)
        elif state in sub.offline_values:
            self._set_online(machine, False, received)
        else:
            accepted = f"online {list(sub.online_values)}, offline {list(sub.offline_values)}"
            raise PayloadError(f"unknown status ({str(state)[:30]!r}; understood: {accepted})")

    def _set_online(self, machine: str, online: bool, ts: int, prefix: str | None = None) -> None:
        """A machine's `<machine>.online` tag; going offline turns its tags COMM_LOST."""
        online_id = self._online_ids.get(machine)
        if online_id is None:
            spec = TagSpec(f"{machine}.online", "", DataType.BOOL, f"{machine} is online", connection=self.name)
            online_id = self._online_ids[machine] = self.bus.registry.register(spec)
        self._rows.add(online_id, ts, 1.0 if online else 0.0, Quality.GOOD)
        if not online:
            start = prefix or f"{machine}."
            ids = [
                i for i in sorted(self._own_ids) if self.bus.registry.spec(i).name.startswith(start) and i != online_id
            ]
            self._flush()
            self._mark_lost(ids, f"{machine} went offline")

    def _decode_sparkplug(self, topic: str, payload: bytes, sub: MqttSubscription, received: int) -> None:
        parsed = sparkplug.parse_topic(topic)
        if parsed is None:
            raise PayloadError("not a Sparkplug B topic")
        kind = parsed.message_type
        if not payload:
            # Sparkplug B never sends an empty message; a 0-byte one is a retained topic being
            # cleared (only STATE is ever retained: a host's old state, not an error) or a broken
            # publisher. Either way nothing is decoded from it, and it is said so.
            if kind == "STATE":
                self._ratelog(logging.INFO, f"{topic}:empty", "%s: retained STATE on %s cleared", self.name, topic)
            else:
                self._reject(topic, "empty payload", "0-byte Sparkplug message (a retained topic being cleared?)")
            return
        if kind in ("NCMD", "DCMD", "STATE"):
            return  # commands from hosts (ours included) and host states, not telemetry
        try:
            message = sparkplug.decode_payload(payload)
        except sparkplug.SparkplugError as exc:
            raise PayloadError(f"bad Sparkplug payload ({exc})") from None
        key = (parsed.group, parsed.node)
        node = self._edge_nodes.setdefault(key, _EdgeNode())
        missing: list[str] = []  # why the node's births must be asked for again
        device = parsed.device or parsed.node
        machine = snake(device)
        if kind == "NDEATH":
            # A death names the session it ends by bdSeq. One that does not match the current
            # NBIRTH is late (e.g. the broker firing the Last Will of a session the node already
            # replaced): taking it would blank a live node.
            death = sparkplug.bdseq(message)
            if node.born and node.bdseq is not None and death is not None and death != node.bdseq:
                self._reject(
                    topic, "stale death", f"NDEATH bdSeq {death} does not end the current session (bdSeq {node.bdseq})"
                )
                return
            self._edge_nodes.pop(key, None)
            for dev in [parsed.node, *node.devices, *node.refused]:
                self._set_online(snake(dev), False, received)
            return
        # Sequence numbers run 0..255 per edge node across all its messages; a birth restarts them.
        if message.seq is not None:
            if kind == "NBIRTH":
                node.seq = message.seq
            elif node.seq is not None and message.seq != (node.seq + 1) % 256:
                self._reject(topic, "sequence gap", f"seq {message.seq} after {node.seq}: messages were lost")
                missing.append(f"sequence gap: {message.seq} after {node.seq}")
                node.seq = message.seq
            else:
                node.seq = message.seq
        if kind == "DDEATH":
            node.devices.pop(device, None)
            node.refused.discard(device)
            self._set_online(machine, False, received)
            return
        if kind in ("NBIRTH", "DBIRTH"):
            duplicates = sparkplug.duplicate_aliases(message.metrics)
            if duplicates:
                self._refuse_birth(topic, parsed, node, duplicates, received, sub.request_rebirth)
                return
        if kind == "NBIRTH":
            node.aliases = {m.alias: m.name for m in message.metrics if m.alias is not None and m.name}
            node.devices.clear()
            node.refused.clear()
            node.bdseq = sparkplug.bdseq(message)
            node.born = True
        elif "" in node.refused or device in node.refused:
            # Data after a refused birth cannot be trusted (the aliases are ambiguous) until a good birth.
            self._reject(topic, "birth refused", "data after a birth with duplicate aliases; waiting for a rebirth")
            if sub.request_rebirth:
                self._request_rebirth(parsed, node, "its last birth was refused")
            return
        elif not node.born:
            missing.append("its birth certificate was not seen (the HMI started after it)")
        elif kind == "DBIRTH":
            node.devices[device] = {m.alias: m.name for m in message.metrics if m.alias is not None and m.name}
        aliases = node.aliases if parsed.device is None else node.devices.get(device, {})
        if kind in ("NBIRTH", "DBIRTH"):
            self._set_online(machine, True, received)
        levels = topic.split("/")
        window = self._timestamp_window
        base_ts = message.timestamp * 1_000_000 if message.timestamp else received  # exact: ints, not floats
        for m in message.metrics:
            name = m.name if m.name is not None else aliases.get(m.alias) if m.alias is not None else None
            if name is None:
                self._reject(topic, "unknown alias", f"alias {m.alias} without a birth certificate")
                if not missing:
                    missing.append(f"unknown alias {m.alias}")
                continue
            cache_key = (f"{parsed.group}/{device}", name)
            tag_id = self._name_cache.get(cache_key)
            if tag_id is None:
                try:
                    tag_name = render(
                        sub.tag or "",
                        levels,
                        group=snake(parsed.group),
                        node=snake(parsed.node),
                        device=machine,
                        metric=snake(name),
                        machine=machine,
                    )
                except (KeyError, IndexError):
                    tag_name = ""
                unit = m.properties.get("engUnit", {}).get("value") or ""
                tag_id = self._name_cache[cache_key] = self._tag_id(
                    tag_name, topic, sub.create_tags, str(unit), _SPARKPLUG_TYPES.get(m.datatype, DataType.FLOAT)
                )
            if tag_id < 0:
                self.health.reject(topic, "unknown tag")
                continue
            # The shared value rule (hmi/core/values.py): a time outside the window is replaced
            # by the arrival time, an integer a float cannot hold is kept approximate; both
            # UNCERTAIN and counted. Non-finite numbers are BAD in _put.
            quality = Quality.GOOD
            ts = m.timestamp * 1_000_000 if m.timestamp else base_ts
            if ts != received and not window.accepts(ts, received):
                self._flag(tag_id, topic, TIMESTAMP_OUT_OF_WINDOW, window.describe(ts))
                ts, quality = received, Quality.UNCERTAIN
            value = m.value
            if type(value) is int and not exact_in_float(value):
                self._flag(tag_id, topic, INEXACT_INTEGER, str(value))
                value, quality = float(value), Quality.UNCERTAIN
            if m.is_null:
                self._rows.add(tag_id, ts, math.nan, Quality.BAD)  # the device says: no value
            elif m.datatype == 13 and isinstance(value, int | float):  # DateTime: ms since the epoch
                self._put(tag_id, ts, value / 1000.0, topic, quality)
            elif isinstance(value, bytes) or (value is None and m.datatype >= 16):
                self._bad(tag_id, ts, topic, "type")
            else:
                self._put(tag_id, ts, value, topic, quality)
        if missing and sub.request_rebirth:
            self._request_rebirth(parsed, node, missing[0])

    def _flag(self, tag_id: int, topic: str, reason: str, detail: str) -> None:
        """A value kept but UNCERTAIN under the shared rule: counted, logged once per tag and reason."""
        self.health.reject(topic, reason)
        self._ratelog(
            logging.WARNING,
            f"{tag_id}:{reason}",
            "%s: %s on %s: %s (%s; recorded UNCERTAIN)",
            self.name,
            self.bus.registry.spec(tag_id).name,
            topic,
            reason,
            detail,
        )

    def _refuse_birth(
        self,
        topic: str,
        parsed: sparkplug.Topic,
        node: _EdgeNode,
        duplicates: list[int],
        received: int,
        rebirth: bool,
    ) -> None:
        """A birth that gives one alias to several metrics: data using those aliases would land on
        the wrong tags. Refuse it, mark what it was about BAD (last value kept) until a good
        birth, and ask for a rebirth."""
        shown = ", ".join(map(str, duplicates[:10])) + (" …" if len(duplicates) > 10 else "")
        self.health.reject(topic, "duplicate alias")
        log.warning(
            "%s: refused the %s on %s: alias(es) %s name more than one metric; its data is not trusted until a "
            "good birth",
            self.name,
            parsed.message_type,
            topic,
            shown,
        )
        if parsed.device is None:  # an NBIRTH restarts the node's session: its devices' births go with it
            devices = [parsed.node, *node.devices, *node.refused - {""}]
            node.aliases = {}
            node.devices.clear()
            node.refused = {""}
            node.born = False
            node.bdseq = None
            node.seq = 0
        else:
            devices = [parsed.device]
            node.devices.pop(parsed.device, None)
            node.refused.add(parsed.device)
        prefixes = {f"{parsed.group}/{d}" for d in devices}
        ids = sorted({i for (where, _), i in self._name_cache.items() if where in prefixes and i >= 0})
        self._flush()
        batch = comm_lost_batch(self.bus, ids)
        if batch is not None:
            batch.quality[:] = Quality.BAD  # the values are not lost, they are not trustworthy
            self._hand_over(batch)
        if rebirth:
            self._request_rebirth(parsed, node, f"its {parsed.message_type} repeats alias(es) {shown}")

    def _request_rebirth(self, parsed: sparkplug.Topic, node: _EdgeNode, reason: str) -> None:
        """Ask the edge node for its births again (Sparkplug B's host duty), at a limited rate."""
        now = time.monotonic()
        client = self._client
        if client is None or now - node.rebirth_asked_at < _REBIRTH_MIN_INTERVAL_S:
            return
        node.rebirth_asked_at = now
        topic = f"spBv1.0/{parsed.group}/NCMD/{parsed.node}"
        client.publish(topic, sparkplug.encode_rebirth_request(time.time_ns() // 1_000_000), qos=0)
        log.info("%s: asked edge node %s/%s for a rebirth: %s", self.name, parsed.group, parsed.node, reason)

    # -- crossing to the bus: the one place paho's thread hands batches over ---------------------

    def _hand_over(self, batch: SampleBatch | None, events: list[Event] | None = None) -> None:
        """Publish a batch (and events) on the bus, from paho's thread. Never raises."""
        try:
            if batch is not None and len(batch):
                self.notifications += len(batch)
                if self._pending_writes:
                    self._check_read_back(batch)
                self.bus.publish(batch)
            if events:
                self.bus.publish_events(events)
        except Exception:  # the bus isolates subscribers; this guards the bus itself
            log.exception("%s: handing a batch to the bus failed", self.name)

    def _flush(self) -> None:
        if self._rows.count:
            try:
                batch = self._rows.take()
            except Exception:  # a decoder bug: rows that cannot become a batch must not block all later ones
                log.exception("%s: dropped %d decoded values that could not form a batch", self.name, self._rows.count)
                self.health.reject("(decoded rows)", "decoder error", self._rows.count)
                self._rows._clear()
                batch = None
            self._hand_over(batch)
        if self._events:
            events, self._events = self._events, []
            self._hand_over(None, events)

    def _mark_lost(self, ids: list[int], reason: str) -> None:
        self._hand_over(comm_lost_batch(self.bus, ids))
        log.info("%s: %d tag(s) COMM_LOST: %s", self.name, len(ids), reason)

    # -- connection life (paho's thread) ---------------------------------------------------------

    def _make_client(self) -> paho.Client:
        c = self.config
        v5 = c.protocol == "5"
        client_id = c.client_id or (
            f"hmi-{socket.gethostname()}-{self.name}"
            if not c.clean_session
            else f"hmi-{socket.gethostname()}-{self.name}-{os.getpid()}"
        )
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else c.clean_session,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
        )
        client.connect_timeout = 5.0
        if c.user:
            client.username_pw_set(c.user, resolve_password(c.password_ref) if c.password_ref else None)
        tls = c.tls_config
        if tls is not None:
            key_password = resolve_password(tls.key_password_ref) if tls.key_password_ref else None
            client.tls_set(
                ca_certs=self._path(tls.ca),
                certfile=self._path(tls.cert),
                keyfile=self._path(tls.key),
                cert_reqs=ssl.CERT_REQUIRED,
                keyfile_password=key_password,
            )
            client.tls_insecure_set(not tls.server_name_check)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        # These topics bypass on_message (paho calls a filter's own callback instead).
        reply = self._reply_filter()
        if reply:
            client.message_callback_add(reply, self._on_write_reply)
        if c.sparkplug_host_id:
            client.message_callback_add(sparkplug.state_topic(c.sparkplug_host_id), self._on_own_state)
        client.on_socket_open = disable_nagle
        # With this set, paho queues outgoing packets (PUBACKs, command publishes) instead of
        # sending each at once from the thread that made it: the pump writes them in one
        # send per burst (one send per QoS 1 message was a sixth of the network thread's time).
        client.on_socket_register_write = _write_in_pump
        return client

    def _path(self, relative: str | None) -> str | None:
        if relative is None:
            return None
        path = Path(relative)
        if not path.is_absolute() and self.project_dir is not None:
            path = self.project_dir / path
        return str(path)

    def _connect(self, client: paho.Client, first: bool) -> None:
        c = self.config
        if c.sparkplug_host_id:
            # Sparkplug 3.0: the death (the Last Will) carries the time of this CONNECT, and the
            # birth published once connected repeats it, so an edge node can tell them apart.
            self._state_ts_ms = time.time_ns() // 1_000_000
            client.will_set(
                sparkplug.state_topic(c.sparkplug_host_id),
                sparkplug.encode_state(False, self._state_ts_ms),
                qos=1,
                retain=True,
            )
        properties = None
        if c.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 0 if c.clean_session else c.session_expiry_s
        if first:
            client.connect(
                c.host,
                c.port,
                keepalive=c.keepalive_s,
                clean_start=c.clean_session if c.protocol == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=properties,
            )
        else:
            client.reconnect()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        try:
            if reason.is_failure:
                who = f"user {self.config.user!r}" if self.config.user else "anonymous access"
                self._refused = f"{self.config.host}:{self.config.port} refused {who}: {reason}"
                if str(reason) in ("Bad user name or password", "Not authorized"):
                    self._refused += f" (check the user name and password_ref {self.config.password_ref!r})"
                return
            self._refused = None
            self.connected = True
            self.connects += 1
            self.last_error = ""
            self._subscribe_all(client)
            session = " (session resumed)" if getattr(flags, "session_present", False) else ""
            log.info("%s: connected to %s:%d%s", self.name, self.config.host, self.config.port, session)
            self._hand_over(
                self.health.connected_batch(True),
                [
                    Event(
                        EventCategory.SYSTEM,
                        self.name,
                        f"Connection {self.name} established ({self.config.host}:{self.config.port})",
                    )
                ],
            )
        except Exception:
            log.exception("%s: on_connect failed", self.name)

    def _all_routes(self) -> list[_Route]:
        return [r for routes in self._exact.values() for r in routes] + [r for _, r in self._wild]

    def _warn_silent_topics(self) -> None:
        """Once per connection: name the topics that never delivered (forbidden by an ACL, or unused)."""
        if self._silent_checked or not self.connected:
            return
        if time.monotonic() - self._subscribed_at < self.config.silent_topic_warning_s:
            return
        self._silent_checked = True
        for route in self._all_routes():
            if not route.seen:
                log.warning(
                    "%s: no message on %r in %.0f s since subscribing: nothing publishes it, or the broker's ACL "
                    "does not let %s read it",
                    self.name,
                    route.filter,
                    self.config.silent_topic_warning_s,
                    f"user {self.config.user!r}" if self.config.user else "anonymous clients",
                )

    def _subscribe_all(self, client: paho.Client) -> None:
        for route in self._all_routes():
            route.seen = False
        self._subscribed_at = time.monotonic()
        self._silent_checked = False
        reply = self._reply_filter()
        extra = [(reply, 1)] if reply else []
        host_id = self.config.sparkplug_host_id
        if host_id:
            extra.append((sparkplug.state_topic(host_id), 1))  # Sparkplug 3.0: a host watches its own STATE
        if not self._filters and not extra:
            return
        self._pending_subscribe = list(self._filters) + extra
        client.subscribe(self._pending_subscribe)
        if host_id:
            self._publish_state(client, True)

    def _reply_filter(self) -> str | None:
        """command_reply_topic with each {field} as a "+" wildcard (whole levels: see the config model)."""
        template = self.config.command_reply_topic
        return re.sub(r"\{\w+\}", "+", template) if template else None

    def _publish_state(self, client: paho.Client, online: bool) -> paho.MQTTMessageInfo:
        """This host application's STATE (Sparkplug 3.0): retained, QoS 1. The birth repeats the
        Last Will's timestamp; a death published on a clean stop carries the time of stopping."""
        ts = self._state_ts_ms if online else time.time_ns() // 1_000_000
        topic = sparkplug.state_topic(self.config.sparkplug_host_id or "")
        return client.publish(topic, sparkplug.encode_state(online, ts), qos=1, retain=True)

    def _on_own_state(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """Our own STATE topic: whoever says we are offline (a stale Last Will of an earlier
        session, another client) while we are connected, we say otherwise at once (Sparkplug 3.0)."""
        try:
            state = sparkplug.decode_state(msg.payload) if msg.payload else None
            if state is not None and not state[0] and self.connected:
                log.info("%s: %s says offline; publishing our STATE birth again", self.name, msg.topic)
                self._publish_state(client, True)
        except Exception:
            log.exception("%s: own STATE handling failed", self.name)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        try:
            for (topic, _qos), reason in zip(self._pending_subscribe, reasons, strict=False):
                if reason.is_failure:
                    message = (
                        f"{self.config.host}:{self.config.port} refused the subscription to {topic!r} ({reason}): "
                        f"check the broker's ACL for user {self.config.user or '(anonymous)'!r}"
                    )
                    log.error("%s: %s", self.name, message)
                    self.health.reject(topic, "subscription refused")
                    self._events.append(Event(EventCategory.SYSTEM, self.name, message, Severity.ERROR))
        except Exception:
            log.exception("%s: on_subscribe failed", self.name)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        try:
            was = self.connected
            self.connected = False
            if was:
                self._flush()
                self.last_error = f"connection lost: {reason}"
                # The connection's state first: whoever sees a tag COMM_LOST sees why.
                self._hand_over(
                    self.health.connected_batch(False),
                    [Event(EventCategory.SYSTEM, self.name, f"Connection {self.name} lost: {reason}", Severity.ERROR)],
                )
                self._mark_lost(sorted(self._own_ids), self.last_error)
        except Exception:
            log.exception("%s: on_disconnect failed", self.name)

    def _network_loop(self) -> None:
        """Connect, read, flush and reconnect until stopped (this is paho's network thread)."""
        backoff = Backoff(_BACKOFF_FIRST_S, self.config.reconnect_max_delay_s)
        first = True
        client: paho.Client | None = None
        while not self._stopping.is_set():
            try:
                if client is None:
                    client = self._client = self._make_client()
                    first = True
                self._refused = None
                self._connect(client, first)
                first = False
                self._pump(client)
                if self.connects:
                    backoff.reset()
            except CredentialError as exc:
                self.last_error = str(exc)
                client = None
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.last_error = f"cannot connect to {self.config.host}:{self.config.port}: {exc}"
            except Exception as exc:  # never let the thread die
                self.last_error = f"unexpected error: {exc!r}"
                log.exception("%s: network loop failed", self.name)
            if self.connected:
                self._on_disconnect(client, None, None, "network loop ended", None)  # type: ignore[arg-type]
            if self._stopping.is_set():
                break
            config_problem = self._refused is not None or self.last_error.startswith("no password")
            if self._refused:
                self.last_error = self._refused
            if config_problem:
                self._report_once(self.last_error)
            wait = backoff.next(ever_connected=self.connects > 0, config_problem=config_problem)
            self._ratelog(
                logging.ERROR if config_problem else logging.INFO,
                f"retry:{self.last_error}",
                "%s: %s; retrying in %.1f s",
                self.name,
                self.last_error or "disconnected",
                wait,
            )
            self._stopping.wait(wait)
        if client is not None:
            try:
                self._disconnect_cleanly(client)
            except Exception:  # already gone
                pass
            self._flush()

    def _disconnect_cleanly(self, client: paho.Client) -> None:
        """A clean stop: the STATE death first (a DISCONNECT discards the Last Will), then DISCONNECT.
        The pump no longer runs, so this writes the queued packets itself."""
        if self.config.sparkplug_host_id and client.is_connected():
            info = self._publish_state(client, False)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        client.disconnect()
        for _ in range(10):  # the DISCONNECT packet is queued, not yet written (see _write_in_pump)
            if not client.want_write() or client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break

    def _report_once(self, reason: str) -> None:
        if reason and reason != self._reported:
            self._reported = reason
            self._hand_over(None, [Event(EventCategory.SYSTEM, self.name, f"{self.name}: {reason}", Severity.ERROR)])

    def _pump(self, client: paho.Client) -> None:
        """Run paho's loop until the connection ends, flushing coalesced rows as described above."""
        rows = self._rows
        while not self._stopping.is_set():
            timeout = _IDLE_TIMEOUT_S
            if rows.count or self._events:
                timeout = max(0.0, rows.since + _FLUSH_S - time.monotonic())
            rc = client.loop(timeout)
            # Packets already buffered are read without another trip through loop(), whose
            # select over two sockets, write and housekeeping cost more than the read itself.
            # The same select tells when the socket is quiet, i.e. when rows should leave now.
            sock = client.socket()
            burst = 0
            quiet = False
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and burst < _BURST_PACKETS:
                if rows.count and (rows.count >= _FLUSH_ROWS or time.monotonic() - rows.since >= _FLUSH_S):
                    break  # the flush below bounds how long a decoded row waits
                if not _readable(sock):
                    quiet = True
                    break
                rc = client.loop_read()
                burst += 1
                if burst % _ACK_EVERY_PACKETS == 0 and client.want_write():
                    rc = client.loop_write()  # acknowledge, so the broker keeps sending
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client.want_write():
                rc = client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._flush()
                if self.last_error == "" and rc != MQTTErrorCode.MQTT_ERR_CONN_LOST:
                    self.last_error = f"connection ended: {paho.error_string(rc)}"
                return
            # Under load rows pile up and go out every _FLUSH_S or _FLUSH_ROWS; a lone message
            # goes out as soon as the socket is quiet.
            if (rows.count or self._events) and (
                quiet or rows.count >= _FLUSH_ROWS or time.monotonic() - rows.since >= _FLUSH_S
            ):
                self._flush()
            if not self._silent_checked:
                self._warn_silent_topics()

    # -- asyncio side --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start the network thread and publish health until `stop` is set."""
        self._hand_over(comm_lost_batch(self.bus, sorted(self._own_ids)))
        self.health.set_connected(False)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._network_loop, name=f"mqtt-{self.name}", daemon=True)
        self._thread.start()
        try:
            while not stop.is_set():
                self.health.tick()
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            self._stopping.set()
            await asyncio.to_thread(self._thread.join, 10)
            self.connected = False
            self._hand_over(comm_lost_batch(self.bus, sorted(self._own_ids)))
            self.health.set_connected(False)
            self.health.tick()

    async def write(self, tag: str, value: Any, timeout_s: float = 5.0) -> WriteResult:
        """Publish a command for a writable tag (QoS 1), wait for the broker's PUBACK, then for the
        device's confirmation: a reply on `command_reply_topic` when one is configured, else the
        tag's own next value (read-back) when it has one. Result statuses (hmi/sources/writes.py):
        CONFIRMED ("Good"), SENT (nothing can confirm it), NOT_CONFIRMED (no confirmation in
        `write_confirm_s`), REFUSED_BY_DEVICE (the reply says no)."""
        tag_id = self.bus.registry.get_id(tag)
        if tag_id is None or tag_id not in self._own_ids:
            return WriteResult(False, "Rejected", message=f"{tag} is not a tag of connection {self.name}")
        spec = self.bus.registry.spec(tag_id)
        if not spec.writable:
            return WriteResult(False, "Rejected", message=f"{tag} is not declared writable in the project")
        if not self.config.command_topic:
            return WriteResult(False, "Rejected", message=f"connection {self.name} has no command_topic")
        try:
            coerced = _coerce(value, spec.datatype)
            check_limits(spec, coerced)
        except WriteRejected as exc:
            return WriteResult(False, "Rejected", message=f"{tag}: {exc}")
        client = self._client
        if client is None or not self.connected:
            raise NotConnected(f"{self.name} is not connected ({self.last_error or 'connecting'})")
        fields = {"machine": spec.machine, "signal": spec.signal, "tag": spec.name}
        topic = self.config.command_topic.format(**fields)
        fmt = self.config.command_format
        if fmt == "json":
            body = json.dumps({spec.signal: coerced})
        elif fmt == "set":
            body = json.dumps({"command": "set", "signal": spec.signal, "value": coerced})
        else:
            body = json.dumps(coerced)
        pending = self._expect_confirmation(tag_id, spec, coerced, fields)
        properties = None
        if pending is not None and pending.reply_topic and self.config.protocol == "5":
            # MQTT 5's request/response: a device that honours it echoes the correlation data.
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = pending.reply_topic
            properties.CorrelationData = pending.correlation
        try:
            info = client.publish(topic, body, qos=1, properties=properties)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return WriteResult(False, "NotSent", info.rc, paho.error_string(info.rc), coerced)
            puback_s = min(timeout_s, 9.5 - self.config.write_confirm_s)  # within the runtime's 10 s
            try:
                await asyncio.to_thread(info.wait_for_publish, puback_s)
            except (RuntimeError, ValueError) as exc:
                return WriteResult(False, "NotSent", message=str(exc), value=coerced)
            if not info.is_published():
                return WriteResult(False, "Timeout", message=f"no PUBACK within {puback_s:g} s", value=coerced)
            log.info("%s: command %s = %r on %s", self.name, tag, coerced, topic)
            if pending is None:
                return WriteResult(
                    True,
                    SENT,
                    0,
                    f"published to {topic}; not confirmed: {tag} has no value of its own to read back and "
                    "no command_reply_topic is configured",
                    coerced,
                )
            wait_s = self.config.write_confirm_s
            try:
                return await asyncio.wait_for(asyncio.shield(pending.future), wait_s)
            except TimeoutError:
                if pending.reply_topic:
                    why = f"no reply on {pending.reply_topic} within {wait_s:g} s"
                else:
                    seen = "no new value" if pending.last_seen is _NOTHING else f"it shows {pending.last_seen!r}"
                    why = f"{tag} did not show {coerced!r} within {wait_s:g} s ({seen})"
                log.warning("%s: command %s = %r not confirmed: %s", self.name, tag, coerced, why)
                return WriteResult(False, NOT_CONFIRMED, 0, f"published to {topic}, but {why}", coerced)
        finally:
            if pending is not None:
                with self._writes_lock:
                    self._pending_writes.remove(pending)

    def _expect_confirmation(
        self, tag_id: int, spec: TagSpec, value: Any, fields: dict[str, str]
    ) -> _PendingWrite | None:
        """Register what will confirm this write, before it is published (a fast device may
        answer before the PUBACK arrives); None when nothing can."""
        reply_template = self.config.command_reply_topic
        if reply_template:
            reply_topic = reply_template.format(**fields)
        else:
            latest = self.bus.latest(tag_id)
            if latest is None or (isinstance(latest.value, float) and math.isnan(latest.value)):
                return None  # the tag never showed a value: a command-only tag, nothing to read back
            reply_topic = None
        loop = asyncio.get_running_loop()
        pending = _PendingWrite(tag_id, spec, value, reply_topic, os.urandom(8), loop, loop.create_future())
        with self._writes_lock:
            self._pending_writes.append(pending)
        return pending

    def _check_read_back(self, batch: SampleBatch) -> None:
        """A write waiting for its tag's own value: resolve it when the value arrives (paho's thread)."""
        with self._writes_lock:
            waiting = [p for p in self._pending_writes if p.reply_topic is None and not p.future.done()]
        for p in waiting:
            for row in np.flatnonzero(batch.tag_ids == p.tag_id):
                if batch.quality[row] >= Quality.BAD:
                    continue  # a BAD or lost value says nothing about the write
                shown: Any = batch.texts.get(int(row)) if batch.texts else None
                if shown is None:
                    shown = float(batch.values[row])
                p.last_seen = shown
                if _same_value(shown, p.value):
                    p.resolve(WriteResult(True, CONFIRMED, 0, f"confirmed: {p.spec.name} shows {shown!r}", p.value))
                    break

    def _on_write_reply(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """A device's answer to a command on `command_reply_topic` (paho's thread; never raises).

        Contract (docs/project-file.md): a JSON object with "status": "ok" (done) or anything else
        (refused, with an optional "message"). It answers the oldest write waiting on that topic;
        if it carries "signal" it must name the written signal, and under MQTT 5 a reply with
        correlation data answers only the write that sent it."""
        try:
            correlation = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
            try:
                doc = json.loads(msg.payload)
            except (ValueError, RecursionError):
                doc = None
            if not isinstance(doc, dict) or not isinstance(doc.get("status"), str):
                self._reject(msg.topic, "bad command reply", 'expected a JSON object with "status"')
                return
            with self._writes_lock:
                match = next(
                    (
                        p
                        for p in self._pending_writes
                        if p.reply_topic == msg.topic
                        and not p.future.done()
                        and (correlation is None or correlation == p.correlation)
                        and doc.get("signal") in (None, p.spec.signal)
                    ),
                    None,
                )
            if match is None:
                log.info("%s: a command reply on %s answers no waiting write: %s", self.name, msg.topic, doc)
                return
            detail = str(doc.get("message", ""))[:200]
            if doc["status"].lower() == "ok":
                text = f"confirmed by the device on {msg.topic}" + (f": {detail}" if detail else "")
                match.resolve(WriteResult(True, CONFIRMED, 0, text, match.value))
            else:
                text = f"the device refused it ({doc['status'][:40]})" + (f": {detail}" if detail else "")
                match.resolve(WriteResult(False, REFUSED_BY_DEVICE, 0, text, match.value))
        except Exception:
            log.exception("%s: command reply handling failed", self.name)


_NOTHING = object()


@dataclass(eq=False, slots=True)
class _PendingWrite:
    """A write waiting for its confirmation; resolved from paho's thread, awaited on the loop."""

    tag_id: int
    spec: TagSpec
    value: Any
    reply_topic: str | None  # None: confirmed by read-back
    correlation: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]
    last_seen: Any = _NOTHING

    def resolve(self, result: WriteResult) -> None:
        def settle() -> None:
            if not self.future.done():
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(settle)


def _same_value(shown: Any, written: Any) -> bool:
    """Whether a read-back shows the written value: text exactly, numbers to a float32's precision
    (a device holding the setpoint as float32 reports 80.1 as 80.09999847)."""
    if isinstance(written, str) or isinstance(shown, str):
        return str(shown) == str(written)
    return math.isclose(float(shown), float(written), rel_tol=1e-6, abs_tol=1e-9)


# Sparkplug data types of tags a birth certificate creates: String, Text, UUID; Boolean; the integers.
_SPARKPLUG_TYPES = {12: DataType.STRING, 14: DataType.STRING, 15: DataType.STRING, 11: DataType.BOOL}
_SPARKPLUG_TYPES.update(dict.fromkeys(range(1, 9), DataType.INT))


def _datatype_of(value: Any) -> DataType:
    """The data type of a tag created from its first JSON value."""
    if isinstance(value, str):
        return DataType.STRING
    if isinstance(value, bool):
        return DataType.BOOL
    return DataType.FLOAT


def _coerce(value: Any, datatype: DataType) -> Any:
    if datatype == DataType.STRING:
        if isinstance(value, str | int | float):
            return str(value)
        raise WriteRejected(f"{value!r} is not text")
    if datatype == DataType.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise WriteRejected(f"{value!r} is not a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise WriteRejected(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise WriteRejected(f"{value!r} is not a finite number")
    if datatype == DataType.INT:
        if not number.is_integer():
            raise WriteRejected(f"{value!r} is not a whole number")
        return int(number)
    return number


def _redundant(sub: MqttSubscription, other: MqttSubscription, same_as: str) -> bool:
    """Whether `other` already makes every sample `sub` would (equal settings, a covering filter)."""
    if not filter_covers(other.topic, sub.topic) or repr(other.model_dump(exclude={"topic", "qos"})) != same_as:
        return False
    # Two filters covering each other (the same filter twice, or "#" and "+/#"): keep the first.
    return (
        not filter_covers(sub.topic, other.topic)
        or other.topic < sub.topic
        or (other.topic == sub.topic and id(other) < id(sub))
    )


def _broker_filters(filters: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The filters to subscribe: one per message path. An MQTT 5 broker (Mosquitto) delivers a
    message once per matching subscription, so a filter another one covers is left out, and
    the covering one takes the highest QoS of those it stands for."""
    qos: dict[str, int] = {}
    for topic, q in filters:
        qos[topic] = max(qos.get(topic, 0), q)

    def dropped(topic: str) -> bool:
        return any(
            other != topic and filter_covers(other, topic) and (not filter_covers(topic, other) or other < topic)
            for other in qos
        )

    kept = [t for t in qos if not dropped(t)]
    return [(t, max([qos[t]] + [q for o, q in qos.items() if o not in kept and filter_covers(t, o)])) for t in kept]


def _write_in_pump(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho's "register for writing" hook: nothing to register, the pump writes (see _pump)."""


def _readable(sock: Any) -> bool:
    """Whether more data waits (TLS may hold decrypted bytes that select cannot see)."""
    if sock is None:
        return False
    pending = getattr(sock, "pending", None)
    if pending is not None and pending() > 0:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return False
