"""The playback bar: PLAYBACK banner with the replayed time, play/pause/step, speed, jump to
the previous/next alarm, and a timeline with alarm and event markers.

Self-contained: it drives a ReplaySource and polls its state on a UI timer (the source
publishes on its own thread; arrival rate is not paint rate). MainWindow.enter_playback
places it and follows `replay_time_s()`.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QKeySequence, QMouseEvent, QPainter, QPaintEvent, QPen, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from hmi.core.events import EventCategory
from hmi.historian.shifts import format_ns, zone
from hmi.sources.replay import SPEEDS, Marker, ReplaySource, ReplayState
from hmi.ui import theme

POLL_MS = 100
SEEK_WHILE_DRAGGING_MS = 120


class Timeline(QWidget):
    """The replayed range as a track: played part, event ticks (alarms tall and red), and a
    handle at the position. Click or drag to seek."""

    seek_requested = Signal(object)  # ns since the epoch (beyond Qt's int range)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start_ns = 0
        self.end_ns = 1
        self.position_ns = 0
        self.markers: list[Marker] = []
        self._dragging = False
        self._pending: int | None = None
        self._drag_timer = QTimer(self)
        self._drag_timer.setSingleShot(True)
        self._drag_timer.timeout.connect(self._emit_pending)
        self.setMinimumHeight(30)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click or drag to jump; red ticks are alarms, grey ones other events")

    def sizeHint(self) -> QSize:
        return QSize(400, 30)

    def set_range(self, start_ns: int, end_ns: int) -> None:
        self.start_ns, self.end_ns = start_ns, max(end_ns, start_ns + 1)
        self.update()

    def set_markers(self, markers: list[Marker]) -> None:
        self.markers = markers
        self.update()

    def set_position(self, ts_ns: int) -> None:
        if ts_ns != self.position_ns and not self._dragging:
            self.position_ns = ts_ns
            self.update()

    def _track(self) -> QRectF:
        return QRectF(6, 8, max(self.width() - 12, 1), self.height() - 16)

    def x_of(self, ts_ns: int) -> float:
        track = self._track()
        fraction = (ts_ns - self.start_ns) / (self.end_ns - self.start_ns)
        return track.left() + min(max(fraction, 0.0), 1.0) * track.width()

    def ts_at(self, x: float) -> int:
        track = self._track()
        fraction = min(max((x - track.left()) / track.width(), 0.0), 1.0)
        return self.start_ns + int(fraction * (self.end_ns - self.start_ns))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        track = self._track()
        painter.fillRect(track, QColor(theme.PANEL))
        x = self.x_of(self.position_ns)
        painter.fillRect(QRectF(track.left(), track.top(), x - track.left(), track.height()), QColor("#b9c4d3"))
        painter.setPen(QPen(QColor(theme.GRID)))
        painter.drawRect(track)
        alarm = QPen(QColor(theme.ALARM_URGENT), 2)
        other = QPen(QColor(theme.TEXT_DIM), 1)
        for marker in self.markers:
            mx = self.x_of(marker.ts_ns)
            if marker.category == EventCategory.ALARM:
                painter.setPen(alarm)
                painter.drawLine(QPointF(mx, 1), QPointF(mx, self.height() - 1))
            else:
                painter.setPen(other)
                painter.drawLine(QPointF(mx, track.top() + 3), QPointF(mx, track.bottom() - 3))
        painter.setPen(QPen(QColor(theme.TEXT), 1))
        painter.setBrush(QColor(theme.PLAYBACK))
        painter.drawRect(QRectF(x - 3, 2, 6, self.height() - 4))
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._dragging = True
            self._drag_to(event.position().x())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._dragging:
            self._drag_to(event.position().x())

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._dragging:
            self._dragging = False
            self._drag_to(event.position().x())
            self._emit_pending()

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
        self.timeline = Timeline()
        for widget in (self.previous_alarm_button, self.play_button, self.step_button, self.next_alarm_button):
            controls.addWidget(widget)
        controls.addWidget(self.speed_box)
        controls.addWidget(self.timeline, 1)
        outer.addLayout(controls)

        self.previous_alarm_button.clicked.connect(source.previous_alarm)
        self.next_alarm_button.clicked.connect(source.next_alarm)
        self.play_button.clicked.connect(source.toggle)
        self.step_button.clicked.connect(lambda: source.step())
        self.speed_box.currentIndexChanged.connect(self._on_speed_changed)
        self.timeline.seek_requested.connect(source.seek)
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
        )
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(POLL_MS)
        self.refresh()

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
