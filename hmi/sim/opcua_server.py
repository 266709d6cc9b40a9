"""Serve the demo plant over OPC UA: Objects/Plant/<machine>/<signal>.

Every variable carries EngineeringUnits and EURange properties and is updated with source
and server timestamps. Each machine object has the methods Reset(), InjectFault(name) and
ClearFault(name), and the variables AvailableFaults and ActiveFaults. A client's write to
a writable setpoint is checked against the signal's range (BadOutOfRange when outside)
and reaches the simulation at once. A machine with the `offline` fault reports
BadNoCommunication on every signal.

Endpoints: security None and Basic256Sha256 SignAndEncrypt (a self-signed certificate made
on first start, see pki.py). With a user configured, anonymous sessions are refused and
only that user name and password are accepted.

Everything here runs on the serving loop (one asyncio loop, one thread): asyncua calls
the methods and the write check on it, and `publish()` is called on it once per tick.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AttributeValue
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.server.user_managers import UserManager

from hmi.core.tags import DataType
from hmi.paths import data_dir
from hmi.sim.base import MachineSim, SignalSpec, SimValue, UnknownFault
from hmi.sim.pki import ensure_certificate
from hmi.sim.plant import Plant, PlantEvent

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:hmi:demo-plant"
APPLICATION_URI = "urn:hmi:demo-plant:server"
ENDPOINT_PATH = "/hmi-demo"

_VARIANT = {
    DataType.FLOAT: ua.VariantType.Double,
    DataType.INT: ua.VariantType.Int64,
    DataType.BOOL: ua.VariantType.Boolean,
    DataType.STRING: ua.VariantType.String,
}
_CAST: dict[DataType, Callable[[Any], SimValue]] = {
    DataType.FLOAT: float,
    DataType.INT: int,
    DataType.BOOL: bool,
    DataType.STRING: str,
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

SECURITY_CHOICES = ("both", "none", "encrypt")
_POLICIES = {
    "none": [ua.SecurityPolicyType.NoSecurity],
    "encrypt": [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
    "both": [ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
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


@dataclass(frozen=True, slots=True)
class OpcUaSecurity:
    """Which endpoints to offer and who may connect."""

    policies: str = "both"  # one of SECURITY_CHOICES
    pki_dir: Path | None = None  # default: <data dir>/sim-pki
    user: str | None = None  # None: anonymous sessions allowed
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.policies not in SECURITY_CHOICES:
            raise ValueError(f"security must be one of {', '.join(SECURITY_CHOICES)}, not {self.policies!r}")
        if self.user and not self.password:
            raise ValueError(f"user {self.user!r} needs a password")

    @property
    def needs_certificate(self) -> bool:
        return self.policies != "none"


class _PasswordUserManager(UserManager):
    """One user name and password; anything else (anonymous included) is refused."""

    def __init__(self, user: str, password: str) -> None:
        self._user = user.encode()
        self._password = password.encode()
        self.refused = 0

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        name_ok = hmac.compare_digest((username or "").encode(), self._user)
        password_ok = hmac.compare_digest((password or "").encode(), self._password)
        if name_ok and password_ok:
            return User(role=UserRole.User, name=username)
        self.refused += 1
        log.warning("refused an OPC UA session for user %r (%d refused so far)", username, self.refused)
        return None


@dataclass(slots=True)
class _Served:
    """One variable the server publishes, with what it last published."""

    machine: MachineSim
    spec: SignalSpec
    nodeid: ua.NodeId
    attribute: AttributeValue
    variant_type: ua.VariantType
    cast: Callable[[Any], SimValue]
    last: object = None
    good: bool = False


class AddressSpaceWriter:
    """Puts a tick's values into asyncua's address space and feeds its subscriptions.

    asyncua's one-by-one path (`Server.write_attribute_value`) deep-copies the DataValue for
    every monitored item that watches the node (MonitoredItemValues.set_current_datavalue):
    measured here, that copy is about three quarters of the server's time when a client
    monitors every node (55 µs of CPU per update in all, a core's worth near 18,000
    updates/s; this writer needs about 13 µs, docs/performance.md). Our DataValues are
    fresh objects that nothing mutates after they are written, so the copy protects nothing.
    This writer does what `AddressSpace.write_attribute_value` and
    `MonitoredItemService.datachange_callback` do, minus that copy and the variant type check
    (the types are fixed when the nodes are made). Deadband filters, monitoring modes and
    queue sizes behave as before: the same asyncua helpers decide and enqueue.

    It relies on asyncua internals. If they are not as expected it logs that once and uses
    the public path from then on; `batched=False` selects the public path outright (the
    benchmark compares both).
    """

    def __init__(self, server: Server, batched: bool = True) -> None:
        self.server = server
        self.batched = batched
        self._datachange = getattr(MonitoredItemService, "datachange_callback", None)
        if self._datachange is None:
            self._fall_back("MonitoredItemService.datachange_callback is gone")

    def _fall_back(self, why: str) -> None:
        if self.batched:
            log.warning("asyncua internals changed (%s): using the one-by-one write path", why)
        self.batched = False

    async def write(self, items: list[tuple[_Served, ua.DataValue]]) -> None:
        if not self.batched:
            for served, dv in items:
                await self.server.write_attribute_value(served.nodeid, dv)
            return
        for index, (served, dv) in enumerate(items):
            attribute = served.attribute
            attribute.value = dv
            if not attribute.datachange_callbacks:
                continue
            try:
                for handle, callback in list(attribute.datachange_callbacks.items()):
                    if getattr(callback, "__func__", None) is self._datachange:
                        await self._notify(callback.__self__, handle, dv)  # type: ignore[attr-defined]
                    else:  # someone else's callback: call it as asyncua would
                        await callback(handle, dv)
            except (AttributeError, KeyError, TypeError) as exc:
                self._fall_back(f"{type(exc).__name__}: {exc}")
                for rest, rest_dv in items[index:]:
                    await self.server.write_attribute_value(rest.nodeid, rest_dv)
                return

    @staticmethod
    async def _notify(service: MonitoredItemService, handle: int, dv: ua.DataValue) -> None:
        """MonitoredItemService.datachange_callback without the deepcopy."""
        mid = service._monitored_datachange[handle]
        mdata = service._monitored_items[mid]
        if mdata.mode == ua.MonitoringMode.Disabled:
            return
        values = mdata.mvalue
        values.old_dvalue = values.current_dvalue
        values.current_dvalue = dv
        if mdata.filter:
            changed = service._is_data_changed(values, mdata.filter.Trigger) and service._is_deadband_exceeded(
                values, mdata.filter
            )
        else:
            changed = service._is_data_changed(values, ua.DataChangeTrigger.StatusValue)
        if changed:
            event = ua.MonitoredItemNotification(ClientHandle=mdata.client_handle, Value=dv)
            await service.isub.enqueue_datachange_event(mid, event, mdata.queue_size)


_GOOD = ua.StatusCode(ua.StatusCodes.Good)
_OFFLINE = ua.StatusCode(ua.StatusCodes.BadNoCommunication)
_NULL = ua.Variant(None, ua.VariantType.Null)


class PlantOpcUaServer:
    def __init__(
        self,
        plant: Plant,
        host: str = "127.0.0.1",
        port: int = 48400,
        security: OpcUaSecurity | None = None,
        batched: bool = True,
    ) -> None:
        self.plant = plant
        self.host = host
        self.port = port
        self.security = security or OpcUaSecurity()
        user_manager = None
        if self.security.user and self.security.password:
            user_manager = _PasswordUserManager(self.security.user, self.security.password)
        self.user_manager = user_manager
        self.server = Server(user_manager=user_manager)
        self.writer = AddressSpaceWriter(self.server, batched)
        self.ns = 0
        self._nodes: list[_Served] = []
        self._by_machine: dict[str, list[_Served]] = {}
        self._setpoints: dict[ua.NodeId, _Served] = {}
        self._fault_nodes: dict[str, ua.NodeId] = {}
        self._faults_dirty = True
        self.certificate: Path | None = None
        self.updates_sent = 0
        self.writes_refused = 0
        plant.add_listener(self._on_plant_event)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{ENDPOINT_PATH}"

    @property
    def signal_count(self) -> int:
        return len(self._nodes)

    def subscription_count(self) -> int:
        service = getattr(self.server.iserver, "subscription_service", None)
        return len(getattr(service, "subscriptions", {}))

    async def start(self) -> None:
        # The certificate (made on a first start only, written whole: pki.py) is made on a
        # thread while asyncua builds its standard address space, not after it.
        certificate = None
        if self.security.needs_certificate:
            folder = self.security.pki_dir or data_dir() / "sim-pki"
            made = asyncio.to_thread(ensure_certificate, folder, "server", APPLICATION_URI, [self.host])
            certificate = asyncio.ensure_future(made)
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_server_name("HMI demo plant")
        await self.server.set_application_uri(APPLICATION_URI)
        self.server.set_security_policy(_POLICIES[self.security.policies])
        if certificate is not None:
            pair = await certificate
            await self.server.load_certificate(str(pair.certificate))
            await self.server.load_private_key(str(pair.private_key))
            self.certificate = pair.certificate
        if self.user_manager is not None:
            self.server.set_identity_tokens([ua.UserNameIdentityToken])
        self.ns = await self.server.register_namespace(NAMESPACE_URI)
        plant_folder = await self.server.nodes.objects.add_folder(ua.NodeId("Plant", self.ns), self._name("Plant"))
        for machine in self.plant.machines.values():
            await self._add_machine(plant_folder, machine)
        service = self.server.iserver.attribute_service
        self._forward_write = service.write
        service.write = self._checked_write  # type: ignore[method-assign]
        await self.server.start()
        endpoints = {"both": "None + Basic256Sha256/SignAndEncrypt", "none": "None", "encrypt": "SignAndEncrypt"}
        log.info(
            "OPC UA demo plant serving %d signals at %s (%s%s)",
            len(self._nodes),
            self.endpoint,
            endpoints[self.security.policies],
            f", user {self.security.user}" if self.security.user else ", anonymous",
        )

    def _name(self, name: str) -> ua.QualifiedName:
        """A browse name in the plant's namespace (EngineeringUnits and EURange stay in ns 0,
        as OPC UA Part 8 defines them)."""
        return ua.QualifiedName(name, self.ns)

    async def _add_machine(self, parent: Node, machine: MachineSim) -> None:
        mid = machine.machine_id
        obj = await parent.add_object(ua.NodeId(f"Plant/{mid}", self.ns), self._name(mid))
        await obj.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.LocalizedText(machine.label)))
        values = machine.values()
        served_list = []
        aspace = self.server.iserver.aspace
        for spec in machine.signals:
            nodeid = ua.NodeId(node_id_string(mid, spec.name), self.ns)
            variant_type = _VARIANT[spec.datatype]
            cast = _CAST[spec.datatype]
            var = await obj.add_variable(nodeid, self._name(spec.name), cast(values[spec.name]), variant_type)
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
            attribute = aspace[nodeid].attributes[ua.AttributeIds.Value]
            served = _Served(machine, spec, nodeid, attribute, variant_type, cast)
            if spec.writable:
                await var.set_writable()
                self._setpoints[nodeid] = served
            served_list.append(served)
        self._nodes.extend(served_list)
        self._by_machine[mid] = served_list

        await obj.add_property(
            ua.NodeId(f"Plant/{mid}/AvailableFaults", self.ns),
            self._name("AvailableFaults"),
            ua.Variant(sorted(machine.faults), ua.VariantType.String),
        )
        active = await obj.add_variable(
            ua.NodeId(f"Plant/{mid}/ActiveFaults", self.ns),
            self._name("ActiveFaults"),
            ua.Variant(sorted(machine.active_faults), ua.VariantType.String, is_array=True),
        )
        self._fault_nodes[mid] = active.nodeid
        fault_arg = ua.Argument(
            Name="fault",
            DataType=ua.NodeId(ua.ObjectIds.String),
            ValueRank=-1,
            Description=ua.LocalizedText("fault name, one of AvailableFaults"),
        )
        await obj.add_method(
            ua.NodeId(f"Plant/{mid}/Reset", self.ns), self._name("Reset"), self._method(mid, "reset"), [], []
        )
        await obj.add_method(
            ua.NodeId(f"Plant/{mid}/InjectFault", self.ns),
            self._name("InjectFault"),
            self._method(mid, "inject"),
            [fault_arg],
            [],
        )
        await obj.add_method(
            ua.NodeId(f"Plant/{mid}/ClearFault", self.ns),
            self._name("ClearFault"),
            self._method(mid, "clear"),
            [fault_arg],
            [],
        )

    def _method(self, machine_id: str, action: str) -> Callable[..., Awaitable[Any]]:
        """The callback asyncua runs (on the serving loop) when a client calls a method."""

        async def call(parent: ua.NodeId, *args: ua.Variant) -> Any:
            try:
                if action == "reset":
                    self.plant.reset(machine_id, "opcua")
                    return []
                if len(args) != 1 or not isinstance(args[0].Value, str):
                    return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
                if action == "inject":
                    self.plant.inject_fault(machine_id, args[0].Value, "opcua")
                else:
                    self.plant.clear_fault(machine_id, args[0].Value, "opcua")
            except (KeyError, UnknownFault) as exc:
                log.warning("OPC UA %s on %s refused: %s", action, machine_id, exc)
                return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
            return []

        return call

    async def _checked_write(self, params: ua.WriteParameters, user: User | None = None) -> list[ua.StatusCode]:
        """AttributeService.write, with setpoint writes range-checked and applied to the plant."""
        results: list[ua.StatusCode | None] = [None] * len(params.NodesToWrite)
        forward: list[int] = []
        for i, item in enumerate(params.NodesToWrite):
            served = self._setpoints.get(item.NodeId)
            if served is not None and item.AttributeId == ua.AttributeIds.Value:
                value = item.Value.Value.Value if item.Value is not None and item.Value.Value is not None else None
                try:
                    served.machine.check_write(served.spec.name, value)
                except (KeyError, ValueError) as exc:
                    self.writes_refused += 1
                    log.warning("refused an OPC UA write: %s", exc)
                    results[i] = ua.StatusCode(ua.StatusCodes.BadOutOfRange)
                    continue
            forward.append(i)
        if forward:
            subset = ua.WriteParameters(NodesToWrite=[params.NodesToWrite[i] for i in forward])
            done = await (self._forward_write(subset) if user is None else self._forward_write(subset, user=user))
            for i, status in zip(forward, done, strict=True):
                results[i] = status
                item = params.NodesToWrite[i]
                served = self._setpoints.get(item.NodeId)
                if served is not None and item.AttributeId == ua.AttributeIds.Value and status.is_good():
                    self.plant.write(served.machine.machine_id, served.spec.name, item.Value.Value.Value, "opcua")
        return [r if r is not None else ua.StatusCode(ua.StatusCodes.BadInternalError) for r in results]

    def _on_plant_event(self, event: PlantEvent) -> None:
        if event.kind in ("fault_injected", "fault_cleared", "reset"):
            self._faults_dirty = True

    async def stop(self) -> None:
        await self.server.stop()

    async def publish(self) -> int:
        """Write every changed signal with this moment's timestamps; returns how many."""
        now = datetime.now(UTC)
        snapshot = self.plant.values()
        batch: list[tuple[_Served, ua.DataValue]] = []
        for mid, served_list in self._by_machine.items():
            machine = served_list[0].machine if served_list else self.plant.machines[mid]
            if machine.online:
                values = snapshot[mid]
                for served in served_list:
                    value = served.cast(values[served.spec.name])
                    if served.good and value == served.last:
                        continue  # unchanged: subscribers would drop it anyway
                    served.last = value
                    served.good = True
                    batch.append(
                        (
                            served,
                            ua.DataValue(ua.Variant(value, served.variant_type), _GOOD, now, now),
                        )
                    )
            else:
                for served in served_list:
                    if served.good or served.last is None:
                        served.good = False
                        served.last = _OFFLINE
                        batch.append((served, ua.DataValue(_NULL, _OFFLINE, now, now)))
        if batch:
            await self.writer.write(batch)
        if self._faults_dirty:
            self._faults_dirty = False
            for mid, nodeid in self._fault_nodes.items():
                faults = sorted(self.plant.machines[mid].active_faults)
                dv = ua.DataValue(ua.Variant(faults, ua.VariantType.String, is_array=True), _GOOD, now, now)
                await self.server.write_attribute_value(nodeid, dv)
        self.updates_sent += len(batch)
        return len(batch)
