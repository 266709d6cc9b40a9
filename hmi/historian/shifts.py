"""The shift calendar: named shifts in local time (e.g. A 06:00-14:00, C 22:00-06:00),
resolved to UTC instants across midnight and daylight-saving changes; and parsing of the
times people type (`2026-11-20T06:00`, `2026-11-20/A`).

A shift is named by the local date it starts on: `2026-11-20/C` runs from 22:00 on the
20th to 06:00 on the 21st. Its length follows the clocks: a night shift over the autumn
change lasts 9 hours, over the spring change 7. A start inside the spring gap (a local
time that does not exist that day) is moved on by the gap (02:30 -> 03:30); a start in
the repeated autumn hour begins at its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SHIFT_SPEC = re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2})/(?P<name>[^/\s]+)$")
_NS = 1_000_000_000


def parse_hhmm(text: str) -> time:
    match = _HHMM.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return time(int(match[1]), int(match[2]))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')") from None


def to_ns(moment: datetime) -> int:
    """An aware datetime as integer ns since the epoch, exactly (no float rounding)."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1_000


def from_ns(ts_ns: int, tz: ZoneInfo | None = None) -> datetime:
    seconds, rest = divmod(ts_ns, _NS)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=rest // 1000)
    return moment.astimezone(tz) if tz is not None else moment


def local_to_ns(day: date, at: time, tz: ZoneInfo) -> int:
    """The instant a wall clock in `tz` shows `at` on `day`. A repeated (autumn) wall time
    means its first occurrence; a missing (spring gap) one is moved on by the gap, so
    02:30 on the spring-forward night means 03:30 summer time (PEP 495's fold=0)."""
    return to_ns(datetime.combine(day, at).replace(tzinfo=tz, fold=0))


@dataclass(frozen=True, slots=True)
class ShiftDefinition:
    name: str
    start: time
    end: time

    @classmethod
    def parse(cls, name: str, start: str, end: str) -> ShiftDefinition:
        definition = cls(name, parse_hhmm(start), parse_hhmm(end))
        if definition.start == definition.end:
            raise ValueError(f"shift {name!r} starts and ends at the same time")
        return definition

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class Shift:
    """One occurrence of a shift: [start_ns, end_ns)."""

    name: str
    day: date  # the local date it starts on
    start_ns: int
    end_ns: int

    @property
    def label(self) -> str:
        return f"{self.day.isoformat()}/{self.name}"

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / _NS

    def contains(self, ts_ns: int) -> bool:
        return self.start_ns <= ts_ns < self.end_ns


class ShiftCalendar:
    def __init__(self, definitions: Iterable[ShiftDefinition], timezone: str) -> None:
        self.definitions = list(definitions)
        self.timezone = timezone
        self.tz = zone(timezone)
        names = [d.name for d in self.definitions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"shift names must be unique: {', '.join(duplicates)}")
        self._by_name = {d.name: d for d in self.definitions}

    def __bool__(self) -> bool:
        return bool(self.definitions)

    def names(self) -> list[str]:
        return [d.name for d in self.definitions]

    def resolve(self, day: date, name: str) -> Shift:
        definition = self._by_name.get(name)
        if definition is None:
            known = ", ".join(self.names()) or "none"
            raise ValueError(f"no shift named {name!r} (known shifts: {known})")
        end_day = day + timedelta(days=1) if definition.crosses_midnight else day
        return Shift(
            name,
            day,
            local_to_ns(day, definition.start, self.tz),
            local_to_ns(end_day, definition.end, self.tz),
        )

    def between(self, start_ns: int, end_ns: int) -> list[Shift]:
        """Every shift occurrence overlapping [start_ns, end_ns), in time order."""
        first = from_ns(start_ns, self.tz).date() - timedelta(days=1)
        last = from_ns(end_ns, self.tz).date()
        out = []
        day = first
        while day <= last:
            for definition in self.definitions:
                shift = self.resolve(day, definition.name)
                if shift.start_ns < end_ns and shift.end_ns > start_ns:
                    out.append(shift)
            day += timedelta(days=1)
        out.sort(key=lambda s: (s.start_ns, s.name))
        return out

    def at(self, ts_ns: int) -> Shift | None:
        """The shift running at `ts_ns` (the earliest-starting one if shifts overlap)."""
        running = self.between(ts_ns, ts_ns + 1)
        return running[0] if running else None

    def to_rows(self) -> list[tuple[str, str, str]]:
        return [(d.name, d.start.strftime("%H:%M"), d.end.strftime("%H:%M")) for d in self.definitions]


def parse_shift_spec(text: str) -> tuple[date, str]:
    """`2026-11-20/A` -> (date, "A")."""
    match = _SHIFT_SPEC.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a shift as DATE/NAME, e.g. 2026-11-20/A")
    try:
        day = date.fromisoformat(match["day"])
    except ValueError:
        raise ValueError(f"{match['day']!r} is not a date (YYYY-MM-DD)") from None
    return day, match["name"]


def parse_time(text: str, tz: ZoneInfo) -> int:
    """An ISO 8601 date or date-time as ns; without an offset it is local time in `tz`."""
    raw = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            return local_to_ns(date.fromisoformat(raw), time(0, 0), tz)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601, e.g. 2026-11-20T06:00, 2026-11-20T05:00Z or 2026-11-20"
        ) from None
    if moment.tzinfo is None:
        return local_to_ns(moment.date(), moment.time(), tz)
    return to_ns(moment)


def format_ns(ts_ns: int, tz: ZoneInfo, with_ms: bool = False) -> str:
    moment = from_ns(ts_ns, tz)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if with_ms:
        text += f".{moment.microsecond // 1000:03d}"
    return f"{text} {moment.tzname()}"


def calendar_from_rows(rows: Sequence[tuple[str, str, str]], timezone: str) -> ShiftCalendar:
    return ShiftCalendar((ShiftDefinition.parse(n, s, e) for n, s, e in rows), timezone)
