"""Journal benchmark: the alarm journal opening a 24-hour range of 50,000 events (first page of
1,000 rows shown and the total count known), beside bare sqlite3 reading the same rows.

    python -m bench journal            # 50,000 events, about 20 s
    python -m bench.journal --quick    # 5,000 events, a smoke test of the benchmark itself

Figures (median of 5 unless said): the bare sqlite3 ceiling (the newest 1,000 rows of the
range by (ts, id) plus COUNT(*), no JSON); the reader's first page plus counts with the
journal's default filter (design suppression hidden: a json_extract per row); a priority
filter done in SQL (json_extract) against reading the range and filtering in Python; and the
widget itself, from construction to the first page on screen with the total in its label
(Qt's offscreen platform when there is no display).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import print_table
from bench.historian import Row, timed
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.tags import TagRegistry
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian.reader import PRIORITIES, EventQuery

NS = 1_000_000_000
DAY = 86_400 * NS
PAGE = 1000


def make_events(n: int, end_ns: int) -> list[Event]:
    """A day of plant traffic: alarm transitions on 5 machines x 20 alarms, design-suppression
    pairs, operator actions and system events, spread evenly over the 24 h before `end_ns`."""
    out: list[Event] = []
    step = DAY // n
    for i in range(n):
        ts = end_ns - DAY + i * step
        machine = f"m{i % 5:02d}"
        alarm = f"{machine}.signal_{i % 20:02d}.hi"
        kind = i % 20
        if kind < 14:
            cause = ("activated", "acknowledged", "cleared")[i % 3]
            details = {"v": 1, "alarm": alarm, "cause": cause, "to": "unack_active", "active": cause != "cleared",
                       "priority": PRIORITIES[i % 4], "comment": "", "revision": i}  # fmt: skip
            out.append(Event(EventCategory.ALARM, alarm, f"{alarm} {cause}", Severity.WARNING, ts, "", details))
        elif kind < 16:
            cause = "suppressed" if kind == 14 else "unsuppressed"
            details = {"v": 1, "alarm": alarm, "cause": cause, "to": "normal", "active": False, "priority": "high"}
            out.append(Event(EventCategory.ALARM, alarm, f"{alarm} {cause}", Severity.INFO, ts, "", details))
        elif kind < 19:
            details = {"version": 1, "action": "acknowledge", "station": "ws1:0", "outcome": "ok", "comment": "ok"}
            out.append(Event(EventCategory.OPERATOR, alarm, f"olga acknowledged {alarm}", Severity.INFO, ts, "olga",
                             details))  # fmt: skip
        else:
            out.append(Event(EventCategory.SYSTEM, "opcua.plant", "reconnected", Severity.INFO, ts))
    return out


def record(path: Path, events: list[Event]) -> None:
    writer = HistorianWriter(str(path), TagRegistry(), max_queue_events=len(events) + 1)
    writer.start()
    try:
        assert writer.submit_events(events) and writer.flush(timeout=120)
    finally:
        writer.close()


def bare_first_page(path: Path, start: int, end: int) -> Callable[[], int]:
    conn = sqlite3.connect(path)

    def run() -> int:
        rows = conn.execute(
            "SELECT * FROM events WHERE ts >= ? AND ts < ? ORDER BY ts DESC, id DESC LIMIT ?", (start, end, PAGE + 1)
        ).fetchall()
        (count,) = conn.execute("SELECT COUNT(*) FROM events WHERE ts >= ? AND ts < ?", (start, end)).fetchone()
        return len(rows) + count

    return run


def bare_json_page(path: Path, start: int, end: int) -> Callable[[], int]:
    """The reader's default query written by hand: the same json_extract filter and counts."""
    conn = sqlite3.connect(path)
    design = (
        "(category = 'alarm' AND COALESCE(json_extract(details, '$.cause'), '') IN ('suppressed', 'unsuppressed') "
        "AND COALESCE(json_extract(details, '$.active'), 1) = 0)"
    )

    def run() -> int:
        rows = conn.execute(
            f"SELECT * FROM events WHERE ts >= ? AND ts < ? AND NOT {design} ORDER BY ts DESC, id DESC LIMIT ?",
            (start, end, PAGE + 1),
        ).fetchall()
        count, hidden = conn.execute(
            f"SELECT COUNT(*), SUM(CASE WHEN {design} THEN 1 ELSE 0 END) FROM events WHERE ts >= ? AND ts < ?",
            (start, end),
        ).fetchone()
        return len(rows) + count + hidden

    return run


def widget_open_ms(path: Path, repeat: int) -> list[float]:
    """ms from constructing AlarmJournal on "Last 24 h" to its first page shown with the total."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication  # noqa: TID251  (a bench of a widget)

    from hmi.ui.alarm_journal import AlarmJournal

    app = QApplication.instance() or QApplication([])
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        journal = AlarmJournal(path, preset="Last 24 h")
        journal.show()
        while journal.loading:
            app.processEvents()
            time.sleep(0.0005)
        app.processEvents()  # the rows painted
        times.append((time.perf_counter() - started) * 1000)
        assert journal.model.rowCount() == PAGE and journal.total > 0 and not journal.error, journal.error
        journal.close()
        journal.deleteLater()
        app.processEvents()
    return times


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 events (a smoke test), targets not judged")
    args = parser.parse_args(argv or [])
    n = 5000 if args.quick else 50_000
    judge = not args.quick
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hmi-bench-") as folder:
        path = Path(folder) / "journal.sqlite"
        now = time.time_ns()
        print(f"journal: recording {n:,} events over 24 h ...", flush=True)
        record(path, make_events(n, now))
        start, end = now - DAY, now + NS

        bare = timed(bare_first_page(path, start, end))
        rows.append(Row(f"bare sqlite3: newest {PAGE:,} rows of {n:,} + COUNT(*)", bare, "ms"))
        bare_json = timed(bare_json_page(path, start, end))
        rows.append(Row("bare sqlite3: the same with the json_extract filter + counts", bare_json, "ms"))
        with HistorianReader(path) as reader:
            default = EventQuery(hide_design_suppression=True)

            def first_page(query: EventQuery) -> Callable[[], object]:
                return lambda: (
                    reader.event_page(start, end, query, limit=PAGE),
                    reader.event_counts(start, end, query),
                )

            page = timed(first_page(default))
            rows.append(Row("reader: first page + counts (design suppression hidden)", page, "ms", "", bare_json))
            plain = timed(first_page(EventQuery()))
            rows.append(Row("reader: first page + count, no filter", plain, "ms", "", bare))
            urgent = EventQuery(priority="urgent", hide_design_suppression=True)
            sql = timed(first_page(urgent))
            rows.append(Row("priority filter in SQL (json_extract): first page + counts", sql, "ms"))

            def in_python() -> object:
                events = reader.events(start, end)
                return [e for e in events if urgent.matches(e)][-PAGE:]

            python = timed(in_python, repeat=3)
            rows.append(Row("priority filter in Python after SQL by time (reads all rows)", python, "ms"))

        opened = widget_open_ms(path, 5)
        median = statistics.median(opened)
        rows.append(
            Row(f"journal widget opens 24 h of {n:,} events (first page + total), median of 5", median, "ms",
                "< 1,000 ms", bare_json, median < 1000 if judge else None)
        )  # fmt: skip
        rows.append(Row("journal widget open, worst of 5 (the first opens the file cold)", max(opened), "ms"))
    header = ("figure", "measured", "target", "ceiling", "vs ceiling", "")
    print_table("Alarm journal", [tuple(r.cells()) for r in rows], header)
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
