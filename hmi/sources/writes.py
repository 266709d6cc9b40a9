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


@dataclass(frozen=True, slots=True)
class WriteResult:
    ok: bool
    status: str  # the server's status code name, or "Rejected" when nothing was sent
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
