"""OPC UA subscriptions: the groups tags are monitored in, the monitored-item requests, and
the asyncua Subscription that turns each publish response into one call of the source.

Notifications become one SampleBatch per publish response: the subscription's
`publish_callback` is overridden, so there is no per-notification task or queue between
asyncua and the bus (asyncua's iterator mode drops the oldest beyond its queue size, its
callback mode starts a task per value). Client handle = tag id.

Creating, transferring and watching subscriptions is the source's job (source.py), since it
holds the session; this module holds what they are made of.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from asyncua import ua
from asyncua.common.subscription import Subscription

from hmi.config.connections import OpcUaAddress, OpcUaConnection
from hmi.config.tags import Deadband
from hmi.core.tags import DataType, TagSpec


class Listener(Protocol):
    """What a subscription delivers to (OpcUaSource)."""

    def on_data_change(self, items: list[ua.MonitoredItemNotification]) -> None: ...

    def on_status_change(self, status: ua.StatusCode) -> None: ...


@dataclass(slots=True)
class Group:
    name: str
    publishing_interval_ms: float
    sampling_interval_ms: float
    queue_size: int
    deadband: Deadband | None
    tag_ids: list[int] = field(default_factory=list)


class BatchingSubscription(Subscription):
    """Turns each publish response into one batch. Client handle = tag id."""

    def __init__(self, source: Listener, group: Group, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._source = source
        self.group = group
        self.first_publish = asyncio.Event()
        self.keepalive_s = 0.0
        # Set when its session is over: asyncua tells a lost session's subscriptions BadShutdown
        # from its own task, which may run after the next session (on another server, at once)
        # has begun, and must not end that one.
        self.retired = False

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        if self.retired:
            return
        self.last_publish_at = time.monotonic()
        self.first_publish.set()
        message = publish_result.NotificationMessage
        if message.NotificationData is None:
            return
        self.last_sequence_number = int(message.SequenceNumber)
        for notification in message.NotificationData:
            if isinstance(notification, ua.DataChangeNotification):
                self._source.on_data_change(notification.MonitoredItems)
            elif isinstance(notification, ua.StatusChangeNotification):
                self._source.on_status_change(notification.Status)


def make_groups(c: OpcUaConnection, specs: dict[int, TagSpec]) -> dict[str, Group]:
    """The tags by the group they name (`group = "fast"`; "" for the connection's own settings)."""
    groups: dict[str, Group] = {}
    for tag_id, spec in specs.items():
        name = OpcUaAddress.of(spec).group or ""
        group = groups.get(name)
        if group is None:
            g = c.groups.get(name) if name else None
            group = groups[name] = Group(
                name,
                g.publishing_interval_ms if g and g.publishing_interval_ms else c.publishing_interval_ms,
                g.sampling_interval_ms if g and g.sampling_interval_ms is not None else c.sampling_interval_ms,
                g.queue_size if g and g.queue_size else c.queue_size,
                g.deadband if g and g.deadband else c.deadband,
            )
        group.tag_ids.append(tag_id)
    return groups


def monitor_request(node_id: ua.NodeId, tag_id: int, spec: TagSpec, group: Group) -> ua.MonitoredItemCreateRequest:
    address = OpcUaAddress.of(spec)
    index = address.index
    read = ua.ReadValueId(
        NodeId=node_id,
        AttributeId=ua.AttributeIds.Value,
        IndexRange=str(index) if index is not None else None,
    )
    deadband = address.deadband or group.deadband
    params = ua.MonitoringParameters(
        ClientHandle=tag_id,
        SamplingInterval=group.sampling_interval_ms,
        QueueSize=group.queue_size,  # keep every change between publishes
        DiscardOldest=True,
    )
    if isinstance(deadband, Deadband) and spec.datatype in (DataType.FLOAT, DataType.INT):
        params.Filter = ua.DataChangeFilter(
            Trigger=ua.DataChangeTrigger.StatusValue,
            DeadbandType=ua.DeadbandType.Absolute if deadband.type == "absolute" else ua.DeadbandType.Percent,
            DeadbandValue=deadband.value,
        )
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=read, MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params
    )
