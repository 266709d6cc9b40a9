"""Alarm records: definitions, states, transitions and the current status of an alarm.

States follow ISA-18.2 / IEC 62682. An alarm has an alarm state (NORMAL, UNACK_ACTIVE,
ACK_ACTIVE, UNACK_RTN), computed from whether it is active and whether it has been
acknowledged, and a mode (in service, SHELVED, SUPPRESSED by design, OUT_OF_SERVICE).
While not in service the condition is still evaluated and recorded, but never
annunciated; the state shown then is the mode.

`AlarmSettings` are the system-wide settings both the engine and each alarm's logic read.

Transitions are frozen records; `AlarmTransition.to_event()` makes the Event that goes
on the bus and into the historian. The event's details carry everything needed to
restore the engine after a restart (format version ALARM_EVENT_VERSION).
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from hmi.core.events import Event, EventCategory, Severity

ALARM_EVENT_VERSION = 1
FLOOD_SOURCE_PREFIX = "flood."


class Priority(IntEnum):
    """Higher sorts first. Names are what the project file says."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    URGENT = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Priority:
        return cls[text.upper()]


class Condition(StrEnum):
    HI = "hi"
    HIHI = "hihi"
    LO = "lo"
    LOLO = "lolo"
    DEVIATION = "deviation"  # |value - setpoint tag| > limit
    RATE = "rate"  # change per second over rate_period_s beyond limit
    DISCRETE = "discrete"  # value is one of `states` (bool or enumerated)
    BAD_QUALITY = "bad_quality"  # quality BAD or COMM_LOST
    COMM_LOSS = "comm_loss"  # quality COMM_LOST only

    @property
    def is_limit(self) -> bool:
        return self in (Condition.HI, Condition.HIHI, Condition.LO, Condition.LOLO)

    @property
    def is_quality(self) -> bool:
        return self in (Condition.BAD_QUALITY, Condition.COMM_LOSS)


class AlarmState(StrEnum):
    NORMAL = "NORMAL"
    UNACK_ACTIVE = "UNACK_ACTIVE"
    ACK_ACTIVE = "ACK_ACTIVE"
    UNACK_RTN = "UNACK_RTN"


class Mode(StrEnum):
    IN_SERVICE = "IN_SERVICE"
    SHELVED = "SHELVED"
    SUPPRESSED = "SUPPRESSED"  # by design: a condition on other tags
    OUT_OF_SERVICE = "OUT_OF_SERVICE"


class Cause(StrEnum):
    ACTIVATED = "activated"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    RESET = "reset"  # a latched alarm released by the operator
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SHELF_EXPIRED = "shelf_expired"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    REMOVED_FROM_SERVICE = "out_of_service"
    RETURNED_TO_SERVICE = "in_service"


def alarm_state(active: bool, acked: bool) -> AlarmState:
    if active:
        return AlarmState.ACK_ACTIVE if acked else AlarmState.UNACK_ACTIVE
    return AlarmState.NORMAL if acked else AlarmState.UNACK_RTN


def shown_state(state: AlarmState, mode: Mode) -> str:
    """What the operator sees: the mode while not in service, else the alarm state."""
    return str(mode) if mode != Mode.IN_SERVICE else str(state)


TEMPLATE_FIELDS = frozenset(
    {"value", "unit", "limit", "tag", "name", "machine", "setpoint", "deviation", "rate", "priority"}
)
# Fields every alarm has; the measured quantities beyond `value` come with their condition.
_COMMON_FIELDS = frozenset({"value", "unit", "tag", "name", "machine", "priority"})
_CONDITION_FIELDS = {
    Condition.HI: frozenset({"limit"}),
    Condition.HIHI: frozenset({"limit"}),
    Condition.LO: frozenset({"limit"}),
    Condition.LOLO: frozenset({"limit"}),
    Condition.DEVIATION: frozenset({"limit", "setpoint", "deviation"}),
    Condition.RATE: frozenset({"limit", "rate"}),
}
# Numbers a message may show; missing (no reading, NaN) they read MISSING, never "nan".
_MEASURED = frozenset({"value", "limit", "setpoint", "deviation", "rate"})
MISSING = "—"
_UNIT_SUFFIX = re.compile(r"^/\w+")  # "/s" of "{unit}/s"
_FORMATTER = string.Formatter()


def template_fields(condition: Condition) -> frozenset[str]:
    """The fields a message template of a `condition` alarm can use."""
    return _COMMON_FIELDS | _CONDITION_FIELDS.get(condition, frozenset())


def unavailable_fields(template: str, condition: Condition) -> list[str]:
    """Known fields in `template` that a `condition` alarm cannot fill, in order of appearance."""
    available = template_fields(condition)
    out: list[str] = []
    for _, field_name, _spec, _conv in _FORMATTER.parse(template):
        if field_name in TEMPLATE_FIELDS and field_name not in available and field_name not in out:
            out.append(field_name)
    return out


def check_template(template: str) -> None:
    """Raise ValueError unless `template` only uses known fields (no attribute or index access)."""
    for _, field_name, spec, _conv in _FORMATTER.parse(template):
        if field_name is None:
            continue
        if field_name not in TEMPLATE_FIELDS:
            known = ", ".join(sorted(TEMPLATE_FIELDS))
            raise ValueError(f"unknown field {{{field_name}}} in the message (known: {known})")
        if spec and "{" in spec:
            raise ValueError("nested fields are not allowed in the message")
    sample = {"value": 1.5, "limit": 1.0, "setpoint": 1.0, "deviation": 0.5, "rate": 0.5, "unit": "u"}
    try:
        render_template(template, sample)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the message cannot be formatted: {exc}") from None


def _missing(value: object) -> bool:
    return value is None or value == "" or value != value  # NaN is the one value unequal to itself


@functools.lru_cache(maxsize=4096)
def _parsed(template: str) -> tuple[tuple[str, str | None, str | None, str | None], ...]:
    return tuple(_FORMATTER.parse(template))


@functools.lru_cache(maxsize=4096)
def _measured_in(template: str) -> tuple[str, ...]:
    return tuple({f for _, f, _, _ in _parsed(template) if f in _MEASURED})


def _render(template: str, values: dict[str, Any], *, until_measured: bool = False) -> str:
    """The template filled in; a missing number reads MISSING and takes no unit after it.
    With `until_measured`: only the text before the first number (the alarm's title)."""
    if len(values) == len(TEMPLATE_FIELDS):
        fields = values  # every field given (AlarmDefinition._fields): the activation's hot path
    else:
        fields = {name: "" for name in TEMPLATE_FIELDS}
        fields.update(values)
    if not until_measured:
        for name in _measured_in(template):
            if _missing(fields[name]):
                break
        else:
            # Every number is there: str.format does it in C (each activation renders a message;
            # the field-by-field walk below cost a flood 15 % of its activations per second).
            return " ".join(template.format(**fields).split())
    parts: list[str] = []
    after_missing = False  # the previous field was a missing number
    drop_suffix = False  # the unit was dropped: so goes its "/s"
    for literal, field_name, spec, conv in _parsed(template):
        if drop_suffix:
            literal = _UNIT_SUFFIX.sub("", literal)
            drop_suffix = False
        if after_missing and field_name == "unit" and not literal.strip():
            after_missing, drop_suffix = False, True  # "— °C" would read as a reading
            continue
        parts.append(literal)
        if field_name is None:
            continue
        if until_measured and field_name in _MEASURED:
            break
        value = fields[field_name]
        after_missing = field_name in _MEASURED and _missing(value)
        if after_missing:
            parts.append(MISSING)
            continue
        if conv:
            value = _FORMATTER.convert_field(value, conv)
        parts.append(_FORMATTER.format_field(value, spec or ""))  # spec is a str for every field
    # An empty field (no unit) would leave a double space behind.
    return " ".join("".join(parts).split())


def render_template(template: str, values: dict[str, Any]) -> str:
    return _render(template, values)


# What a change of mode reads as while the condition is not active (no value to show then).
_MODE_TEXT = {
    Cause.SUPPRESSED: "suppressed by design",
    Cause.UNSUPPRESSED: "no longer suppressed by design",
    Cause.SHELVED: "shelved",
    Cause.UNSHELVED: "unshelved",
    Cause.SHELF_EXPIRED: "shelf expired",
    Cause.REMOVED_FROM_SERVICE: "taken out of service",
    Cause.RETURNED_TO_SERVICE: "returned to service",
}
MODE_CAUSES = frozenset(_MODE_TEXT)


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """System-wide alarm settings ([alarm_system] in the project file)."""

    flood_threshold: int = 10  # more than this many new alarms ...
    flood_window_s: float = 600.0  # ... within this window is a flood (ISA-18.2: 10 in 10 min)
    max_shelve_s: float = 8 * 3600.0
    # Nuisance alarms (ISA-18.2, EEMUA 191), for alarms that do not set their own: this many
    # activations within the window mark an alarm chattering (0: off); an activation that
    # returns to normal sooner than fleeting_s marks it fleeting (0: off). Flags only: the
    # alarm's states are not changed by them.
    chatter_count: int = 3
    chatter_window_s: float = 60.0
    fleeting_s: float = 5.0
    # operator position -> the machines it watches; empty: one position "all" for every machine
    positions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlarmDefinition:
    """One configured alarm: a condition on a tag. `name` is `<tag>.<condition>` by default."""

    name: str
    tag: str
    condition: Condition
    priority: Priority = Priority.MEDIUM
    limit: float | None = None  # hi/hihi/lo/lolo: the limit; deviation: allowed |error|; rate: per second
    deadband: float = 0.0
    on_delay_s: float = 0.0
    off_delay_s: float = 0.0
    message: str = ""
    guidance: str = ""
    latching: bool = False
    comment_required: bool = False
    setpoint_tag: str | None = None  # deviation
    rate_period_s: float = 1.0  # rate: change measured over at least this long
    direction: str = "both"  # rate: "rise", "fall" or "both"
    states: tuple[float, ...] = ()  # discrete: the values that are abnormal
    suppress_when: str | None = None  # expression on tags; true: suppressed by design
    # Nuisance detection; None: the system's setting (AlarmSettings), 0: off. Set here, chatter_count
    # is also a guard: a chattering alarm then clears only after a quiet chatter window.
    chatter_count: int | None = None  # this many activations within chatter_window_s: chattering
    chatter_window_s: float | None = None
    fleeting_s: float | None = None  # active for less than this: fleeting
    unit: str = ""
    description: str = ""

    @property
    def machine(self) -> str:
        return self.tag.split(".", 1)[0]

    @property
    def template(self) -> str:
        return self.message or _DEFAULT_MESSAGES[self.condition]

    def _fields(self, value: float | None, setpoint: float | None, rate: float | None) -> dict[str, Any]:
        deviation = None if setpoint is None or _missing(value) or _missing(setpoint) else value - setpoint  # type: ignore[operator]
        return {
            "value": value,
            "unit": self.unit,
            "limit": self.limit,
            "tag": self.tag,
            "name": self.name,
            "machine": self.machine,
            "setpoint": setpoint,
            "deviation": deviation,
            "rate": rate,
            "priority": self.priority.label,
        }

    def text(self, value: float | None, setpoint: float | None = None, rate: float | None = None) -> str:
        """The message with the measured quantities filled in (a plain default when none is configured).
        `setpoint`: the deviation alarm's setpoint (the deviation is value - setpoint); `rate`: change per s."""
        return render_template(self.template, self._fields(value, setpoint, rate))

    def title(self) -> str:
        """What the alarm is, without numbers: the message up to its first measured field
        ("Tool temperature high" of "Tool temperature high: {value:.1f} {unit}")."""
        head = _render(self.template, self._fields(None, None, None), until_measured=True)
        return head.rstrip(" :;,-–—(") or self.name

    def mode_text(self, cause: Cause, reason: str = "") -> str:
        """A change of mode of this alarm while its condition is not active, as it happened."""
        what = _MODE_TEXT[cause]
        if cause in (Cause.SUPPRESSED, Cause.UNSUPPRESSED) and self.suppress_when:
            what += f" ({self.suppress_when})"
        elif reason:
            what += f" ({reason})"
        return f"{self.title()}: {what}"


_DEFAULT_MESSAGES = {
    Condition.HI: "{tag} high: {value:.4g} {unit} (limit {limit:g})",
    Condition.HIHI: "{tag} very high: {value:.4g} {unit} (limit {limit:g})",
    Condition.LO: "{tag} low: {value:.4g} {unit} (limit {limit:g})",
    Condition.LOLO: "{tag} very low: {value:.4g} {unit} (limit {limit:g})",
    Condition.DEVIATION: "{tag} off its setpoint {setpoint:.4g} by {deviation:+.4g} {unit} (allowed ±{limit:g})",
    Condition.RATE: "{tag} changing too fast: {rate:+.4g} {unit}/s (limit {limit:g} {unit}/s)",
    Condition.DISCRETE: "{tag} abnormal state: {value:g}",
    Condition.BAD_QUALITY: "{tag}: bad quality",
    Condition.COMM_LOSS: "{tag}: communication lost",
}


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """One change of an alarm: its condition, acknowledgement or mode. Immutable."""

    ts_ns: int
    alarm: str
    tag: str
    cause: Cause
    from_state: str  # shown states (alarm state, or the mode when not in service)
    to_state: str
    active: bool
    acked: bool
    mode: Mode
    priority: Priority
    value: float | None
    message: str
    revision: int  # per alarm, +1 per transition: windows order updates by it
    epoch: int  # per engine instance: a new runtime numbers anew
    user: str = ""
    comment: str = ""
    annunciate: bool = False  # a new alarm the operator must hear and see
    first_out: bool = False
    latched: bool = False
    chattering: bool = False
    fleeting: bool = False  # its last activation returned to normal within fleeting_s
    shelved_until_ns: int | None = None
    reason: str = ""  # shelving / out-of-service reason
    since_ns: int = 0  # when the alarm last became active

    def to_event(self) -> Event:
        if self.cause == Cause.ACTIVATED and self.mode == Mode.IN_SERVICE:
            severity = (
                Severity.ERROR
                if self.priority >= Priority.HIGH
                else Severity.WARNING
                if self.priority == Priority.MEDIUM
                else Severity.INFO
            )
        else:
            severity = Severity.INFO
        value = None if self.value is None or math.isnan(self.value) else self.value
        return Event(
            category=EventCategory.ALARM,
            source=self.alarm,
            message=self.message,
            severity=severity,
            ts_ns=self.ts_ns,
            user=self.user,
            details={
                "v": ALARM_EVENT_VERSION,
                "alarm": self.alarm,
                "tag": self.tag,
                "cause": str(self.cause),
                "from": self.from_state,
                "to": self.to_state,
                "active": self.active,
                "acked": self.acked,
                "mode": str(self.mode),
                "priority": self.priority.label,
                "value": value,
                "comment": self.comment,
                "revision": self.revision,
                "epoch": self.epoch,
                "annunciate": self.annunciate,
                "first_out": self.first_out,
                "latched": self.latched,
                "chattering": self.chattering,
                "fleeting": self.fleeting,
                "shelved_until_ns": self.shelved_until_ns,
                "reason": self.reason,
                "since_ns": self.since_ns,
            },
        )

    @classmethod
    def from_event(cls, event: Event) -> AlarmTransition | None:
        """The transition an alarm event records; None for other events or unknown versions."""
        d = event.details
        if event.category != EventCategory.ALARM or d.get("v") != ALARM_EVENT_VERSION or "alarm" not in d:
            return None
        try:
            value = d.get("value")
            return cls(
                ts_ns=event.ts_ns,
                alarm=str(d["alarm"]),
                tag=str(d.get("tag", "")),
                cause=Cause(d["cause"]),
                from_state=str(d.get("from", "")),
                to_state=str(d.get("to", "")),
                active=bool(d["active"]),
                acked=bool(d["acked"]),
                mode=Mode(d.get("mode", Mode.IN_SERVICE)),
                priority=Priority.parse(str(d.get("priority", "medium"))),
                value=None if value is None else float(value),
                message=event.message,
                revision=int(d.get("revision", 0)),
                epoch=int(d.get("epoch", 0)),
                user=event.user,
                comment=str(d.get("comment", "")),
                annunciate=bool(d.get("annunciate", False)),
                first_out=bool(d.get("first_out", False)),
                latched=bool(d.get("latched", False)),
                chattering=bool(d.get("chattering", False)),
                fleeting=bool(d.get("fleeting", False)),  # absent in events recorded before it existed
                shelved_until_ns=None if d.get("shelved_until_ns") is None else int(d["shelved_until_ns"]),
                reason=str(d.get("reason", "")),
                since_ns=int(d.get("since_ns", 0) or 0),
            )
        except (KeyError, ValueError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class FloodChange:
    """An operator position entered or left alarm flood (more than N alarms in the window)."""

    ts_ns: int
    position: str
    flood: bool
    count: int
    threshold: int
    window_s: float

    def to_event(self) -> Event:
        if self.flood:
            message = f"Alarm flood at {self.position}: {self.count} alarms in {self.window_s / 60:g} min"
        else:
            message = f"Alarm flood at {self.position} is over"
        return Event(
            category=EventCategory.ALARM,
            source=FLOOD_SOURCE_PREFIX + self.position,
            message=message,
            severity=Severity.WARNING if self.flood else Severity.INFO,
            ts_ns=self.ts_ns,
            details={
                "v": ALARM_EVENT_VERSION,
                "flood": self.flood,
                "position": self.position,
                "count": self.count,
                "threshold": self.threshold,
            },
        )


@dataclass(frozen=True, slots=True)
class AlarmStatus:
    """An alarm as the summary shows it now (static facts plus its current state)."""

    name: str
    tag: str
    condition: str
    priority: Priority
    state: str  # shown state
    alarm_state: AlarmState
    mode: Mode
    active: bool
    acked: bool
    message: str
    value: float | None
    since_ns: int  # last activation
    changed_ns: int  # last transition
    revision: int
    epoch: int
    first_out: bool = False
    latched: bool = False
    chattering: bool = False
    fleeting: bool = False
    shelved_until_ns: int | None = None
    reason: str = ""
    user: str = ""  # who made the last transition (ack, shelve, ...)
    comment: str = ""
    guidance: str = ""
    comment_required: bool = False
    unit: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def machine(self) -> str:
        return self.tag.split(".", 1)[0]

    @property
    def unacknowledged(self) -> bool:
        return not self.acked and self.mode == Mode.IN_SERVICE

    @property
    def needs_attention(self) -> bool:
        """Shown in the summary: active or unacknowledged, and in service."""
        return self.mode == Mode.IN_SERVICE and self.alarm_state != AlarmState.NORMAL

    def to_json(self) -> dict[str, Any]:
        value = None if self.value is None or math.isnan(self.value) else self.value
        return {
            "name": self.name,
            "tag": self.tag,
            "condition": self.condition,
            "priority": self.priority.label,
            "state": self.state,
            "alarm_state": str(self.alarm_state),
            "mode": str(self.mode),
            "active": self.active,
            "acked": self.acked,
            "message": self.message,
            "value": value,
            "since_ns": self.since_ns,
            "changed_ns": self.changed_ns,
            "revision": self.revision,
            "epoch": self.epoch,
            "first_out": self.first_out,
            "latched": self.latched,
            "chattering": self.chattering,
            "fleeting": self.fleeting,
            "shelved_until_ns": self.shelved_until_ns,
            "reason": self.reason,
            "user": self.user,
            "comment": self.comment,
            "guidance": self.guidance,
            "comment_required": self.comment_required,
            "unit": self.unit,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AlarmStatus:
        value = d.get("value")
        return cls(
            name=str(d["name"]),
            tag=str(d["tag"]),
            condition=str(d.get("condition", "")),
            priority=Priority.parse(str(d["priority"])),
            state=str(d["state"]),
            alarm_state=AlarmState(d["alarm_state"]),
            mode=Mode(d["mode"]),
            active=bool(d["active"]),
            acked=bool(d["acked"]),
            message=str(d.get("message", "")),
            value=None if value is None else float(value),
            since_ns=int(d.get("since_ns", 0)),
            changed_ns=int(d.get("changed_ns", 0)),
            revision=int(d.get("revision", 0)),
            epoch=int(d.get("epoch", 0)),
            first_out=bool(d.get("first_out", False)),
            latched=bool(d.get("latched", False)),
            chattering=bool(d.get("chattering", False)),
            fleeting=bool(d.get("fleeting", False)),
            shelved_until_ns=None if d.get("shelved_until_ns") is None else int(d["shelved_until_ns"]),
            reason=str(d.get("reason", "")),
            user=str(d.get("user", "")),
            comment=str(d.get("comment", "")),
            guidance=str(d.get("guidance", "")),
            comment_required=bool(d.get("comment_required", False)),
            unit=str(d.get("unit", "")),
        )

    def updated(self, t: AlarmTransition) -> AlarmStatus:
        """This status after transition `t` (static facts kept)."""
        return AlarmStatus(
            name=self.name,
            tag=self.tag,
            condition=self.condition,
            priority=t.priority,
            state=t.to_state,
            alarm_state=alarm_state(t.active or t.latched, t.acked),
            mode=t.mode,
            active=t.active or t.latched,
            acked=t.acked,
            message=t.message if t.cause == Cause.ACTIVATED or not self.message else self.message,
            value=t.value if t.cause in (Cause.ACTIVATED, Cause.CLEARED) or self.value is None else self.value,
            since_ns=t.since_ns or self.since_ns,
            changed_ns=t.ts_ns,
            revision=t.revision,
            epoch=t.epoch,
            first_out=t.first_out,
            latched=t.latched,
            chattering=t.chattering,
            fleeting=t.fleeting,
            shelved_until_ns=t.shelved_until_ns,
            reason=t.reason,
            user=t.user,
            comment=t.comment,
            guidance=self.guidance,
            comment_required=self.comment_required,
            unit=self.unit,
        )

    @classmethod
    def from_transition(cls, t: AlarmTransition) -> AlarmStatus:
        """A status known only from a transition (no guidance: the snapshot brings that)."""
        base = cls(
            name=t.alarm,
            tag=t.tag,
            condition=t.alarm.rsplit(".", 1)[-1],
            priority=t.priority,
            state=t.to_state,
            alarm_state=AlarmState.NORMAL,
            mode=t.mode,
            active=False,
            acked=True,
            message=t.message,
            value=t.value,
            since_ns=t.since_ns,
            changed_ns=t.ts_ns,
            revision=0,
            epoch=t.epoch,
        )
        return base.updated(t)
