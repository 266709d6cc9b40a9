"""What one received MQTT message becomes: the dispatch by route, JSON, plain, per-tag and
status decoding, the value rules every decoded value passes (`put`) and tags made from
templates. Sparkplug B messages go to the host session (sparkplug_host.py), which uses the
same value rules.

This is the hot path; it runs on paho's thread only. Every callback decodes into plain Python
lists (rows.py) and never raises: anything unexpected is counted and logged.

Bad input (oversize, invalid JSON, NaN/Infinity/1e400, deep nesting, wrong types, unknown
topics or tags, malformed Sparkplug) is dropped or published as BAD, counted per topic and
reason in the health counters, and logged at a limited rate.

What a value is worth follows hmi/core/values.py: integers beyond 2^53 are kept approximate
and UNCERTAIN; a payload time that cannot be read or lies outside the connection's window
gives way to the time of arrival, UNCERTAIN. A payload's own quality (`quality_key`) applies
to every value of its message (`payload_quality`; unknown means BAD). A retained message
without a time of its own is UNCERTAIN (it may be a week old) until the first live one;
status messages excepted (the Last Will keeps them true).
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from hmi.config.connections import MqttConnection, MqttSubscription
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import now_ns
from hmi.core.tags import TAG_NAME_RE, DataType, TagSpec
from hmi.core.values import INEXACT_INTEGER, MAX_EXACT_INT, NON_FINITE, TIMESTAMP_OUT_OF_WINDOW
from hmi.sources.health import RateLimitedLog, SourceHealth
from hmi.sources.mqtt.payload import (
    PayloadError,
    extract,
    parse_json,
    parse_plain,
    payload_quality,
    quality_map,
    quality_text,
    timestamp_ns,
)
from hmi.sources.mqtt.routes import TOPIC_CACHE_MAX, Route, RouteTable, render, snake
from hmi.sources.mqtt.rows import Rows

log = logging.getLogger(__name__)

_NO_PLAN = object()
_GOOD, _UNCERTAIN = Quality.GOOD, Quality.UNCERTAIN  # module globals: cheaper than the enum's attributes

# The Sparkplug B session's decoder (SparkplugHost.decode): topic, payload, subscription, arrival ns.
SparkplugDecode = Callable[[str, bytes, MqttSubscription, int], None]


def _no_sparkplug_host(topic: str, payload: bytes, sub: MqttSubscription, received: int) -> None:
    raise PayloadError("no Sparkplug B host session")  # the source always sets one; a guard, not a path


def _datatype_of(value: Any) -> DataType:
    """The data type of a tag created from its first JSON value."""
    if isinstance(value, str):
        return DataType.STRING
    if isinstance(value, bool):
        return DataType.BOOL
    return DataType.FLOAT


class Decoder:
    """Decodes the messages of one connection into rows (paho's thread only).

    The source gives it what crosses into the rest of the source: the rows, the tags it owns
    (a set the decoder adds templated tags to), and `flush`/`mark_lost` for a machine going
    offline. It holds the per-topic caches and the tag data types the hot path reads.
    """

    def __init__(
        self,
        name: str,
        config: MqttConnection,
        bus: TagBus,
        health: SourceHealth,
        rows: Rows,
        routes: RouteTable,
        spec_by_id: dict[int, TagSpec],
        own_ids: set[int],
        flush: Callable[[], None],
        mark_lost: Callable[[list[int], str], None],
    ) -> None:
        self.name = name
        self.config = config
        self.bus = bus
        self.health = health
        self.rows = rows
        self._routes_for = routes.routes_for  # bound once: one attribute per message, as before the split
        self._spec_by_id = spec_by_id
        self._datatype: dict[int, DataType] = {i: s.datatype for i, s in spec_by_id.items()}
        self._own_ids = own_ids
        self._numeric = {i for i, t in self._datatype.items() if t in (DataType.FLOAT, DataType.INT)}
        self._flush = flush
        self._mark_lost = mark_lost
        self._ratelog = RateLimitedLog(log)
        self._max_payload = config.max_payload_bytes
        self.name_cache: dict[tuple[str, str], int] = {}  # (topic, key) -> tag id, -1 unknown
        # topic -> (JSON key -> tag id or -1 unknown, key tuple -> fast plan)
        self._json_topics: dict[str, tuple[dict[str, int], dict[tuple[str, ...], Any]]] = {}
        self.timestamp_window = config.timestamp_window()
        self._max_age_ns = self.timestamp_window.max_age_ns  # the same window, for the hot path
        self._max_ahead_ns = self.timestamp_window.max_ahead_ns
        self._online_ids: dict[str, int] = {}
        self._tag_quality_map = quality_map(config.quality_map)  # tags addressed one by one
        self._retain = False  # the message being decoded is a retained one
        self.decode_sparkplug: SparkplugDecode = _no_sparkplug_host  # set by the source: its host session

    def on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """paho's on_message: decode one message by each route of its topic (never raises)."""
        topic = msg.topic
        try:
            payload = msg.payload
            if len(payload) > self._max_payload:
                self.reject(topic, "oversize", f"{len(payload)} bytes > max_payload_bytes")
                return
            routes = self._routes_for(topic)
            if not routes:
                self.reject(topic, "unknown topic", "no subscription or tag maps it")
                return
            received = now_ns()
            before = self.rows.count
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
                    self.decode_sparkplug(topic, payload, route.sub, received)  # type: ignore[arg-type]
            self.health.received(1, self.rows.count - before)
        except PayloadError as exc:
            self.reject(topic, str(exc).split(" (")[0], str(exc))
        except Exception as exc:  # a decoder bug must not reach paho's thread
            self.reject(topic, "decoder error", repr(exc))
            log.debug("%s: decoder error on %s", self.name, topic, exc_info=True)

    def reject(self, topic: str, reason: str, detail: str = "") -> None:
        self.health.reject(topic, reason)
        self._ratelog(
            logging.WARNING, f"{topic}:{reason}", "%s: dropped a message on %s: %s", self.name, topic, detail or reason
        )

    def put(self, tag_id: int, ts: int, value: Any, topic: str, quality: int = Quality.GOOD) -> None:
        """One value for a tag, checked against the tag's data type."""
        dtype = self._datatype.get(tag_id, DataType.FLOAT)
        rows = self.rows
        if type(value) is int and not -MAX_EXACT_INT <= value <= MAX_EXACT_INT and dtype != DataType.STRING:
            try:
                number = float(value)
            except OverflowError:  # beyond a float: non-finite, as json.loads makes of 1e400
                number = math.inf
            if number - number == 0 and tag_id in self._numeric:  # the shared rule: approximate, UNCERTAIN
                self.flag(tag_id, topic, INEXACT_INTEGER, f"{str(value)[:30]} kept as {number!r}")
                quality = max(quality, Quality.UNCERTAIN)
            value = number
        if type(value) is float or type(value) is int:
            if value - value != 0:  # NaN, Infinity, and 1e400 (which json.loads reads as inf)
                self.bad(tag_id, ts, topic, NON_FINITE)
            elif dtype == DataType.STRING:
                rows.add_text(tag_id, ts, str(value), quality)
            elif dtype == DataType.BOOL and value not in (0, 1):
                self.bad(tag_id, ts, topic, "type")
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
                self.bad(tag_id, ts, topic, "type")
        elif value is None:
            rows.add(tag_id, ts, math.nan, Quality.BAD)
        else:
            self.bad(tag_id, ts, topic, "type")

    def bad(self, tag_id: int, ts: int, topic: str, reason: str) -> None:
        self.rows.add(tag_id, ts, math.nan, Quality.BAD)
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
        window = self.timestamp_window
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

    def _decode_json(self, topic: str, payload: bytes | bytearray, route: Route, received: int) -> None:
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
            if len(self._json_topics) >= TOPIC_CACHE_MAX:
                self._json_topics.clear()  # bounded: a flood of distinct topics must not grow memory
            state = self._json_topics[topic] = ({}, {})
        keys, plans = state
        rows = self.rows
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
            if size < MAX_EXACT_INT:
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
                and (type(value) is float or (type(value) is int and -MAX_EXACT_INT <= value <= MAX_EXACT_INT))
            ):
                if value - value == 0:  # finite: inf - inf and nan - nan are nan
                    rows.add(tag_id, ts, value, quality)
                    continue
                self.bad(tag_id, ts, topic, NON_FINITE)
                continue
            if key in (ts_key, q_key):
                continue
            if type(value) is dict:
                self.reject(topic, "nested object", f"key {key!r} holds an object; map it with a json_path tag")
                continue
            if tag_id is None:
                tag_id = keys[key] = self._template_id(
                    sub, topic, topic.split("/"), _datatype_of(value), key=snake(key)
                )
            if tag_id < 0:
                self.reject(topic, "unknown tag", f"key {key!r} maps to no tag of the project")
                continue
            if type(value) is list:
                self.bad(tag_id, ts, topic, "array")
                continue
            self.put(tag_id, ts, value, topic, quality)

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
        return self.tag_id(name, topic, sub.create_tags, datatype=datatype)

    def _decode_value(self, topic: str, payload: bytes, sub: MqttSubscription, received: int) -> None:
        key = (topic, "")
        tag_id = self.name_cache.get(key)
        if tag_id is None:
            tag_id = self.name_cache[key] = self._template_id(sub, topic, topic.split("/"))
        if tag_id < 0:
            raise PayloadError("unknown tag")
        # A plain value has no time of its own: a retained one is of unknown age.
        self.put(tag_id, received, parse_plain(payload), topic, Quality.UNCERTAIN if self._retain else Quality.GOOD)

    def _decode_tags(self, topic: str, payload: bytes | bytearray, route: Route, received: int) -> None:
        doc: Any = None
        fresh = Quality.UNCERTAIN if self._retain else Quality.GOOD  # without a time of its own
        ts, quality = received, int(fresh)
        for tag_id, path in route.tags:
            if path is None:
                self.put(tag_id, received, parse_plain(payload), topic, fresh)
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
                self.bad(tag_id, ts, topic, "type")
                continue
            self.put(tag_id, ts, value, topic, quality)

    def _decode_status(self, topic: str, payload: bytes | bytearray, route: Route, received: int) -> None:
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
            self.set_online(machine, True, received)
        elif state in sub.offline_values:
            self.set_online(machine, False, received)
        else:
            accepted = f"online {list(sub.online_values)}, offline {list(sub.offline_values)}"
            raise PayloadError(f"unknown status ({str(state)[:30]!r}; understood: {accepted})")

    def set_online(self, machine: str, online: bool, ts: int, prefix: str | None = None) -> None:
        """A machine's `<machine>.online` tag; going offline turns its tags COMM_LOST."""
        online_id = self._online_ids.get(machine)
        if online_id is None:
            spec = TagSpec(f"{machine}.online", "", DataType.BOOL, f"{machine} is online", connection=self.name)
            online_id = self._online_ids[machine] = self.bus.registry.register(spec)
        self.rows.add(online_id, ts, 1.0 if online else 0.0, Quality.GOOD)
        if not online:
            start = prefix or f"{machine}."
            ids = [
                i for i in sorted(self._own_ids) if self.bus.registry.spec(i).name.startswith(start) and i != online_id
            ]
            self._flush()
            self._mark_lost(ids, f"{machine} went offline")

    def flag(self, tag_id: int, topic: str, reason: str, detail: str) -> None:
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

    def tag_id(self, name: str, topic: str, create: bool, unit: str = "", datatype: DataType = DataType.FLOAT) -> int:
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
