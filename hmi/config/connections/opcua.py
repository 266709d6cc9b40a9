"""OPC UA connections ([connections.NAME] with kind = "opcua") and the address of an OPC UA tag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hmi.config.base import Strict
from hmi.config.connections.base import SourceConnection, TagProblem
from hmi.config.tags import Deadband, TagConfig
from hmi.core.tags import SourceAddress, TagSpec

# OPC UA security: "None" or "<policy>:<mode>"; the policies asyncua implements.
SECURITY_POLICIES = ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
SECURITY_MODES = ("Sign", "SignAndEncrypt")
_NONE = "opc.tcp://(none)"


@dataclass(frozen=True, slots=True)
class OpcUaAddress(SourceAddress):
    """A node, the subscription group it is monitored in, its data-change filter and, for an
    array node, the element that is the tag's value."""

    node_id: str
    group: str | None = None
    deadband: Deadband | None = None
    index: int | None = None

    @classmethod
    def of(cls, spec: TagSpec) -> OpcUaAddress:
        address = spec.source_address
        return address if isinstance(address, OpcUaAddress) else cls(spec.address)


class OpcUaGroup(Strict):
    """Subscription parameters shared by the tags that name this group (`group = "fast"`)."""

    publishing_interval_ms: float | None = Field(default=None, gt=0, le=60000)
    sampling_interval_ms: float | None = Field(default=None, ge=0, le=60000)
    queue_size: int | None = Field(default=None, ge=1, le=100000)
    deadband: Deadband | None = None


class OpcUaConnection(SourceConnection):
    label: ClassVar[str] = "OPC UA"
    source_class: ClassVar[str] = "hmi.sources.opcua:OpcUaSource"
    tag_keys: ClassVar[frozenset[str]] = frozenset({"group", "deadband", "index"})
    browsable: ClassVar[bool] = True

    kind: Literal["opcua"]
    endpoint: str
    # Redundant servers (OPC UA non-transparent redundancy, warm failover: hmi/sources/opcua/source.py),
    # tried in this order; instead of `endpoint`, which then reads as the first of them.
    endpoints: list[str] | None = Field(default=None, min_length=1)
    security: str = "None"  # "None" or "<policy>:<mode>", e.g. "Basic256Sha256:SignAndEncrypt"
    application_uri: str | None = None  # default urn:<host name>:hmi:client
    publishing_interval_ms: float = Field(default=100.0, gt=0, le=60000)
    sampling_interval_ms: float = Field(default=0.0, ge=0, le=60000)  # 0: fastest the server allows
    queue_size: int = Field(default=100, ge=1, le=100000)
    deadband: Deadband | None = None
    groups: dict[str, OpcUaGroup] = Field(default_factory=dict)
    timeout_s: float = Field(default=4.0, gt=0, le=120)
    # The keep-alive the subscriptions request; before format 2 `watchdog_interval_s`.
    keepalive_s: float = Field(default=1.0, gt=0, le=60)
    session_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    reconnect_max_delay_s: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="before")
    @classmethod
    def _endpoint_or_endpoints(cls, data: object) -> object:
        if isinstance(data, dict) and "endpoints" in data:
            if "endpoint" in data:
                raise ValueError("give either endpoint (one server) or endpoints (redundant servers), not both")
            first = data["endpoints"][0] if isinstance(data["endpoints"], list) and data["endpoints"] else None
            # A stand-in when the list itself is wrong: only the list's own error is reported.
            data = {**data, "endpoint": first if isinstance(first, str) and first.startswith("opc.tcp://") else _NONE}
        return data

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        if not value.startswith("opc.tcp://"):
            raise ValueError("an OPC UA endpoint starts with opc.tcp://")
        return value

    @field_validator("endpoints")
    @classmethod
    def _all_opc_tcp(cls, value: list[str] | None) -> list[str] | None:
        for url in value or ():
            cls._opc_tcp(url)
        if value is not None and len(set(value)) != len(value):
            raise ValueError("an endpoint is listed twice")
        return value

    @property
    def servers(self) -> tuple[str, ...]:
        """The endpoints to try, in order (one unless `endpoints` lists redundant servers)."""
        return tuple(self.endpoints) if self.endpoints else (self.endpoint,)

    @field_validator("security")
    @classmethod
    def _known_security(cls, value: str) -> str:
        if value == "None":
            return value
        policy, _, mode = value.partition(":")
        if policy not in SECURITY_POLICIES or mode not in SECURITY_MODES:
            choices = ", ".join(f"{p}:{m}" for p in SECURITY_POLICIES for m in SECURITY_MODES)
            raise ValueError(f"unknown security {value!r} (use None or one of {choices})")
        return value

    @property
    def security_policy(self) -> str:
        return self.security.partition(":")[0]

    @property
    def security_mode(self) -> str:
        return self.security.partition(":")[2] or "None"

    def address_of(self, tag: TagConfig) -> OpcUaAddress:
        return OpcUaAddress(tag.address, tag.group, tag.deadband, tag.index)

    def tag_problems(self, tag: TagConfig) -> list[TagProblem]:
        out: list[TagProblem] = []
        if not tag.address:
            out.append((["address"], "an OPC UA tag needs an address (its NodeId)"))
        if tag.group is not None and tag.group not in self.groups:
            known = ", ".join(sorted(self.groups)) or "none defined"
            out.append((["group"], f"unknown group {tag.group!r} of connection {tag.connection!r} ({known})"))
        return out
