"""The server's address space, for the tag browser and the call dialog: browse, look up and
describe nodes (with their Part 8 AnalogItem EURange and EngineeringUnits), read a method's
declared arguments and call it, and the variant type a write must use.

`AddressSpace` works on whatever client the source holds at the moment (`live_client`, which
raises NotConnected when there is none); it keeps no connection of its own. The runtime and
the commands call these services through `OpcUaSource` (browse, node, find, call,
method_signature), which hands each to its `AddressSpace`.

Threads: everything runs on the runtime's asyncio loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from asyncua import Client, ua
from asyncua.common.ua_utils import data_type_to_variant_type

from hmi.sources.opcua.conversion import coerce_value, parse_node_id, status_name
from hmi.sources.writes import WriteRejected

log = logging.getLogger(__name__)


# -- results of the API the runtime and the tag browser call ---------------------------------


@dataclass(frozen=True, slots=True)
class BrowseEntry:
    """One node as the tag browser shows it. `value` and `data_type` only for variables."""

    node_id: str
    browse_name: str  # "<namespace index>:<name>"
    display_name: str
    node_class: str  # Object, Variable, Method, ...
    data_type: str | None = None
    value_rank: int | None = None  # -1 scalar, 1 one-dimensional array, ...
    access: tuple[str, ...] = ()  # ("read", "write", "history_read", ...)
    value: Any = None
    status: str = ""
    # Part 8 AnalogItem properties, where the variable has them: EURange (low, high) and the
    # EngineeringUnits' display name ("rpm").
    eu_range: tuple[float, float] | None = None
    eu_unit: str = ""


@dataclass(frozen=True, slots=True)
class CallResult:
    """What the server said to a method call. "Rejected": not sent (the message says why)."""

    ok: bool
    status: str
    code: int = 0
    message: str = ""
    outputs: list[Any] = field(default_factory=list)
    output_names: tuple[str, ...] = ()  # as declared by the method, one per output when it declares them


@dataclass(frozen=True, slots=True)
class MethodArgument:
    """One declared argument of a method (an element of its InputArguments/OutputArguments)."""

    name: str
    data_type: str  # "Double", "String", ... or the NodeId of a server-defined type
    value_rank: int  # -1 scalar, 1 one-dimensional array, ... (OPC UA Part 3)
    description: str = ""
    variant_type: ua.VariantType | None = None  # how the value is encoded; None: a type we cannot send

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "data_type": self.data_type, "value_rank": self.value_rank,
                "description": self.description}  # fmt: skip


@dataclass(frozen=True, slots=True)
class MethodSignature:
    """A method's name and declared arguments, as the server states them."""

    name: str
    inputs: tuple[MethodArgument, ...] = ()
    outputs: tuple[MethodArgument, ...] = ()

    def coerce(self, args: Sequence[Any]) -> list[Any]:
        """`args` as the values of the declared input types; WriteRejected names the argument
        that does not fit and why (the same lossless rules as writes: `coerce_value`)."""
        if len(args) != len(self.inputs):
            names = ", ".join(a.name for a in self.inputs)
            listed = f" ({names})" if names and all(a.name for a in self.inputs) else ""
            raise WriteRejected(f"{self.name} takes {len(self.inputs)} argument(s){listed}, {len(args)} given")
        values = []
        for i, (value, decl) in enumerate(zip(args, self.inputs, strict=True)):
            label = f"argument {i + 1} ({decl.name}, {decl.data_type})" if decl.name else f"argument {i + 1}"
            if decl.value_rank >= 0:  # 0 and above are arrays (-2 any and -3 scalar-or-array take a scalar)
                raise WriteRejected(f"{label}: array arguments are not supported")
            if decl.variant_type is None:
                raise WriteRejected(f"{label}: values of type {decl.data_type} cannot be sent")
            try:
                values.append(coerce_value(value, decl.variant_type))
            except WriteRejected as exc:
                raise WriteRejected(f"{label}: {exc}") from None
        return values


# -- the services ----------------------------------------------------------------------------


class AddressSpace:
    """Browsing, node descriptions and method calls over the source's live client."""

    def __init__(self, name: str, endpoint: str, live_client: Callable[[], Client]) -> None:
        self.name = name  # the connection's, for log lines
        self.endpoint = endpoint  # for messages: "no node ... on <endpoint>"
        self._live_client = live_client
        self._variant_cache: dict[str, tuple[ua.VariantType, int]] = {}

    async def browse(self, node_id: str | None = None) -> list[BrowseEntry]:
        """The children of a node (default: the Objects folder), with their attributes."""
        client = self._live_client()
        namespaces = await client.get_namespace_array()
        parent = client.get_node(parse_node_id(node_id, namespaces) if node_id else ua.ObjectIds.ObjectsFolder)
        refs = await parent.get_children_descriptions()
        return await self._describe(client, [(r.NodeId, r.BrowseName, r.DisplayName, r.NodeClass) for r in refs])

    async def node(self, node_id: str) -> BrowseEntry:
        """One node by NodeId string (`ns=2;s=...` or `nsu=<uri>;s=...`)."""
        client = self._live_client()
        nid = parse_node_id(node_id, await client.get_namespace_array())
        attrs = [ua.AttributeIds.BrowseName, ua.AttributeIds.DisplayName, ua.AttributeIds.NodeClass]
        results = await client.uaclient.read(_read_params([nid], attrs))
        status = results[0].StatusCode
        if status is not None and not status.is_good():
            raise ValueError(f"no node {node_id} on {self.endpoint} ({status_name(status)})")
        browse_name, display, node_class = (cast(ua.Variant, r.Value).Value for r in results)
        return (await self._describe(client, [(nid, browse_name, display, ua.NodeClass(node_class))]))[0]

    async def find(self, path: str) -> BrowseEntry:
        """A node by browse path from the Objects folder: "Plant/cnc01/spindle_speed" or "2:Plant/2:cnc01"."""
        client = self._live_client()
        current = client.get_node(ua.ObjectIds.ObjectsFolder)
        parts = [p for p in path.strip("/").split("/") if p]
        if parts and parts[0] in ("Objects", "0:Objects"):
            parts = parts[1:]
        found: ua.ReferenceDescription | None = None
        for i, part in enumerate(parts):
            ns, _, name = part.rpartition(":")
            refs = await current.get_children_descriptions()
            matches = [
                r for r in refs if r.BrowseName.Name == name and (not ns or str(r.BrowseName.NamespaceIndex) == ns)
            ]
            if not matches:
                raise ValueError(f"no node {'/'.join(parts[: i + 1])!r} on {self.endpoint}")
            found = matches[0]
            current = client.get_node(found.NodeId)
        if found is None:
            return await self.node(ua.NodeId(_int32(ua.ObjectIds.ObjectsFolder)).to_string())
        return (await self._describe(client, [(found.NodeId, found.BrowseName, found.DisplayName, found.NodeClass)]))[0]

    async def _describe(
        self, client: Client, nodes: Sequence[tuple[ua.NodeId, ua.QualifiedName, ua.LocalizedText, ua.NodeClass]]
    ) -> list[BrowseEntry]:
        variables = [nid for nid, _, _, nc in nodes if nc == ua.NodeClass.Variable]
        attrs = [
            ua.AttributeIds.DataType,
            ua.AttributeIds.ValueRank,
            ua.AttributeIds.AccessLevel,
            ua.AttributeIds.Value,
        ]
        details: dict[str, list[ua.DataValue]] = {}
        analog: dict[str, tuple[tuple[float, float] | None, str]] = {}
        if variables:
            # The properties' NodeIds by one TranslateBrowsePaths for all variables; their values
            # then come in the same Read as the attributes (no request per node).
            props = await _analog_property_ids(client, variables)
            params = _read_params(variables, attrs)
            params.NodesToRead += [ua.ReadValueId(NodeId=p, AttributeId=ua.AttributeIds.Value) for p in props.values()]
            results = await client.uaclient.read(params)
            for i, nid in enumerate(variables):
                details[nid.to_string()] = results[i * len(attrs) : (i + 1) * len(attrs)]
            prop_values = dict(zip(props, results[len(variables) * len(attrs) :], strict=True))
            for i, nid in enumerate(variables):
                eu_range, eu_unit = prop_values.get((i, "EURange")), prop_values.get((i, "EngineeringUnits"))
                analog[nid.to_string()] = (_eu_range(eu_range), _eu_unit(eu_unit))
        out = []
        for nid, browse_name, display, node_class in nodes:
            key = nid.to_string()
            entry = BrowseEntry(
                node_id=key,
                browse_name=f"{browse_name.NamespaceIndex}:{browse_name.Name}",
                display_name=display.Text or browse_name.Name or "",
                node_class=ua.NodeClass(node_class).name,
            )
            if key in details:
                dtype, rank, access, value = details[key]
                entry = BrowseEntry(
                    **{
                        **{f: getattr(entry, f) for f in BrowseEntry.__slots__},
                        "data_type": _type_name(dtype.Value.Value if dtype.Value else None),
                        "value_rank": rank.Value.Value if rank.Value else None,
                        "access": _access_names(access.Value.Value if access.Value else 0),
                        "value": value.Value.Value if value.Value is not None else None,
                        "status": status_name(value.StatusCode),
                        "eu_range": analog[key][0],
                        "eu_unit": analog[key][1],
                    }
                )
            out.append(entry)
        return out

    async def analog_item(self, client: Client, nid: ua.NodeId) -> tuple[tuple[float, float] | None, str]:
        """A variable's EURange (low, high) and EngineeringUnits' display name, where it has them."""
        eu_range, eu_unit = None, ""
        props = await _analog_property_ids(client, [nid])
        if props:
            read = [ua.ReadValueId(NodeId=p, AttributeId=ua.AttributeIds.Value) for p in props.values()]
            values = dict(zip(props, await client.uaclient.read(ua.ReadParameters(NodesToRead=read)), strict=True))
            eu_range, eu_unit = _eu_range(values.get((0, "EURange"))), _eu_unit(values.get((0, "EngineeringUnits")))
        return eu_range, eu_unit

    # -- method calls ---------------------------------------------------------------------------

    async def call(self, object_id: str, method_id: str, *args: Any) -> CallResult:
        """Call a method; arguments are coerced to the method's declared input types (not sent,
        status "Rejected", when they do not fit). Raises NotConnected when the connection is down."""
        client = self._live_client()
        namespaces = await client.get_namespace_array()
        try:
            obj = parse_node_id(object_id, namespaces)
            method = parse_node_id(method_id, namespaces)
            signature = await self._signature(client, method, method_id)
            values = signature.coerce(args)
        except (WriteRejected, ValueError) as exc:
            return CallResult(False, "Rejected", message=str(exc))
        # coerce() refused every argument without a variant type
        variants = [
            ua.Variant(v, cast(ua.VariantType, a.variant_type)) for v, a in zip(values, signature.inputs, strict=True)
        ]
        request = ua.CallMethodRequest(ObjectId=obj, MethodId=method, InputArguments=variants)
        result = (await client.uaclient.call([request]))[0]
        status = result.StatusCode
        outputs = [v.Value for v in (result.OutputArguments or [])]
        log.info("%s: call %s on %s -> %s", self.name, method_id, object_id, status_name(status))
        names = tuple(a.name for a in signature.outputs)
        return CallResult(status.is_good(), status_name(status), status.value, status.doc or "", outputs, names)

    async def method_signature(self, method_id: str) -> MethodSignature:
        """A method's display name and declared input and output arguments (the call dialog's
        form). ValueError when the node is missing or not a method."""
        client = self._live_client()
        nid = parse_node_id(method_id, await client.get_namespace_array())
        return await self._signature(client, nid, method_id)

    async def _signature(self, client: Client, nid: ua.NodeId, method_id: str) -> MethodSignature:
        attrs = [ua.AttributeIds.DisplayName, ua.AttributeIds.NodeClass]
        results = await client.uaclient.read(_read_params([nid], attrs))
        status = results[0].StatusCode
        if status is not None and not status.is_good():
            raise ValueError(f"no node {method_id} on {self.endpoint} ({status_name(status)})")
        display, node_class = (cast(ua.Variant, r.Value).Value for r in results)
        if node_class != ua.NodeClass.Method:
            raise ValueError(f"{method_id} is not a method (it is a {ua.NodeClass(node_class).name})")
        node = client.get_node(nid)
        inputs = await self._arguments(client, node, "0:InputArguments")
        outputs = await self._arguments(client, node, "0:OutputArguments")
        return MethodSignature(display.Text or method_id, inputs, outputs)

    async def _arguments(self, client: Client, method: Any, property_name: str) -> tuple[MethodArgument, ...]:
        try:
            declared = await (await method.get_child(property_name)).read_value() or []
        except ua.UaError:  # a method without arguments has no such property
            return ()
        out = []
        for decl in declared:
            try:
                vtype: ua.VariantType | None = await data_type_to_variant_type(client.get_node(decl.DataType))
            except Exception:  # a type the server cannot resolve to a built-in one
                vtype = None
            description = decl.Description.Text if decl.Description is not None else ""
            name = _type_name(decl.DataType) or ""
            out.append(MethodArgument(decl.Name or "", name, int(decl.ValueRank), description or "", vtype))
        return tuple(out)

    async def variant_of(self, client: Client, nid: ua.NodeId) -> tuple[ua.VariantType, int]:
        """The variant type and value rank of a variable, cached per node (every write asks)."""
        key = nid.to_string()
        cached = self._variant_cache.get(key)
        if cached is None:
            node = client.get_node(nid)
            dtype = await node.read_data_type()
            vtype = await data_type_to_variant_type(client.get_node(dtype))
            rank = await node.read_value_rank()
            cached = self._variant_cache[key] = (vtype, rank)
        return cached


# -- helpers ----------------------------------------------------------------------------------


def _read_params(nodes: Iterable[ua.NodeId], attrs: Sequence[ua.AttributeIds]) -> ua.ReadParameters:
    return ua.ReadParameters(
        NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=a) for n in nodes for a in attrs],
        TimestampsToReturn=ua.TimestampsToReturn.Both,
    )


async def _analog_property_ids(client: Client, variables: Sequence[ua.NodeId]) -> dict[tuple[int, str], ua.NodeId]:
    """(index in `variables`, property name) -> NodeId of its EURange and EngineeringUnits, where it has them."""
    names = ("EURange", "EngineeringUnits")
    paths = [
        ua.BrowsePath(
            StartingNode=nid,
            RelativePath=ua.RelativePath(
                Elements=[
                    ua.RelativePathElement(
                        ReferenceTypeId=ua.NodeId(_int32(ua.ObjectIds.HasProperty)),
                        IsInverse=cast(ua.Boolean, False),
                        IncludeSubtypes=cast(ua.Boolean, True),
                        TargetName=ua.QualifiedName(name, 0),
                    )
                ]
            ),
        )
        for nid in variables
        for name in names
    ]
    try:
        results = await client.uaclient.translate_browsepaths_to_nodeids(paths)
    except ua.UaStatusCodeError as exc:  # a server without the service: browse without units
        log.debug("TranslateBrowsePathsToNodeIds failed: %s", status_name(exc.code))
        return {}
    found = {}
    for k, result in enumerate(results):
        if result.StatusCode.is_good() and result.Targets:
            t = result.Targets[0].TargetId  # an ExpandedNodeId; Read takes a plain NodeId
            found[(k // len(names), names[k % len(names)])] = ua.NodeId(t.Identifier, t.NamespaceIndex, t.NodeIdType)
    return found


def _eu_range(dv: ua.DataValue | None) -> tuple[float, float] | None:
    value = dv.Value.Value if dv is not None and dv.Value is not None and _good(dv) else None
    low, high = getattr(value, "Low", None), getattr(value, "High", None)
    if isinstance(low, int | float) and isinstance(high, int | float) and math.isfinite(low) and math.isfinite(high):
        return float(low), float(high)
    return None


def _eu_unit(dv: ua.DataValue | None) -> str:
    value = dv.Value.Value if dv is not None and dv.Value is not None and _good(dv) else None
    text = getattr(getattr(value, "DisplayName", None), "Text", None)
    return text if isinstance(text, str) else ""


def _type_name(dtype: ua.NodeId | None) -> str | None:
    if dtype is None:
        return None
    if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int):
        return ua.ObjectIdNames.get(dtype.Identifier, dtype.to_string())
    return dtype.to_string()


def _access_names(level: int) -> tuple[str, ...]:
    names = []
    for flag, name in (
        (ua.AccessLevel.CurrentRead, "read"),
        (ua.AccessLevel.CurrentWrite, "write"),
        (ua.AccessLevel.HistoryRead, "history_read"),
        (ua.AccessLevel.HistoryWrite, "history_write"),
    ):
        if level & (1 << flag.value):
            names.append(name)
    return tuple(names)


# asyncua annotates its wire types (Int32, Boolean) where it takes plain int and bool; these
# casts say so to mypy and change nothing at run time.
def _int32(value: int) -> ua.Int32:
    return cast(ua.Int32, value)


def _good(dv: ua.DataValue) -> bool:
    return cast(ua.StatusCode, dv.StatusCode).is_good()
