"""The journal reads the historian: it opens on the whole current shift, filters, pages to the
last row, follows live events, shows the project's clock and exports what it shows."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory
from hmi.ui.alarm_journal import PAGE_SIZE, AlarmJournal
from hmi.ui.format import set_display_timezone
from tests.shift_recording import CNC_HI, NS, PUMP_LO, ZONE, Recording, alarm_event, record_shift


@pytest.fixture
def berlin() -> Iterator[None]:
    set_display_timezone(ZoneInfo(ZONE))
    yield
    set_display_timezone(None)


@pytest.fixture
def recording(tmp_path: Path) -> Recording:
    return record_shift(tmp_path)


def open_journal(qtbot, rec: Recording, bus: TagBus | None = None) -> AlarmJournal:
    journal = AlarmJournal(rec.path, bus, calendar=rec.calendar, machines=["cnc01", "pump01", "conv01"],
                           project_name="Demo plant", station="ws1:0")  # fmt: skip
    qtbot.addWidget(journal)
    wait_loaded(qtbot, journal)
    return journal


def wait_loaded(qtbot, journal: AlarmJournal) -> None:
    qtbot.waitUntil(lambda: not journal.loading, timeout=10000)
    assert not journal.error, journal.error


def sources(journal: AlarmJournal) -> list[str]:
    return [e.source for e in journal.model.events]


def test_a_journal_opened_after_the_events_shows_the_whole_current_shift(qtbot, berlin, recording: Recording) -> None:
    """Opened two hours into the shift, the journal shows every event of the shift (not the one
    before it) without pressing Refresh, newest first, design-suppression noise hidden and counted."""
    journal = open_journal(qtbot, recording)
    shown = [e for e in recording.events if e.details.get("cause") not in ("suppressed", "unsuppressed")]
    assert journal.model.events == shown[::-1]
    assert recording.before_shift not in journal.model.events
    assert (journal.total, journal.hidden) == (len(shown), 2)
    assert journal.range_label.startswith("shift ") and journal.range_ns[0] == recording.shift_start
    assert "2 design-suppression change(s) hidden" in journal.count_label.text()
    journal.suppression_box.setChecked(True)
    wait_loaded(qtbot, journal)
    assert len(journal.model.events) == len(recording.events) and journal.hidden == 0


def test_filters_by_machine_priority_category_user_and_text(qtbot, berlin, recording: Recording) -> None:
    """Each filter narrows the rows to what it names; the Operator category shows operator events."""
    journal = open_journal(qtbot, recording)

    journal.machine_box.setCurrentText("pump01")
    wait_loaded(qtbot, journal)
    assert set(sources(journal)) == {PUMP_LO}
    journal.machine_box.setCurrentText("All machines")

    journal.priority_box.setCurrentText("urgent")
    wait_loaded(qtbot, journal)
    assert [(e.source, e.details["cause"]) for e in journal.model.events] == [(PUMP_LO, "activated")]
    journal.priority_box.setCurrentText("All priorities")

    journal.category_box.setCurrentText("Operator")
    wait_loaded(qtbot, journal)
    actions = [e.details["action"] for e in journal.model.events][::-1]
    assert actions == ["login", "acknowledge", "login", "acknowledge", "shelve", "write", "config_reload", "logout"]

    journal.user_filter.setText("olga")
    journal.refresh()
    wait_loaded(qtbot, journal)
    assert {e.user for e in journal.model.events} == {"olga"} and len(journal.model.events) == 3
    journal.user_filter.setText("")
    journal.category_box.setCurrentText("All categories")

    journal.text_filter.setText("COOLANT")  # any case, in the message
    journal.refresh()
    wait_loaded(qtbot, journal)
    assert sources(journal) == [CNC_HI]
    assert journal.model.events[0].details["comment"] == "checked coolant"


def test_paging_reaches_the_last_row(qtbot, berlin, tmp_path: Path) -> None:
    """A shift of 2,514 events arrives a page at a time, by scrolling and by "Older", down to its first event."""
    rec = record_shift(tmp_path, filler=2500)
    journal = open_journal(qtbot, rec)
    assert len(journal.model.events) == PAGE_SIZE and journal.has_more and journal.total == len(rec.events) - 2
    journal.table.scrollToBottom()  # scrolling to the end asks for the next page
    qtbot.waitUntil(lambda: len(journal.model.events) == 2 * PAGE_SIZE and not journal.loading, timeout=10000)
    journal.more_button.click()
    wait_loaded(qtbot, journal)
    assert not journal.has_more and not journal.more_button.isEnabled()
    assert len(journal.model.events) == journal.total
    assert journal.model.events[-1] == rec.events[0]  # the shift's first event: olga's login
    assert len({id(e) for e in journal.model.events}) == journal.total


def test_live_events_append_while_the_range_is_current(qtbot, berlin, recording: Recording) -> None:
    """Events published on the window's bus join the current shift at the top, once, and only
    if they pass the filters; a past range does not take them."""
    bus = TagBus()
    journal = open_journal(qtbot, recording, bus)
    before = len(journal.model.events)
    now = time.time_ns()
    raised = alarm_event(now, PUMP_LO, "activated", "urgent", active=True, to="unack_active")
    noise = alarm_event(now + 1, CNC_HI, "suppressed", "high", active=False, to="normal")
    bus.publish_events([raised, noise])
    qtbot.waitUntil(lambda: len(journal.model.events) == before + 1, timeout=5000)
    assert journal.model.events[0] == raised and journal.hidden == 3
    bus.publish_events([raised])  # the same event again (e.g. also read from the historian) is one row
    journal.category_box.setCurrentText("System")
    wait_loaded(qtbot, journal)
    bus.publish_events([alarm_event(now + 2, PUMP_LO, "cleared", "urgent", active=False, to="unack_rtn")])
    bus.publish_events([Event(EventCategory.SYSTEM, "opcua.plant", "connection restored", ts_ns=now + 3)])
    qtbot.waitUntil(lambda: journal.model.events[0].message == "connection restored", timeout=5000)
    assert {str(e.category) for e in journal.model.events} == {"system"}

    journal.range_box.setCurrentText("Previous shift")  # over: nothing live joins it
    wait_loaded(qtbot, journal)
    rows = len(journal.model.events)
    bus.publish_events([Event(EventCategory.SYSTEM, "opcua.plant", "connection lost", ts_ns=time.time_ns())])
    qtbot.wait(300)
    assert len(journal.model.events) == rows


def test_range_boxes_show_the_range_read_in_the_project_zone(qtbot, berlin, recording: Recording) -> None:
    """The boxes read the project's clock (Berlin), whatever the computer's zone, and follow a preset."""
    journal = open_journal(qtbot, recording)
    berlin = ZoneInfo(ZONE)

    def shown(ts: int) -> str:
        return datetime.fromtimestamp(ts / NS, berlin).strftime("%Y-%m-%d %H:%M:%S")

    assert journal.start_edit.text() == shown(recording.shift_start)
    assert journal.end_edit.text() == shown(recording.shift_start + 8 * 3600 * NS)
    journal.range_box.setCurrentText("Last hour")
    wait_loaded(qtbot, journal)
    start, end = journal.range_ns
    assert end - start == 3600 * NS and journal.start_edit.text() == shown(start)
    assert journal.zone_label.text() == ZONE


def test_csv_and_shift_report_carry_the_comments_against_the_right_alarms(qtbot, berlin, recording, tmp_path) -> None:
    """CSV rows have project-zone and UTC times; the report (HTML and PDF) lists olga's comment
    against the CNC alarm and erik's comment-less acknowledgement against the pump alarm."""
    journal = open_journal(qtbot, recording)
    journal.category_box.setCurrentText("Operator")
    wait_loaded(qtbot, journal)
    path = tmp_path / "journal.csv"
    assert journal.export_csv(path) == 8
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    acks = {r["source"]: r for r in rows if r["what"] == "acknowledge"}
    assert acks[CNC_HI]["comment"] == "checked coolant" and acks[CNC_HI]["user"] == "olga"
    assert acks[PUMP_LO]["comment"] == "" and acks[PUMP_LO]["user"] == "erik"
    local, utc = datetime.fromisoformat(acks[CNC_HI]["time"]), datetime.fromisoformat(acks[CNC_HI]["time_utc"])
    assert local == utc  # the same instant, in Berlin with its offset and in UTC
    assert acks[CNC_HI]["time"].endswith(("+01:00", "+02:00")) and acks[CNC_HI]["time_utc"].endswith("+00:00")
    assert local.utcoffset() == local.astimezone(ZoneInfo(ZONE)).utcoffset()

    html_path = tmp_path / "report.html"
    with qtbot.waitSignal(journal.report_saved, timeout=10000):
        journal.save_report(html_path)
    html = html_path.read_text(encoding="utf-8")
    cnc_ack = html.split(f"<td>{CNC_HI}</td><td>olga</td>")[1].split("</tr>")[0]
    pump_ack = html.split(f"<td>{PUMP_LO}</td><td>erik</td>")[1].split("</tr>")[0]
    assert "checked coolant" in cnc_ack and "checked coolant" not in pump_ack
    assert "Demo plant" in html and "ws1:0" in html and "sensor swap" in html and "10 min" in html

    pdf_path = tmp_path / "report.pdf"
    with qtbot.waitSignal(journal.report_saved, timeout=10000):
        journal.save_report(pdf_path)
    assert pdf_path.read_bytes().startswith(b"%PDF") and pdf_path.stat().st_size > 2000


def test_the_comment_column_shows_only_what_was_said_with_that_transition() -> None:
    """An alarm keeps its shelve reason in every later event's details; an acknowledgement
    without a comment must not show that reason as if it were its comment."""
    from hmi.ui.alarm_journal import event_row

    shelved = alarm_event(1, PUMP_LO, "shelved", "high", active=True, to="SHELVED", user="piet")
    shelved.details["reason"] = "pump on manual"
    acked = alarm_event(2, PUMP_LO, "acknowledged", "high", active=True, to="ACK_ACTIVE", user="olga")
    acked.details["reason"] = "pump on manual"  # carried over from the shelve
    commented = alarm_event(3, PUMP_LO, "acknowledged", "high", active=True, to="ACK_ACTIVE", comment="seen")
    assert [event_row(e)[-1] for e in (shelved, acked, commented)] == ["pump on manual", "", "seen"]


def test_an_unexpected_error_in_a_read_does_not_stop_the_journal(qtbot, berlin, recording: Recording,
                                                                  monkeypatch, tmp_path: Path) -> None:  # fmt: skip
    """A read that fails in an unforeseen way (a bug, an odd recorded event) is shown as an error;
    the reader thread lives on, so Refresh still reads (it does not stay "loading…" for good)."""
    journal = open_journal(qtbot, recording)

    def broken(*_args: object, **_kwargs: object) -> str:
        raise TypeError("a bug in the report")

    monkeypatch.setattr("hmi.ui.alarm_journal.shift_report", broken)
    journal.save_report(tmp_path / "report.html")
    qtbot.waitUntil(lambda: "a bug in the report" in journal.error, timeout=10000)
    assert not (tmp_path / "report.html").exists()
    journal.refresh()
    wait_loaded(qtbot, journal)
    assert journal.model.events


def test_a_journal_without_a_historian_stops_following_the_bus_when_it_is_gone(qtbot) -> None:
    """Live events only (no historian): destroying the widget closes its bus subscription too,
    so events do not pile up in the inbox of a widget that no longer exists."""
    bus = TagBus()
    journal = AlarmJournal(None, bus)
    assert [s.name for s in bus._event_subs] == ["journal"]
    journal.deleteLater()
    qtbot.waitUntil(lambda: not bus._event_subs, timeout=5000)
