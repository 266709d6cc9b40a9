"""A recorded shift for journal and report tests: alarm transitions, operator actions (made by
the audit module's own `operator_event`) and filler, written by the real HistorianWriter into
a real SQLite file, with a shift calendar whose shift "A" began two hours ago."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hmi.core.events import Event, EventCategory, Severity
from hmi.core.tags import TagRegistry
from hmi.historian import HistorianWriter, ShiftCalendar, ShiftDefinition
from hmi.security.audit import AuditEntry, operator_event

NS = 1_000_000_000
MIN = 60 * NS
ZONE = "Europe/Berlin"
CNC_HI = "cnc01.tool_temperature.hi"
PUMP_LO = "pump01.suction_pressure.lo"


def alarm_event(ts: int, alarm: str, cause: str, priority: str, *, active: bool, to: str, comment: str = "",
                user: str = "") -> Event:  # fmt: skip
    """An alarm event shaped like AlarmTransition.to_event (details version 1)."""
    return Event(
        EventCategory.ALARM, alarm, f"{alarm} {cause}", Severity.ERROR if cause == "activated" else Severity.INFO,
        ts_ns=ts, user=user,
        details={"v": 1, "alarm": alarm, "tag": alarm.rsplit(".", 1)[0], "cause": cause, "to": to, "active": active,
                 "acked": cause == "acknowledged", "mode": "in_service", "priority": priority, "comment": comment},
    )  # fmt: skip


def op(ts: int, kind: str, user: str, target: str, outcome: str = "ok", **details: object) -> Event:
    return operator_event(AuditEntry(kind, user, target, outcome, {"station": "ws1:0", **details}, ts))


@dataclass
class Recording:
    path: Path
    calendar: ShiftCalendar
    shift_start: int
    before_shift: Event  # recorded before the shift: not in the current shift
    events: list[Event]  # those of the current shift, in time order
    filler: int


def record_shift(tmp_path: Path, filler: int = 0) -> Recording:
    now = time.time_ns()
    start = now - 2 * 3600 * NS
    local = datetime.fromtimestamp(start / NS, ZoneInfo(ZONE))
    begin = local.strftime("%H:%M")
    end = datetime.fromtimestamp((start + 8 * 3600 * NS) / NS, ZoneInfo(ZONE)).strftime("%H:%M")
    calendar = ShiftCalendar([ShiftDefinition.parse("A", begin, end)], ZONE)
    shift_start = calendar.at(now).start_ns  # type: ignore[union-attr]  # the minute A began
    t = shift_start + MIN
    events = [
        op(t, "login", "olga", "session", role="operator"),
        alarm_event(t + 1 * MIN, CNC_HI, "activated", "high", active=True, to="unack_active"),
        alarm_event(t + 2 * MIN, PUMP_LO, "activated", "urgent", active=True, to="unack_active"),
        op(t + 3 * MIN, "acknowledge", "olga", CNC_HI, comment="checked coolant"),
        alarm_event(
            t + 3 * MIN,
            CNC_HI,
            "acknowledged",
            "high",
            active=True,
            to="ack_active",
            comment="checked coolant",
            user="olga",
        ),
        alarm_event(t + 4 * MIN, CNC_HI, "suppressed", "high", active=False, to="normal"),
        alarm_event(t + 5 * MIN, CNC_HI, "unsuppressed", "high", active=False, to="normal"),
        op(t + 6 * MIN, "login", "erik", "session", role="engineer"),
        op(t + 7 * MIN, "acknowledge", "erik", PUMP_LO),
        op(t + 8 * MIN, "shelve", "erik", PUMP_LO, duration_s=600, reason="sensor swap"),
        op(t + 9 * MIN, "write", "erik", "cnc01.feed_override", old=100.0, new=80, status="Good"),
        op(t + 10 * MIN, "config_reload", "erik", "project", summary="2 alarms changed"),
        op(t + 11 * MIN, "logout", "olga", "session", reason="user"),
        Event(EventCategory.SYSTEM, "opcua.plant", "connection lost", Severity.WARNING, ts_ns=t + 12 * MIN),
    ]
    # Filler: routine alarm traffic on a third machine, spread over the rest of the time so far.
    span = now - (t + 13 * MIN)
    events += [
        alarm_event(t + 13 * MIN + span * i // max(filler, 1), f"conv01.belt_speed_{i % 7}.hi", "activated", "low",
                    active=True, to="unack_active")
        for i in range(filler)
    ]  # fmt: skip
    before = alarm_event(shift_start - 10 * MIN, "cnc01.spindle_load.hi", "activated", "medium", active=True,
                         to="unack_active")  # fmt: skip
    path = tmp_path / "historian.sqlite"
    writer = HistorianWriter(str(path), TagRegistry(), calendar=calendar, commit_interval_s=0.05)
    writer.start()
    try:
        assert writer.submit_events([before, *events])
        assert writer.flush()
    finally:
        writer.close()
    return Recording(path, calendar, shift_start, before, sorted(events, key=lambda e: e.ts_ns), filler)
