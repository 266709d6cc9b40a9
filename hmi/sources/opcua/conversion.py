"""OPC UA values without a client: notifications to samples, and values to what asyncua sends.

Reading: `NotificationConverter` turns the MonitoredItemNotifications of one publish response
into the arrays of one SampleBatch. Client handle = tag id. Server source timestamps are kept
(`datetime_to_ns`); the StatusCode maps to Quality, and a non-Good status keeps its name
(`status_name`) as the reason the record gives. The shared value rule (hmi/core/values.py)
is applied to the whole batch. Writing: `coerce_value` turns an operator's value into the
Python value asyncua encodes as the node's type, or says why it does not fit.

Nothing here talks to a server; the source (source.py) publishes what comes out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from asyncua import ua

from hmi.core.quality import Quality, quality_from_opcua_status
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagSpec
from hmi.core.values import INEXACT_INTEGER, MAX_EXACT_INT, NON_FINITE, TIMESTAMP_OUT_OF_WINDOW, TimestampWindow
from hmi.sources.writes import WriteRejected

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OPCUA_NO_TIME_NS = -11_644_473_600 * 1_000_000_000  # 1601-01-01, OPC UA's encoded 0: "no time"

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

# A row not taken as sent: (row, reason, detail, counted as a reject).
Odd = tuple[int, str, str, bool]


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


# -- notifications to samples (asyncio thread, once per publish response) --------------------


class NotificationConverter:
    """The notifications of one connection's tags to one SampleBatch each.

    `specs`, `index_of` and `numeric` are the source's own dict and set, shared, not copied:
    a tag the source adds at run time (`OpcUaSource.watch`) is known here at once.
    `reject` counts a notification that names no tag (SourceHealth.reject).
    """

    __slots__ = ("_index_of", "_numeric", "_quality_cache", "_reject", "_specs", "_window")

    def __init__(
        self,
        specs: dict[int, TagSpec],
        index_of: dict[int, int],
        numeric: set[int],
        window: TimestampWindow,
        reject: Callable[[str, str], None],
    ) -> None:
        self._specs = specs
        self._index_of = index_of
        self._numeric = numeric
        self._window = window
        self._reject = reject
        self._quality_cache: dict[int, int] = {}

    def convert(self, items: Sequence[ua.MonitoredItemNotification]) -> tuple[SampleBatch, list[Odd] | None] | None:
        """One batch of the notifications that name a tag, and the rows not taken as sent
        (None when every row was); None when no notification names a tag."""
        n = len(items)
        ids = np.empty(n, np.int32)
        ts = np.empty(n, np.int64)
        values = np.empty(n, np.float64)
        quality = np.empty(n, np.uint8)
        texts: dict[int, str] = {}
        # Rows not taken as sent: (row, reason, detail, counted as a reject). None until one occurs.
        odd: list[Odd] | None = None
        far: dict[int, int] | None = None  # rows whose time int64 ns cannot hold -> that time
        received = now_ns()
        specs = self._specs
        qcache = self._quality_cache
        exact = MAX_EXACT_INT
        row = 0
        for item in items:
            tag_id = item.ClientHandle
            if tag_id not in specs:
                self._reject(str(tag_id), "unknown client handle")
                continue
            dv = item.Value
            status = dv.StatusCode.value if dv.StatusCode is not None else 0
            q = qcache.get(status)
            if q is None:
                q = qcache[status] = int(quality_from_opcua_status(status))
            variant = dv.Value
            raw: Any = variant.Value if variant is not None else None
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
            return None
        ids, ts, values, quality = ids[:row], ts[:row], values[:row], quality[:row]
        odd = self._check_batch(ids, ts, values, quality, texts, received, odd, far)
        return SampleBatch(ids, ts, values, quality, texts or None), odd

    def _check_batch(
        self,
        ids: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        quality: np.ndarray,
        texts: dict[int, str],
        received: int,
        odd: list[Odd] | None,
        far: dict[int, int] | None,
    ) -> list[Odd] | None:
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

    def _convert(
        self, tag_id: int, raw: Any, variant: ua.Variant | None, q: int, row: int, texts: dict[int, str]
    ) -> tuple[float, int, tuple[str, str, bool] | None]:
        """The less common values: None, big integers, strings, arrays, DateTime, numpy scalars,
        and what cannot be a sample. Returns (value, quality, (reason, detail, counted) or None)."""
        spec = self._specs[tag_id]
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


# -- values to what asyncua sends (writes and method arguments) -------------------------------


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


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
