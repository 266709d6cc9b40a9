"""Serve the demo plant over OPC UA: Objects/Plant/<machine>/<signal>.

Every variable carries EngineeringUnits and EURange properties and is updated with source
and server timestamps. Writable setpoints written by a client reach the simulation on the
next tick. A machine with the `offline` fault reports BadNoCommunication on every signal.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from asyncua import Server, ua
from asyncua.common.node import Node

from hmi.core.tags import DataType
from hmi.sim.base import MachineSim, SignalSpec, SimValue
from hmi.sim.plant import Plant

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:hmi:demo-plant"
ENDPOINT_PATH = "/hmi-demo"

_VARIANT = {
    DataType.FLOAT: ua.VariantType.Double,
    DataType.INT: ua.VariantType.Int64,
    DataType.BOOL: ua.VariantType.Boolean,
    DataType.STRING: ua.VariantType.String,
}

# UNECE Recommendation 20 common codes, as OPC UA Part 8 encodes them in EUInformation.
_UNECE = {
    "rpm": "RPM",
    "°C": "CEL",
    "mm": "MMT",
    "mm/s": "C16",
    "%": "P1",
    "bar": "BAR",
    "m³/h": "MQH",
    "A": "AMP",
    "V": "VLT",
    "W": "WTT",
    "kW": "KWT",
    "m/s": "MTS",
    "µm": "4H",
    "deg": "DD",
    "°": "DD",
    "Hz": "HTZ",
}


def _unit_id(code: str) -> int:
    value = 0
    for ch in code:
        value = (value << 8) | ord(ch)
    return value


def eu_information(unit: str) -> ua.EUInformation:
    code = _UNECE.get(unit)
    return ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=_unit_id(code) if code else -1,
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(unit),
    )


def node_id_string(machine: str, signal: str) -> str:
    return f"Plant/{machine}/{signal}"


class PlantOpcUaServer:
    def __init__(self, plant: Plant, host: str = "127.0.0.1", port: int = 48400) -> None:
        self.plant = plant
        self.host = host
        self.port = port
        self.server = Server()
        self.ns = 0
        self._nodes: list[tuple[MachineSim, SignalSpec, ua.NodeId]] = []
        # What the simulator last wrote to each writable node, to notice client writes.
        self._written: dict[ua.NodeId, SimValue] = {}
        self.updates_sent = 0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{ENDPOINT_PATH}"

    async def start(self) -> None:
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_server_name("HMI demo plant")
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await self.server.register_namespace(NAMESPACE_URI)
        plant_folder = await self.server.nodes.objects.add_folder(ua.NodeId("Plant", self.ns), "Plant")
        for machine in self.plant.machines.values():
            await self._add_machine(plant_folder, machine)
        await self.server.start()
        log.info("OPC UA demo plant serving %d signals at %s", len(self._nodes), self.endpoint)

    async def _add_machine(self, parent: Node, machine: MachineSim) -> None:
        obj = await parent.add_object(ua.NodeId(f"Plant/{machine.machine_id}", self.ns), machine.machine_id)
        values = machine.values()
        for spec in machine.signals:
            nodeid = ua.NodeId(node_id_string(machine.machine_id, spec.name), self.ns)
            variant_type = _VARIANT[spec.datatype]
            var = await obj.add_variable(nodeid, spec.name, _typed(values[spec.name], spec), variant_type)
            await var.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.LocalizedText(spec.description)))
            if spec.datatype in (DataType.FLOAT, DataType.INT):
                await var.add_property(
                    ua.NodeId(f"{nodeid.Identifier}/EngineeringUnits", self.ns),
                    "EngineeringUnits",
                    eu_information(spec.unit),
                    datatype=ua.NodeId(ua.ObjectIds.EUInformation),
                )
                await var.add_property(
                    ua.NodeId(f"{nodeid.Identifier}/EURange", self.ns),
                    "EURange",
                    ua.Range(Low=spec.low, High=spec.high),
                    datatype=ua.NodeId(ua.ObjectIds.Range),
                )
            if spec.writable:
                await var.set_writable()
                self._written[nodeid] = _typed(values[spec.name], spec)
            self._nodes.append((machine, spec, nodeid))

    async def stop(self) -> None:
        await self.server.stop()

    def _take_client_writes(self) -> None:
        for nodeid, last in list(self._written.items()):
            current = self.server.read_attribute_value(nodeid).Value
            value = current.Value if current is not None else None
            if value is None or value == last:
                continue
            machine_id, signal = nodeid.Identifier.split("/")[1:3]
            try:
                self.plant.machines[machine_id].write(signal, value)
                log.info("client wrote %s.%s = %s", machine_id, signal, value)
            except (KeyError, ValueError) as exc:
                log.warning("rejected client write to %s.%s: %s", machine_id, signal, exc)
            self._written[nodeid] = value

    async def publish(self) -> None:
        """Write every signal's current value with this moment's timestamps."""
        self._take_client_writes()
        now = datetime.now(UTC)
        values = {mid: m.values() for mid, m in self.plant.machines.items()}
        offline = ua.StatusCode(ua.StatusCodes.BadNoCommunication)
        good = ua.StatusCode(ua.StatusCodes.Good)
        for machine, spec, nodeid in self._nodes:
            if machine.online:
                value = _typed(values[machine.machine_id][spec.name], spec)
                dv = ua.DataValue(
                    ua.Variant(value, _VARIANT[spec.datatype]), good, SourceTimestamp=now, ServerTimestamp=now
                )
                if nodeid in self._written:
                    self._written[nodeid] = value
            else:
                dv = ua.DataValue(ua.Variant(None, ua.VariantType.Null), offline, now, now)
            await self.server.write_attribute_value(nodeid, dv)
        self.updates_sent += len(self._nodes)


def _typed(value: SimValue, spec: SignalSpec) -> SimValue:
    if spec.datatype == DataType.FLOAT:
        return float(value)
    if spec.datatype == DataType.INT:
        return int(value)
    if spec.datatype == DataType.BOOL:
        return bool(value)
    return str(value)


async def serve_plant(
    plant: Plant,
    port: int,
    rate_hz: float = 10.0,
    speed: float = 1.0,
    duration_s: float | None = None,
    host: str = "127.0.0.1",
    stop: asyncio.Event | None = None,
) -> PlantOpcUaServer:
    """Run the plant and its OPC UA server until `duration_s` (wall) passes or `stop` is set."""
    server = PlantOpcUaServer(plant, host, port)
    await server.start()
    loop = asyncio.get_running_loop()
    period = 1.0 / rate_hz
    start = loop.time()
    next_tick = start
    next_log = start + 1.0
    stop = stop or asyncio.Event()
    try:
        while not stop.is_set():
            for item in plant.step(period * speed):
                verb = "cleared" if item.clear else "injected"
                log.info("fault %s.%s %s at t=%.0fs", item.machine, item.fault, verb, plant.t)
            await server.publish()
            now = loop.time()
            if now >= next_log:
                next_log += 1.0
                log.info(
                    "serving %d machines, %d signals at %.0f Hz, sim time %.0f s, %d updates sent",
                    len(plant.machines),
                    len(server._nodes),
                    rate_hz,
                    plant.t,
                    server.updates_sent,
                )
            if duration_s is not None and now - start >= duration_s:
                break
            next_tick += period
            delay = next_tick - loop.time()
            if delay < -period:
                next_tick = loop.time()  # fell behind: do not try to catch up in a burst
            try:
                await asyncio.wait_for(stop.wait(), max(delay, 0.0))
            except TimeoutError:
                pass
    finally:
        await server.stop()
    return server
