"""OPC UA source (asyncua): one client connection per [connections.NAME] with kind = "opcua",
every configured tag subscribed, browsing, writes and method calls.

Which module does what:
- source.py: `OpcUaSource`, the connection's life: session, security, keep-alive watchdog,
  reconnecting and transferring subscriptions, writes, health; the runtime and the commands
  call it for browsing and method calls too, which it hands to address_space.py.
- subscriptions.py: the groups tags are monitored in, the monitored-item requests, and the
  asyncua Subscription that turns each publish response into one call of the source.
- conversion.py: no client: notifications to one SampleBatch (the hot path), status names,
  timestamps, NodeId strings, and values coerced to the type a write or a call sends.
- address_space.py: browse, look up and describe nodes (EURange, EngineeringUnits), method
  signatures and calls, over the source's live client.
"""

from hmi.sources.opcua.address_space import AddressSpace, BrowseEntry, CallResult, MethodArgument, MethodSignature
from hmi.sources.opcua.conversion import (
    NotificationConverter,
    coerce_value,
    datetime_to_ns,
    parse_node_id,
    status_name,
)
from hmi.sources.opcua.source import OpcUaSource
from hmi.sources.writes import NotConnected

__all__ = [
    "AddressSpace",
    "BrowseEntry",
    "CallResult",
    "MethodArgument",
    "MethodSignature",
    "NotConnected",
    "NotificationConverter",
    "OpcUaSource",
    "coerce_value",
    "datetime_to_ns",
    "parse_node_id",
    "status_name",
]
