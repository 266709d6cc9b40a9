"""The journal's reads of the historian (keyset pages, filters in SQL that agree with the same
filters on live events, counts) and the shift report, headless, on real files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hmi.core.events import Event, EventCategory
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian.reader import EventQuery, TimeRange
from hmi.historian.report import render_report, shift_report
from hmi.historian.shifts import from_ns, zone
from tests.historian.conftest import NS, T0
from tests.shift_recording import CNC_HI, PUMP_LO, ZONE, alarm_event, op, record_shift


def varied_events(n: int) -> list[Event]:
    """Alarm and operator events on three machines, three to a timestamp (ties page by id)."""
    out: list[Event] = []
    for i in range(n):
        ts = T0 + (i // 3) * NS
        machine = ("cnc01", "pump01", "cnc010")[i % 3]  # cnc010 must not count as cnc01
        if i % 4 == 0:
            out.append(op(ts, "acknowledge", ("olga", "erik")[i % 2], f"{machine}.temp.hi", comment=f"Note {i}"))
        else:
            cause = "suppressed" if i % 5 == 0 else "activated"
            out.append(alarm_event(ts, f"{machine}.temp.hi", cause, ("urgent", "high", "low")[i % 3],
                                   active=cause == "activated", to="unack_active"))  # fmt: skip
    return out


@pytest.fixture
def recorded(make_writer: Callable[..., HistorianWriter], db_path: Path) -> tuple[HistorianReader, list[Event]]:
    events = varied_events(600)
    writer = make_writer()
    assert writer.submit_events(events) and writer.flush()
    writer.close()
    reader = HistorianReader(db_path)
    yield reader, events
    reader.close()


def test_keyset_pages_cover_the_range_once_newest_first(recorded) -> None:
    """Pages of 64 over 600 events sharing timestamps return each event once, newest first, and end."""
    reader, events = recorded
    seen: list[Event] = []
    key = None
    while True:
        page = reader.event_page(T0, T0 + 10_000 * NS, before=key, limit=64)
        seen += page.events
        key = page.next_key
        if key is None:
            break
    assert len(seen) == 600 and [e.ts_ns for e in seen] == sorted((e.ts_ns for e in events), reverse=True)
    assert sorted(seen, key=lambda e: (e.ts_ns, e.message)) == sorted(events, key=lambda e: (e.ts_ns, e.message))


@pytest.mark.parametrize(
    "query",
    [
        EventQuery(machine="cnc01"),
        EventQuery(priority="urgent"),
        EventQuery(categories=("operator",)),
        EventQuery(user="olga"),
        EventQuery(text="NOTE 1"),
        EventQuery(hide_design_suppression=True),
        EventQuery(machine="pump01", priority="high", hide_design_suppression=True),
    ],
)
def test_sql_filters_agree_with_the_live_filter(recorded, query: EventQuery) -> None:
    """A filter selects the same events in SQL (the historian) as in Python (live events)."""
    reader, events = recorded
    page = reader.event_page(T0, T0 + 10_000 * NS, query, limit=10_000)
    expected = [e for e in events if query.matches(e)]
    assert 0 < len(page.events) < len(events)
    assert sorted(page.events, key=lambda e: (e.ts_ns, e.message)) == sorted(
        expected, key=lambda e: (e.ts_ns, e.message)
    )
    shown, hidden = reader.event_counts(T0, T0 + 10_000 * NS, query)
    assert shown == len(expected)
    if query.hide_design_suppression:
        base = EventQuery(query.categories, query.machine, query.priority, query.user, query.text)
        assert hidden == sum(base.matches(e) for e in events) - shown > 0


def test_shift_report_lists_logins_alarms_comments_shelves_writes_and_reloads(tmp_path: Path) -> None:
    """The report of the shift names who was logged in where, each alarm raised by priority, and
    each acknowledgement with its own comment, the shelve with reason and duration, the write
    old -> new and the reload."""
    rec = record_shift(tmp_path)
    with HistorianReader(rec.path) as reader:
        shift = rec.calendar.at(rec.shift_start)
        assert shift is not None
        html = shift_report(reader, TimeRange(shift.start_ns, shift.end_ns, f"shift {shift.label}", ZONE),
                            project="Demo plant", station="ws9")  # fmt: skip
    assert f"shift {shift.label}" in html and "Demo plant" in html and "ws9" in html
    start_local = from_ns(shift.start_ns, zone(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    assert start_local in html  # the range in the project's zone
    assert "Alarms raised: 2" in html and "1 urgent, 1 high" in html and "cnc01.spindle_load.hi" not in html
    logins = html.split("<h2>Logged in</h2>")[1].split("<h2>")[0]
    assert "<td>olga</td><td>ws1:0</td>" in logins and "<td>erik</td><td>ws1:0</td>" in logins
    assert "still logged in" in logins  # erik never logged out
    acks = html.split("<h2>Acknowledgements</h2>")[1].split("<h2>")[0]
    assert f"<td>{CNC_HI}</td><td>olga</td><td>ws1:0</td><td>acknowledge</td><td>checked coolant</td>" in acks
    assert f"<td>{PUMP_LO}</td><td>erik</td><td>ws1:0</td><td>acknowledge</td><td></td>" in acks
    assert "<td>10 min</td><td>sensor swap</td>" in html
    assert "100 → 80" in html and "2 alarms changed" in html


def test_a_call_recorded_with_malformed_arguments_does_not_break_the_report() -> None:
    """A call refused for arguments that are not a list is recorded with them as sent; the
    report of that range still renders (and shows them)."""
    refused = op(T0, "call", "olga", "cnc01.reset_fault", "refused", arguments=5, reason="arguments as a list")
    html = render_report([refused], TimeRange(T0 - NS, T0 + NS, "test", ZONE))
    calls = html.split("<h2>Writes and method calls</h2>")[1].split("<h2>")[0]
    assert "<td>cnc01.reset_fault</td><td>olga</td><td>5</td>" in calls


def test_report_command_writes_html_and_explains_why_not_pdf(tmp_path: Path) -> None:
    """`hmi report --shift` writes the HTML report; asked for a PDF it says how to get one and writes nothing."""
    rec = record_shift(tmp_path)
    shift = rec.calendar.at(rec.shift_start)
    assert shift is not None
    out = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "hmi", "report", "--db", str(rec.path), "--shift", shift.label]
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "checked coolant" in out.read_text(encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    done = subprocess.run([*cmd, "--out", str(pdf)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Shift report" in done.stderr and not pdf.exists()


def test_events_of_other_categories_have_no_priority(recorded) -> None:
    """Filtering by priority keeps alarm events only (an operator event has no priority)."""
    reader, _ = recorded
    page = reader.event_page(T0, T0 + 10_000 * NS, EventQuery(priority="high"), limit=10_000)
    assert page.events and {e.category for e in page.events} == {EventCategory.ALARM}
