"""OPC UA source: one client connection, one subscription, every configured tag.

Notifications become one SampleBatch per publish response: the subscription's
`publish_callback` is overridden, so there is no per-notification task or queue between
asyncua and the bus (asyncua's iterator mode drops the oldest beyond its queue size, its
callback mode starts a task per value). Server source timestamps are kept; the StatusCode
maps to Quality. When the connection drops, every tag of the connection turns COMM_LOST
at once, a system event is published, and the source reconnects with backoff and jitter.

Runs on the runtime's asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from hmi.config.models import OpcUaConnection
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import Quality, quality_from_opcua_status
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import DataType, TagSpec

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BACKOFF_FIRST_S = 0.25
_BACKOFF_MAX_S = 10.0


def datetime_to_ns(value: datetime | None) -> int:
    if value is None:
        return 0
    if value.tzinfo is None:  # asyncua returns naive UTC in some versions
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def parse_node_id(address: str, namespaces: list[str]) -> ua.NodeId:
    """A NodeId string; `nsu=<uri>;...` is resolved against the server's namespace array."""
    if address.startswith("nsu="):
        uri, _, rest = address[4:].partition(";")
        try:
            index = namespaces.index(uri)
        except ValueError:
            raise ValueError(f"namespace {uri!r} is not on the server") from None
        address = f"ns={index};{rest}"
    return ua.NodeId.from_string(address)


class _BatchingSubscription(Subscription):
    """Turns each publish response into one batch. Client handle = tag id."""

    def __init__(self, source: OpcUaSource, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._source = source

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        import time

        self.last_publish_at = time.monotonic()
        message = publish_result.NotificationMessage
        if message.NotificationData is None:
            return
        self.last_sequence_number = int(message.SequenceNumber)
        for notification in message.NotificationData:
            if isinstance(notification, ua.DataChangeNotification):
                self._source.on_data_change(notification.MonitoredItems)
            elif isinstance(notification, ua.StatusChangeNotification):
                self._source.on_status_change(notification.Status)


class OpcUaSource:
    def __init__(self, name: str, config: OpcUaConnection, tags: list[TagSpec], bus: TagBus) -> None:
        self.name = name
        self.config = config
        self.bus = bus
        self.tags = list(tags)
        self.tag_ids = bus.register(self.tags)
        self._spec_by_id = dict(zip(self.tag_ids, self.tags, strict=True))
        self._string_ids = {i for i, s in self._spec_by_id.items() if s.datatype == DataType.STRING}
        self._ids_array = np.asarray(self.tag_ids, dtype=np.int32)
        health = TagSpec(f"{name}.connected", "", DataType.BOOL, f"Connection {name} is up", connection=name)
        self.connected_tag = bus.register([health])[0]
        self.connected = False
        self.notifications = 0
        self.rejected = 0
        self.connects = 0
        self._quality_cache: dict[int, int] = {}
        self._lost = asyncio.Event()

    # -- notifications (asyncio thread) -------------------------------------------------

    def on_data_change(self, items: list[ua.MonitoredItemNotification]) -> None:
        n = len(items)
        ids = np.empty(n, np.int32)
        ts = np.empty(n, np.int64)
        values = np.empty(n, np.float64)
        quality = np.empty(n, np.uint8)
        texts: dict[int, str] = {}
        received = now_ns()
        row = 0
        for item in items:
            tag_id = item.ClientHandle
            if tag_id not in self._spec_by_id:
                self.rejected += 1
                continue
            dv = item.Value
            status = dv.StatusCode.value if dv.StatusCode is not None else 0
            q = self._quality_cache.get(status)
            if q is None:
                q = self._quality_cache[status] = int(quality_from_opcua_status(status))
            raw = dv.Value.Value if dv.Value is not None else None
            value = np.nan
            if raw is None:
                q = max(q, Quality.BAD) if q == Quality.GOOD else q
            elif isinstance(raw, bool | int | float):
                value = float(raw)
            elif isinstance(raw, str):
                texts[row] = raw
            else:
                # Arrays and structures are not mapped yet: say so once per tag, keep going.
                self.rejected += 1
                q = Quality.BAD
                log.warning(
                    "%s: unsupported value type %s for %s", self.name, type(raw).__name__, self._spec_by_id[tag_id].name
                )
            ids[row] = tag_id
            ts[row] = datetime_to_ns(dv.SourceTimestamp) or datetime_to_ns(dv.ServerTimestamp) or received
            values[row] = value
            quality[row] = q
            row += 1
        if row:
            self.notifications += row
            self.bus.publish(SampleBatch(ids[:row], ts[:row], values[:row], quality[:row], texts or None))

    def on_status_change(self, status: ua.StatusCode) -> None:
        if not status.is_good():
            log.warning("%s: subscription status %s", self.name, status)
            self._lost.set()

    # -- connection life ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe and stay connected until `stop` is set."""
        self._mark_comm_lost("not connected yet", publish_event=False)
        delay = _BACKOFF_FIRST_S
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = _BACKOFF_FIRST_S
                reason = "connection lost"
            except (OSError, TimeoutError, ua.UaError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.debug("%s: connect failed", self.name, exc_info=True)
            if stop.is_set():
                break
            if self.connected:
                self._mark_comm_lost(reason, publish_event=True)
            self.connected = False
            wait = delay * random.uniform(0.8, 1.2)
            log.info("%s: %s; retrying in %.1f s", self.name, reason, wait)
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _session(self, stop: asyncio.Event) -> None:
        client = Client(
            self.config.endpoint, timeout=self.config.timeout_s, watchdog_intervall=self.config.watchdog_interval_s
        )
        client.session_timeout = 60_000
        self._lost = asyncio.Event()

        async def on_connection_lost(exc: Exception) -> None:
            log.warning("%s: connection lost: %r", self.name, exc)
            self._lost.set()

        client.connection_lost_callback = on_connection_lost
        await client.connect()
        try:
            await self._subscribe(client)
            self.connected = True
            self.connects += 1
            self._publish_connected(True)
            self.bus.publish_events(
                [Event(EventCategory.SYSTEM, self.name, f"Connection {self.name} established ({self.config.endpoint})")]
            )
            stop_task = asyncio.ensure_future(stop.wait())
            lost_task = asyncio.ensure_future(self._lost.wait())
            try:
                await asyncio.wait({stop_task, lost_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_task.cancel()
                lost_task.cancel()
        finally:
            try:
                await asyncio.wait_for(client.disconnect(), 2.0)
            except Exception:  # the peer may already be gone; nothing to save
                log.debug("%s: disconnect failed", self.name, exc_info=True)
        if stop.is_set():
            self._mark_comm_lost("stopped", publish_event=False)
            self.connected = False

    async def _subscribe(self, client: Client) -> None:
        namespaces = await client.get_namespace_array()
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=self.config.publishing_interval_ms,
            RequestedLifetimeCount=10_000,
            RequestedMaxKeepAliveCount=client.get_keepalive_count(self.config.publishing_interval_ms),
            MaxNotificationsPerPublish=0,  # no limit
            PublishingEnabled=True,
            Priority=0,
        )
        sub = _BatchingSubscription(self, client.uaclient.session, params, handler=self)
        await sub.init()
        requests = []
        bad: list[tuple[TagSpec, str]] = []
        for tag_id, spec in self._spec_by_id.items():
            try:
                node_id = parse_node_id(spec.address, namespaces)
            except (ValueError, ua.UaError) as exc:
                bad.append((spec, str(exc)))
                continue
            requests.append(_monitor_request(node_id, tag_id, self.config.sampling_interval_ms))
        results = await sub.create_monitored_items(requests) if requests else []
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, ua.StatusCode):
                spec = self._spec_by_id[request.RequestedParameters.ClientHandle]
                bad.append((spec, result.name if hasattr(result, "name") else str(result)))
        if bad:
            self._mark_bad(bad)

    def _mark_bad(self, bad: list[tuple[TagSpec, str]]) -> None:
        ids = [self.bus.registry.id_of(spec.name) for spec, _ in bad]
        self.bus.publish(SampleBatch.from_arrays(ids, now_ns(), np.full(len(ids), np.nan), Quality.BAD))
        for spec, why in bad:
            log.error("%s: cannot monitor %s at %s: %s", self.name, spec.name, spec.address, why)
        self.bus.publish_events(
            [
                Event(
                    EventCategory.SYSTEM,
                    spec.name,
                    f"Cannot monitor {spec.name} ({spec.address}): {why}",
                    Severity.ERROR,
                )
                for spec, why in bad
            ]
        )

    def _publish_connected(self, up: bool) -> None:
        self.bus.publish(SampleBatch.from_arrays([self.connected_tag], now_ns(), [1.0 if up else 0.0], Quality.GOOD))

    def _mark_comm_lost(self, reason: str, publish_event: bool) -> None:
        """Every tag of this connection keeps its last value but turns COMM_LOST now."""
        ids = self._ids_array
        last = np.full(ids.shape[0], np.nan)
        for i, tag_id in enumerate(self.tag_ids):
            latest = self.bus.latest(tag_id)
            if latest is not None and not isinstance(latest.value, str) and latest.value is not None:
                last[i] = latest.value
        self.bus.publish(SampleBatch.from_arrays(ids, now_ns(), last, Quality.COMM_LOST))
        self._publish_connected(False)
        if publish_event:
            self.bus.publish_events(
                [Event(EventCategory.SYSTEM, self.name, f"Connection {self.name} lost: {reason}", Severity.ERROR)]
            )


def _monitor_request(node_id: ua.NodeId, handle: int, sampling_ms: float) -> ua.MonitoredItemCreateRequest:
    read = ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value)
    params = ua.MonitoringParameters(
        ClientHandle=handle,
        SamplingInterval=sampling_ms,
        QueueSize=100,  # keep every change between publishes at 10 Hz sampling
        DiscardOldest=True,
    )
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=read, MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params
    )
