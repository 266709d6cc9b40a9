"""The printable shift report: what a supervisor hands over, as one plain HTML page made from
the historian alone (no Qt, so `hmi report` runs headless and the window prints the same page).

Sections: who was logged in (with stations), alarms raised (count by priority, list),
acknowledgements with their comments, shelves with reason and duration, out of service,
writes and method calls (old -> new, outcome), configuration reloads. Operator actions come
from OPERATOR events (details version 1, hmi.security.audit.operator_event); a recording
made before those existed falls back to the acknowledgements in the alarm events.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hmi.core.events import Event, EventCategory, format_duration
from hmi.historian.reader import PRIORITIES, HistorianReader, TimeRange
from hmi.historian.shifts import format_ns, from_ns, zone

REPORT_VERSION = 1  # written into the page (meta "hmi-report-version") so a reader can tell
LOGIN_LOOKBACK_NS = 24 * 3600 * 1_000_000_000  # who was already logged in when the range began

_CSS = """
body { font: 10pt "DejaVu Sans", Arial, sans-serif; color: #222; margin: 16px; }
h1 { font-size: 15pt; margin: 0 0 4px 0; }
h2 { font-size: 11.5pt; margin: 18px 0 4px 0; padding-bottom: 2px; border-bottom: 1px solid #999; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 2px 6px; border-bottom: 1px solid #ddd; }
th { background: #eee; font-weight: bold; }
td.num { text-align: right; }
.head td { border: none; padding: 0 12px 0 0; }
.none { color: #666; font-style: italic; }
.refused { color: #000; font-weight: bold; }
@media print { body { margin: 0; } h2 { page-break-after: avoid; } tr { page-break-inside: avoid; } }
"""


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    station: str
    login_ns: int | None  # None: logged in before the lookback
    logout_ns: int | None  # None: still logged in at the end of the range
    logout_reason: str = ""


def _action(e: Event) -> str:
    return str(e.details.get("action", "")) if e.category == EventCategory.OPERATOR else ""


def sessions(events: Iterable[Event], start_ns: int, end_ns: int) -> list[Session]:
    """Login/logout pairs (per user and station) that overlap [start_ns, end_ns)."""
    open_at: dict[tuple[str, str], int] = {}
    out: list[Session] = []
    for e in sorted(events, key=lambda e: e.ts_ns):
        if e.details.get("outcome") != "ok":
            continue
        key = (e.user, str(e.details.get("station", "")))
        if _action(e) == "login":
            if key in open_at:  # a second login without a logout: the first ended unseen
                out.append(Session(*key, open_at.pop(key), None, "logged in again"))
            open_at[key] = e.ts_ns
        elif _action(e) == "logout":
            out.append(Session(*key, open_at.pop(key, None), e.ts_ns, str(e.details.get("reason", ""))))
    out += [Session(*key, ts, None) for key, ts in open_at.items()]
    return sorted(
        (s for s in out if (s.login_ns or 0) < end_ns and (s.logout_ns is None or s.logout_ns >= start_ns)),
        key=lambda s: (s.login_ns or 0, s.user),
    )


class _Page:
    def __init__(self, tz_name: str, start_ns: int, end_ns: int) -> None:
        self.tz = zone(tz_name)
        self.parts: list[str] = []
        # Within a day (a shift) the tables give the time of day only; the header has the dates.
        # Full dates made narrow time columns that broke "2026-12-03" in two when printed.
        self._cell_format = "%H:%M:%S" if end_ns - start_ns <= 24 * 3600 * 10**9 else "%Y-%m-%d %H:%M"
        self._range = (start_ns, end_ns)

    def time(self, ts_ns: int | None, missing: str = "") -> str:
        """A full time, with date and zone (the header)."""
        return missing if ts_ns is None else format_ns(ts_ns, self.tz)

    def at(self, ts_ns: int | None, missing: str = "") -> str:
        """A time in a table cell (in full when outside the range, e.g. an earlier login)."""
        if ts_ns is None:
            return missing
        if not self._range[0] <= ts_ns < self._range[1]:
            return self.time(ts_ns)
        return from_ns(ts_ns, self.tz).strftime(self._cell_format)

    def h2(self, title: str) -> None:
        self.parts.append(f"<h2>{html.escape(title)}</h2>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> None:
        if not rows:
            self.parts.append(f'<p class="none">{html.escape(empty)}</p>')
            return
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _value(value: object) -> str:
    return "(none)" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _arguments(arguments: object) -> str:
    # A call refused for malformed arguments is recorded with them as sent (not always a list).
    if isinstance(arguments, list):
        return ", ".join(map(_value, arguments))
    return "" if arguments is None else _value(arguments)


def _outcome(e: Event) -> str:
    outcome = str(e.details.get("outcome", ""))
    why = e.details.get("reason") or e.details.get("error") or ""
    return f"{outcome}: {why}" if outcome != "ok" and why else outcome


def _mode_changes(
    page: _Page, ops: Sequence[Event], actions: tuple[str, str], header: Sequence[str], empty: str
) -> None:
    """The table of one pair of alarm mode actions (shelve/unshelve, out of/return to service);
    a "Duration" column in `header` is filled for shelves."""
    with_duration = "Duration" in header
    rows = []
    for e in ops:
        action = _action(e)
        if action not in actions:
            continue
        duration = [format_duration(e.details.get("duration_s")) if action == "shelve" else ""] if with_duration else []
        reason = e.details.get("reason") or e.details.get("comment") or ""
        rows.append((page.at(e.ts_ns), e.source, e.user, action.replace("_", " "), *duration, reason, _outcome(e)))
    page.table(header, rows, empty)


def render_report(
    events: Sequence[Event],
    time_range: TimeRange,
    *,
    project: str = "",
    station: str = "",
    generated_ns: int | None = None,
    earlier_logins: Sequence[Event] = (),
) -> str:
    """The report page for `events` (those of the range, any order); `earlier_logins`: login
    and logout events before the range, to show who was already logged in."""
    page = _Page(time_range.timezone, time_range.start_ns, time_range.end_ns)
    events = sorted(events, key=lambda e: e.ts_ns)
    ops = [e for e in events if e.category == EventCategory.OPERATOR]
    alarms = [e for e in events if e.category == EventCategory.ALARM]
    generated = time.time_ns() if generated_ns is None else generated_ns
    title = f"Shift report — {project}" if project else "Shift report"
    p = page.parts
    p.append('<!DOCTYPE html><html><head><meta charset="utf-8">')
    p.append(f'<meta name="hmi-report-version" content="{REPORT_VERSION}">')
    p.append(f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>")
    p.append(f"<h1>{html.escape(title)}</h1><table class='head'>")
    for label, value in (
        ("Project", project or "—"),
        ("Range", time_range.label),
        ("From", page.time(time_range.start_ns)),
        ("To", page.time(time_range.end_ns)),
        ("Generated", page.time(generated)),
        ("Station", station or "—"),
    ):
        p.append(f"<tr><td><b>{html.escape(label)}</b></td><td>{html.escape(value)}</td></tr>")
    p.append("</table>")

    page.h2("Logged in")
    logins = [e for e in (*earlier_logins, *ops) if _action(e) in ("login", "logout")]
    page.table(
        ("User", "Station", "Logged in", "Logged out"),
        [
            (
                s.user,
                s.station,
                page.at(s.login_ns, "before the range"),
                page.at(s.logout_ns, "still logged in") + (f" ({s.logout_reason})" if s.logout_reason else ""),
            )
            for s in sessions(logins, time_range.start_ns, time_range.end_ns)
        ],
        "Nobody logged in.",
    )

    raised = [e for e in alarms if e.details.get("cause") == "activated"]
    by_priority = Counter(str(e.details.get("priority", "")) for e in raised)
    page.h2(f"Alarms raised: {len(raised)}")
    counts = ", ".join(f"{by_priority[pr]} {pr}" for pr in PRIORITIES if by_priority[pr])
    if counts:
        p.append(f"<p>{html.escape(counts)}</p>")
    page.table(
        ("Time", "Alarm", "Priority", "Message"),
        [(page.at(e.ts_ns), e.source, e.details.get("priority", ""), e.message) for e in raised],
        "No alarm was raised.",
    )

    page.h2("Acknowledgements")
    acks = [e for e in ops if _action(e) in ("acknowledge", "reset")]
    if not ops:  # recorded before operator events existed: the alarm transitions say it
        acks = [e for e in alarms if e.details.get("cause") in ("acknowledged", "reset")]
    page.table(
        ("Time", "Alarm", "User", "Station", "Action", "Comment", "Outcome"),
        [
            (
                page.at(e.ts_ns),
                e.source,
                e.user,
                e.details.get("station", ""),
                _action(e) or e.details.get("cause", ""),
                e.details.get("comment", ""),
                _outcome(e) or "ok",
            )
            for e in acks
        ],
        "No acknowledgement.",
    )

    page.h2("Shelved")
    _mode_changes(
        page, ops, ("shelve", "unshelve"),
        ("Time", "Alarm", "User", "Action", "Duration", "Reason / comment", "Outcome"), "No alarm was shelved.",
    )  # fmt: skip
    page.h2("Out of service")
    _mode_changes(
        page, ops, ("out_of_service", "return_to_service"),
        ("Time", "Alarm", "User", "Action", "Reason", "Outcome"), "Nothing was taken out of service.",
    )  # fmt: skip

    page.h2("Writes and method calls")
    page.table(
        ("Time", "Target", "User", "Old → new", "Status", "Outcome"),
        [
            (
                page.at(e.ts_ns),
                e.source,
                e.user,
                f"{_value(e.details.get('old'))} → {_value(e.details.get('new'))}"
                if _action(e) == "write"
                else _arguments(e.details.get("arguments")),
                e.details.get("status", ""),
                _outcome(e),
            )
            for e in ops
            if _action(e) in ("write", "call")
        ],
        "No write.",
    )

    page.h2("Configuration reloads")
    page.table(
        ("Time", "User", "Summary", "Outcome"),
        [
            (page.at(e.ts_ns), e.user, e.details.get("summary", "") or e.message, _outcome(e))
            for e in ops
            if _action(e) == "config_reload"
        ],
        "The configuration was not reloaded.",
    )
    p.append(f'<p class="none">{len(events)} event(s) in the range. Times in {html.escape(time_range.timezone)}.</p>')
    p.append("</body></html>")
    return "\n".join(p)


def shift_report(
    reader: HistorianReader, time_range: TimeRange, *, project: str = "", station: str = "",
    generated_ns: int | None = None,
) -> str:  # fmt: skip
    """The report for `time_range`, read from `reader`."""
    events = reader.events(time_range.start_ns, time_range.end_ns)
    earlier = reader.events(
        time_range.start_ns - LOGIN_LOOKBACK_NS, time_range.start_ns, categories=[EventCategory.OPERATOR]
    )
    return render_report(
        events, time_range, project=project, station=station, generated_ns=generated_ns,
        earlier_logins=[e for e in earlier if _action(e) in ("login", "logout")],
    )  # fmt: skip
