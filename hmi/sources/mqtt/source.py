"""MqttSource: one MQTT connection as a source of tags, and the glue of this package.

It owns the parts (decode.py, sparkplug_host.py, writes.py, routes.py, rows.py, client.py),
the connection's life on paho's thread (connect, subscribe, loss, reconnect with backoff),
the health tags, and the one place paho's thread hands batches to the bus (`_hand_over`).
`run()` (the runtime's asyncio loop) starts and stops the network thread and publishes the
health tags; `write()` publishes a command from the loop (writes.py).

Failover (`brokers = [...]`): one broker at a time; on a loss (a closed socket at once, a
silent broker after paho's keep-alive) the next broker of the list gets a CONNECT at once,
the subscriptions are made there, and the values continue; a failed attempt moves on too, and
only a whole round of failures waits the backoff. Sparkplug B: on another broker the host
asks every edge node it knows for its births again (SparkplugHost.new_broker). Credentials
and TLS are the connection's, the same for every broker. Health tags name the broker in use
and count switches and losses (health.py).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from hmi.config.connections import MqttConnection
from hmi.config.credentials import CredentialError
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagSpec
from hmi.sources import sparkplug
from hmi.sources.base import Reconnect
from hmi.sources.health import SourceHealth, comm_lost_batch
from hmi.sources.mqtt.client import connect, disconnect_cleanly, make_client, pump
from hmi.sources.mqtt.decode import Decoder
from hmi.sources.mqtt.routes import RouteTable
from hmi.sources.mqtt.rows import Rows
from hmi.sources.mqtt.sparkplug_host import SparkplugHost
from hmi.sources.mqtt.writes import WritePath
from hmi.sources.writes import WriteResult

log = logging.getLogger(__name__)


class MqttSource:
    """One MQTT connection: its tags, health, network thread and writes (see the package's docstring)."""

    def __init__(
        self,
        name: str,
        config: MqttConnection,
        tags: list[TagSpec],
        bus: TagBus,
        project_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.bus = bus
        self.project_dir = project_dir
        self.tags = list(tags)
        self.tag_ids = bus.register(self.tags)
        self.brokers = config.broker_addresses
        self._active = 0  # index in `brokers` of the one in use or tried next
        self._last_broker = ""  # the one last connected to
        self.health = SourceHealth(name, bus, len(self.brokers))
        self.connected_tag = self.health.connected_tag
        spec_by_id: dict[int, TagSpec] = dict(zip(self.tag_ids, self.tags, strict=True))
        self._own_ids: set[int] = set(self.tag_ids)  # shared with the parts: templated tags join it
        self.connected = False
        self.connects = 0
        self.last_error = ""
        self.notifications = 0
        self._rows = Rows()
        self._events: list[Event] = []  # events waiting for the next flush (paho's thread)
        self._routes = RouteTable(config.subscriptions, spec_by_id)
        self._filters = self._routes.filters
        self._decoder = Decoder(
            name,
            config,
            bus,
            self.health,
            self._rows,
            self._routes,
            spec_by_id,
            self._own_ids,
            self._flush,
            self._mark_lost,
        )
        self._on_message = self._decoder.on_message  # the hot path: paho calls the decoder directly
        self._sparkplug = SparkplugHost(
            name,
            config.sparkplug_host_id,
            self._decoder,
            lambda: self._client,
            lambda: self.connected,
            self._flush,
            self._hand_over,
        )
        self._decoder.decode_sparkplug = self._sparkplug.decode
        self._writes = WritePath(name, config, bus, self._own_ids, self._decoder.reject, self._link)
        self._pending_writes = self._writes.pending  # the same list: _hand_over looks at it per batch
        self._pending_subscribe: list[tuple[str, int]] = []
        self._subscribed_at = 0.0
        self._silent_checked = True
        # Events of the network thread go out with its next flush (_hand_over).
        self._reconnect = Reconnect(
            name, lambda events: self._hand_over(None, events), config.reconnect_max_delay_s, log
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._refused: str | None = None  # a CONNACK refusal: back off to the maximum

    @property
    def rejected(self) -> int:
        return self.health.rejected_total

    @property
    def broker(self) -> str:
        """The broker in use, or tried next, as "host:port"."""
        host, port = self.brokers[self._active]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- crossing to the bus: the one place paho's thread hands batches over ---------------------

    def _hand_over(self, batch: SampleBatch | None, events: list[Event] | None = None) -> None:
        """Publish a batch (and events) on the bus, from paho's thread. Never raises."""
        try:
            if batch is not None and len(batch):
                self.notifications += len(batch)
                if self._pending_writes:
                    self._writes.check_read_back(batch)
                self.bus.publish(batch)
            if events:
                self.bus.publish_events(events)
        except Exception:  # the bus isolates subscribers; this guards the bus itself
            log.exception("%s: handing a batch to the bus failed", self.name)

    def _flush(self) -> None:
        if self._rows.count:
            try:
                batch = self._rows.take()
            except Exception:  # a decoder bug: rows that cannot become a batch must not block all later ones
                log.exception("%s: dropped %d decoded values that could not form a batch", self.name, self._rows.count)
                self.health.reject("(decoded rows)", "decoder error", self._rows.count)
                self._rows.clear()
                batch = None
            self._hand_over(batch)
        if self._events:
            events = self._events.copy()  # the same list stays: the pump watches it
            self._events.clear()
            self._hand_over(None, events)

    def _mark_lost(self, ids: list[int], reason: str) -> None:
        self._hand_over(comm_lost_batch(self.bus, ids))
        log.info("%s: %d tag(s) COMM_LOST: %s", self.name, len(ids), reason)

    # -- connection life (paho's thread) ---------------------------------------------------------

    def _make_client(self) -> paho.Client:
        client = make_client(self.config, self.name, self.project_dir)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        # These topics bypass on_message (paho calls a filter's own callback instead).
        reply = self._writes.reply_filter()
        if reply:
            client.message_callback_add(reply, self._writes.on_reply)
        if self.config.sparkplug_host_id:
            client.message_callback_add(
                sparkplug.state_topic(self.config.sparkplug_host_id), self._sparkplug.on_own_state
            )
        return client

    def _connect(self, client: paho.Client, first: bool) -> None:
        self._sparkplug.set_will(client)
        connect(client, self.config, first, self.brokers[self._active])

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        try:
            if reason.is_failure:
                who = f"user {self.config.user!r}" if self.config.user else "anonymous access"
                self._refused = f"{self.broker} refused {who}: {reason}"
                if str(reason) in ("Bad user name or password", "Not authorized"):
                    self._refused += f" (check the user name and password_ref {self.config.password_ref!r})"
                return
            self._refused = None
            self.connected = True
            self.connects += 1
            self.last_error = ""
            self._subscribe_all(client)
            session = " (session resumed)" if getattr(flags, "session_present", False) else ""
            log.info("%s: connected to %s%s", self.name, self.broker, session)
            if self._last_broker and self._last_broker != self.broker:
                # Another broker: what the edge nodes' sessions were there says nothing here (Sparkplug B).
                self._sparkplug.new_broker()
            self._last_broker = self.broker
            self._hand_over(
                self.health.connected_batch(True, self.broker),
                [
                    Event(
                        EventCategory.SYSTEM,
                        self.name,
                        f"Connection {self.name} established ({self.broker})",
                    )
                ],
            )
        except Exception:
            log.exception("%s: on_connect failed", self.name)

    def _warn_silent_topics(self) -> None:
        """Once per connection: name the topics that never delivered (forbidden by an ACL, or unused)."""
        if self._silent_checked or not self.connected:
            return
        if time.monotonic() - self._subscribed_at < self.config.silent_topic_warning_s:
            return
        self._silent_checked = True
        for route in self._routes.all():
            if not route.seen:
                log.warning(
                    "%s: no message on %r in %.0f s since subscribing: nothing publishes it, or the broker's ACL "
                    "does not let %s read it",
                    self.name,
                    route.filter,
                    self.config.silent_topic_warning_s,
                    f"user {self.config.user!r}" if self.config.user else "anonymous clients",
                )

    def _subscribe_all(self, client: paho.Client) -> None:
        for route in self._routes.all():
            route.seen = False
        self._subscribed_at = time.monotonic()
        self._silent_checked = False
        reply = self._writes.reply_filter()
        extra = [(reply, 1)] if reply else []
        host_id = self.config.sparkplug_host_id
        if host_id:
            extra.append((sparkplug.state_topic(host_id), 1))  # Sparkplug 3.0: a host watches its own STATE
        if not self._filters and not extra:
            return
        self._pending_subscribe = list(self._filters) + extra
        client.subscribe(self._pending_subscribe)
        if host_id:
            self._sparkplug.publish_state(client, True)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        try:
            for (topic, _qos), reason in zip(self._pending_subscribe, reasons, strict=False):
                if reason.is_failure:
                    message = (
                        f"{self.broker} refused the subscription to {topic!r} ({reason}): "
                        f"check the broker's ACL for user {self.config.user or '(anonymous)'!r}"
                    )
                    log.error("%s: %s", self.name, message)
                    self.health.reject(topic, "subscription refused")
                    self._events.append(Event(EventCategory.SYSTEM, self.name, message, Severity.ERROR))
        except Exception:
            log.exception("%s: on_subscribe failed", self.name)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        try:
            was = self.connected
            self.connected = False
            if was:
                self._flush()
                self.last_error = f"connection lost: {reason}"
                # The connection's state first: whoever sees a tag COMM_LOST sees why.
                self._hand_over(
                    self.health.connected_batch(False),
                    [Event(EventCategory.SYSTEM, self.name, f"Connection {self.name} lost: {reason}", Severity.ERROR)],
                )
                self._mark_lost(sorted(self._own_ids), self.last_error)
        except Exception:
            log.exception("%s: on_disconnect failed", self.name)

    def _network_loop(self) -> None:
        """Connect, read, flush and reconnect until stopped (this is paho's network thread)."""
        reconnect = self._reconnect
        first = True
        client: paho.Client | None = None
        attempts = 0  # failed attempts in this round over the brokers
        while not self._stopping.is_set():
            connects, started = self.connects, time.monotonic()
            try:
                if client is None:
                    client = self._client = self._make_client()
                    first = True
                self._refused = None
                self._connect(client, first)
                first = False
                self._pump(client)
                if self.connects:
                    reconnect.succeeded()
            except CredentialError as exc:
                self.last_error = str(exc)
                client = None
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.last_error = f"cannot connect to {self.broker}: {exc}"
            except Exception as exc:  # never let the thread die
                self.last_error = f"unexpected error: {exc!r}"
                log.exception("%s: network loop failed", self.name)
            if self.connected:
                self._on_disconnect(client, None, None, "network loop ended", None)  # type: ignore[arg-type]
            if self._stopping.is_set():
                break
            config_problem = self._refused is not None or self.last_error.startswith("no password")
            if self._refused:
                self.last_error = self._refused
            if len(self.brokers) > 1:
                # Failover: on a loss try the next broker at once; a failed attempt moves on
                # too, and only a whole round of failures waits (the backoff).
                self._active = (self._active + 1) % len(self.brokers)
                first = True  # a CONNECT to that broker, not a reconnect to the last one
                # A connection that ends at once counts as a failed attempt: no switching in a tight loop.
                lasted = self.connects > connects and time.monotonic() - started >= self.config.keepalive_s
                attempts = 0 if lasted else attempts + 1
                if attempts < len(self.brokers):
                    if config_problem:
                        reconnect.report_once(self.last_error)
                    log.info("%s: %s; trying %s", self.name, self.last_error or "disconnected", self.broker)
                    continue
                attempts = 0
            self._stopping.wait(reconnect.failed(self.last_error, config_problem, ever_connected=self.connects > 0))
        if client is not None:
            try:
                self._disconnect_cleanly(client)
            except Exception:  # already gone
                pass
            self._flush()

    def _disconnect_cleanly(self, client: paho.Client) -> None:
        last_words = self._sparkplug.publish_death if self.config.sparkplug_host_id else None
        disconnect_cleanly(client, last_words)

    def _pump(self, client: paho.Client) -> None:
        """Run paho's loop until the connection ends (client.py), flushing coalesced rows."""
        ended = pump(client, self._rows, self._events, self._stopping, self._flush, self._warn_silent_topics)
        if ended and self.last_error == "":
            self.last_error = ended

    # -- asyncio side --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start the network thread and publish health until `stop` is set."""
        self._hand_over(comm_lost_batch(self.bus, sorted(self._own_ids)))
        self.health.set_connected(False)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._network_loop, name=f"mqtt-{self.name}", daemon=True)
        self._thread.start()
        try:
            while not stop.is_set():
                self.health.tick()
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            self._stopping.set()
            await asyncio.to_thread(self._thread.join, 10)
            self.connected = False
            self._hand_over(comm_lost_batch(self.bus, sorted(self._own_ids)))
            self.health.set_connected(False)
            self.health.tick()

    async def write(self, tag: str, value: Any, timeout_s: float = 5.0) -> WriteResult:
        """Publish a command for a writable tag and wait for its confirmation (writes.py)."""
        return await self._writes.write(tag, value, timeout_s)

    def _link(self) -> tuple[paho.Client | None, str]:
        """The client a write publishes on while connected (else None), and why not."""
        client = self._client
        return (client if client is not None and self.connected else None), self.last_error or "connecting"
