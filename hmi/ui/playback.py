"""The playback bar: PLAYBACK banner with the replayed time, play/pause/step, speed, jump to
the previous/next alarm, and a timeline with alarm and event markers.

Self-contained: it drives a ReplaySource and polls its state on a UI timer (the source
publishes on its own thread; arrival rate is not paint rate). MainWindow.enter_playback
places it and follows `replay_time_s()`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QShortcut,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from hmi.core.events import EventCategory
from hmi.historian.shifts import format_ns, from_ns, zone
from hmi.scene.animate import MAX_STEP_S
from hmi.sources.replay import SPEEDS, Marker, ReplaySource, ReplayState
from hmi.ui import theme

POLL_MS = 100
SEEK_WHILE_DRAGGING_MS = 120


TIMELINE_HEIGHT = 44
MIN_VIEW_NS = 2 * 1_000_000_000  # zoomed in no further than 2 s across the track
WHEEL_ZOOM = 0.8  # one wheel notch shows 80 % of the span (in) or 125 % (out)
CLICK_SLOP_PX = 4  # a press that moves less is a click (seek), more is a drag (pan)
MARKER_HIT_PX = 4  # a click this close to a marker jumps to the marker's time
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_NS = 1_000_000_000


class Timeline(QWidget):
    """The replayed range as a track that zooms and pans: time ticks, the played part, event
    markers (alarms that became active in their priority's colour, everything else grey, as
    ISA-101 keeps colour for the abnormal) and a handle at the position.

    Wheel: zoom around the mouse. Drag: pan (drag the handle: scrub). Click: jump there, or
    to the marker under the mouse. `fit()` shows the recorded data. The strip under the track
    shows which part of the whole range is in view."""

    seek_requested = Signal(object)  # ns since the epoch (beyond Qt's int range)
    view_changed = Signal()

    def __init__(self, timezone: str = "UTC", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tz = zone(timezone)
        self.start_ns = 0
        self.end_ns = 1
        self.view_start_ns = 0
        self.view_end_ns = 1
        self.first_ns: int | None = None  # the recorded data's extent, for fit()
        self.last_ns: int | None = None
        self.position_ns = 0
        self.markers: list[Marker] = []
        self._marker_ts = np.zeros(0, np.int64)
        self._dragging = False  # scrubbing the handle
        self._press: tuple[float, int, int] | None = None  # x, view start and end at the press
        self._panned = False
        self._pending: int | None = None
        self._drag_timer = QTimer(self)
        self._drag_timer.setSingleShot(True)
        self._drag_timer.timeout.connect(self._emit_pending)
        self.setMinimumHeight(TIMELINE_HEIGHT)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)  # marker tooltips
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(
            "Click to jump (on a marker: to it); drag to pan, drag the handle to scrub; wheel to zoom. "
            "Coloured ticks: alarms by priority; grey: other events"
        )

    def sizeHint(self) -> QSize:
        return QSize(400, TIMELINE_HEIGHT)

    # -- range, view, data -----------------------------------------------------------------

    def set_range(self, start_ns: int, end_ns: int) -> None:
        self.start_ns, self.end_ns = start_ns, max(end_ns, start_ns + 1)
        self.set_view(self.start_ns, self.end_ns)

    def set_data_extent(self, first_ns: int, last_ns: int) -> None:
        self.first_ns, self.last_ns = first_ns, last_ns

    def set_markers(self, markers: list[Marker]) -> None:
        self.markers = sorted(markers, key=lambda m: m.ts_ns)
        self._marker_ts = np.fromiter((m.ts_ns for m in self.markers), np.int64, len(self.markers))
        self.update()

    def set_view(self, start_ns: float, end_ns: float) -> None:
        """Show [start, end], kept inside the range and no narrower than MIN_VIEW_NS."""
        full = self.end_ns - self.start_ns
        span = min(max(end_ns - start_ns, min(MIN_VIEW_NS, full)), full)
        start = min(max(start_ns, self.start_ns), self.end_ns - span)
        view = (int(start), int(start + span))
        if view != (self.view_start_ns, self.view_end_ns):
            self.view_start_ns, self.view_end_ns = view
            self.update()
            self.view_changed.emit()

    def fit(self) -> None:
        """Show the recorded data (with a margin), or the whole range when there is none."""
        if self.first_ns is None or self.last_ns is None:
            self.set_view(self.start_ns, self.end_ns)
            return
        pad = max((self.last_ns - self.first_ns) * 0.02, _NS)
        self.set_view(self.first_ns - pad, self.last_ns + pad)

    def zoom(self, factor: float, around_ns: float) -> None:
        """Scale the view's span by `factor` (< 1 zooms in), keeping `around_ns` where it is."""
        a, b = self.view_start_ns, self.view_end_ns
        self.set_view(around_ns - (around_ns - a) * factor, around_ns + (b - around_ns) * factor)

    def set_position(self, ts_ns: int) -> None:
        if ts_ns == self.position_ns or self._dragging:
            return
        self.position_ns = ts_ns
        if self._press is None:
            span = self.view_end_ns - self.view_start_ns
            if ts_ns > self.view_end_ns or ts_ns < self.view_start_ns:
                # Playing out of view turns the page: the position comes in at a tenth of the track.
                self.set_view(ts_ns - span / 10, ts_ns - span / 10 + span)
        self.update()

    # -- geometry ---------------------------------------------------------------------------

    def _track(self) -> QRectF:
        return QRectF(6, 4, max(self.width() - 12, 1), self.height() - 24)

    def x_of(self, ts_ns: int) -> float:
        track = self._track()
        fraction = (ts_ns - self.view_start_ns) / (self.view_end_ns - self.view_start_ns)
        return track.left() + min(max(fraction, 0.0), 1.0) * track.width()

    def ts_at(self, x: float) -> int:
        track = self._track()
        fraction = min(max((x - track.left()) / track.width(), 0.0), 1.0)
        return self.view_start_ns + int(fraction * (self.view_end_ns - self.view_start_ns))

    def marker_at(self, x: float) -> Marker | None:
        """The marker drawn nearest to `x`, if within MARKER_HIT_PX (alarms win a tie)."""
        lo = int(np.searchsorted(self._marker_ts, self.ts_at(x - MARKER_HIT_PX), side="left"))
        hi = int(np.searchsorted(self._marker_ts, self.ts_at(x + MARKER_HIT_PX), side="right"))
        near = [m for m in self.markers[lo:hi] if self.view_start_ns <= m.ts_ns <= self.view_end_ns]
        if not near:
            return None
        return min(near, key=lambda m: (m.priority is None, abs(self.x_of(m.ts_ns) - x)))

    def _ticks(self) -> tuple[int, list[int]]:
        """A step (s) giving ticks at least ~90 px apart, and the tick times in view."""
        track = self._track()
        span_s = (self.view_end_ns - self.view_start_ns) / _NS
        step = next((s for s in _TICK_STEPS_S if s * track.width() / max(span_s, 1e-9) >= 90), _TICK_STEPS_S[-1])
        # Ticks fall on whole local minutes and hours (the offset makes 06:00 a tick in CET).
        offset = int(from_ns(self.view_start_ns, self.tz).utcoffset().total_seconds())  # type: ignore[union-attr]
        first = ((self.view_start_ns // _NS + offset) // step + 1) * step - offset
        return step, list(range(first, self.view_end_ns // _NS + 1, step))

    # -- painting ---------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        track = self._track()
        painter.fillRect(track, QColor(theme.PANEL))
        x = self.x_of(self.position_ns)
        if self.position_ns >= self.view_start_ns:
            painter.fillRect(QRectF(track.left(), track.top(), x - track.left(), track.height()), QColor("#b9c4d3"))
        # Time ticks under the track.
        step, ticks = self._ticks()
        painter.setPen(QPen(QColor(theme.TEXT_DIM), 1))
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() - 1, 7))
        painter.setFont(font)
        fmt = "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%m-%d"
        for tick_s in ticks:
            tx = self.x_of(tick_s * _NS)
            painter.drawLine(QPointF(tx, track.bottom()), QPointF(tx, track.bottom() + 3))
            label = from_ns(tick_s * _NS, self.tz).strftime(fmt)
            painter.drawText(QRectF(tx - 40, track.bottom() + 3, 80, 12), Qt.AlignmentFlag.AlignHCenter, label)
        painter.setPen(QPen(QColor(theme.GRID)))
        painter.drawRect(track)
        # Where the view sits in the whole range (full width when showing it all).
        full = self.end_ns - self.start_ns
        strip = QRectF(track.left(), self.height() - 4, track.width(), 3)
        painter.fillRect(strip, QColor(theme.PANEL_DARK))
        a = (self.view_start_ns - self.start_ns) / full
        b = (self.view_end_ns - self.start_ns) / full
        painter.fillRect(
            QRectF(strip.left() + a * strip.width(), strip.top(), max((b - a) * strip.width(), 2), 3),
            QColor(theme.TEXT_DIM),
        )
        # Markers in view: grey ones first, so an alarm is never hidden under one.
        lo = int(np.searchsorted(self._marker_ts, self.view_start_ns, side="left"))
        hi = int(np.searchsorted(self._marker_ts, self.view_end_ns, side="right"))
        shown = self.markers[lo:hi]
        other = QPen(QColor(theme.TEXT_DIM), 1)
        painter.setPen(other)
        for marker in shown:
            if marker.priority is None:
                mx = self.x_of(marker.ts_ns)
                painter.drawLine(QPointF(mx, track.top() + 4), QPointF(mx, track.bottom() - 4))
        for marker in shown:
            if marker.priority is not None:
                mx = self.x_of(marker.ts_ns)
                painter.setPen(QPen(QColor(theme.ALARM_COLOURS.get(marker.priority, theme.ALARM_HIGH)), 3))
                painter.drawLine(QPointF(mx, track.top() + 1), QPointF(mx, track.bottom() - 1))
        if self.view_start_ns <= self.position_ns <= self.view_end_ns:
            painter.setPen(QPen(QColor(theme.TEXT), 1))
            painter.setBrush(QColor(theme.PLAYBACK))
            painter.drawRect(QRectF(x - 3, track.top() - 2, 6, track.height() + 4))
        painter.end()

    # -- mouse -----------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if notches:
            self.zoom(WHEEL_ZOOM**notches, self.ts_at(event.position().x()))
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        x = event.position().x()
        on_handle = (
            self.view_start_ns <= self.position_ns <= self.view_end_ns and abs(x - self.x_of(self.position_ns)) <= 5
        )
        if on_handle:
            self._dragging = True
            self._drag_to(x)
        else:
            self._press = (x, self.view_start_ns, self.view_end_ns)
            self._panned = False

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        x = event.position().x()
        if self._dragging:
            self._drag_to(x)
        elif self._press is not None:
            x0, a, b = self._press
            if self._panned or abs(x - x0) > CLICK_SLOP_PX:
                self._panned = True
                self.setCursor(Qt.CursorShape.ClosedHandCursor)
                shift = (x0 - x) / self._track().width() * (b - a)
                self.set_view(a + shift, b + shift)
        else:
            marker = self.marker_at(x)
            if marker is not None:
                when = format_ns(marker.ts_ns, self.tz)
                QToolTip.showText(event.globalPosition().toPoint(), f"{when}  {marker.source}\n{marker.message}", self)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        x = event.position().x()
        if self._dragging:
            self._dragging = False
            self._drag_to(x)
            self._emit_pending()
        elif self._press is not None:
            if not self._panned:
                marker = self.marker_at(x)
                target = marker.ts_ns if marker is not None else self.ts_at(x)
                self.position_ns = target
                self.update()
                self.seek_requested.emit(target)
            self._press = None
            self._panned = False
            self.setCursor(Qt.CursorShape.PointingHandCursor)

    def _drag_to(self, x: float) -> None:
        self.position_ns = self.ts_at(x)
        self._pending = self.position_ns
        self.update()
        # Seeks while dragging are throttled; the release always seeks.
        if not self._drag_timer.isActive():
            self._drag_timer.start(SEEK_WHILE_DRAGGING_MS)

    def _emit_pending(self) -> None:
        if self._pending is not None:
            target, self._pending = self._pending, None
            self.seek_requested.emit(target)


class PlaybackClock:
    """Seconds of replayed time, for motion in the 3D view: it advances at the replay's speed
    while playing and stands still otherwise (GUI thread; reads the source's plain fields).

    Smooth where `position_ns` is not: the replay thread moves the position in ticks, which
    would make a spinning part stutter. A wall gap longer than MAX_STEP_S counts as MAX_STEP_S
    (a hidden view must not jump), so the view may trust steps up to MAX_STEP_S x MAX_SPEED."""

    def __init__(self, source: ReplaySource, wall: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._wall = wall
        self._last = wall()
        self.now_s = 0.0

    def __call__(self) -> float:
        wall = self._wall()
        gap = min(max(wall - self._last, 0.0), MAX_STEP_S)
        self._last = wall
        if self.source.state == ReplayState.PLAYING and math.isfinite(self.source.speed):
            self.now_s += gap * self.source.speed
        return self.now_s


class PlaybackBar(QFrame):
    """Controls and status of one ReplaySource. UI thread only."""

    seeked = Signal()  # the replay jumped (trends should redraw from scratch)

    def __init__(self, source: ReplaySource, timezone: str, label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.tz = zone(timezone)
        self.setObjectName("playbackBar")
        self.setStyleSheet(
            f"""
            QFrame#playbackBar {{ background: {theme.PANEL_DARK}; border-bottom: 3px solid {theme.PLAYBACK}; }}
            QLabel#playbackBanner {{ background: {theme.PLAYBACK}; color: white; font-weight: bold;
                                    padding: 3px 12px; }}
            QLabel#replayTime {{ color: {theme.PLAYBACK}; font-weight: bold; }}
            """
        )
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 4, 8, 4)
        outer.setSpacing(4)

        top = QHBoxLayout()
        self.banner = QLabel("PLAYBACK")
        self.banner.setObjectName("playbackBanner")
        big = QFont(self.banner.font())
        big.setPointSize(big.pointSize() + 4)
        big.setBold(True)
        self.banner.setFont(big)
        top.addWidget(self.banner)
        self.time_label = QLabel("")
        self.time_label.setObjectName("replayTime")
        self.time_label.setFont(big)
        top.addWidget(self.time_label)
        self.range_label = QLabel(label)
        top.addWidget(self.range_label, 1)
        self.status_label = QLabel("")
        top.addWidget(self.status_label)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setFixedWidth(160)
        self.progress.setFormat("opening %p%")
        top.addWidget(self.progress)
        outer.addLayout(top)

        controls = QHBoxLayout()
        self.previous_alarm_button = QPushButton("◀ Alarm")
        self.previous_alarm_button.setToolTip("Jump to the previous alarm event")
        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Play / pause (Space)")
        self.step_button = QPushButton("Step ▶")
        self.step_button.setToolTip(f"Advance {source.step_ns / 1e9:g} s and pause (Right arrow)")
        self.next_alarm_button = QPushButton("Alarm ▶")
        self.next_alarm_button.setToolTip("Jump to the next alarm event")
        self.speed_box = QComboBox()
        for speed in SPEEDS:
            self.speed_box.addItem(f"{speed:g}×", speed)
        self.speed_box.setToolTip("Playback speed")
        self.timeline = Timeline(timezone)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Show all the recorded data on the timeline (wheel zooms, drag pans)")
        for widget in (self.previous_alarm_button, self.play_button, self.step_button, self.next_alarm_button):
            controls.addWidget(widget)
        controls.addWidget(self.speed_box)
        controls.addWidget(self.timeline, 1)
        controls.addWidget(self.fit_button)
        outer.addLayout(controls)
        # Where the machines, models and trends come from, and what is missing.
        self.project_label = QLabel("")
        self.project_label.setObjectName("playbackProject")
        self.project_label.setWordWrap(True)
        self.project_label.setStyleSheet(f"color: {theme.TEXT_DIM};")
        self.project_label.setVisible(False)
        outer.addWidget(self.project_label)

        self.previous_alarm_button.clicked.connect(source.previous_alarm)
        self.next_alarm_button.clicked.connect(source.next_alarm)
        self.play_button.clicked.connect(source.toggle)
        self.step_button.clicked.connect(lambda: source.step())
        self.speed_box.currentIndexChanged.connect(self._on_speed_changed)
        self.timeline.seek_requested.connect(source.seek)
        self.fit_button.clicked.connect(self.timeline.fit)
        QShortcut(QKeySequence(Qt.Key.Key_Space), self, source.toggle)
        QShortcut(QKeySequence(Qt.Key.Key_Right), self, lambda: source.step())
        self._select_speed(source.speed)
        self.timeline.set_range(source.start_ns, source.end_ns)
        self._markers_shown = False
        self._seek_generation = -1
        self._controls = (
            self.previous_alarm_button,
            self.play_button,
            self.step_button,
            self.next_alarm_button,
            self.speed_box,
            self.timeline,
            self.fit_button,
        )
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(POLL_MS)
        self.refresh()

    def set_project(self, origin: str, notes: Sequence[str] = ()) -> None:
        """Say where the shown project comes from, and each problem (a missing model) on a line."""
        lines = [f"Showing {origin}."] + [f"⚠ {note}" for note in notes]
        self.project_label.setText("\n".join(lines))
        self.project_label.setToolTip("\n".join(lines))
        # Dim when all is as recorded; plain text when something is missing (not an alarm colour).
        self.project_label.setStyleSheet(f"color: {theme.TEXT if notes else theme.TEXT_DIM};")
        self.project_label.setVisible(True)

    def replay_time_s(self) -> float:
        """The replayed time as epoch seconds (what the window's clock and trends follow)."""
        return self.source.position_ns / 1e9

    def _select_speed(self, speed: float) -> None:
        index = self.speed_box.findData(speed)
        if index >= 0:
            self.speed_box.setCurrentIndex(index)

    def _on_speed_changed(self, index: int) -> None:
        speed = self.speed_box.itemData(index)
        if speed is not None:
            self.source.set_speed(float(speed))

    def refresh(self) -> None:
        source = self.source
        state = source.state
        opening = state == ReplayState.OPENING
        self.progress.setVisible(opening)
        if opening:
            self.progress.setValue(int(source.progress * 100))
        for widget in self._controls:
            widget.setEnabled(state in (ReplayState.PAUSED, ReplayState.PLAYING, ReplayState.ENDED))
        if not opening and not self._markers_shown:
            self.timeline.set_markers(source.markers)
            if state != ReplayState.FAILED:
                self.timeline.set_data_extent(source.first_ns, source.last_ns)
                self.timeline.fit()
            alarms = sum(1 for m in source.markers if m.category == EventCategory.ALARM)
            self.range_label.setText(f"{self.range_label.text()}   ({alarms} alarm events)")
            self._markers_shown = True
        self.play_button.setText("Pause" if state == ReplayState.PLAYING else "Play")
        position = min(max(source.position_ns, source.start_ns), source.end_ns)
        self.time_label.setText(format_ns(position, self.tz, with_ms=True))
        self.timeline.set_position(position)
        status = {
            ReplayState.OPENING: "opening the recording…",
            ReplayState.PAUSED: "paused",
            ReplayState.PLAYING: f"playing {source.speed:g}×",
            ReplayState.ENDED: "end of recording",
            ReplayState.FAILED: f"FAILED: {source.error}",
            ReplayState.CLOSED: "closed",
        }[state]
        self.status_label.setText(status)
        if source.seek_generation != self._seek_generation:
            self._seek_generation = source.seek_generation
            self.seeked.emit()
