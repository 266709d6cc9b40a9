"""The registry of connection kinds: `kind = "..."` in a [connections.NAME] table picks the model.

Built-in kinds are listed here; another package adds one through the entry-point group
`hmi.connections` (name: the kind, value: its model class), without editing this project.
The runtime makes each connection's source from the model's `source_class`
(hmi/sources/base.py). docs/adding-a-source.md walks through adding a kind.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from hmi.config.connections.base import Credentials, SourceConnection, TagProblem
from hmi.config.connections.mqtt import MqttAddress, MqttConnection, MqttSubscription, TlsConfig
from hmi.config.connections.opcua import SECURITY_MODES, SECURITY_POLICIES, OpcUaAddress, OpcUaConnection, OpcUaGroup

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hmi.connections"

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "SECURITY_MODES",
    "SECURITY_POLICIES",
    "Connection",
    "Credentials",
    "MqttAddress",
    "MqttConnection",
    "MqttSubscription",
    "OpcUaAddress",
    "OpcUaConnection",
    "OpcUaGroup",
    "SourceConnection",
    "TagProblem",
    "TlsConfig",
]


def _kinds() -> dict[str, type[SourceConnection]]:
    kinds: dict[str, type[SourceConnection]] = {"opcua": OpcUaConnection, "mqtt": MqttConnection}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            model = entry.load()
        except Exception:  # a broken plug-in must not stop the built-in kinds
            log.exception("connection kind %r (%s) could not be loaded", entry.name, entry.value)
            continue
        if entry.name in kinds:
            log.error("connection kind %r of %s is already defined; ignored", entry.name, entry.value)
        elif not (isinstance(model, type) and issubclass(model, SourceConnection) and model.source_class):
            log.error("connection kind %r: %s is not a SourceConnection with a source_class", entry.name, entry.value)
        else:
            kinds[entry.name] = model
    return kinds


KINDS = _kinds()

if TYPE_CHECKING:
    Connection = SourceConnection
else:
    # `kind` picks the member, so an error names the kind's own keys rather than every member's.
    Connection = Annotated[Union[tuple(KINDS.values())], Field(discriminator="kind")]  # noqa: UP007
