"""MQTT source (paho-mqtt 2.x, callback API version 2): topics to tags, JSON, plain values,
Sparkplug B, machine status, and commands for writes.

Which module does what:
- source.py: `MqttSource`, the glue: the connection's life, reconnecting, health, and the one
  function where paho's thread hands batches to the bus (`_hand_over`); `run()` and `write()`.
- client.py: the paho client (TLS, credentials, session), connecting, the pump that reads the
  socket and says when coalesced rows leave, and a clean disconnect. Threads are explained there.
- decode.py: what one received message becomes (the hot path): dispatch by route, JSON,
  plain, per-tag and status decoding, the value rules, tags made from templates; bad input.
- payload.py: pure functions on payloads: JSON, plain values, JSON paths, time stamps, the
  device's own quality.
- rows.py: the row coalescer, decoded samples waiting to become one SampleBatch.
- routes.py: which subscription or tag handles a topic; which filters are subscribed.
- sparkplug_host.py: the Sparkplug B host session (edge-node births, deaths, data, rebirth
  requests, refused births, this host's STATE); the codec is hmi/sources/sparkplug.py.
- writes.py: the write path: command, PUBACK, confirmation by reply topic or read-back.
"""

from hmi.sources.mqtt.payload import (
    PayloadError,
    compile_json_path,
    extract,
    parse_json,
    parse_plain,
    payload_quality,
    quality_text,
    timestamp_ns,
)
from hmi.sources.mqtt.routes import filter_covers, render, snake
from hmi.sources.mqtt.source import MqttSource

__all__ = [
    "MqttSource",
    "PayloadError",
    "compile_json_path",
    "extract",
    "filter_covers",
    "parse_json",
    "parse_plain",
    "payload_quality",
    "quality_text",
    "render",
    "snake",
    "timestamp_ns",
]
