"""OPC UA source: one client connection, one subscription per group, every configured tag.

Notifications become one SampleBatch per publish response: the subscription's
`publish_callback` is overridden, so there is no per-notification task or queue between
asyncua and the bus (asyncua's iterator mode drops the oldest beyond its queue size, its
callback mode starts a task per value). Client handle = tag id. Server source timestamps are
kept; the StatusCode maps to Quality.

Security: None, Sign or SignAndEncrypt with the policies asyncua implements. The client's
application certificate is generated on first use under <data folder>/pki (hmi.sources.pki);
the server's certificate is taken from its endpoint list and validated as OPC UA Part 4 asks
(validity, ApplicationUri, host name, key usage, trust list or a trusted CA's chain with its
CRLs: Pki.check_server) *before* a secure channel is opened with it, so an unknown or invalid
server gets nothing, not even a user name. Identities: anonymous, or user name with a password resolved from a reference
(hmi.sources.credentials).

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

Threads: everything runs on the runtime's asyncio loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.crypto import security_policies

from hmi.config.models import Deadband, OpcUaConnection
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import Quality, quality_from_opcua_status
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import DataType, TagSpec
from hmi.core.values import INEXACT_INTEGER, MAX_EXACT_INT, NON_FINITE, TIMESTAMP_OUT_OF_WINDOW
from hmi.sources.backoff import Backoff
from hmi.sources.credentials import CredentialError, resolve_password
from hmi.sources.health import RateLimitedLog, SourceHealth, comm_lost_batch
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

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OPCUA_NO_TIME_NS = -11_644_473_600 * 1_000_000_000  # 1601-01-01, OPC UA's encoded 0: "no time"
_BACKOFF_FIRST_S = 0.25
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

# Value ranges of the integer variant types, for range checks on writes.
_INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


def datetime_to_ns(value: datetime | None) -> int:
    """ns since the Unix epoch; 0 for no time, which includes OPC UA's zero DateTime (1601-01-01)."""
    if value is None:
        return 0
    if value.tzinfo is None:  # asyncua returns naive UTC in some versions
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return 0 if ns == _OPCUA_NO_TIME_NS else ns


_TS_BEYOND = np.iinfo(np.int64).max  # a time int64 ns cannot hold (after 2262): surely outside the window


def status_name(code: int | ua.StatusCode | None) -> str:
    """The name of an OPC UA status code for logs and events: "BadNotReadable", with the info
    bits in hex when set ("BadNotReadable (0x806F0400)"), "Bad 0x80FF0000" for an unknown code.
    (asyncua's StatusCode prints as "StatusCode(value=2154758144)", and its `.name` says only
    "Bad" for a code with info bits.)"""
    if code is None:
        return "Good"
    return _status_name(int(code.value if isinstance(code, ua.StatusCode) else code) & 0xFFFFFFFF)


@functools.cache
def _status_name(code: int) -> str:
    names = ua.status_codes.code_to_name_doc
    if code in names:
        return names[code][0]
    base = names.get(code & 0xFFFF0000)
    if base is not None:
        return f"{base[0]} (0x{code:08X})"
    severity = ("Good", "Uncertain", "Bad", "Bad")[code >> 30]
    return f"{severity} 0x{code:08X}"


def parse_node_id(address: str, namespaces: list[str]) -> ua.NodeId:
    """A NodeId string; `nsu=<uri>;...` is resolved against the server's namespace array."""
    if address.startswith("nsu="):
        uri, _, rest = address[4:].partition(";")
        try:
            index = namespaces.index(uri)
        except ValueError:
            raise ValueError(f"namespace {uri!r} is not on the server") from None
        address = f"ns={index};{rest}"
    try:
        return ua.NodeId.from_string(address)
    except Exception as exc:  # asyncua raises several types for a malformed string
        raise ValueError(f"not a NodeId: {address!r} ({exc})") from None


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


# -- subscriptions ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    name: str
    publishing_interval_ms: float
    sampling_interval_ms: float
    queue_size: int
    deadband: Deadband | None
    tag_ids: list[int] = field(default_factory=list)


class _BatchingSubscription(Subscription):
    """Turns each publish response into one batch. Client handle = tag id."""

    def __init__(self, source: OpcUaSource, group: _Group, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._source = source
        self.group = group
        self.first_publish = asyncio.Event()
        self.keepalive_s = 0.0

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
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


# -- the source -----------------------------------------------------------------------------


class OpcUaSource:
    def __init__(
        self,
        name: str,
        config: OpcUaConnection,
        tags: list[TagSpec],
        bus: TagBus,
        pki: Pki | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.bus = bus
        self.tags = list(tags)
        self.pki = pki
        self.tag_ids = bus.register(self.tags)
        self._spec_by_id = dict(zip(self.tag_ids, self.tags, strict=True))
        self._id_by_name = {spec.name: tag_id for tag_id, spec in self._spec_by_id.items()}
        self._index_of = {
            i: int(s.extra["index"]) for i, s in self._spec_by_id.items() if s.extra.get("index") is not None
        }
        self._numeric = {i for i, s in self._spec_by_id.items() if s.datatype != DataType.STRING}
        self.health = SourceHealth(name, bus)
        self.connected_tag = self.health.connected_tag
        self.connected = False
        self.notifications = 0
        self.connects = 0
        self.last_error = ""
        self._groups = self._make_groups()
        self._quality_cache: dict[int, int] = {}
        self._window = config.timestamp_window()
        self._reason_of: dict[int, str] = {}  # tag id -> why its last value was not taken as sent
        self._lost = asyncio.Event()
        self._client: Client | None = None
        self._subscriptions: list[_BatchingSubscription] = []
        self._variant_cache: dict[str, tuple[ua.VariantType, int]] = {}
        self._ratelog = RateLimitedLog(log)
        self._reported: set[str] = set()  # failure messages already published as events
        # Resolved NodeId string ("ns=2;s=...") -> tag id, filled when subscribing: lets the
        # tag browser say which configured tag a browsed node is.
        self._tag_by_node: dict[str, int] = {}

    @property
    def rejected(self) -> int:
        return self.health.rejected_total

    def _make_groups(self) -> dict[str, _Group]:
        c = self.config
        groups: dict[str, _Group] = {}
        for tag_id, spec in self._spec_by_id.items():
            name = str(spec.extra.get("group") or "")
            group = groups.get(name)
            if group is None:
                g = c.groups.get(name) if name else None
                group = groups[name] = _Group(
                    name,
                    g.publishing_interval_ms if g and g.publishing_interval_ms else c.publishing_interval_ms,
                    g.sampling_interval_ms if g and g.sampling_interval_ms is not None else c.sampling_interval_ms,
                    g.queue_size if g and g.queue_size else c.queue_size,
                    g.deadband if g and g.deadband else c.deadband,
                )
            group.tag_ids.append(tag_id)
        return groups

    # -- notifications (asyncio thread) -------------------------------------------------

    def on_data_change(self, items: list[ua.MonitoredItemNotification]) -> None:
        n = len(items)
        ids = np.empty(n, np.int32)
        ts = np.empty(n, np.int64)
        values = np.empty(n, np.float64)
        quality = np.empty(n, np.uint8)
        texts: dict[int, str] = {}
        # Rows not taken as sent: (row, reason, detail, counted as a reject). None until one occurs.
        odd: list[tuple[int, str, str, bool]] | None = None
        far: dict[int, int] | None = None  # rows whose time int64 ns cannot hold -> that time
        received = now_ns()
        specs = self._spec_by_id
        qcache = self._quality_cache
        exact = MAX_EXACT_INT
        row = 0
        for item in items:
            tag_id = item.ClientHandle
            if tag_id not in specs:
                self.health.reject(str(tag_id), "unknown client handle")
                continue
            dv = item.Value
            status = dv.StatusCode.value if dv.StatusCode is not None else 0
            q = qcache.get(status)
            if q is None:
                q = qcache[status] = int(quality_from_opcua_status(status))
            variant = dv.Value
            raw = variant.Value if variant is not None else None
            kind = type(raw)
            # The common case first and cheap; non-finite floats are found after the loop, vectorised.
            if kind is float:
                value = raw
            elif (kind is int and -exact <= raw <= exact) or kind is bool:
                value = float(raw)
            else:
                value, q, why = self._convert(tag_id, raw, variant, q, row, texts)
                if why:
                    odd = odd or []
                    odd.append((row, why[0], why[1], why[2]))
            if status and qcache[status]:  # a non-Good status: keep its name (Bad ones are rejects)
                odd = odd or []
                odd.append((row, status_name(status), "", qcache[status] >= Quality.BAD))
            ids[row] = tag_id
            stamp = datetime_to_ns(dv.SourceTimestamp) or datetime_to_ns(dv.ServerTimestamp) or received
            try:
                ts[row] = stamp
            except OverflowError:  # year 9999 and the like: refused by the window check below
                ts[row] = _TS_BEYOND if stamp > 0 else -_TS_BEYOND
                far = far or {}
                far[row] = stamp
            values[row] = value
            quality[row] = q
            row += 1
        if not row:
            return
        ids, ts, values, quality = ids[:row], ts[:row], values[:row], quality[:row]
        odd = self._check_batch(ids, ts, values, quality, texts, received, odd, far)
        self.notifications += row
        self.health.received(1, row)
        self.bus.publish(SampleBatch(ids, ts, values, quality, texts or None))
        if odd is not None or self._reason_of:
            self._account(ids, odd or [])

    def _check_batch(
        self,
        ids: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        quality: np.ndarray,
        texts: dict[int, str],
        received: int,
        odd: list[tuple[int, str, str, bool]] | None,
        far: dict[int, int] | None,
    ) -> list[tuple[int, str, str, bool]] | None:
        """The shared value rule over a whole batch (hmi/core/values.py): non-finite numbers
        BAD, source times outside the window replaced by the arrival time, UNCERTAIN."""
        nonfinite = ~np.isfinite(values) & (quality < Quality.BAD)
        if nonfinite.any():
            for r in np.flatnonzero(nonfinite).tolist():
                if r not in texts:  # a text row carries NaN as its number
                    quality[r] = Quality.BAD
                    odd = odd or []
                    odd.append((r, NON_FINITE, f"{values[r]}", True))
        window = self._window
        outside = (ts < received - window.max_age_ns) | (ts > received + window.max_ahead_ns)
        if outside.any():
            for r in np.flatnonzero(outside).tolist():
                refused = far.get(r, int(ts[r])) if far else int(ts[r])
                ts[r] = received
                quality[r] = max(int(quality[r]), Quality.UNCERTAIN)
                odd = odd or []
                odd.append((r, TIMESTAMP_OUT_OF_WINDOW, f"source time {window.describe(refused)}", True))
        return odd

    def _account(self, ids: np.ndarray, odd: list[tuple[int, str, str, bool]]) -> None:
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
                detail = "; ".join(d for _, d in reasons if d)
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

    def _convert(
        self, tag_id: int, raw: Any, variant: ua.Variant | None, q: int, row: int, texts: dict[int, str]
    ) -> tuple[float, int, tuple[str, str, bool] | None]:
        """The less common values: None, big integers, strings, arrays, DateTime, numpy scalars,
        and what cannot be a sample. Returns (value, quality, (reason, detail, counted) or None)."""
        spec = self._spec_by_id[tag_id]
        if raw is None:
            if q == Quality.GOOD:  # Good status without a value; a Bad status says why itself
                return np.nan, Quality.BAD, ("no value (Null variant)", "", True)
            return np.nan, max(q, Quality.BAD), None
        if isinstance(raw, list):
            index = self._index_of.get(tag_id)
            if index is not None and len(raw) == 1:
                raw = raw[0]  # the server applied the IndexRange
            elif index is not None and index < len(raw):
                raw = raw[index]  # it sent the whole array (asyncua's server ignores IndexRange here)
            else:
                detail = f"{len(raw)} values at {spec.address}; give the tag an `index` to read one element"
                return np.nan, Quality.BAD, ("array without an index", detail, True)
        if isinstance(raw, bool):
            return float(raw), q, None  # a flag on a numeric tag is 1 or 0 (the shared value rule)
        if isinstance(raw, int | np.integer):
            if -MAX_EXACT_INT <= raw <= MAX_EXACT_INT:
                return float(raw), q, None
            return float(raw), max(q, Quality.UNCERTAIN), (INEXACT_INTEGER, f"{int(raw)}", True)
        if isinstance(raw, float | np.floating):
            return float(raw), q, None  # NaN and ±Inf are checked for the whole batch
        if isinstance(raw, str | ua.LocalizedText):
            text = raw if isinstance(raw, str) else (raw.Text or "")
            if tag_id in self._numeric:
                return np.nan, Quality.BAD, ("text on a numeric tag", f"{spec.name} is {spec.datatype}", True)
            texts[row] = text
            return np.nan, q, None
        if isinstance(raw, datetime):
            return datetime_to_ns(raw) / 1e9, q, None
        kind = variant.VariantType.name if variant is not None else type(raw).__name__  # Guid, not UUID
        return np.nan, Quality.BAD, (f"unsupported type {kind}", f"{type(raw).__name__} at {spec.address}", True)

    def on_status_change(self, status: ua.StatusCode) -> None:
        if not status.is_good():
            log.warning("%s: subscription status %s", self.name, status_name(status))
            self._lost.set()

    # -- connection life ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe and stay connected until `stop` is set."""
        self._mark_comm_lost("not connected yet", publish_event=False)
        health = asyncio.create_task(self._health_loop(stop))
        backoff = Backoff(_BACKOFF_FIRST_S, self.config.reconnect_max_delay_s)
        try:
            while not stop.is_set():
                failure_is_config = False
                try:
                    await self._session(stop)
                    backoff.reset()
                    reason = "connection lost"
                except (CertificateRefused, CredentialError) as exc:
                    reason, failure_is_config = str(exc), True
                except ua.UaStatusCodeError as exc:
                    reason, failure_is_config = self._explain_status(exc)
                except (OSError, TimeoutError, ua.UaError, ValueError, ConnectionError) as exc:
                    reason = f"cannot connect to {self.config.endpoint}: {_describe(exc)}"
                    log.debug("%s: connect failed", self.name, exc_info=True)
                except Exception as exc:  # a bug here must not end acquisition for good
                    reason = f"unexpected error: {_describe(exc)}"
                    log.exception("%s: unexpected error in the connection loop", self.name)
                if stop.is_set():
                    break
                self.last_error = reason
                if self.connected:
                    self._mark_comm_lost(reason, publish_event=True)
                    self.connected = False
                elif failure_is_config:
                    self._report_once(reason)
                wait = backoff.next(ever_connected=self.connects > 0, config_problem=failure_is_config)
                level = logging.ERROR if failure_is_config else logging.INFO
                self._ratelog(level, f"retry:{reason}", "%s: %s; retrying in %.1f s", self.name, reason, wait)
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            health.cancel()
            self.connected = False

    def _explain_status(self, exc: ua.UaStatusCodeError) -> tuple[str, bool]:
        code = exc.code
        name = status_name(code)
        if code in _IDENTITY_CODES:
            who = f"user {self.config.user!r}" if self.config.user else "anonymous access"
            return (
                f"{self.config.endpoint} refused {who} ({name}): check the user name and the password "
                f"behind password_ref {self.config.password_ref!r}"
                if self.config.user
                else f"{self.config.endpoint} refused {who} ({name}): the server needs a user name",
                True,
            )
        if code in _CLIENT_CERT_CODES and self.pki is not None:
            thumb = thumbprint(self.pki.own_cert.read_bytes()) if self.pki.own_cert.exists() else "?"
            return (
                f"{self.config.endpoint} refused this client's certificate ({name}, thumbprint {thumb}): "
                f"trust it on the server",
                True,
            )
        return f"{self.config.endpoint}: {name}: {exc}", False

    def _report_once(self, reason: str) -> None:
        if reason in self._reported:
            return
        self._reported.add(reason)
        self.bus.publish_events([Event(EventCategory.SYSTEM, self.name, f"{self.name}: {reason}", Severity.ERROR)])

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
        # asyncua's supervisor stays only for what it sees at once (the transport closing); its
        # periodic probe gives up after one watchdog interval, and a busy server streaming
        # thousands of notifications a second answered it later than that here and was taken
        # for lost. The subscriptions' keep-alives (`_keepalive_watchdog`) tell a live server
        # from a hung one instead; it probes only connections without subscriptions.
        client = Client(c.endpoint, timeout=c.timeout_s, watchdog_intervall=_ASYNCUA_PROBE_OFF_S)
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
        probe = Client(c.endpoint, timeout=c.timeout_s)
        endpoints = await probe.connect_and_get_server_endpoints()
        matching = [e for e in endpoints if e.SecurityMode == mode and e.SecurityPolicyUri == policy.URI]
        if not matching:
            offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}:{e.SecurityMode.name}" for e in endpoints})
            raise ValueError(f"{c.endpoint} does not offer {c.security} (it offers: {', '.join(offered)})")
        endpoint = matching[0]
        server_der, *issuers = _split_certificates(endpoint.ServerCertificate)
        server_name = f"{endpoint.Server.ApplicationName.Text or endpoint.Server.ApplicationUri!r} at {c.endpoint}"
        # Part 4's checks (validity, ApplicationUri, host, usage, chain and CRLs) before the
        # server gets anything from us; off the loop, as it reads the PKI and may resolve names.
        await asyncio.to_thread(
            pki.check_server,
            server_der,
            server_name,
            application_uri=endpoint.Server.ApplicationUri or "",
            host=urlsplit(c.endpoint).hostname or "",
            chain=issuers,
        )
        await client.set_security(policy, str(cert), str(key), server_certificate=server_der, mode=mode)
        return client

    async def _session(self, stop: asyncio.Event) -> None:
        client = await self._make_client()
        self._lost = asyncio.Event()

        async def on_connection_lost(exc: Exception) -> None:
            log.warning("%s: connection lost: %r", self.name, exc)
            self._lost.set()

        client.connection_lost_callback = on_connection_lost
        await client.connect(auto_reconnect=False)
        self._client = client
        try:
            namespaces = await client.get_namespace_array()
            transferred = await self._restore_or_create(client, namespaces)
            self.connected = True
            self.connects += 1
            self.health.set_connected(True)
            self.bus.publish_events(
                [Event(EventCategory.SYSTEM, self.name, f"Connection {self.name} established ({self.config.endpoint})")]
            )
            self._reported.clear()
            log.info(
                "%s: connected to %s (%s), %s %d subscription(s)",
                self.name,
                self.config.endpoint,
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
            try:
                await asyncio.wait_for(client.disconnect(), 2.0)
            except Exception:  # the peer may already be gone; nothing to save
                log.debug("%s: disconnect failed", self.name, exc_info=True)
        if stop.is_set():
            self._mark_comm_lost("stopped", publish_event=False)
            self.connected = False

    async def _keepalive_watchdog(self, client: Client) -> None:
        """Return when the connection is lost: a subscription has sent neither data nor
        keep-alive for two periods, or, on a connection without subscriptions (nothing to
        keep alive), the server does not answer a read of its state within the request timeout."""
        interval = self.config.keepalive_s
        next_probe = time.monotonic() + interval
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for sub in self._subscriptions:
                last = sub.last_publish_at
                if last is not None and now - last > 2 * sub.keepalive_s + 0.5:
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
        if old and await self._transfer(client, old):
            return True
        await self._create_subscriptions(client, namespaces)
        return False

    async def _transfer(self, client: Client, old: list[_BatchingSubscription]) -> bool:
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
            new = _BatchingSubscription(self, sub.group, session, sub.parameters, handler=self)
            new.subscription_id = sub.subscription_id
            new.last_sequence_number = sub.last_sequence_number
            new.keepalive_s = sub.keepalive_s
            new.last_publish_at = time.monotonic()
            # The one private hook: route this id's publish responses to us, as asyncua's restore() does.
            session._subscription_callbacks[new.subscription_id] = new.publish_callback
            self._subscriptions.append(new)
            last = sub.last_sequence_number or 0
            for seq in sorted(int(n) for n in result.AvailableSequenceNumbers or []):
                if seq <= last:
                    continue
                message = await session.republish(new.subscription_id, seq)
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
            sub = _BatchingSubscription(self, group, client.uaclient.session, params, handler=self)
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
                requests.append(self._monitor_request(node_id, tag_id, spec, group))
            results = await sub.create_monitored_items(requests) if requests else []
            for request, res in zip(requests, results, strict=True):
                if isinstance(res, ua.StatusCode):
                    spec = self._spec_by_id[request.RequestedParameters.ClientHandle]
                    bad.append((spec, status_name(res)))
        if bad:
            self._mark_bad(bad)

    def _monitor_request(
        self, node_id: ua.NodeId, tag_id: int, spec: TagSpec, group: _Group
    ) -> ua.MonitoredItemCreateRequest:
        index = spec.extra.get("index")
        read = ua.ReadValueId(
            NodeId=node_id,
            AttributeId=ua.AttributeIds.Value,
            IndexRange=str(index) if index is not None else None,
        )
        deadband = spec.extra.get("deadband") or group.deadband
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
                index = spec.extra.get("index")
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
                    dv.SourceTimestamp = datetime.fromtimestamp(marked_at / 1e9, UTC)
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
            raise ValueError(f"no node {node_id} on {self.config.endpoint} ({status_name(status)})")
        browse_name, display, node_class = (r.Value.Value for r in results)
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
                raise ValueError(f"no node {'/'.join(parts[: i + 1])!r} on {self.config.endpoint}")
            found = matches[0]
            current = client.get_node(found.NodeId)
        if found is None:
            return await self.node(ua.NodeId(ua.ObjectIds.ObjectsFolder).to_string())
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
        eu_range, eu_unit = None, ""
        props = await _analog_property_ids(client, [nid])
        if props:
            read = [ua.ReadValueId(NodeId=p, AttributeId=ua.AttributeIds.Value) for p in props.values()]
            values = dict(zip(props, await client.uaclient.read(ua.ReadParameters(NodesToRead=read)), strict=True))
            eu_range, eu_unit = _eu_range(values.get((0, "EURange"))), _eu_unit(values.get((0, "EngineeringUnits")))
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
            group = self._groups[""] = _Group("", c.publishing_interval_ms, c.sampling_interval_ms, c.queue_size,
                                              c.deadband)  # fmt: skip
        group.tag_ids.append(tag_id)
        sub = next((s for s in self._subscriptions if s.group is group), None)
        if sub is not None:
            results = await sub.create_monitored_items([self._monitor_request(nid, tag_id, spec, group)])
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
            vtype, rank = await self._variant_of(client, nid)
            index = spec.extra.get("index")
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
        client = self._live_client()
        namespaces = await client.get_namespace_array()
        try:
            obj = parse_node_id(object_id, namespaces)
            method = parse_node_id(method_id, namespaces)
            signature = await self._signature(client, method, method_id)
            values = signature.coerce(args)
        except (WriteRejected, ValueError) as exc:
            return CallResult(False, "Rejected", message=str(exc))
        variants = [ua.Variant(v, a.variant_type) for v, a in zip(values, signature.inputs, strict=True)]
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
            raise ValueError(f"no node {method_id} on {self.config.endpoint} ({status_name(status)})")
        display, node_class = (r.Value.Value for r in results)
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

    async def _variant_of(self, client: Client, nid: ua.NodeId) -> tuple[ua.VariantType, int]:
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


def coerce_value(value: Any, vtype: ua.VariantType) -> Any:
    """`value` as the Python value asyncua encodes as `vtype`; WriteRejected when it does not fit."""
    if vtype == ua.VariantType.Boolean:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "on", "off"):
            return value.strip().lower() in ("true", "1", "on")
        raise WriteRejected(f"{value!r} is not a boolean")
    if vtype in _INT_RANGES:
        number = _number(value)
        if not float(number).is_integer():
            raise WriteRejected(f"{value!r} is not a whole number ({vtype.name})")
        low, high = _INT_RANGES[vtype]
        number = int(number)
        if not low <= number <= high:
            raise WriteRejected(f"{number} does not fit in {vtype.name} ({low}..{high})")
        return number
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        number = float(_number(value))
        if not math.isfinite(number):
            raise WriteRejected(f"{value!r} is not a finite number")
        if vtype == ua.VariantType.Float and abs(number) > _FLOAT32_MAX:
            raise WriteRejected(f"{number} does not fit in Float")
        return number
    if vtype == ua.VariantType.String:
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return str(value)
        raise WriteRejected(f"{value!r} is not text")
    if vtype == ua.VariantType.DateTime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise WriteRejected(f"{value!r} is not an ISO 8601 time") from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        raise WriteRejected(f"{value!r} is not a time")
    raise WriteRejected(f"writing {vtype.name} values is not supported")


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            pass
    raise WriteRejected(f"{value!r} is not a number")


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
                        ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasProperty),
                        IsInverse=False,
                        IncludeSubtypes=True,
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
    value = dv.Value.Value if dv is not None and dv.Value is not None and dv.StatusCode.is_good() else None
    low, high = getattr(value, "Low", None), getattr(value, "High", None)
    if isinstance(low, int | float) and isinstance(high, int | float) and math.isfinite(low) and math.isfinite(high):
        return float(low), float(high)
    return None


def _eu_unit(dv: ua.DataValue | None) -> str:
    value = dv.Value.Value if dv is not None and dv.Value is not None and dv.StatusCode.is_good() else None
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


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
