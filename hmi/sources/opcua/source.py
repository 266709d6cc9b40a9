"""OPC UA source: one client connection, one subscription per group, every configured tag.

This module owns the connection's life: the session, security, the keep-alive watchdog,
reconnecting, subscribing (groups and the batching subscription: subscriptions.py), writes
and health. What a notification becomes is conversion.py; browsing and method calls are
address_space.py, which `OpcUaSource` hands those requests to.

Security: None, Sign or SignAndEncrypt with the policies asyncua implements. The client's
application certificate is generated on first use under <data folder>/pki (hmi.sources.pki);
the server's certificate is taken from its endpoint list and validated as OPC UA Part 4 asks
(validity, ApplicationUri, host name, key usage, trust list or a trusted CA's chain with its
CRLs: Pki.check_server) *before* a secure channel is opened with it, so an unknown or invalid
server gets nothing, not even a user name. Identities: anonymous, or user name with a password resolved from a reference
(hmi.config.credentials).

Connection life, and why it is our own loop rather than asyncua's `auto_reconnect`:
asyncua 2.1's supervisor reconnects with a fixed doubling from 1 s and no jitter (every HMI
in a control room would hammer a restarted server in lock step), retries security and
identity failures forever without a way to tell the operator, and does not retry the first
connect at all. So we run the loop: connect with exponential backoff and jitter, and use
asyncua's supervisor only to report a closed transport (`auto_reconnect=False`,
`connection_lost_callback`); a hung server is found by our own keep-alive check on every
subscription (and a state read every `keepalive_s` on a connection without
subscriptions). On a loss every tag turns COMM_LOST at
once and a system event is published. What we do take from asyncua is the protocol part of
recovery: after reconnecting, the old subscriptions are offered to the new session with
TransferSubscriptions and the gap is filled with Republish (our own short version of
asyncua's `Subscription.restore`, see `_transfer` for why), so a network blip loses and
duplicates nothing the server still holds. When the server no longer
has the subscription (it restarted, or its lifetime ran out) we create fresh subscriptions,
resolving `nsu=` NodeIds again since a restarted server may have renumbered namespaces.
After a transfer, tags that had no change since the loss are confirmed by one Read once the
first publish response is in (so a queued older notification cannot overtake the read).

Failover (OPC UA Part 4 non-transparent redundancy, `endpoints = [...]`): a warm failover in
this same loop. One session at a time; on a loss (a closed transport at once, a hung server
after 1.25 keep-alives, `_keepalive_watchdog`) the next server of the list is tried at once, its subscriptions are
created afresh (never transferred: subscription ids belong to the server that made them) and
the values continue; a failed attempt moves on to the next server too, and only a whole round
of failures waits the backoff. The tags are COMM_LOST for the gap only. Security, the user
and the client certificate are the connection's, the same for every server, and each
server's certificate is checked on its own. The servers' ServerUriArray and RedundancySupport
are not read: the project file's list is the truth. asyncua's `HaClient` (client/ha) is not
used: it supports its WARM mode only, keeps a session and a copy of every subscription on
every server, judges health by polling ServiceLevel every `keepalive_timer` whole seconds
(15 by default, after a fixed 3 s start), reconnects with asyncua's own `auto_reconnect`
(which this source avoids, above), takes one security setting for all without our Part 4
certificate checks, and delivers through asyncua's per-notification handler rather than our
batching subscription, deadbands and groups: it would fight this loop rather than serve it.

Threads: everything runs on the runtime's asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np
from asyncua import Client, ua
from asyncua.crypto import security_policies

from hmi.config.connections import OpcUaAddress, OpcUaConnection
from hmi.config.credentials import CredentialError, resolve_password
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import DataType, TagSpec
from hmi.sources.base import Reconnect
from hmi.sources.health import RateLimitedLog, SourceHealth, comm_lost_batch
from hmi.sources.opcua.address_space import AddressSpace, BrowseEntry, CallResult, MethodSignature
from hmi.sources.opcua.conversion import (
    NotificationConverter,
    Odd,
    _describe,
    coerce_value,
    datetime_to_ns,
    parse_node_id,
    status_name,
)
from hmi.sources.opcua.subscriptions import BatchingSubscription, Group, make_groups, monitor_request
from hmi.sources.pki import CertificateRefused, Pki, default_application_uri, thumbprint
from hmi.sources.writes import NotConnected, WriteRejected, WriteResult, check_limits

log = logging.getLogger(__name__)


class _LostConnectionIsNotACrash(logging.Filter):
    """asyncua's publish loop logs a closed connection as "Publish iteration crashed" at ERROR,
    with a traceback, until the session is closed. The source reports that loss itself (the
    tags turn COMM_LOST, an event, a warning line), so only a real crash stays an ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ConnectionError) and str(record.msg).startswith("Publish iteration crashed"):
            log.debug("asyncua's publish loop ended with the connection: %r", exc)
            return False
        return True


logging.getLogger("asyncua.client.ua_session.UaSession").addFilter(_LostConnectionIsNotACrash())

_HEALTH_PERIOD_S = 1.0
_ASYNCUA_PROBE_OFF_S = 3600.0  # see _make_client

# Status codes that mean the server refused who we are rather than what we sent.
_IDENTITY_CODES = {
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
}
_CLIENT_CERT_CODES = {
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateUriInvalid,
}


class OpcUaSource:
    """One OPC UA connection: its session, subscriptions and tags; writes, calls and browsing."""

    def __init__(
        self,
        name: str,
        config: OpcUaConnection,
        tags: list[TagSpec],
        bus: TagBus,
        project_dir: Path | None = None,
        pki: Pki | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.bus = bus
        self.tags = list(tags)
        self.project_dir = project_dir  # the factory signature (base.py); certificates live in the data folder
        self.pki = pki
        self.tag_ids = bus.register(self.tags)
        self._spec_by_id = dict(zip(self.tag_ids, self.tags, strict=True))
        self._id_by_name = {spec.name: tag_id for tag_id, spec in self._spec_by_id.items()}
        self._address = {i: OpcUaAddress.of(s) for i, s in self._spec_by_id.items()}
        self._index_of = {i: a.index for i, a in self._address.items() if a.index is not None}
        self._numeric = {i for i, s in self._spec_by_id.items() if s.datatype != DataType.STRING}
        self.servers = config.servers
        self._active = 0  # index in `servers` of the one in use or tried next
        self._subscribed_on = ""  # the server that holds self._subscriptions
        self._closing: set[asyncio.Task[None]] = set()  # sessions of lost servers being closed (failover)
        self.health = SourceHealth(name, bus, len(self.servers))
        self.connected_tag = self.health.connected_tag
        self.connected = False
        self.notifications = 0
        self.connects = 0
        self.last_error = ""
        self._groups = make_groups(config, self._spec_by_id)
        self._converter = NotificationConverter(
            self._spec_by_id, self._index_of, self._numeric, config.timestamp_window(), self.health.reject
        )
        self._reason_of: dict[int, str] = {}  # tag id -> why its last value was not taken as sent
        self._lost = asyncio.Event()
        self._client: Client | None = None
        self._subscriptions: list[BatchingSubscription] = []
        self._space = AddressSpace(name, self.endpoint, self._live_client)
        self._ratelog = RateLimitedLog(log)
        self._reconnect = Reconnect(name, bus.publish_events, config.reconnect_max_delay_s, log)
        # Resolved NodeId string ("ns=2;s=...") -> tag id, filled when subscribing: lets the
        # tag browser say which configured tag a browsed node is.
        self._tag_by_node: dict[str, int] = {}

    @property
    def rejected(self) -> int:
        return self.health.rejected_total

    @property
    def endpoint(self) -> str:
        """The server in use, or tried next."""
        return self.servers[self._active]

    # -- notifications (asyncio thread) -------------------------------------------------

    def on_data_change(self, items: list[ua.MonitoredItemNotification]) -> None:
        converted = self._converter.convert(items)
        if converted is None:
            return
        batch, odd = converted
        self.notifications += len(batch)
        self.health.received(1, len(batch))
        self.bus.publish(batch)
        if odd is not None or self._reason_of:
            self._account(batch.tag_ids, odd or [])

    def _account(self, ids: np.ndarray, odd: list[Odd]) -> None:
        """Count every value not taken as sent, and tell the record why a tag is not GOOD: one
        event (and one log line) per change of a tag's reason, not per sample, so a tag stuck
        at Bad does not flood the event log; another event when it is good again."""
        by_row: dict[int, list[tuple[str, str]]] = {}
        for r, reason, detail, counted in odd:
            by_row.setdefault(r, []).append((reason, detail))
            if counted:
                self.health.reject(self._spec_by_id[int(ids[r])].name, reason)
        rows = set(by_row)
        state = self._reason_of
        if state:  # rows of tags that had a reason: those without one now have recovered
            known = np.fromiter(state, np.int64, len(state))
            rows.update(np.flatnonzero(np.isin(ids, known)).tolist())
        events = []
        for r in sorted(rows):
            tag_id = int(ids[r])
            name = self._spec_by_id[tag_id].name
            reasons = by_row.get(r)
            why = "; ".join(reason for reason, _ in reasons) if reasons else ""
            before = state.get(tag_id, "")
            if why == before:
                continue
            if why:
                state[tag_id] = why
                detail = "; ".join(d for _, d in reasons or () if d)
                message = f"{name}: {why}" + (f" ({detail})" if detail else "")
                events.append(Event(EventCategory.SYSTEM, name, message, Severity.WARNING,
                                    details={"connection": self.name, "reason": why}))  # fmt: skip
                self._ratelog(logging.WARNING, f"value:{tag_id}:{why}", "%s: %s", self.name, message)
            else:
                del state[tag_id]
                events.append(Event(EventCategory.SYSTEM, name, f"{name}: good again (was {before})",
                                    details={"connection": self.name, "reason": ""}))  # fmt: skip
        if events:
            self.bus.publish_events(events)

    def on_status_change(self, status: ua.StatusCode) -> None:
        if not status.is_good():
            log.warning("%s: subscription status %s", self.name, status_name(status))
            self._lost.set()

    # -- connection life ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe and stay connected until `stop` is set."""
        self._mark_comm_lost("not connected yet", publish_event=False)
        health = asyncio.create_task(self._health_loop(stop))
        reconnect = self._reconnect
        attempts = 0  # failed attempts in this round over the servers
        try:
            while not stop.is_set():
                failure_is_config = False
                connects, started = self.connects, time.monotonic()
                try:
                    await self._session(stop)
                    reason = "connection lost"
                except (CertificateRefused, CredentialError) as exc:
                    reason, failure_is_config = str(exc), True
                except ua.UaStatusCodeError as exc:
                    reason, failure_is_config = self._explain_status(exc)
                except (OSError, TimeoutError, ua.UaError, ValueError, ConnectionError) as exc:
                    reason = f"cannot connect to {self.endpoint}: {_describe(exc)}"
                    log.debug("%s: connect failed", self.name, exc_info=True)
                except Exception as exc:  # a bug here must not end acquisition for good
                    reason = f"unexpected error: {_describe(exc)}"
                    log.exception("%s: unexpected error in the connection loop", self.name)
                if stop.is_set():
                    break
                # _session marks a loss itself (at once, before disconnecting), so `connected` is down already.
                lost_after_connect = self.connects > connects
                self.last_error = reason
                marked = self.connected
                was_connected = marked or lost_after_connect
                if marked:  # the loss event says why
                    self._mark_comm_lost(reason, publish_event=True)
                    self.connected = False
                if len(self.servers) > 1:
                    # Failover: on a loss try the next server at once; a failed attempt moves
                    # on too, and only a whole round of failures waits (the backoff).
                    self._active = (self._active + 1) % len(self.servers)
                    # A session that ends at once counts as a failed attempt: no switching in a tight loop.
                    lasted = was_connected and time.monotonic() - started >= self.config.keepalive_s
                    attempts = 0 if lasted else attempts + 1
                    if attempts < len(self.servers):
                        if failure_is_config:
                            reconnect.report_once(reason)
                        log.info("%s: %s; trying %s", self.name, reason, self.endpoint)
                        continue
                    attempts = 0
                wait = reconnect.failed(reason, failure_is_config, self.connects > 0, report=not marked)
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            health.cancel()
            self.connected = False
            if self._closing:  # at most 2 s each (_disconnect)
                await asyncio.gather(*self._closing, return_exceptions=True)

    def _explain_status(self, exc: ua.UaStatusCodeError) -> tuple[str, bool]:
        code = exc.code
        name = status_name(code)
        if code in _IDENTITY_CODES:
            who = f"user {self.config.user!r}" if self.config.user else "anonymous access"
            return (
                f"{self.endpoint} refused {who} ({name}): check the user name and the password "
                f"behind password_ref {self.config.password_ref!r}"
                if self.config.user
                else f"{self.endpoint} refused {who} ({name}): the server needs a user name",
                True,
            )
        if code in _CLIENT_CERT_CODES and self.pki is not None:
            thumb = thumbprint(self.pki.own_cert.read_bytes()) if self.pki.own_cert.exists() else "?"
            return (
                f"{self.endpoint} refused this client's certificate ({name}, thumbprint {thumb}): "
                f"trust it on the server",
                True,
            )
        return f"{self.endpoint}: {name}: {exc}", False

    async def _health_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.health.tick()
            try:
                await asyncio.wait_for(stop.wait(), _HEALTH_PERIOD_S)
            except TimeoutError:
                pass
        self.health.tick()

    async def _make_client(self) -> Client:
        c = self.config
        url = self.endpoint
        # asyncua's supervisor stays only for what it sees at once (the transport closing); its
        # periodic probe gives up after one watchdog interval, and a busy server streaming
        # thousands of notifications a second answered it later than that here and was taken
        # for lost. The subscriptions' keep-alives (`_keepalive_watchdog`) tell a live server
        # from a hung one instead; it probes only connections without subscriptions.
        client = Client(url, timeout=c.timeout_s, watchdog_intervall=_ASYNCUA_PROBE_OFF_S)
        client.session_timeout = int(c.session_timeout_s * 1000)
        client.application_uri = c.application_uri or default_application_uri()
        client.name = client.description = "HMI"
        if c.user:
            client.set_user(c.user)
            client.set_password(resolve_password(c.password_ref) if c.password_ref else "")
        if c.security == "None":
            return client
        pki = self.pki or Pki()
        self.pki = pki
        cert, key = await pki.ensure_client_certificate(client.application_uri)
        policy = getattr(security_policies, f"SecurityPolicy{c.security_policy}")
        mode = getattr(ua.MessageSecurityMode, c.security_mode)
        probe = Client(url, timeout=c.timeout_s)
        endpoints = await probe.connect_and_get_server_endpoints()
        matching = [e for e in endpoints if e.SecurityMode == mode and e.SecurityPolicyUri == policy.URI]
        if not matching:
            offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}:{e.SecurityMode.name}" for e in endpoints})
            raise ValueError(f"{url} does not offer {c.security} (it offers: {', '.join(offered)})")
        endpoint = matching[0]
        server_der, *issuers = _split_certificates(endpoint.ServerCertificate)
        server_name = f"{endpoint.Server.ApplicationName.Text or endpoint.Server.ApplicationUri!r} at {url}"
        # Part 4's checks (validity, ApplicationUri, host, usage, chain and CRLs) before the
        # server gets anything from us; off the loop, as it reads the PKI and may resolve names.
        await asyncio.to_thread(
            pki.check_server,
            server_der,
            server_name,
            application_uri=endpoint.Server.ApplicationUri or "",
            host=urlsplit(url).hostname or "",
            chain=issuers,
        )
        await client.set_security(policy, str(cert), str(key), server_certificate=server_der, mode=mode)
        return client

    async def _session(self, stop: asyncio.Event) -> None:
        for sub in self._subscriptions:
            sub.retired = True  # their session is over (transferred ones get new objects)
        client = await self._make_client()
        self._lost = asyncio.Event()

        async def on_connection_lost(exc: Exception) -> None:
            log.warning("%s: connection lost: %r", self.name, exc)
            self._lost.set()

        client.connection_lost_callback = on_connection_lost
        await client.connect(auto_reconnect=False)
        self._client = client
        self._space.endpoint = self.endpoint
        try:
            namespaces = await client.get_namespace_array()
            transferred = await self._restore_or_create(client, namespaces)
            self.connected = True
            self.connects += 1
            self.health.set_connected(True, self.endpoint)
            self.bus.publish_events(
                [Event(EventCategory.SYSTEM, self.name, f"Connection {self.name} established ({self.endpoint})")]
            )
            self._reconnect.succeeded()
            log.info(
                "%s: connected to %s (%s), %s %d subscription(s)",
                self.name,
                self.endpoint,
                self.config.security,
                "transferred" if transferred else "created",
                len(self._subscriptions),
            )
            waiters = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._lost.wait()),
                asyncio.ensure_future(self._keepalive_watchdog(client)),
            ]
            if transferred:
                waiters.append(asyncio.ensure_future(self._confirm_after_transfer(client)))
            try:
                await asyncio.wait(waiters[:3], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        finally:
            self._client = None
            if self.connected and not stop.is_set():
                # Now, not after the disconnect below, which waits up to 2 s on a hung server.
                self._mark_comm_lost("connection lost", publish_event=True)
                self.connected = False
            if len(self.servers) > 1 and not stop.is_set():
                # The next server is waiting: a hung one may take the full 2 s to close.
                closing = asyncio.create_task(self._disconnect(client))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            else:
                await self._disconnect(client)
        if stop.is_set():
            self._mark_comm_lost("stopped", publish_event=False)
            self.connected = False

    async def _disconnect(self, client: Client) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # the peer may already be gone; nothing to save
            log.debug("%s: disconnect failed", self.name, exc_info=True)

    async def _keepalive_watchdog(self, client: Client) -> None:
        """Return when the connection is lost: a subscription has sent neither data nor
        keep-alive for two periods, or, on a connection without subscriptions (nothing to
        keep alive), the server does not answer a read of its state within the request timeout."""
        interval = self.config.keepalive_s
        next_probe = time.monotonic() + interval
        # Alone, a server is given two keep-alives and a margin (a busy server is late, and
        # losing it costs every value until it is back). With another server to go to, a
        # quarter period late is a hung server: being wrong costs a switch, and the values
        # continue within two keep-alive periods (about 1.3 here), with room for a loaded host.
        redundant = len(self.config.servers) > 1
        patience, margin, tick = (1.25, 0.0, 0.1) if redundant else (2.0, 0.5, 0.25)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for sub in self._subscriptions:
                last = sub.last_publish_at
                if last is not None and now - last > patience * sub.keepalive_s + margin:
                    log.warning(
                        "%s: no publish response for %.1f s (keep-alive %.1f s)", self.name, now - last, sub.keepalive_s
                    )
                    return
            if not self._subscriptions and now >= next_probe:
                try:
                    await asyncio.wait_for(client.nodes.server_state.read_value(), self.config.timeout_s)
                except (OSError, TimeoutError, ua.UaError, ConnectionError) as exc:
                    log.warning("%s: the server did not answer a state read: %r", self.name, exc)
                    return
                next_probe = time.monotonic() + interval

    async def _restore_or_create(self, client: Client, namespaces: list[str]) -> bool:
        """Transfer the previous session's subscriptions if the server still has them, else create anew."""
        old = self._subscriptions
        self._subscriptions = []
        # Subscription ids are the server's own: another server of a redundant set never
        # held ours (it may even hold another client's under the same id), so never transfer there.
        same_server = self._subscribed_on == self.endpoint
        self._subscribed_on = self.endpoint
        if old and same_server and await self._transfer(client, old):
            return True
        await self._create_subscriptions(client, namespaces)
        return False

    async def _transfer(self, client: Client, old: list[BatchingSubscription]) -> bool:
        """TransferSubscriptions to the new session, then Republish what the server still holds for us.

        Republish is bounded by the AvailableSequenceNumbers the server reports: asyncua's
        own `Subscription.restore` asks for sequence numbers until the server says
        BadMessageNotAvailable, which asyncua's server never says (it answers an empty
        message), so against that server it would loop forever.
        """
        ids = [s.subscription_id for s in old if s.subscription_id is not None]
        params = ua.TransferSubscriptionsParameters(SubscriptionIds=ids, SendInitialValues=False)
        try:
            results = await client.uaclient.transfer_subscriptions(params)
        except ua.UaStatusCodeError as exc:
            log.info("%s: the server cannot transfer subscriptions (%s); creating them anew", self.name, exc)
            return False
        good = [r.StatusCode.is_good() for r in results]
        if len(results) != len(ids) or not all(good):
            held = [sid for sid, ok in zip(ids, good, strict=False) if ok]
            log.info("%s: the server no longer holds our subscriptions; creating them anew", self.name)
            if held:
                try:
                    await client.delete_subscriptions(held)
                except Exception:  # best effort: they expire on the server anyway
                    log.debug("%s: deleting transferred subscriptions failed", self.name, exc_info=True)
            return False
        session = client.uaclient.session
        for sub, result in zip(old, results, strict=True):
            new = BatchingSubscription(self, sub.group, session, sub.parameters, handler=self)
            sub_id = cast(int, sub.subscription_id)  # not None: `ids` holds one per result
            new.subscription_id = sub_id
            new.last_sequence_number = sub.last_sequence_number
            new.keepalive_s = sub.keepalive_s
            new.last_publish_at = time.monotonic()
            # The one private hook: route this id's publish responses to us, as asyncua's restore() does.
            session._subscription_callbacks[sub_id] = new.publish_callback
            self._subscriptions.append(new)
            last = sub.last_sequence_number or 0
            for seq in sorted(int(n) for n in result.AvailableSequenceNumbers or []):
                if seq <= last:
                    continue
                message = await session.republish(sub_id, seq)
                if message.NotificationData:
                    await new.publish_callback(ua.PublishResult(new.subscription_id, NotificationMessage=message))
        client.uaclient.ensure_publish_loop()
        return True

    async def _create_subscriptions(self, client: Client, namespaces: list[str]) -> None:
        bad: list[tuple[TagSpec, str]] = []
        watchdog_ms = self.config.keepalive_s * 1000
        for group in self._groups.values():
            interval = group.publishing_interval_ms
            keepalive = max(1, math.ceil(watchdog_ms / interval))
            lifetime = max(3 * keepalive, math.ceil(self.config.session_timeout_s * 1000 / interval))
            params = ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=interval,
                RequestedLifetimeCount=lifetime,
                RequestedMaxKeepAliveCount=keepalive,
                MaxNotificationsPerPublish=0,  # no limit
                PublishingEnabled=True,
                Priority=0,
            )
            sub = BatchingSubscription(self, group, client.uaclient.session, params, handler=self)
            result = await sub.init()
            sub.keepalive_s = result.RevisedPublishingInterval * result.RevisedMaxKeepAliveCount / 1000
            sub.last_publish_at = time.monotonic()
            self._subscriptions.append(sub)
            requests = []
            for tag_id in group.tag_ids:
                spec = self._spec_by_id[tag_id]
                try:
                    node_id = parse_node_id(spec.address, namespaces)
                except ValueError as exc:
                    bad.append((spec, str(exc)))
                    continue
                self._tag_by_node[node_id.to_string()] = tag_id
                requests.append(monitor_request(node_id, tag_id, spec, group))
            results = await sub.create_monitored_items(requests) if requests else []
            for request, res in zip(requests, results, strict=True):
                if isinstance(res, ua.StatusCode):
                    spec = self._spec_by_id[request.RequestedParameters.ClientHandle]
                    bad.append((spec, status_name(res)))
        if bad:
            self._mark_bad(bad)

    async def _confirm_after_transfer(self, client: Client) -> None:
        """Tags that did not change while we were away are still current: read and mark them GOOD."""
        try:
            await asyncio.wait_for(
                asyncio.gather(*(s.first_publish.wait() for s in self._subscriptions)),
                max((s.keepalive_s for s in self._subscriptions), default=1.0) * 2 + 1,
            )
            stale = []
            for tag_id in self.tag_ids:
                latest = self.bus.latest(tag_id)
                if latest is None or latest.quality == Quality.COMM_LOST:
                    stale.append(tag_id)
            if not stale:
                return
            namespaces = await client.get_namespace_array()
            nodes = []
            for tag_id in stale:
                spec = self._spec_by_id[tag_id]
                index = OpcUaAddress.of(spec).index
                nodes.append(
                    ua.ReadValueId(
                        NodeId=parse_node_id(spec.address, namespaces),
                        AttributeId=ua.AttributeIds.Value,
                        IndexRange=str(index) if index is not None else None,
                    )
                )
            params = ua.ReadParameters(NodesToRead=nodes, TimestampsToReturn=ua.TimestampsToReturn.Both)
            values = await client.uaclient.read(params)
            marked_at = now_ns()
            items = []
            for tag_id, dv in zip(stale, values, strict=True):
                latest = self.bus.latest(tag_id)
                if latest is not None and latest.quality != Quality.COMM_LOST:
                    continue  # a notification got there first
                if datetime_to_ns(dv.SourceTimestamp) < (latest.ts_ns if latest else 0):
                    # Same value as before the loss: stamp the confirmation now, not in the past.
                    dv.SourceTimestamp = cast(ua.DateTime, datetime.fromtimestamp(marked_at / 1e9, UTC))
                items.append(ua.MonitoredItemNotification(ClientHandle=tag_id, Value=dv))
            if items:
                self.on_data_change(items)
        except Exception:
            log.warning("%s: confirming values after the transfer failed", self.name, exc_info=True)

    def _mark_bad(self, bad: list[tuple[TagSpec, str]]) -> None:
        ids = [self.bus.registry.id_of(spec.name) for spec, _ in bad]
        self.bus.publish(SampleBatch.from_arrays(ids, now_ns(), np.full(len(ids), np.nan), Quality.BAD))
        for tag_id, (spec, why) in zip(ids, bad, strict=True):
            self.health.reject(spec.name, "cannot monitor")
            self._reason_of[tag_id] = f"cannot monitor: {why}"  # a later value says "good again"
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

    def _mark_comm_lost(self, reason: str, publish_event: bool) -> None:
        """Every tag of this connection keeps its last value but turns COMM_LOST now."""
        batch = comm_lost_batch(self.bus, self.tag_ids)
        if batch is not None:
            self.bus.publish(batch)
        self.health.set_connected(False)
        if publish_event:
            self.bus.publish_events(
                [Event(EventCategory.SYSTEM, self.name, f"Connection {self.name} lost: {reason}", Severity.ERROR)]
            )

    # -- browsing (for the tag browser) ---------------------------------------------------------

    def _live_client(self) -> Client:
        if self._client is None or not self.connected:
            raise NotConnected(f"{self.name} is not connected ({self.last_error or 'connecting'})")
        return self._client

    async def browse(self, node_id: str | None = None) -> list[BrowseEntry]:
        """The children of a node (default: the Objects folder), with their attributes."""
        return await self._space.browse(node_id)

    async def node(self, node_id: str) -> BrowseEntry:
        """One node by NodeId string (`ns=2;s=...` or `nsu=<uri>;s=...`)."""
        return await self._space.node(node_id)

    async def find(self, path: str) -> BrowseEntry:
        """A node by browse path from the Objects folder: "Plant/cnc01/spindle_speed" or "2:Plant/2:cnc01"."""
        return await self._space.find(path)

    def tag_for_node(self, node_id: str) -> str | None:
        """The tag subscribed to this node (NodeId string as the browser gives it), if any."""
        tag_id = self._tag_by_node.get(node_id)
        return self._spec_by_id[tag_id].name if tag_id is not None else None

    async def watch(self, node_id: str, name: str, unit: str = "", datatype: DataType = DataType.FLOAT) -> str:
        """Subscribe to a browsed node that no configured tag covers, as tag `name` (the tag
        browser's drag into a trend). Returns the tag's name: the configured one if the node
        already has a tag. Ad-hoc tags live until the runtime restarts. A node with EURange
        and EngineeringUnits gives the tag its range and (unless `unit` is given) its unit."""
        client = self._live_client()
        nid = parse_node_id(node_id, await client.get_namespace_array())
        existing = self.tag_for_node(nid.to_string())
        if existing is not None:
            return existing
        eu_range, eu_unit = await self._space.analog_item(client, nid)
        low, high = eu_range if eu_range is not None and eu_range[0] < eu_range[1] else (None, None)
        spec = TagSpec(name, unit or eu_unit, datatype, f"ad hoc: {node_id}", connection=self.name, address=node_id,
                       low=low, high=high)  # fmt: skip
        tag_id = self.bus.register([spec])[0]
        if self.bus.registry.spec(tag_id).connection != self.name:
            raise ValueError(f"a tag named {name!r} already exists")
        self._spec_by_id[tag_id] = spec
        self._id_by_name[name] = tag_id
        if datatype != DataType.STRING:
            self._numeric.add(tag_id)
        self.tag_ids.append(tag_id)
        self._tag_by_node[nid.to_string()] = tag_id
        group = next(iter(self._groups.values()), None)
        if group is None:
            c = self.config
            group = self._groups[""] = Group("", c.publishing_interval_ms, c.sampling_interval_ms, c.queue_size,
                                             c.deadband)  # fmt: skip
        group.tag_ids.append(tag_id)
        sub = next((s for s in self._subscriptions if s.group is group), None)
        if sub is not None:
            results = await sub.create_monitored_items([monitor_request(nid, tag_id, spec, group)])
            if results and isinstance(results[0], ua.StatusCode):
                raise ValueError(f"{node_id} cannot be monitored: {status_name(results[0])}")
        log.info("%s: watching %s as ad-hoc tag %s", self.name, node_id, name)
        return name

    # -- writes and method calls ---------------------------------------------------------------

    async def write(self, tag: str, value: Any) -> WriteResult:
        """Write a tag's value: checked against its limits, coerced to the node's type, then sent.

        Raises nothing for a refused write: the result says why (WriteRejected reasons, the
        server's status code). Raises NotConnected when the connection is down.
        """
        tag_id = self._id_by_name.get(tag)
        if tag_id is None:
            return WriteResult(False, "Rejected", message=f"{tag} is not a tag of connection {self.name}")
        spec = self._spec_by_id[tag_id]
        if not spec.writable:
            return WriteResult(False, "Rejected", message=f"{tag} is not declared writable in the project")
        client = self._live_client()
        try:
            nid = parse_node_id(spec.address, await client.get_namespace_array())
            vtype, rank = await self._space.variant_of(client, nid)
            index = OpcUaAddress.of(spec).index
            if rank >= 1 and index is None:
                raise WriteRejected("the node holds an array; give the tag an `index` to write one element")
            coerced = coerce_value(value, vtype)
            check_limits(spec, coerced)
        except (WriteRejected, ValueError) as exc:
            return WriteResult(False, "Rejected", message=f"{tag}: {exc}")
        variant_value = [coerced] if index is not None else coerced
        wv = ua.WriteValue(
            NodeId=nid,
            AttributeId=ua.AttributeIds.Value,
            IndexRange=str(index) if index is not None else None,
            Value=ua.DataValue(ua.Variant(variant_value, vtype, is_array=index is not None or None)),
        )
        results = await client.uaclient.write(ua.WriteParameters(NodesToWrite=[wv]))
        status = results[0]
        log.info("%s: write %s = %r -> %s", self.name, tag, coerced, status_name(status))
        return WriteResult(status.is_good(), status_name(status), status.value, status.doc or "", coerced)

    async def call(self, object_id: str, method_id: str, *args: Any) -> CallResult:
        """Call a method; arguments are coerced to the method's declared input types (not sent,
        status "Rejected", when they do not fit). Raises NotConnected when the connection is down."""
        return await self._space.call(object_id, method_id, *args)

    async def method_signature(self, method_id: str) -> MethodSignature:
        """A method's display name and declared input and output arguments (the call dialog's
        form). ValueError when the node is missing or not a method."""
        return await self._space.method_signature(method_id)


# -- helpers ----------------------------------------------------------------------------------


def _first_certificate(chain: bytes) -> bytes:
    """The leaf of a DER certificate chain (servers may send several back to back)."""
    if len(chain) < 4 or chain[0] != 0x30:
        return chain
    # DER SEQUENCE: 0x30, then a length in short or long form.
    first = chain[1]
    if first < 0x80:
        return chain[: 2 + first]
    count = first & 0x7F
    length = int.from_bytes(chain[2 : 2 + count], "big")
    return chain[: 2 + count + length]


def _split_certificates(chain: bytes) -> list[bytes]:
    """The certificates of a DER chain, leaf first (Part 6: the server's own, then its CAs)."""
    out: list[bytes] = []
    while chain:
        first = _first_certificate(chain)
        out.append(first)
        chain = chain[len(first) :]
    return out or [b""]
