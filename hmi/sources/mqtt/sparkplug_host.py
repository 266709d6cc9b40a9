"""The Sparkplug B host session: edge nodes' births, deaths and data, and this host's STATE.

Per edge node (`EdgeNode`) the session keeps the aliases its births declared, the sequence
number (0..255 across all its messages; a birth restarts it) and the bdSeq of its current
NBIRTH. Data without a birth seen, a sequence gap or an unknown alias makes the host ask for
a rebirth (an NCMD, at most once per node every 10 s). A birth that gives one alias to
several metrics is refused: its tags turn BAD until a good birth. As a Sparkplug 3.0 host
application (`sparkplug_host_id`) it publishes its STATE: the Last Will set with each
CONNECT, a birth once subscribed, a death on a clean stop.

The codec is hmi/sources/sparkplug.py; values go through the decoder's rules (decode.py).
Everything here runs on paho's thread.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho

from hmi.config.connections import MqttSubscription
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType
from hmi.core.values import INEXACT_INTEGER, TIMESTAMP_OUT_OF_WINDOW, exact_in_float
from hmi.sources import sparkplug
from hmi.sources.health import RateLimitedLog, comm_lost_batch
from hmi.sources.mqtt.decode import Decoder
from hmi.sources.mqtt.payload import PayloadError
from hmi.sources.mqtt.routes import render, snake

log = logging.getLogger(__name__)

_REBIRTH_MIN_INTERVAL_S = 10.0  # per edge node: a birth takes a moment to arrive

# Sparkplug data types of tags a birth certificate creates: String, Text, UUID; Boolean; the integers.
_SPARKPLUG_TYPES = {12: DataType.STRING, 14: DataType.STRING, 15: DataType.STRING, 11: DataType.BOOL}
_SPARKPLUG_TYPES.update(dict.fromkeys(range(1, 9), DataType.INT))


@dataclass(slots=True)
class EdgeNode:
    """What the host knows of one edge node's session (its births, aliases and sequence)."""

    seq: int | None = None
    born: bool = False  # its NBIRTH was seen: aliases and sequence are known
    rebirth_asked_at: float = -math.inf
    aliases: dict[int, str] = field(default_factory=dict)
    devices: dict[str, dict[int, str]] = field(default_factory=dict)
    bdseq: int | None = None  # of its current NBIRTH: an NDEATH with another one is stale
    refused: set[str] = field(default_factory=set)  # devices ("" = the node) whose last birth was refused


class SparkplugHost:
    """The host session of one connection. The source owns it and gives it the decoder (whose
    value rules, tag creation and rows the metrics go through), a way to reach the current
    paho client (for NCMD and STATE) and its connected state, and `flush`/`hand_over` to
    mark a refused birth's tags BAD on the bus at once."""

    def __init__(
        self,
        name: str,
        host_id: str | None,
        decoder: Decoder,
        client: Callable[[], paho.Client | None],
        connected: Callable[[], bool],
        flush: Callable[[], None],
        hand_over: Callable[[SampleBatch | None], None],
    ) -> None:
        self.name = name
        self.host_id = host_id
        self.bus: TagBus = decoder.bus
        self.health = decoder.health
        # The decoder's parts, bound once: a metric costs what it cost when this was one class.
        self._rows = decoder.rows
        self._put = decoder.put
        self._bad = decoder.bad
        self._flag = decoder.flag
        self._reject = decoder.reject
        self._tag_id = decoder.tag_id
        self._set_online = decoder.set_online
        self._name_cache = decoder.name_cache  # shared: (group/device, metric) -> tag id
        self._window = decoder.timestamp_window
        self._client = client
        self._connected = connected
        self._flush = flush
        self._hand_over = hand_over
        self._ratelog = RateLimitedLog(log)
        self._edge_nodes: dict[tuple[str, str], EdgeNode] = {}
        self._state_ts_ms = 0  # Sparkplug STATE: the timestamp of the Last Will sent with CONNECT

    def decode(self, topic: str, payload: bytes, sub: MqttSubscription, received: int) -> None:
        """A message on a Sparkplug B subscription (paho's thread; PayloadError for a bad one)."""
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
        node = self._edge_nodes.setdefault(key, EdgeNode())
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
        window = self._window
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

    def _refuse_birth(
        self,
        topic: str,
        parsed: sparkplug.Topic,
        node: EdgeNode,
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

    def _request_rebirth(self, parsed: sparkplug.Topic, node: EdgeNode, reason: str) -> None:
        """Ask the edge node for its births again (Sparkplug B's host duty), at a limited rate."""
        now = time.monotonic()
        client = self._client()
        if client is None or now - node.rebirth_asked_at < _REBIRTH_MIN_INTERVAL_S:
            return
        node.rebirth_asked_at = now
        topic = f"spBv1.0/{parsed.group}/NCMD/{parsed.node}"
        client.publish(topic, sparkplug.encode_rebirth_request(time.time_ns() // 1_000_000), qos=0)
        log.info("%s: asked edge node %s/%s for a rebirth: %s", self.name, parsed.group, parsed.node, reason)

    def new_broker(self) -> None:
        """Connected to another broker of the connection's list: the edge nodes' sessions known
        so far were sessions with the old one (its bdSeq, its sequence). Keep their aliases, so
        values keep decoding, but treat every node as unborn and ask each for its births now
        (an NCMD rebirth), as Sparkplug B asks of a host that may have missed messages."""
        for (group, node_id), node in self._edge_nodes.items():
            node.born = False
            node.seq = None
            node.bdseq = None
            node.rebirth_asked_at = -math.inf
            self._request_rebirth(sparkplug.Topic(group, "NCMD", node_id, None), node, "connected to another broker")

    def set_will(self, client: paho.Client) -> None:
        """Before each CONNECT: this host's STATE death as the Last Will (no host id: nothing)."""
        if self.host_id:
            # Sparkplug 3.0: the death (the Last Will) carries the time of this CONNECT, and the
            # birth published once connected repeats it, so an edge node can tell them apart.
            self._state_ts_ms = time.time_ns() // 1_000_000
            client.will_set(
                sparkplug.state_topic(self.host_id),
                sparkplug.encode_state(False, self._state_ts_ms),
                qos=1,
                retain=True,
            )

    def publish_state(self, client: paho.Client, online: bool) -> paho.MQTTMessageInfo:
        """This host application's STATE (Sparkplug 3.0): retained, QoS 1. The birth repeats the
        Last Will's timestamp; a death published on a clean stop carries the time of stopping."""
        ts = self._state_ts_ms if online else time.time_ns() // 1_000_000
        topic = sparkplug.state_topic(self.host_id or "")
        return client.publish(topic, sparkplug.encode_state(online, ts), qos=1, retain=True)

    def publish_death(self, client: paho.Client) -> paho.MQTTMessageInfo:
        """This host's STATE death, on a clean stop (before DISCONNECT, which discards the Last Will)."""
        return self.publish_state(client, False)

    def on_own_state(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """Our own STATE topic: whoever says we are offline (a stale Last Will of an earlier
        session, another client) while we are connected, we say otherwise at once (Sparkplug 3.0)."""
        try:
            state = sparkplug.decode_state(msg.payload) if msg.payload else None
            if state is not None and not state[0] and self._connected():
                log.info("%s: %s says offline; publishing our STATE birth again", self.name, msg.topic)
                self.publish_state(client, True)
        except Exception:
            log.exception("%s: own STATE handling failed", self.name)
