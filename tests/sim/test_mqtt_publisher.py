"""The demo plant over MQTT against a real Mosquitto: telemetry, retained status, Last Will, events, commands, TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from asyncua import Client, ua
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from hmi.sim.mqtt_publisher import MqttOptions, PlantMqttPublisher
from hmi.sim.opcua_server import NAMESPACE_URI, OpcUaSecurity, PlantOpcUaServer
from hmi.sim.plant import MACHINE_TYPES, Plant
from hmi.sim.runner import PlantRunner
from tests.conftest import mosquitto_binary
from tests.helpers import free_port, hmi_process, run_async, stop_process, wait_for_port, wait_until


class Collector:
    """A plain paho subscriber that keeps every message it gets (network thread -> list under a lock)."""

    def __init__(self, host: str, port: int, topics: str = "factory/#", **tls: Any) -> None:
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"collector-{time.monotonic_ns()}")
        if tls:
            self.client.tls_set(**tls)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topics, qos=1)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        # Messages published before the broker has the subscription would never arrive.
        if not subscribed.wait(10):
            raise AssertionError(f"the test subscriber could not subscribe to {topics}")

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain), time.monotonic()))

    def on(self, topic: str) -> list[tuple[bytes, bool, float]]:
        with self._lock:
            return [(p, r, t) for top, p, r, t in self.messages if top == topic]

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p, _, _ in self.on(topic)]

    def last(self, topic: str) -> bytes | None:
        got = self.on(topic)
        return got[-1][0] if got else None

    def publish(self, topic: str, payload: str | bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SimThread:
    """A PlantRunner with MQTT (and OPC UA when given) on its own asyncio loop in a thread."""

    def __init__(
        self, plant: Plant, options: MqttOptions, rate_hz: float = 10.0, opcua: PlantOpcUaServer | None = None
    ) -> None:
        self.publisher = PlantMqttPublisher(plant, options)
        self.opcua = opcua
        self.runner = PlantRunner(plant, rate_hz, 1.0, mqtt=self.publisher, opcua=opcua)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        await self.runner.run(self._stop)

    def start(self) -> SimThread:
        self._thread.start()
        if self.opcua is not None:
            wait_for_port(self.opcua.port)
        wait_until(lambda: self.publisher.connected_count() == len(self.publisher.clients), 10, message="connected")
        # Commands sent before the broker granted the command subscription would be lost.
        wait_until(lambda: self.publisher.listening_count() == len(self.publisher.clients), 10, message="subscribed")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def mqtt_sim(mosquitto: tuple[str, int]) -> Iterator[SimThread]:
    """cnc01 and pump01 published at 10 Hz to the test broker."""
    host, port = mosquitto
    sim = SimThread(Plant(["cnc01", "pump01"]), MqttOptions(host, port)).start()
    yield sim
    sim.stop()


def test_telemetry_at_the_rate_with_status_retained(mosquitto: tuple[str, int], mqtt_sim: SimThread) -> None:
    """Each machine's telemetry arrives at 10 Hz as JSON with an epoch-ms timestamp and every signal; a late
    subscriber still learns `online` from the retained status; a clean stop leaves `offline` retained."""
    host, port = mosquitto
    collector = Collector(host, port)
    try:
        time.sleep(3.0)
        for machine in ("cnc01", "pump01"):
            got = collector.on(f"factory/{machine}/telemetry")
            times = [t for _, _, t in got]
            rate = (len(got) - 1) / (times[-1] - times[0])
            assert 7.0 < rate < 13.0, (machine, rate)
            payload = json.loads(got[-1][0])
            assert set(payload) == {"ts", *(s.name for s in MACHINE_TYPES[machine].signals)}
            assert abs(payload["ts"] / 1000 - time.time()) < 2.0
        assert json.loads(collector.on("factory/pump01/telemetry")[-1][0])["flow"] > 40
        assert collector.on("factory/cnc01/telemetry")[-1][1] is False  # telemetry is not retained
    finally:
        collector.close()

    late = Collector(host, port, "factory/+/status")
    try:
        wait_until(lambda: late.on("factory/pump01/status"), 5)
        assert late.on("factory/pump01/status")[0][:2] == (b"online", True)
    finally:
        late.close()
    mqtt_sim.stop()
    after = Collector(host, port, "factory/+/status")
    try:
        wait_until(lambda: after.last("factory/cnc01/status") == b"offline", 5)
        assert after.on("factory/cnc01/status")[0][1] is True
    finally:
        after.close()


def test_commands_change_setpoints_and_faults(mosquitto: tuple[str, int], mqtt_sim: SimThread) -> None:
    """A `set` command changes pump01's speed setpoint (seen in telemetry and as an event carrying the request
    id); inject_fault offline turns the status offline and stops telemetry; clear_fault brings it back; bad
    commands are answered with command_rejected events and change nothing."""
    host, port = mosquitto
    collector = Collector(host, port)
    try:
        collector.publish(
            "factory/pump01/command", json.dumps({"command": "set", "signal": "speed_setpoint", "value": 1500, "id": 7})
        )
        wait_until(
            lambda: any(m["speed_setpoint"] == 1500 for m in collector.json("factory/pump01/telemetry")),
            10,
            message="telemetry shows the new setpoint",
        )
        wait_until(lambda: collector.json("factory/pump01/events"), 10, message="setpoint event")
        event = collector.json("factory/pump01/events")[0]
        assert event | {"ts": 0, "sim_time_s": 0} == {
            "ts": 0,
            "sim_time_s": 0,
            "machine": "pump01",
            "event": "setpoint_changed",
            "origin": "mqtt",
            "signal": "speed_setpoint",
            "value": 1500.0,
            "id": "7",
        }

        for bad in (
            b"not json",
            b"[1, 2]",
            json.dumps({"command": "set", "signal": "flow", "value": 3}),
            json.dumps({"command": "set", "signal": "speed_setpoint", "value": 99999}),
            json.dumps({"command": "inject_fault", "fault": "tool_wear"}),
            json.dumps({"command": "explode"}),
        ):
            collector.publish("factory/pump01/command", bad)
        wait_until(lambda: len(collector.json("factory/pump01/events")) >= 7, 10, message="six rejections")
        rejected = [e for e in collector.json("factory/pump01/events") if e["event"] == "command_rejected"]
        assert len(rejected) == 6 and all(e["error"] for e in rejected)
        assert mqtt_sim.publisher.commands_rejected == 6
        assert mqtt_sim.runner.plant.machines["pump01"].setpoint == 1500.0

        collector.publish("factory/cnc01/command", json.dumps({"command": "inject_fault", "fault": "offline"}))
        wait_until(lambda: collector.last("factory/cnc01/status") == b"offline", 10, message="offline status")
        time.sleep(0.3)
        quiet_since = len(collector.on("factory/cnc01/telemetry"))
        time.sleep(0.5)
        assert len(collector.on("factory/cnc01/telemetry")) == quiet_since
        collector.publish("factory/cnc01/command", json.dumps({"command": "clear_fault", "fault": "offline"}))
        wait_until(lambda: collector.last("factory/cnc01/status") == b"online", 10, message="online again")
        wait_until(lambda: len(collector.on("factory/cnc01/telemetry")) > quiet_since, 10, message="telemetry again")
        kinds = [e["event"] for e in collector.json("factory/cnc01/events")]
        assert kinds == ["fault_injected", "fault_cleared"]

        collector.publish("factory/pump01/command", json.dumps({"command": "reset"}))
        wait_until(lambda: mqtt_sim.runner.plant.machines["pump01"].setpoint == 2950.0, 10, message="reset")
    finally:
        collector.close()


def test_both_protocols_share_one_plant(mosquitto: tuple[str, int]) -> None:
    """With OPC UA and MQTT served together, a fault injected over OPC UA is announced on MQTT and a setpoint
    set over MQTT is what OPC UA clients read."""
    host, port = mosquitto
    plant = Plant(["pump01"])
    opcua = PlantOpcUaServer(plant, port=free_port(), security=OpcUaSecurity(policies="none"))
    sim = SimThread(plant, MqttOptions(host, port), opcua=opcua).start()
    collector = Collector(host, port)

    async def over_opcua() -> float:
        client = Client(opcua.endpoint, timeout=10)
        await client.connect()
        try:
            ns = await client.get_namespace_index(NAMESPACE_URI)
            pump = client.get_node(ua.NodeId("Plant/pump01", ns))
            await pump.call_method(ua.NodeId("Plant/pump01/InjectFault", ns), "undervoltage")
            collector.publish(
                "factory/pump01/command", json.dumps({"command": "set", "signal": "speed_setpoint", "value": 2222})
            )
            setpoint = client.get_node(ua.NodeId("Plant/pump01/speed_setpoint", ns))
            for _ in range(50):
                if await setpoint.read_value() == 2222.0:
                    break
                await asyncio.sleep(0.1)
            return float(await setpoint.read_value())
        finally:
            await client.disconnect()

    try:
        assert run_async(over_opcua()) == 2222.0
        wait_until(lambda: len(collector.json("factory/pump01/events")) >= 2, 10, message="both events on MQTT")
        events = [(e["event"], e["origin"]) for e in collector.json("factory/pump01/events")]
        assert events == [("fault_injected", "opcua"), ("setpoint_changed", "mqtt")]
    finally:
        collector.close()
        sim.stop()


def test_killed_simulator_goes_offline_through_the_last_will(mosquitto: tuple[str, int]) -> None:
    """SIGKILL on an `hmi sim` process leaves no chance to say goodbye: the broker's Last Will turns each
    machine's retained status to `offline`."""
    host, port = mosquitto
    proc = hmi_process(
        "sim", "--opcua-port", "0", "--mqtt-host", host, "--mqtt-port", str(port), "--machines", "robot01,cmm01"
    )
    collector = Collector(host, port, "factory/+/status")
    try:
        wait_until(lambda: collector.last("factory/robot01/status") == b"online", 20, message="sim came online")
        wait_until(lambda: collector.last("factory/cmm01/status") == b"online", 5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: collector.last("factory/robot01/status") == b"offline", 10, message="Last Will")
        wait_until(lambda: collector.last("factory/cmm01/status") == b"offline", 5)
    finally:
        collector.close()
        stop_process(proc)


# -- TLS -------------------------------------------------------------------------------------


def _write_pki(folder: Path) -> dict[str, Path]:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    now = dt.datetime.now(dt.UTC)

    def issue(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, ca_key: Any, ca: bool) -> Any:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(ca_key, hashes.SHA256())

    paths: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = issue("test CA", ca_key, None, ca_key, True)
    for name in ("ca", "server", "client"):
        key = ca_key if name == "ca" else ec.generate_private_key(ec.SECP256R1())
        cert = ca_cert if name == "ca" else issue(name, key, ca_cert.subject, ca_key, False)
        paths[f"{name}_cert"] = folder / f"{name}.pem"
        paths[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}_key"] = folder / f"{name}.key"
        paths[f"{name}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return paths


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[tuple[int, dict[str, Path]]]:
    """Mosquitto with a TLS listener that requires a client certificate signed by the test CA."""
    pki = _write_pki(tmp_path)
    port = free_port()
    config = tmp_path / "mosquitto-tls.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"cafile {pki['ca_cert']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        "require_certificate true\n"
        # Started as root, Mosquitto drops to its own user before it reads the certificates, which
        # then cannot read pytest's private folder. (Ignored when not root.)
        "user root\n"
    )
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield port, pki
    finally:
        stop_process(proc)


def test_tls_with_ca_and_client_certificate(tls_mosquitto: tuple[int, dict[str, Path]]) -> None:
    """With --mqtt-ca and a client certificate the simulator publishes over TLS to a broker that demands them."""
    port, pki = tls_mosquitto
    options = MqttOptions(
        "127.0.0.1",
        port,
        tls=True,
        ca_file=pki["ca_cert"],
        cert_file=pki["client_cert"],
        key_file=pki["client_key"],
    )
    sim = SimThread(Plant(["conveyor01"]), options).start()
    tls = {"ca_certs": str(pki["ca_cert"]), "certfile": str(pki["client_cert"]), "keyfile": str(pki["client_key"])}
    collector = Collector("127.0.0.1", port, **tls)
    try:
        wait_until(lambda: len(collector.on("factory/conveyor01/telemetry")) >= 5, 10)
        assert json.loads(collector.on("factory/conveyor01/telemetry")[-1][0])["belt_speed"] > 0.9
    finally:
        collector.close()
        sim.stop()


def test_mqtt_options_refuse_half_configurations(tmp_path: Path) -> None:
    """A client certificate without its key, or TLS files without TLS, are refused with a reason."""
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ValueError, match="both"):
        MqttOptions("h", cert_file=cert, tls=True)
    with pytest.raises(ValueError, match="without TLS"):
        MqttOptions("h", ca_file=cert)
    with pytest.raises(ValueError, match="does not exist"):
        MqttOptions("h", tls=True, ca_file=tmp_path / "missing.pem")
