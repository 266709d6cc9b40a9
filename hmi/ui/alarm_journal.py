"""The alarm and event journal: what happened over a time range, read from the historian.

It opens on the current shift (the project's shift calendar; the last 8 h without one), so
a window started an hour into the shift shows the whole shift, and it appends live events
from the window's event stream while the range is a current one. Rows are newest first;
pages of `PAGE_SIZE` rows are read with keyset paging on (ts, id), the next (older) page
when the operator scrolls to the bottom or presses "Older".

Threads: reads run on the "journal-reader" thread, which owns its own HistorianReader (WAL
lets it read beside the runtime's writer); the UI thread never waits on SQLite. Query
results (worker thread) and live events (IPC thread) cross to the UI thread in one place:
they are put on `_inbox` and an argument-less signal wakes `_drain` on the UI thread.

For tests: `journal.model.events` are the rows shown (newest first), `journal.loading` is
True while a read is in flight and `loaded` fires after each page is shown.
"""

from __future__ import annotations

import csv
import functools
import logging
import queue
import threading
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from PySide6.QtCore import (
    QAbstractTableModel,
    QDateTime,
    QModelIndex,
    QPersistentModelIndex,
    QStandardPaths,
    Qt,
    QTimeZone,
    Signal,
)
from PySide6.QtGui import QPageSize, QPdfWriter, QTextDocument
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from hmi.core.bus import Subscription, TagBus
from hmi.core.events import Event, EventCategory
from hmi.historian.reader import PRIORITIES, EventPage, EventQuery, HistorianReader, TimeRange, is_design_suppression
from hmi.historian.report import shift_report
from hmi.historian.schema import HistorianError
from hmi.historian.shifts import Shift, ShiftCalendar, ShiftDefinition, format_ns
from hmi.ui.format import display_timezone, format_time

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
NS = 1_000_000_000
COLUMNS = ("Time", "Category", "Source", "What", "State", "Priority", "User", "Message", "Comment")
CURRENT_SHIFT, PREVIOUS_SHIFT, CUSTOM = "Current shift", "Previous shift", "Custom"
ROLLING_S = {"Last hour": 3600, "Last 8 h": 8 * 3600, "Last 24 h": 86400}
CATEGORIES = {"All categories": None, "Alarms": EventCategory.ALARM, "Operator": EventCategory.OPERATOR,
              "System": EventCategory.SYSTEM, "Advisories": EventCategory.ADVISORY}  # fmt: skip
ALL_MACHINES, ALL_PRIORITIES = "All machines", "All priorities"
LOAD_MORE_MARGIN = 50  # rows from the bottom at which scrolling asks for the next page

Index = QModelIndex | QPersistentModelIndex


REASON_CAUSES = frozenset({"shelved", "out_of_service", "in_service"})


def event_row(e: Event) -> list[str]:
    d = e.details
    what = str(d.get("cause", "") or d.get("action", "")) or ("flood" if "flood" in d else "")
    state = str(d.get("to", "") or (d.get("outcome", "") if e.category == EventCategory.OPERATOR else ""))
    comment = str(d.get("comment", ""))
    if not comment and (e.category != EventCategory.ALARM or d.get("cause") in REASON_CAUSES):
        # An alarm event carries its alarm's shelve/out-of-service reason on every later
        # transition; it is this row's comment only where that reason was given.
        comment = str(d.get("reason", ""))
    return [format_time(e.ts_ns), str(e.category), e.source, what.replace("_", " "), state.replace("_", " "),
            str(d.get("priority", "")), e.user, e.message, comment]  # fmt: skip


def _key(e: Event) -> tuple[int, str, str, str]:
    # Events carry no id on the stream: time, category, source and message tell a live event
    # already read from the historian from a new one.
    return (e.ts_ns, str(e.category), e.source, e.message)


class JournalModel(QAbstractTableModel):
    """The rows shown, newest first; `events[i]` is row i."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._rows: list[list[str]] = []

    def set_events(self, events: list[Event]) -> None:
        self.beginResetModel()
        self.events = list(events)
        self._rows = [event_row(e) for e in self.events]
        self.endResetModel()

    def append_older(self, events: Sequence[Event]) -> None:
        if not events:
            return
        n = len(self.events)
        self.beginInsertRows(QModelIndex(), n, n + len(events) - 1)
        self.events.extend(events)
        self._rows.extend(event_row(e) for e in events)
        self.endInsertRows()

    def insert_live(self, event: Event) -> None:
        """Insert in time order (newest first); a late event lands where its time says."""
        keys = [-e.ts_ns for e in self.events]  # ascending for bisect
        row = bisect_right(keys, -event.ts_ns) if keys and -event.ts_ns >= keys[0] else 0
        self.beginInsertRows(QModelIndex(), row, row)
        self.events.insert(row, event)
        self._rows.insert(row, event_row(event))
        self.endInsertRows()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        return self._rows[index.row()][index.column()]


# -- the reader thread --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Request:
    generation: int
    kind: str  # "page" or "report"
    start_ns: int
    end_ns: int
    query: EventQuery = field(default_factory=EventQuery)
    before: tuple[int, int] | None = None
    count: bool = False
    report: dict[str, Any] | None = None  # report: path, label, project, station


@dataclass(frozen=True, slots=True)
class _Result:
    request: _Request
    page: EventPage | None = None
    counts: tuple[int, int] | None = None
    html: str = ""
    error: str = ""


class _ReaderThread:
    """Runs reads one at a time on its own thread with its own HistorianReader; a historian
    that is not there yet (nothing recorded so far) is tried again on the next read."""

    def __init__(self, target: str, deliver: Any) -> None:
        self.target = target
        self._deliver = deliver
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, request: _Request) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="journal-reader", daemon=True)
            self._thread.start()
        self._requests.put(request)

    def stop(self) -> None:
        if self._thread is not None:
            self._requests.put(None)

    def _run(self) -> None:
        reader: HistorianReader | None = None
        while (request := self._requests.get()) is not None:
            try:
                if reader is None:
                    reader = HistorianReader(self.target)
                self._deliver(self._do(reader, request))
            except (HistorianError, sa.exc.SQLAlchemyError, OSError, ValueError) as exc:
                log.info("journal: cannot read %s: %s", self.target, exc)
                if reader is not None:
                    reader.close()
                    reader = None
                self._deliver(_Result(request, error=str(exc)))
            except Exception as exc:
                # A bug (or an event no one foresaw) must not end this thread: every later
                # read would wait for it, and the journal would show "loading…" for good.
                log.exception("journal: reading %s failed", self.target)
                self._deliver(_Result(request, error=f"{exc.__class__.__name__}: {exc}"))
        if reader is not None:
            reader.close()

    @staticmethod
    def _do(reader: HistorianReader, r: _Request) -> _Result:
        if r.kind == "report":
            info = r.report or {}
            time_range = TimeRange(r.start_ns, r.end_ns, info.get("label", ""), info.get("timezone", "UTC"))
            html = shift_report(reader, time_range, project=info.get("project", ""), station=info.get("station", ""))
            return _Result(r, html=html)
        page = reader.event_page(r.start_ns, r.end_ns, r.query, before=r.before, limit=PAGE_SIZE)
        counts = reader.event_counts(r.start_ns, r.end_ns, r.query) if r.count else None
        return _Result(r, page=page, counts=counts)


def _shutdown(subscription: Subscription | None, worker: _ReaderThread | None) -> None:
    # Connected to `destroyed` without a reference to the widget (it is gone by then).
    if subscription is not None:
        subscription.close()
    if worker is not None:
        worker.stop()


def _zone_name(tz: tzinfo) -> str:
    return tz.key if isinstance(tz, ZoneInfo) else "UTC"


def _documents_folder() -> str:
    return QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or str(Path.home())


# -- the widget -----------------------------------------------------------------------------------


class AlarmJournal(QWidget):
    """The journal. `historian`: the historian's URL or file; `bus`: where live events are
    published (the window's mirrored bus); `calendar`: the project's shifts."""

    loaded = Signal()  # a page (or an error) was applied: `loading` may have turned False
    report_saved = Signal(str)  # the path of a report written by save_report
    _inbox_ready = Signal()

    def __init__(
        self,
        historian: str | Path | None,
        bus: TagBus | None = None,
        *,
        calendar: ShiftCalendar | None = None,
        machines: Sequence[str] = (),
        project_name: str = "",
        station: str = "",
        preset: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """`preset`: the range to open on (a name in `range_box`); default the current shift,
        or the last 8 h without a calendar."""
        super().__init__(parent)
        self.calendar = calendar if calendar else None
        self.project_name = project_name
        self.station = station
        # Times are the window's display zone, which the window sets from the project.
        self.tz: tzinfo = display_timezone() or datetime.now().astimezone().tzinfo or UTC
        self.model = JournalModel()
        self.loading = False
        self.total = 0  # events matching the filters in the range (the historian's, plus live ones since)
        self.hidden = 0  # design-suppression changes hidden by the filter
        self.error = ""
        self.next_key: tuple[int, int] | None = None
        self.range_ns = (0, 0)
        self.range_label = ""
        self.query = EventQuery()
        self._generation = 0
        self._following = False  # the range is a current one: live events join it
        self._pending_live: list[Event] = []
        self._first_page_pending = False
        self._keys: set[tuple[int, str, str, str]] = set()
        self._reports: dict[int, Path] = {}
        self._inbox: queue.SimpleQueue[_Result | list[Event]] = queue.SimpleQueue()
        self._inbox_ready.connect(self._drain)
        self._worker = _ReaderThread(str(historian), self._post) if historian is not None else None
        self._build(machines, preset)
        self._subscription = bus.subscribe_events(self._on_bus_events, name="journal") if bus is not None else None
        # Also without a historian: the bus subscription must end with the widget.
        self.destroyed.connect(functools.partial(_shutdown, self._subscription, self._worker))
        self.refresh()

    @classmethod
    def for_project(cls, project: Any, bus: TagBus | None, historian: str | Path | None = None,
                    station: str = "") -> AlarmJournal:  # fmt: skip
        """The journal of a project's window: its historian (or `historian`, e.g. a recording),
        shift calendar and machines."""
        calendar = ShiftCalendar(
            [ShiftDefinition.parse(s.name, s.start, s.end) for s in project.shifts], project.project.timezone
        )
        return cls(
            historian if historian is not None else project.historian.read_target,
            bus,
            calendar=calendar,
            machines=list(project.machines),
            project_name=project.project.name,
            station=station,
        )

    def _build(self, machines: Sequence[str], preset: str | None) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.range_box = QComboBox()
        presets = ([CURRENT_SHIFT, PREVIOUS_SHIFT] if self.calendar else []) + [*ROLLING_S, CUSTOM]
        self.range_box.addItems(presets)
        self.range_box.setCurrentText(preset if preset in presets else CURRENT_SHIFT if self.calendar else "Last 8 h")
        self.range_box.currentTextChanged.connect(self._on_range_preset)
        bar.addWidget(self.range_box)
        qtz = QTimeZone(_zone_name(self.tz).encode())
        self.start_edit = QDateTimeEdit()
        self.end_edit = QDateTimeEdit()
        for edit in (self.start_edit, self.end_edit):
            edit.setTimeZone(qtz)  # the boxes read the project's clock, like the rows
            edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
            edit.setCalendarPopup(True)
            edit.setEnabled(self.range_box.currentText() == CUSTOM)
            bar.addWidget(edit)
        self.zone_label = QLabel(_zone_name(self.tz))
        bar.addWidget(self.zone_label)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        bar.addWidget(self.refresh_button)
        bar.addStretch(1)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._ask_export)
        bar.addWidget(self.export_button)
        self.report_button = QPushButton("Shift report…")
        self.report_button.clicked.connect(self._ask_report)
        bar.addWidget(self.report_button)
        layout.addLayout(bar)

        filters = QHBoxLayout()
        self.machine_box = QComboBox()
        self.machine_box.addItems([ALL_MACHINES, *machines])
        self.priority_box = QComboBox()
        self.priority_box.addItems([ALL_PRIORITIES, *PRIORITIES])
        self.category_box = QComboBox()
        self.category_box.addItems(list(CATEGORIES))
        for box in (self.machine_box, self.priority_box, self.category_box):
            box.currentIndexChanged.connect(self.refresh)
            filters.addWidget(box)
        self.user_filter = QLineEdit()
        self.user_filter.setPlaceholderText("user")
        self.user_filter.setMaximumWidth(120)
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("text in message, source or user…")
        for line_edit in (self.user_filter, self.text_filter):
            line_edit.returnPressed.connect(self.refresh)
        filters.addWidget(self.user_filter)
        filters.addWidget(self.text_filter, 1)
        self.suppression_box = QCheckBox("Show design suppression")
        self.suppression_box.setToolTip("Suppression-by-design changes of inactive alarms (e.g. at a tool change)")
        self.suppression_box.toggled.connect(self.refresh)
        filters.addWidget(self.suppression_box)
        layout.addLayout(filters)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        # Fixed widths that hold a full alarm name and a typical comment (ResizeToContents would
        # measure every row on each page); Message takes what is left.
        for column, width in ((0, 100), (1, 75), (2, 280), (3, 105), (4, 105), (5, 65), (6, 80), (8, 240)):
            self.table.setColumnWidth(column, width)
        self.table.horizontalHeader().setSectionResizeMode(7, QHeaderView.ResizeMode.Stretch)
        self.table.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        layout.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        self.count_label = QLabel()
        bottom.addWidget(self.count_label, 1)
        self.more_button = QPushButton("Older")
        self.more_button.setToolTip(f"Load the next {PAGE_SIZE} older events")
        self.more_button.clicked.connect(self.load_more)
        bottom.addWidget(self.more_button)
        layout.addLayout(bottom)

    # -- ranges ------------------------------------------------------------------------------

    def _shift_at(self, now_ns: int, previous: bool) -> Shift | None:
        assert self.calendar is not None
        started = [s for s in self.calendar.between(now_ns - 3 * 86400 * NS, now_ns + 1) if s.start_ns <= now_ns]
        if not started:
            return None
        current = self.calendar.at(now_ns) or started[-1]
        if not previous:
            return current
        earlier = [s for s in started if s.start_ns < current.start_ns]
        return earlier[-1] if earlier else None

    def _preset_range(self, now_ns: int) -> tuple[int, int, str, bool]:
        """(start, end, label, follows live events) of the chosen preset."""
        text = self.range_box.currentText()
        if text in (CURRENT_SHIFT, PREVIOUS_SHIFT):
            shift = self._shift_at(now_ns, previous=text == PREVIOUS_SHIFT)
            if shift is not None:
                return shift.start_ns, shift.end_ns, f"shift {shift.label}", shift.end_ns > now_ns
            text = "Last 8 h"
        if text in ROLLING_S:
            end = now_ns + NS  # open at the top: live events join
            start = end - ROLLING_S[text] * NS
            return start, end, f"{text.lower()} to {format_ns(now_ns, self._zone())}", True
        start = self.start_edit.dateTime().toMSecsSinceEpoch() * 1_000_000
        end = self.end_edit.dateTime().toMSecsSinceEpoch() * 1_000_000
        tz = self._zone()
        return start, end, f"{format_ns(start, tz)} to {format_ns(end, tz)}", start <= now_ns < end

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(_zone_name(self.tz))

    def _show_range(self, start_ns: int, end_ns: int) -> None:
        qtz = self.start_edit.timeZone()
        for edit, ts in ((self.start_edit, start_ns), (self.end_edit, end_ns)):
            edit.blockSignals(True)
            edit.setDateTime(QDateTime.fromMSecsSinceEpoch(ts // 1_000_000, qtz))
            edit.blockSignals(False)

    def _on_range_preset(self, text: str) -> None:
        custom = text == CUSTOM
        self.start_edit.setEnabled(custom)
        self.end_edit.setEnabled(custom)
        self.refresh()

    def set_range(self, start_ns: int, end_ns: int) -> None:
        """Show a custom range (e.g. a past shift) and read it."""
        self._show_range(start_ns, end_ns)
        self.range_box.blockSignals(True)
        self.range_box.setCurrentText(CUSTOM)
        self.range_box.blockSignals(False)
        self._on_range_preset(CUSTOM)

    def _current_query(self) -> EventQuery:
        category = CATEGORIES[self.category_box.currentText()]
        machine = self.machine_box.currentText()
        priority = self.priority_box.currentText()
        return EventQuery(
            categories=None if category is None else (str(category),),
            machine="" if machine == ALL_MACHINES else machine,
            priority="" if priority == ALL_PRIORITIES else priority,
            user=self.user_filter.text().strip(),
            text=self.text_filter.text().strip(),
            hide_design_suppression=not self.suppression_box.isChecked(),
        )

    # -- reading -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the range and filters chosen, from the first (newest) page."""
        start, end, label, following = self._preset_range(time.time_ns())
        self._show_range(start, end)
        self.range_ns, self.range_label, self._following = (start, end), label, following
        self.query = self._current_query()
        self._generation += 1
        self.next_key = None
        self.total = self.hidden = 0
        self.error = ""
        self._pending_live = []
        self._keys = set()
        self.model.set_events([])
        if self._worker is None:
            self.loading = False
            self._update_label()
            return
        self.loading = self._first_page_pending = True
        self._update_label()
        self._worker.submit(_Request(self._generation, "page", start, end, self.query, count=True))

    def load_more(self) -> None:
        """Read the next (older) page, if there is one and no read is in flight."""
        if self._worker is None or self.loading or self.next_key is None:
            return
        self.loading = True
        self._update_label()
        start, end = self.range_ns
        self._worker.submit(_Request(self._generation, "page", start, end, self.query, before=self.next_key))

    @property
    def has_more(self) -> bool:
        return self.next_key is not None

    def _on_scrolled(self, value: int) -> None:
        bar = self.table.verticalScrollBar()
        if value >= bar.maximum() - LOAD_MORE_MARGIN * max(1, bar.singleStep()) and self.has_more:
            self.load_more()

    # -- crossing to the UI thread (the one place) ---------------------------------------------

    def _post(self, item: _Result | list[Event]) -> None:
        """Any thread: hand `item` to the UI thread."""
        self._inbox.put(item)
        try:
            self._inbox_ready.emit()
        except RuntimeError:  # the widget is gone; its destroyed handler closes the rest
            pass

    def _on_bus_events(self, events: Sequence[Event]) -> None:
        """IPC thread."""
        self._post(list(events))

    def _drain(self) -> None:
        live: list[Event] = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Result):
                self._apply_result(item)
            else:
                live.extend(item)
        if live:
            self._apply_live(live)

    def _apply_result(self, result: _Result) -> None:
        request = result.request
        if request.kind == "report":
            path = self._reports.pop(request.generation, None)
            if path is not None:
                self._write_report(path, result)
            return
        if request.generation != self._generation:
            return  # an answer to a range or filter no longer shown
        self.loading = False
        if result.error:
            self.error = result.error
        elif result.page is not None:
            events = [e for e in result.page.events if _key(e) not in self._keys]
            self._keys.update(_key(e) for e in events)
            self.model.append_older(events)
            self.next_key = result.page.next_key
            if result.counts is not None:
                self.total, self.hidden = result.counts
        if request.before is None:
            self._first_page_pending = False
            pending, self._pending_live = self._pending_live, []
            self._apply_live(pending)
        self._update_label()
        self.loaded.emit()

    def _apply_live(self, events: list[Event]) -> None:
        if not self._following:
            return
        if self._first_page_pending:
            self._pending_live.extend(events)  # the first page decides what is already there
            return
        start, end = self.range_ns
        rolling = self.range_box.currentText() in ROLLING_S
        for e in events:
            if e.ts_ns < start or (e.ts_ns >= end and not rolling) or _key(e) in self._keys:
                continue
            if not self.query.matches(e):
                if self.query.hide_design_suppression and is_design_suppression(e):
                    self.hidden += 1
                continue
            self._keys.add(_key(e))
            self.model.insert_live(e)
            self.total += 1
        self._update_label()

    def _update_label(self) -> None:
        parts = [f"{len(self.model.events):,} of {self.total:,} event(s) shown ({self.range_label})"]
        if self.hidden:
            parts.append(f"{self.hidden:,} design-suppression change(s) hidden")
        if self.loading:
            parts.append("loading…")
        if self.error:
            parts.append(f"historian not readable: {self.error}")
        elif self._worker is None:
            parts.append("no historian")
        self.count_label.setText(" · ".join(parts))
        self.more_button.setEnabled(self.has_more and not self.loading)

    # -- export -------------------------------------------------------------------------------

    def _ask_export(self) -> None:
        folder = Path(_documents_folder()) / "journal.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export journal", str(folder), "CSV files (*.csv)")
        if path:
            self.export_csv(Path(path))

    def export_csv(self, path: Path) -> int:
        """Write the rows shown as CSV (project-zone ISO time with offset, and UTC); returns the row count."""
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["time", "time_utc", "category", "source", "what", "state", "priority", "user",
                             "message", "comment", "severity", "station"])  # fmt: skip
            for e in self.model.events:
                moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=e.ts_ns // 1000)
                row = event_row(e)[1:]
                writer.writerow([moment.astimezone(self.tz).isoformat(timespec="milliseconds"),
                                 moment.isoformat(timespec="milliseconds"), *row, str(e.severity),
                                 str(e.details.get("station", ""))])  # fmt: skip
        return len(self.model.events)

    def _ask_report(self) -> None:
        name = self.range_label.replace("shift ", "shift-").replace("/", "-").replace(" ", "_").replace(":", "")
        folder = Path(_documents_folder()) / f"report-{name}.html"
        path, _ = QFileDialog.getSaveFileName(self, "Save shift report", str(folder), "HTML (*.html);;PDF (*.pdf)")
        if path:
            self.save_report(Path(path))

    def save_report(self, path: Path) -> None:
        """Write the shift report of the range shown to `path` (.pdf: PDF, else HTML). The
        historian is read on the reader thread; `report_saved(path)` fires when it is written."""
        if self._worker is None:
            return
        ticket = max(self._reports, default=0) + 1
        self._reports[ticket] = path
        start, end = self.range_ns
        info = {"label": self.range_label, "timezone": _zone_name(self.tz), "project": self.project_name,
                "station": self.station}  # fmt: skip
        self._worker.submit(_Request(ticket, "report", start, end, report=info))

    def _write_report(self, path: Path, result: _Result) -> None:
        if result.error:
            self.error = result.error
            self._update_label()
            return
        if path.suffix.lower() == ".pdf":
            document = QTextDocument()
            document.setHtml(result.html)
            writer = QPdfWriter(str(path))
            writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
            writer.setTitle(f"Shift report {self.range_label}")
            document.print_(writer)
        else:
            path.write_text(result.html, encoding="utf-8")
        self.report_saved.emit(str(path))
