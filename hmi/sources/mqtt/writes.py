"""The MQTT write path: a command published for a writable tag, and what confirms it.

`write()` runs on the runtime's asyncio loop: it publishes the command (paho's publish is
thread-safe), waits for the broker's PUBACK in a worker thread, then for the device's
confirmation, which arrives on paho's thread: a reply on `command_reply_topic` (`on_reply`)
or the tag's own next value (`check_read_back`, called by the source for each batch while a
write waits). Result statuses: hmi/sources/writes.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hmi.config.connections import MqttConnection
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType, TagSpec
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


_NOTHING = object()


@dataclass(eq=False, slots=True)
class PendingWrite:
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


class WritePath:
    """The writes of one connection. The source gives it the tags it owns, `reject` (a bad
    reply is counted like a bad message) and `link`: the paho client to publish on while
    connected (else None) and why not."""

    def __init__(
        self,
        name: str,
        config: MqttConnection,
        bus: TagBus,
        own_ids: set[int],
        reject: Callable[[str, str, str], None],
        link: Callable[[], tuple[paho.Client | None, str]],
    ) -> None:
        self.name = name
        self.config = config
        self.bus = bus
        self._own_ids = own_ids
        self._reject = reject
        self._link = link
        self.pending: list[PendingWrite] = []  # writes waiting for the device to confirm
        self._lock = threading.Lock()

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
        client, why = self._link()
        if client is None:
            raise NotConnected(f"{self.name} is not connected ({why})")
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
                with self._lock:
                    self.pending.remove(pending)

    def _expect_confirmation(
        self, tag_id: int, spec: TagSpec, value: Any, fields: dict[str, str]
    ) -> PendingWrite | None:
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
        pending = PendingWrite(tag_id, spec, value, reply_topic, os.urandom(8), loop, loop.create_future())
        with self._lock:
            self.pending.append(pending)
        return pending

    def check_read_back(self, batch: SampleBatch) -> None:
        """A write waiting for its tag's own value: resolve it when the value arrives (paho's thread)."""
        with self._lock:
            waiting = [p for p in self.pending if p.reply_topic is None and not p.future.done()]
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

    def on_reply(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
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
            with self._lock:
                match = next(
                    (
                        p
                        for p in self.pending
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

    def reply_filter(self) -> str | None:
        """command_reply_topic with each {field} as a "+" wildcard (whole levels: see the config model)."""
        template = self.config.command_reply_topic
        return re.sub(r"\{\w+\}", "+", template) if template else None


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
