"""The demo plant over OPC UA: address space, writes, methods, faults, the batched writer, security."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from hmi.sim.opcua_server import APPLICATION_URI, NAMESPACE_URI, OpcUaSecurity, PlantOpcUaServer
from hmi.sim.pki import certificate_thumbprint, ensure_certificate
from hmi.sim.plant import MACHINE_TYPES, SYNTHETIC_ID, Plant
from tests.conftest import PlantServerThread
from tests.helpers import async_wait_until, free_port, run_async

SPEED = 100.0  # simulated seconds per wall second in the fault tests
SYNTHETIC_TAGS = 200


@pytest.fixture(scope="module")
def fast_plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlantServerThread]:
    """All five machines and 200 synthetic tags at 100× speed, 20 Hz, shared by this module's tests (each
    resets what it uses)."""
    pki = tmp_path_factory.mktemp("pki")
    plant = Plant(scale_tags=SYNTHETIC_TAGS)
    server = PlantServerThread(plant=plant, rate_hz=20.0, speed=SPEED, security=OpcUaSecurity(pki_dir=pki)).start()
    yield server
    server.stop()


class Sampler:
    """Keeps every value a subscription delivers, per signal."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = defaultdict(list)
        self.status: dict[str, list[ua.StatusCode]] = defaultdict(list)

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        name = node.nodeid.Identifier.rsplit("/", 1)[-1]
        dv = data.monitored_item.Value
        self.values[name].append(value)
        self.status[name].append(dv.StatusCode)

    def mark(self) -> dict[str, int]:
        return {name: len(v) for name, v in self.values.items()}

    def since(self, mark: dict[str, int], name: str) -> list[Any]:
        return [v for v in self.values[name][mark.get(name, 0) :] if v is not None]


async def connect(endpoint: str, **kwargs: Any) -> Client:
    client = Client(endpoint, timeout=10)
    for key, value in kwargs.items():
        setattr(client, key, value)
    await client.connect()
    return client


async def machine_node(client: Client, machine: str) -> Any:
    ns = await client.get_namespace_index(NAMESPACE_URI)
    return client.get_node(ua.NodeId(f"Plant/{machine}", ns))


async def subscribe_machine(client: Client, machine: str) -> Sampler:
    ns = await client.get_namespace_index(NAMESPACE_URI)
    sampler = Sampler()
    sub = await client.create_subscription(50, sampler)
    nodes = [client.get_node(ua.NodeId(f"Plant/{machine}/{s.name}", ns)) for s in MACHINE_TYPES[machine].signals]
    await sub.subscribe_data_change(nodes, queuesize=100)
    return sampler


async def call(client: Client, machine: str, method: str, *args: str) -> None:
    obj = await machine_node(client, machine)
    ns = await client.get_namespace_index(NAMESPACE_URI)
    await obj.call_method(ua.NodeId(f"Plant/{machine}/{method}", ns), *args)


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)


# -- address space ---------------------------------------------------------------------------


def test_browse_every_machine_signal_unit_and_method(fast_plant: PlantServerThread) -> None:
    """Browsing Objects/Plant finds each machine with all its signals, each numeric one with its unit and
    range, plus Reset/InjectFault/ClearFault and the list of available faults."""

    async def main() -> None:
        client = await connect(fast_plant.endpoint)
        try:
            ns = await client.get_namespace_index(NAMESPACE_URI)
            plant = await client.nodes.objects.get_child([f"{ns}:Plant"])
            machines = {(await n.read_browse_name()).Name: n for n in await plant.get_children()}
            assert set(machines) == {*MACHINE_TYPES, SYNTHETIC_ID}
            for mid, cls in MACHINE_TYPES.items():
                children = {(await n.read_browse_name()).Name: n for n in await machines[mid].get_children()}
                assert {"Reset", "InjectFault", "ClearFault", "AvailableFaults", "ActiveFaults"} <= set(children)
                assert set(await children["AvailableFaults"].read_value()) == set(cls.faults)
                for spec in cls.signals:
                    node = children[spec.name]
                    assert node.nodeid.Identifier == f"Plant/{mid}/{spec.name}"
                    access = await node.read_attribute(ua.AttributeIds.UserAccessLevel)
                    writable = bool(access.Value.Value & ua.AccessLevel.CurrentWrite.mask)
                    assert writable == spec.writable, spec.name
                    if spec.datatype in ("float", "int"):
                        props = {(await p.read_browse_name()).Name: p for p in await node.get_properties()}
                        eu = await props["EngineeringUnits"].read_value()
                        assert eu.DisplayName.Text == spec.unit, spec.name
                        eurange = await props["EURange"].read_value()
                        assert (eurange.Low, eurange.High) == (spec.low, spec.high)
                    dv = await node.read_data_value()
                    assert dv.StatusCode.is_good() and dv.SourceTimestamp is not None
        finally:
            await client.disconnect()

    run_async(main())


# -- setpoints -------------------------------------------------------------------------------


def test_setpoint_writes_change_the_physics(fast_plant: PlantServerThread) -> None:
    """Writing pump01.speed_setpoint moves speed and flow (flow ∝ speed), conveyor01.speed_setpoint moves the
    belt, cnc01.feed_override reaches the mill; an out-of-range write is refused with BadOutOfRange."""

    async def main() -> None:
        client = await connect(fast_plant.endpoint)
        try:
            ns = await client.get_namespace_index(NAMESPACE_URI)
            for machine in ("pump01", "conveyor01", "cnc01"):
                await call(client, machine, "Reset")
            pump = await subscribe_machine(client, "pump01")
            belt = await subscribe_machine(client, "conveyor01")
            await wait_for(lambda: len(pump.values["flow"]) > 10, 5, "pump telemetry")
            flow_before = statistics.mean(pump.values["flow"][-10:])

            def node(machine: str, signal: str) -> Any:
                return client.get_node(ua.NodeId(f"Plant/{machine}/{signal}", ns))

            await node("pump01", "speed_setpoint").write_value(ua.Variant(1475.0, ua.VariantType.Double))
            await node("conveyor01", "speed_setpoint").write_value(ua.Variant(0.4, ua.VariantType.Double))
            await node("cnc01", "feed_override").write_value(ua.Variant(60.0, ua.VariantType.Double))
            mark = pump.mark()
            await wait_for(
                lambda: len(pump.since(mark, "speed")) > 10 and abs(pump.since(mark, "speed")[-1] - 1475) < 10,
                10,
                "pump speed follows its setpoint",
            )
            await asyncio.sleep(0.5)
            assert statistics.mean(pump.values["flow"][-5:]) == pytest.approx(flow_before / 2, rel=0.03)
            await wait_for(lambda: abs(belt.values["belt_speed"][-1] - 0.4) < 0.01, 10, "belt follows its setpoint")
            assert fast_plant.plant.machines["cnc01"].feed_override == 60.0

            with pytest.raises(ua.UaStatusCodeError) as refused:
                await node("pump01", "speed_setpoint").write_value(ua.Variant(9000.0, ua.VariantType.Double))
            assert refused.value.code == ua.StatusCodes.BadOutOfRange
            with pytest.raises(ua.UaStatusCodeError):
                await node("pump01", "flow").write_value(ua.Variant(1.0, ua.VariantType.Double))
            assert fast_plant.plant.machines["pump01"].setpoint == 1475.0
            assert await node("pump01", "speed_setpoint").read_value() == 1475.0
        finally:
            await client.disconnect()

    run_async(main())


# -- faults over the methods -----------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


Readings = dict[str, list[Any]]


def _rose(signal: str, factor: float, n: int = 20) -> Callable[[Readings, Readings], bool]:
    return lambda before, after: len(after[signal]) >= n and _mean(after[signal][-n:]) > factor * _mean(before[signal])


def _fell(signal: str, factor: float, n: int = 20) -> Callable[[Readings, Readings], bool]:
    return lambda before, after: len(after[signal]) >= n and _mean(after[signal][-n:]) < factor * _mean(before[signal])


def _noisier(signal: str, factor: float, n: int = 20) -> Callable[[Readings, Readings], bool]:
    return lambda before, after: (
        len(after[signal]) >= n and statistics.pstdev(after[signal][-n:]) > factor * (statistics.pstdev(before[signal]))
    )


def _median_rose(signal: str, factor: float, n: int = 20) -> Callable[[Readings, Readings], bool]:
    return lambda before, after: (
        len(after[signal]) >= n and statistics.median(after[signal][-n:]) > factor * (statistics.median(before[signal]))
    )


def _warmer(signal: str, kelvin: float, n: int = 5) -> Callable[[Readings, Readings], bool]:
    return lambda before, after: len(after[signal]) >= n and _mean(after[signal][-n:]) > max(before[signal]) + kelvin


# (machine, fault, what must happen to its signals, simulated seconds it may take at 100×)
FAULT_CASES: list[tuple[str, str, dict[str, Callable[[Readings, Readings], bool]], float]] = [
    ("pump01", "bearing_wear", {"vibration_rms": _rose("vibration_rms", 3.0, 5)}, 600),
    (
        "pump01",
        "cavitation",
        {"discharge_pressure": _noisier("discharge_pressure", 8.0, 15), "flow": _fell("flow", 0.94, 10)},
        600,
    ),
    (
        "pump01",
        "undervoltage",
        {"supply_voltage": _fell("supply_voltage", 0.88, 5), "motor_current": _rose("motor_current", 1.04, 10)},
        300,
    ),
    ("cnc01", "tool_wear", {"vibration_spindle": _rose("vibration_spindle", 1.3, 30)}, 1500),
    ("conveyor01", "belt_slip", {"belt_speed": _fell("belt_speed", 0.93, 10)}, 600),
    ("robot01", "gearbox_wear", {"vibration_level": _median_rose("vibration_level", 1.4)}, 1200),
    ("cmm01", "hvac_failure", {"room_temperature": _warmer("room_temperature", 0.4)}, 1200),
]


@pytest.mark.parametrize(
    ("machine", "fault", "moves", "within_s"), FAULT_CASES, ids=[f"{m}.{f}" for m, f, _, _ in FAULT_CASES]
)
def test_inject_fault_moves_its_signals(
    fast_plant: PlantServerThread,
    machine: str,
    fault: str,
    moves: dict[str, Callable[[Readings, Readings], bool]],
    within_s: float,
) -> None:
    """InjectFault over OPC UA makes the fault's signals move as documented within a stated simulated time
    at 100× speed (pump bearing wear: vibration_rms above 3× within 600 s); ClearFault ends it."""

    async def main() -> None:
        client = await connect(fast_plant.endpoint)
        try:
            await call(client, machine, "Reset")
            sampler = await subscribe_machine(client, machine)
            await wait_for(lambda: all(len(sampler.values[s]) >= 15 for s in moves), 15, "baseline")
            before = {s: list(sampler.values[s]) for s in moves}
            mark = sampler.mark()
            await call(client, machine, "InjectFault", fault)
            sim = fast_plant.plant.machines[machine]
            assert fault in sim.active_faults

            def moved() -> bool:
                after = {s: sampler.since(mark, s) for s in moves}
                return all(check(before, after) for check in moves.values())

            await wait_for(moved, within_s / SPEED * 3 + 5, f"{fault} moves {', '.join(moves)}")
            age = sim.fault_age(fault)
            assert age is not None and age <= within_s + 3 * SPEED / fast_plant.rate_hz
            await call(client, machine, "ClearFault", fault)
            assert fault not in sim.active_faults
        finally:
            await client.disconnect()

    run_async(main(), timeout=90)


def test_stuck_sensor_and_offline_over_opcua(fast_plant: PlantServerThread) -> None:
    """stuck_sensor freezes the robot's core temperature while other signals move; offline turns every
    signal BadNoCommunication and ActiveFaults lists it; ClearFault brings good values back."""

    async def main() -> None:
        client = await connect(fast_plant.endpoint)
        try:
            await call(client, "robot01", "Reset")
            sampler = await subscribe_machine(client, "robot01")
            await call(client, "robot01", "InjectFault", "stuck_sensor")
            await asyncio.sleep(0.3)
            mark = sampler.mark()
            await asyncio.sleep(1.5)
            assert sampler.since(mark, "temperature_core") == []  # no change, no notification
            assert len(set(sampler.since(mark, "joint_1"))) > 5

            ns = await client.get_namespace_index(NAMESPACE_URI)
            active = client.get_node(ua.NodeId("Plant/robot01/ActiveFaults", ns))
            await call(client, "robot01", "InjectFault", "offline")
            await wait_for(
                lambda: sampler.status["joint_1"][-1].value == ua.StatusCodes.BadNoCommunication, 5, "goes bad"
            )
            await wait_for(
                lambda: all(sampler.status[s.name][-1].is_bad() for s in MACHINE_TYPES["robot01"].signals), 5, "all bad"
            )
            assert set(await active.read_value()) == {"stuck_sensor", "offline"}
            dv = await client.get_node(ua.NodeId("Plant/robot01/joint_2", ns)).read_data_value(
                raise_on_bad_status=False
            )
            assert dv.StatusCode.value == ua.StatusCodes.BadNoCommunication
            await call(client, "robot01", "ClearFault", "offline")
            await wait_for(lambda: sampler.status["joint_1"][-1].is_good(), 5, "good again")
            await call(client, "robot01", "Reset")
        finally:
            await client.disconnect()

    run_async(main())


def test_reset_and_bad_method_arguments(fast_plant: PlantServerThread) -> None:
    """Reset brings a machine back to its start (setpoint, faults); an unknown fault name is refused with
    BadInvalidArgument and changes nothing."""

    async def main() -> None:
        client = await connect(fast_plant.endpoint)
        try:
            pump = fast_plant.plant.machines["pump01"]
            await call(client, "pump01", "InjectFault", "cavitation")
            ns = await client.get_namespace_index(NAMESPACE_URI)
            await client.get_node(ua.NodeId("Plant/pump01/speed_setpoint", ns)).write_value(
                ua.Variant(2000.0, ua.VariantType.Double)
            )
            assert pump.setpoint == 2000.0 and pump.active_faults
            await call(client, "pump01", "Reset")
            assert pump.setpoint == 2950.0 and not pump.active_faults and pump.t < 60
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await call(client, "pump01", "InjectFault", "tool_wear")
            assert refused.value.code == ua.StatusCodes.BadInvalidArgument
            assert not pump.active_faults
        finally:
            await client.disconnect()

    run_async(main())


# -- the batched writer ----------------------------------------------------------------------


def test_batched_writer_delivers_what_asyncua_would() -> None:
    """The batched address-space writer delivers, item for item, the notifications asyncua's own
    one-by-one write path delivers, to a plain subscription and to one with an absolute deadband."""

    async def collect(batched: bool) -> tuple[dict[tuple[str, str], list[Any]], bool]:
        plant = Plant(["pump01", "robot01"], seed=5)
        server = PlantOpcUaServer(plant, port=free_port(), security=OpcUaSecurity(policies="none"), batched=batched)
        await server.start()
        client = await connect(server.endpoint)
        try:
            ns = await client.get_namespace_index(NAMESPACE_URI)
            got: dict[tuple[str, str], list[Any]] = defaultdict(list)

            class Handler:
                def __init__(self, kind: str) -> None:
                    self.kind = kind

                def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                    got[(self.kind, node.nodeid.Identifier)].append(value)

            nodes = [
                client.get_node(ua.NodeId(f"Plant/{mid}/{s.name}", ns))
                for mid, machine in plant.machines.items()
                for s in machine.signals
            ]
            plain = await client.create_subscription(20, Handler("plain"))
            await plain.subscribe_data_change(nodes, queuesize=1000)
            deadband = await client.create_subscription(20, Handler("deadband"))
            await deadband.deadband_monitor([n for n in nodes if "joint" in n.nodeid.Identifier], 0.5, queuesize=1000)
            await asyncio.sleep(0.3)
            for _ in range(40):
                plant.step(0.1)
                await server.publish()
            await asyncio.sleep(0.5)
            return dict(got), server.writer.batched
        finally:
            await client.disconnect()
            await server.stop()

    async def main() -> None:
        fast, used_fast_path = await collect(True)
        slow, _ = await collect(False)
        assert used_fast_path
        assert fast == slow
        plain = sum(len(v) for (kind, _), v in fast.items() if kind == "plain")
        filtered = sum(len(v) for (kind, _), v in fast.items() if kind == "deadband")
        assert plain > 40 * 15 and 0 < filtered < 40 * 6

    run_async(main(), timeout=60)


# -- synthetic load --------------------------------------------------------------------------


def test_scale_tags_are_served_and_updated(fast_plant: PlantServerThread) -> None:
    """--scale-tags N adds N synthetic variables under Plant/synthetic, each changing every tick."""

    async def main() -> None:
        client = await connect(fast_plant.endpoint)
        try:
            ns = await client.get_namespace_index(NAMESPACE_URI)
            counts: dict[str, int] = defaultdict(int)

            class Handler:
                def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                    counts[node.nodeid.Identifier] += 1

            sub = await client.create_subscription(100, Handler())
            ids = [f"Plant/synthetic/tag_{i:05d}" for i in range(SYNTHETIC_TAGS)]
            await sub.subscribe_data_change([client.get_node(ua.NodeId(i, ns)) for i in ids], queuesize=100)
            # At least ten updates of every tag; a loaded machine may take longer than 1 s for that.
            await async_wait_until(lambda: set(counts) == set(ids) and min(counts.values()) >= 10, 15)
        finally:
            await client.disconnect()

    run_async(main())


# -- security --------------------------------------------------------------------------------


def _client_certificate(folder: Path) -> tuple[Path, Path]:
    pair = ensure_certificate(folder, "client", "urn:hmi:test-client")
    return pair.certificate, pair.private_key


async def _secure_client(endpoint: str, folder: Path, user: str | None = None, password: str | None = None) -> Client:
    cert, key = _client_certificate(folder)
    client = Client(endpoint, timeout=10)
    client.application_uri = "urn:hmi:test-client"
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt
    )
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    await client.connect()
    return client


def test_sign_and_encrypt_with_user_and_password(tmp_path: Path) -> None:
    """With a user configured, a Basic256Sha256 SignAndEncrypt session with the right password reads values;
    a wrong password and an anonymous session are refused."""
    security = OpcUaSecurity(pki_dir=tmp_path / "pki", user="operator", password="s3cret-pass")
    server = PlantServerThread(["pump01"], security=security).start()

    async def main() -> None:
        client = await _secure_client(server.endpoint, tmp_path / "client", "operator", "s3cret-pass")
        try:
            assert client.security_policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
            ns = await client.get_namespace_index(NAMESPACE_URI)
            flow = await client.get_node(ua.NodeId("Plant/pump01/flow", ns)).read_value()
            assert 40 < flow < 70
        finally:
            await client.disconnect()
        with pytest.raises(ua.UaStatusCodeError) as wrong:
            await _secure_client(server.endpoint, tmp_path / "client", "operator", "guess")
        assert wrong.value.code == ua.StatusCodes.BadUserAccessDenied
        with pytest.raises(ua.UaStatusCodeError) as anonymous:
            await connect(server.endpoint)
        assert anonymous.value.code == ua.StatusCodes.BadIdentityTokenRejected

    try:
        run_async(main())
    finally:
        server.stop()


def test_server_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    """The first start makes a self-signed certificate naming the server's application URI; the next start
    reuses it; one naming another URI is replaced."""
    pki = tmp_path / "pki"
    first = ensure_certificate(pki, "server", APPLICATION_URI, ["127.0.0.1"])
    again = ensure_certificate(pki, "server", APPLICATION_URI, ["127.0.0.1"])
    assert first.created and not again.created
    assert certificate_thumbprint(first.certificate) == certificate_thumbprint(again.certificate)
    assert (first.private_key.stat().st_mode & 0o077) == 0
    thumbprint = certificate_thumbprint(first.certificate)
    other = ensure_certificate(pki, "server", "urn:somebody:else")
    assert other.created and certificate_thumbprint(other.certificate) != thumbprint
