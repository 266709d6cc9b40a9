"""Failover: how long the tags are without a GOOD value when the active server or broker dies.

OPC UA: two bench servers (bench/_opcua_server.py, own processes, the same 100 node ids at
20 Hz) behind one OpcUaSource with `endpoints = [a, b]`, keep-alive 1 s, 50 ms publishing.
MQTT: two Mosquitto brokers, a publisher sending the same value to both at 50 Hz, one
MqttSource with `brokers = [a, b]`, keep-alive 2 s. Each round kills the active peer (SIGKILL:
its socket closes; the "frozen" rows SIGSTOP it instead, a hung peer that only the keep-alive
reveals), then measures from the kill to the first GOOD value after the tags
turned COMM_LOST, and restarts the killed peer on its port for the next round (which then
kills the other one). The gap is printed beside the keep-alive period; the target is a gap
below two of them.

Run: `python -m bench failover`.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import print_table
from bench.sources import REPO, Broker, free_port, wait_port
from hmi.config.connections import MqttConnection, OpcUaConnection
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagSpec
from hmi.sources.mqtt import MqttSource
from hmi.sources.opcua import OpcUaSource

ROUNDS = 5
OPCUA_KEEPALIVE_S = 1.0
MQTT_KEEPALIVE_S = 2


class GapClock:
    """Watches one tag on the bus: after `arm()`, the time of its first GOOD value that follows a COMM_LOST one."""

    def __init__(self, bus: TagBus, tag: str) -> None:
        self.tag_id = bus.registry.id_of(tag)
        self.lost = False
        self.recovered = threading.Event()
        self.recovered_at = 0.0
        bus.subscribe(self._on_batch, name="bench-failover")

    def arm(self) -> None:
        self.lost = False
        self.recovered.clear()

    def _on_batch(self, batch: SampleBatch) -> None:
        rows = np.flatnonzero(batch.tag_ids == self.tag_id)
        for r in rows:
            if batch.quality[r] == Quality.COMM_LOST:
                self.lost = True
            elif self.lost and batch.quality[r] == Quality.GOOD and not self.recovered.is_set():
                self.recovered_at = time.monotonic()
                self.recovered.set()


async def _wait(event: threading.Event, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not event.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return event.is_set()


# -- OPC UA ---------------------------------------------------------------------------------


def _opcua_server(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._opcua_server", "--port", str(port), "--tags", "100", "--rate", "20"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # asyncua's server warns about its test-only security on every session
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


async def opcua_gaps(freeze: bool) -> list[float]:
    ports = [free_port(), free_port()]
    procs = [_opcua_server(p) for p in ports]
    urls = [f"opc.tcp://127.0.0.1:{p}/bench" for p in ports]
    bus = TagBus()
    tags = [TagSpec(f"v{i}", connection="plc", address=f"nsu=urn:hmi:bench;s=v{i}") for i in range(100)]
    conn = OpcUaConnection(
        kind="opcua", endpoints=urls, keepalive_s=OPCUA_KEEPALIVE_S, publishing_interval_ms=50, timeout_s=2.0
    )
    source = OpcUaSource("plc", conn, tags, bus)
    clock = GapClock(bus, "v0")
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    gaps: list[float] = []
    try:
        for _ in range(ROUNDS):
            deadline = time.monotonic() + 20
            while not source.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # steady state
            active = urls.index(source.endpoint)
            clock.arm()
            killed = time.monotonic()
            if freeze:
                procs[active].send_signal(signal.SIGSTOP)
            else:
                procs[active].kill()
            if not await _wait(clock.recovered, 15):
                raise RuntimeError(f"no GOOD value within 15 s of the kill ({source.last_error})")
            gaps.append(clock.recovered_at - killed)
            procs[active].kill()
            procs[active].wait()
            procs[active] = await asyncio.to_thread(_opcua_server, ports[active])
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        for proc in procs:
            proc.kill()
            proc.wait()
    return gaps


# -- MQTT -----------------------------------------------------------------------------------


def _restart(broker: Broker) -> None:
    """Start a killed broker again, on its port and configuration."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"  # as Broker() starts it
    broker.proc = subprocess.Popen(
        [binary, "-c", str(broker.dir / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(broker.port)


async def mqtt_gaps(freeze: bool) -> list[float]:
    brokers = [Broker(), Broker()]
    publishers = []
    for b in brokers:
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.reconnect_delay_set(0.05, 0.2)
        client.connect("127.0.0.1", b.port)
        client.loop_start()
        publishers.append(client)
    running = threading.Event()
    running.set()

    def publish() -> None:
        n = 0
        while running.is_set():
            n += 1
            for client in publishers:
                client.publish("factory/cnc01/telemetry", f'{{"n": {n}}}', qos=0)
            time.sleep(0.02)

    thread = threading.Thread(target=publish, name="bench-publisher", daemon=True)
    thread.start()
    bus = TagBus()
    conn = MqttConnection.model_validate(
        {
            "kind": "mqtt",
            "brokers": [f"127.0.0.1:{b.port}" for b in brokers],
            "keepalive_s": MQTT_KEEPALIVE_S,
            "reconnect_max_delay_s": 1.0,
            "subscriptions": [{"topic": "factory/+/telemetry", "format": "json", "tag": "{topic[1]}.{key}"}],
        }
    )
    source = MqttSource("broker", conn, [TagSpec("cnc01.n", connection="broker")], bus)
    clock = GapClock(bus, "cnc01.n")
    addresses = [f"127.0.0.1:{b.port}" for b in brokers]
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    gaps: list[float] = []
    try:
        for _ in range(ROUNDS):
            deadline = time.monotonic() + 20
            while not source.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            active = addresses.index(source.broker)
            clock.arm()
            killed = time.monotonic()
            if freeze:
                brokers[active].proc.send_signal(signal.SIGSTOP)
            else:
                brokers[active].proc.kill()
            if not await _wait(clock.recovered, 15):
                raise RuntimeError(f"no GOOD value within 15 s of the kill ({source.last_error})")
            gaps.append(clock.recovered_at - killed)
            brokers[active].proc.kill()
            brokers[active].proc.wait()
            await asyncio.to_thread(_restart, brokers[active])
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        running.clear()
        thread.join(2)
        for client in publishers:
            client.loop_stop()
        for b in brokers:
            b.stop()
    return gaps


def _row(label: str, gaps: list[float], keepalive_s: float) -> tuple[str, ...]:
    ms = np.asarray(gaps) * 1000
    return (
        label,
        f"{np.median(ms):.0f}",
        f"{ms.max():.0f}",
        f"{keepalive_s * 1000:.0f}",
        "yes" if ms.max() < 2 * keepalive_s * 1000 else "NO",
    )


def main() -> dict[str, Any]:
    killed = asyncio.run(opcua_gaps(freeze=False))
    frozen = asyncio.run(opcua_gaps(freeze=True))
    mqtt = asyncio.run(mqtt_gaps(freeze=False))
    mqtt_frozen = asyncio.run(mqtt_gaps(freeze=True))
    print_table(
        f"Failover gap: kill of the active peer -> first GOOD value from the other ({ROUNDS} rounds each)",
        [
            _row("OPC UA, server killed", killed, OPCUA_KEEPALIVE_S),
            _row("OPC UA, server frozen (SIGSTOP)", frozen, OPCUA_KEEPALIVE_S),
            _row("MQTT, broker killed", mqtt, MQTT_KEEPALIVE_S),
            _row("MQTT, broker frozen (SIGSTOP)", mqtt_frozen, MQTT_KEEPALIVE_S),
        ],
        ("case", "median ms", "max ms", "keep-alive ms", "below 2 keep-alives"),
    )
    return {
        "opcua_killed_max_ms": max(killed) * 1000,
        "opcua_frozen_max_ms": max(frozen) * 1000,
        "mqtt_killed_max_ms": max(mqtt) * 1000,
        "mqtt_frozen_max_ms": max(mqtt_frozen) * 1000,
    }


if __name__ == "__main__":
    main()
