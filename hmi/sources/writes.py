"""What a write returns, and the checks every source makes before it sends one.

Who may write is decided before this point (roles, confirmation, audit); here a value is
checked against the tag itself: declared writable, inside its configured range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hmi.core.tags import TagSpec


class NotConnected(Exception):
    """The connection is down; browse, write and call need it up."""


class WriteRejected(ValueError):
    """A value that cannot be sent: wrong type, out of the tag's limits, or not writable."""


# What a write over a broker can honestly say (MQTT: the broker's PUBACK says nothing about the
# device). OPC UA writes report the server's own status code name instead.
CONFIRMED = "Good"  # the device showed the value (read-back) or replied that it applied it
SENT = "Sent"  # the broker took it; nothing can show whether the device did (ok, but unconfirmed)
NOT_CONFIRMED = "UncertainNotConfirmed"  # sent, but no confirmation came in time: it may or may not have happened
REFUSED_BY_DEVICE = "BadRefusedByDevice"  # the device's reply says it did not apply it


@dataclass(frozen=True, slots=True)
class WriteResult:
    """`ok`: the write is known (or, for SENT, believed) to be done. An Uncertain status means
    it was sent and may or may not have been applied: not ok, and not a failure either."""

    ok: bool
    status: str  # the server's status code name, one of the statuses above, or "Rejected" when nothing was sent
    code: int = 0
    message: str = ""
    value: Any = None  # the value as sent, after coercion


def check_limits(spec: TagSpec, value: Any) -> None:
    """Refuse numbers outside the tag's configured range [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if spec.low is not None and value < spec.low:
        raise WriteRejected(f"{value:g} is below the tag's low limit {spec.low:g} {spec.unit}".rstrip())
    if spec.high is not None and value > spec.high:
        raise WriteRejected(f"{value:g} is above the tag's high limit {spec.high:g} {spec.unit}".rstrip())
