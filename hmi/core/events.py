"""Events: alarm transitions, operator actions and system happenings, as frozen records."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hmi.core.samples import now_ns


class EventCategory(StrEnum):
    SYSTEM = "system"  # connection lost/restored, writer trouble, process restarts
    ALARM = "alarm"  # an alarm state transition
    OPERATOR = "operator"  # acknowledgements, shelving, writes, logins
    ADVISORY = "advisory"  # digital-twin advisories


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `source` names what it concerns: a connection, tag or alarm."""

    category: EventCategory
    source: str
    message: str
    severity: Severity = Severity.INFO
    ts_ns: int = field(default_factory=now_ns)
    user: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "category": str(self.category),
            "source": self.source,
            "message": self.message,
            "severity": str(self.severity),
            "ts_ns": self.ts_ns,
            "user": self.user,
            "details": self.details,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            category=EventCategory(data["category"]),
            source=data["source"],
            message=data["message"],
            severity=Severity(data.get("severity", "info")),
            ts_ns=int(data["ts_ns"]),
            user=data.get("user", ""),
            details=dict(data.get("details") or {}),
        )


def format_duration(seconds: Any) -> str:
    """A shelve or similar duration as an operator reads it: "15 min", "1.5 h", "30 s"; "" when
    not a number (a malformed record must not break a report)."""
    try:
        s = float(seconds or 0)
    except (TypeError, ValueError):
        return ""
    return f"{s / 3600:g} h" if s >= 3600 and s % 900 == 0 else f"{s / 60:g} min" if s >= 60 else f"{s:g} s"
