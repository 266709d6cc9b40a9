"""Publish the demo plant to an MQTT broker (paho-mqtt 2.x), one connection per machine.

Topics, for each machine (docs/demo-plant.md has the payloads):
  factory/<machine>/telemetry  JSON {"ts": epoch ms, "<signal>": value, ...} every tick, QoS 0
  factory/<machine>/status     "online" / "offline", retained; "offline" is the Last Will
  factory/<machine>/events     JSON fault, reset, setpoint and rejected-command events, QoS 1
  factory/<machine>/command    subscribed: JSON commands (set, reset, inject_fault, clear_fault)

One connection per machine because a connection has one Last Will: the broker itself
must be able to say that this machine, not the whole plant, is gone, as it would for a
real machine's gateway.

Threads: paho runs a network thread per connection. Its callbacks only log, (re)subscribe
and announce the status; a command crosses into the serving loop in exactly one place,
`_on_message`, which puts the raw payload on a queue that `apply_commands()` drains on the
serving loop at the start of each tick. Nothing raises into paho's threads.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hmi.core.sockets import disable_nagle
from hmi.sim.base import UnknownFault
from hmi.sim.plant import SYNTHETIC_ID, Plant, PlantEvent

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 * 1024
COMMANDS = ("set", "reset", "inject_fault", "clear_fault")


@dataclass(frozen=True, slots=True)
class MqttOptions:
    host: str
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None  # None with tls: the system's trusted CAs
    cert_file: Path | None = None  # client certificate (PEM), with key_file
    key_file: Path | None = None
    tls_insecure: bool = False  # skip the broker host name check (self-signed test brokers)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    topic_root: str = "factory"
    keepalive_s: int = 10

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("an MQTT client certificate needs both a certificate and a key file")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise ValueError("MQTT CA or client certificate given without TLS")
        for path in (self.ca_file, self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"MQTT TLS file {path} does not exist")


class _Throttle:
    """Logs a recurring problem at most once per `every_s`, with how often it happened."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.every_s:
            skipped = self._suppressed.pop(key, 0)
            suffix = f" ({skipped} more like it not logged)" if skipped else ""
            log.warning(message + suffix, *args)
            self._last[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1


class PlantMqttPublisher:
    """Publishes every machine's telemetry, status and events; takes commands.

    `publish()`, `apply_commands()` and the plant-event listener run on the serving loop;
    `start()` and `stop()` on any thread but not concurrently with those.
    """

    def __init__(self, plant: Plant, options: MqttOptions) -> None:
        self.plant = plant
        self.options = options
        self.machine_ids = [mid for mid in plant.machines if mid != SYNTHETIC_ID]
        self._inbox: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        # Machines whose command subscription the broker has granted (paho's threads add and
        # remove; reading a set's size from another thread is safe).
        self._listening: set[str] = set()
        # Written on the serving loop, read by on_connect on paho's thread: a str swap is atomic.
        self._status = {mid: "online" if plant.machines[mid].online else "offline" for mid in self.machine_ids}
        self._throttle = _Throttle()
        self.messages_sent = 0
        self.publish_errors = 0
        self.commands_received = 0
        self.commands_rejected = 0
        self.clients = {mid: self._make_client(mid) for mid in self.machine_ids}
        plant.add_listener(self._on_plant_event)

    def topic(self, machine_id: str, kind: str) -> str:
        return f"{self.options.topic_root}/{machine_id}/{kind}"

    def _make_client(self, machine_id: str) -> mqtt.Client:
        opts = self.options
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"hmi-sim-{machine_id}-{os.getpid()}",
            clean_session=True,
            userdata=machine_id,
        )
        client.will_set(self.topic(machine_id, "status"), "offline", qos=1, retain=True)
        if opts.username:
            client.username_pw_set(opts.username, opts.password)
        if opts.tls:
            client.tls_set(
                ca_certs=str(opts.ca_file) if opts.ca_file else None,
                certfile=str(opts.cert_file) if opts.cert_file else None,
                keyfile=str(opts.key_file) if opts.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if opts.tls_insecure:
                client.tls_insecure_set(True)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_socket_open = disable_nagle
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # -- lifetime -----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; paho retries until the broker answers."""
        for client in self.clients.values():
            client.connect_async(self.options.host, self.options.port, keepalive=self.options.keepalive_s)
            client.loop_start()
        log.info(
            "MQTT: publishing %d machine(s) to %s:%d%s under %s/",
            len(self.clients),
            self.options.host,
            self.options.port,
            " (TLS)" if self.options.tls else "",
            self.options.topic_root,
        )

    def stop(self, timeout_s: float = 3.0) -> None:
        """Say `offline` (retained) for every machine, then disconnect cleanly."""
        pending = []
        for mid, client in self.clients.items():
            if client.is_connected():
                pending.append(client.publish(self.topic(mid, "status"), "offline", qos=1, retain=True))
        deadline = time.monotonic() + timeout_s
        for info in pending:
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), 0.01))
            except (RuntimeError, ValueError):
                pass  # disconnected meanwhile: the Last Will says offline instead
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()

    def connected_count(self) -> int:
        return sum(1 for c in self.clients.values() if c.is_connected())

    def listening_count(self) -> int:
        """Machines that take commands now: connected, with their command topic subscribed."""
        return len(self._listening)

    # -- paho's threads -----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, machine_id: str, flags: Any, reason: Any, properties: Any) -> None:
        try:
            if reason.is_failure:
                self._throttle.warning(f"connect-{machine_id}", "MQTT %s: broker refused: %s", machine_id, reason)
                return
            client.subscribe(self.topic(machine_id, "command"), qos=1)
            client.publish(self.topic(machine_id, "status"), self._status[machine_id], qos=1, retain=True)
            log.info("MQTT %s: connected to %s:%d", machine_id, self.options.host, self.options.port)
        except Exception:  # never into paho's thread
            log.exception("MQTT %s: on_connect failed", machine_id)

    def _on_subscribe(self, client: mqtt.Client, machine_id: str, mid: int, reasons: Any, properties: Any) -> None:
        try:
            if reasons and not any(r.is_failure for r in reasons):
                self._listening.add(machine_id)
            else:
                log.warning("MQTT %s: the broker refused the command subscription: %s", machine_id, reasons)
        except Exception:
            log.exception("MQTT %s: on_subscribe failed", machine_id)

    def _on_disconnect(self, client: mqtt.Client, machine_id: str, flags: Any, reason: Any, properties: Any) -> None:
        self._listening.discard(machine_id)
        try:
            if reason.is_failure:
                self._throttle.warning(
                    f"disconnect-{machine_id}", "MQTT %s: connection lost (%s); reconnecting", machine_id, reason
                )
        except Exception:
            log.exception("MQTT %s: on_disconnect failed", machine_id)

    def _on_message(self, client: mqtt.Client, machine_id: str, message: mqtt.MQTTMessage) -> None:
        """The one crossing from paho's threads into the serving loop: a queue put."""
        try:
            self._inbox.put((machine_id, bytes(message.payload)))
        except Exception:
            log.exception("MQTT %s: could not queue a command", machine_id)

    # -- serving loop -------------------------------------------------------------------

    def publish(self) -> None:
        """One telemetry message per online machine with every signal's current value."""
        ts_ms = time.time_ns() // 1_000_000
        snapshot = self.plant.values()
        for mid, client in self.clients.items():
            if self._status[mid] != "online":
                continue
            payload: dict[str, Any] = {"ts": ts_ms}
            payload.update(snapshot[mid])
            try:
                text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
            except ValueError as exc:  # a NaN would make invalid JSON: say so, keep serving
                self.publish_errors += 1
                self._throttle.warning(f"json-{mid}", "MQTT %s: telemetry not JSON-safe: %s", mid, exc)
                continue
            info = client.publish(self.topic(mid, "telemetry"), text, qos=0)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self.messages_sent += 1
            else:
                self.publish_errors += 1

    def _on_plant_event(self, event: PlantEvent) -> None:
        if event.machine not in self.clients:
            return
        self._send_event(event.machine, event.to_json())
        status = "online" if self.plant.machines[event.machine].online else "offline"
        if status != self._status[event.machine]:
            self._status[event.machine] = status
            self.clients[event.machine].publish(self.topic(event.machine, "status"), status, qos=1, retain=True)

    def _send_event(self, machine_id: str, data: dict[str, Any]) -> None:
        info = self.clients[machine_id].publish(self.topic(machine_id, "events"), json.dumps(data), qos=1)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.messages_sent += 1
        else:
            self.publish_errors += 1

    def apply_commands(self) -> int:
        """Apply every command that arrived since the last tick; returns how many."""
        n = 0
        while True:
            try:
                machine_id, payload = self._inbox.get_nowait()
            except queue.Empty:
                return n
            n += 1
            self.commands_received += 1
            self._apply(machine_id, payload)

    def _apply(self, machine_id: str, payload: bytes) -> None:
        request_id: str | None = None
        try:
            if len(payload) > MAX_COMMAND_BYTES:
                raise ValueError(f"command of {len(payload)} bytes is larger than {MAX_COMMAND_BYTES}")
            try:
                message = json.loads(payload)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"command is not JSON: {exc}") from None
            if not isinstance(message, dict):
                raise ValueError("command must be a JSON object")
            if message.get("id") is not None:
                request_id = str(message["id"])
            command = message.get("command")
            if command == "set":
                if "signal" not in message or "value" not in message:
                    raise ValueError('"set" needs "signal" and "value"')
                self.plant.write(machine_id, str(message["signal"]), message["value"], "mqtt", request_id)
            elif command == "reset":
                self.plant.reset(machine_id, "mqtt", request_id)
            elif command in ("inject_fault", "clear_fault"):
                fault = message.get("fault")
                if not isinstance(fault, str):
                    raise ValueError(f'"{command}" needs "fault" (a name)')
                if command == "inject_fault":
                    self.plant.inject_fault(machine_id, fault, "mqtt", request_id)
                else:
                    self.plant.clear_fault(machine_id, fault, "mqtt", request_id)
            else:
                raise ValueError(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
        except (KeyError, ValueError, UnknownFault) as exc:
            self.commands_rejected += 1
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            self._throttle.warning(f"command-{machine_id}", "MQTT %s: rejected a command: %s", machine_id, reason)
            data: dict[str, Any] = {
                "ts": time.time_ns() // 1_000_000,
                "machine": machine_id,
                "event": "command_rejected",
                "origin": "mqtt",
                "error": str(reason),
            }
            if request_id is not None:
                data["id"] = request_id
            self._send_event(machine_id, data)
