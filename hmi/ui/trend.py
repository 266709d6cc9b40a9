"""Trends: several pens, each with its unit and y axis, on a date-time axis.

Live data comes from TrendBuffers (filled on the IPC or replay thread). `refresh()` runs
on the window's frame timer: it scrolls the time window while live and redraws a pen only
when its data or the visible range changed. Each pen is decimated to min/max per pixel
column before it reaches pyqtgraph, so twenty pens of an hour at 10 Hz draw as fast as
twenty short ones (pyqtgraph's own peak downsampling still walks every point each frame).
BAD and COMM_LOST samples draw as gaps. When the window reaches past what the ring buffer
holds, a history provider (the historian) backfills the rest on a worker thread.

Panning or zooming with the mouse pauses the live scroll; "Live" resumes it.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hmi.core.decimate import minmax_decimate
from hmi.core.quality import Quality
from hmi.core.ringbuffer import TrendBuffers, values_for_plot
from hmi.core.tags import TagSpec
from hmi.ui import theme
from hmi.ui.format import format_tag_value
from hmi.ui.mime import NODE_MIME, TAGS_MIME

log = logging.getLogger(__name__)

SPANS_S = {"1 min": 60, "5 min": 300, "15 min": 900, "1 h": 3600, "8 h": 8 * 3600}

# (ts ns, values, quality) for a tag name over [t0_ns, t1_ns], decimated to about `points`.
HistoryProvider = Callable[[str, int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class Pen:
    tag_id: int
    spec: TagSpec
    colour: str
    curve: pg.PlotDataItem
    view: pg.ViewBox
    axis: pg.AxisItem
    drawn_key: tuple = ()
    limit_lines: list[pg.InfiniteLine] = field(default_factory=list)
    history: tuple[np.ndarray, np.ndarray] | None = None  # (ts s, values) before the buffer
    history_range: tuple[float, float] | None = None
    history_pending: Future | None = None


class TrendView(QWidget):
    paused_changed = Signal(bool)
    tags_dropped = Signal(list)  # tag names dragged from the tag browser
    nodes_dropped = Signal(list)  # browsed OPC UA nodes (dicts) dragged from the address space

    def __init__(
        self,
        buffers: TrendBuffers,
        pens: list[tuple[int, TagSpec]],
        span_s: float = 300.0,
        title: str = "",
        parent: QWidget | None = None,
        clock: Callable[[], float] = time.time,
        history: HistoryProvider | None = None,
        timezone: tzinfo | None = None,
    ) -> None:
        """`timezone`: what the time axis and the cursor show (the plant's); default local time."""
        super().__init__(parent)
        self.timezone = timezone
        self.setAcceptDrops(True)
        self.buffers = buffers
        self.span_s = float(span_s)
        self.clock = clock
        self.history = history
        self.live = True
        self.frames_drawn = 0
        self._history_pool: ThreadPoolExecutor | None = None
        self._history_lock = threading.Lock()
        self._last_range: tuple[float, float] = (0.0, 0.0)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(self._build_toolbar(title))
        axis_options = {}
        if timezone is not None:
            offset = datetime.now(timezone).utcoffset()
            # pyqtgraph counts seconds west of UTC, like time.timezone.
            axis_options["utcOffset"] = -int(offset.total_seconds()) if offset is not None else 0
        self.plot_widget = pg.PlotWidget(
            background=theme.PLOT_BACKGROUND,
            axisItems={"bottom": pg.DateAxisItem(orientation="bottom", **axis_options)},
        )
        self.plot_widget.setAcceptDrops(False)  # drops land on this widget, not the plot's
        layout.addWidget(self.plot_widget, 1)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        for name in ("left", "bottom", "right"):
            self.plot.getAxis(name).setTextPen(theme.TEXT)
            self.plot.getAxis(name).setPen(theme.TEXT_DIM)
        self.plot.addLegend(offset=(10, 10), labelTextColor=theme.TEXT, brush=pg.mkBrush(theme.PANEL))
        self.plot.vb.setMouseEnabled(x=True, y=False)
        self.pens: list[Pen] = []
        self._axes_by_unit: dict[str, tuple[pg.ViewBox, pg.AxisItem]] = {}
        for tag_id, spec in pens:
            self.add_pen(tag_id, spec)
        self.plot.vb.sigResized.connect(self._sync_views)
        self.plot.vb.sigRangeChangedManually.connect(self._on_view_changed_by_user)
        self._build_cursor()
        self._sync_views()

    # -- construction -----------------------------------------------------------------------

    def _build_toolbar(self, title: str) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 0)
        self.title_label = QLabel(title)
        font = self.title_label.font()
        font.setBold(True)
        self.title_label.setFont(font)
        bar.addWidget(self.title_label)
        bar.addStretch(1)
        self.span_combo = QComboBox()
        self.span_combo.addItems(list(SPANS_S))
        closest = min(SPANS_S, key=lambda k: abs(SPANS_S[k] - self.span_s))
        self.span_combo.setCurrentText(closest)
        self.span_combo.currentTextChanged.connect(lambda text: self.set_span(SPANS_S[text]))
        self.span_combo.setToolTip("Time span shown")
        bar.addWidget(self.span_combo)
        self.live_button = QPushButton("Pause")
        self.live_button.setToolTip("Pause or resume the live scroll (panning also pauses it)")
        self.live_button.clicked.connect(lambda: self.set_live(not self.live))
        bar.addWidget(self.live_button)
        png = QPushButton("PNG…")
        png.setToolTip("Save the trend as an image")
        png.clicked.connect(self._ask_export_png)
        bar.addWidget(png)
        csv_button = QPushButton("CSV…")
        csv_button.setToolTip("Save the visible samples of every pen as CSV")
        csv_button.clicked.connect(self._ask_export_csv)
        bar.addWidget(csv_button)
        return bar

    def _build_cursor(self) -> None:
        self.cursor_line = pg.InfiniteLine(
            angle=90, movable=False, pen=pg.mkPen(theme.TEXT_DIM, style=Qt.PenStyle.DashLine)
        )
        self.cursor_label = pg.TextItem(color=theme.TEXT, fill=pg.mkBrush(theme.PANEL), anchor=(0, 0))
        self.cursor_line.setVisible(False)
        self.cursor_label.setVisible(False)
        self.plot.addItem(self.cursor_line, ignoreBounds=True)
        self.plot.addItem(self.cursor_label, ignoreBounds=True)
        self._mouse_proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse_moved)

    def add_pen(self, tag_id: int, spec: TagSpec) -> Pen:
        """Add a pen; pens with the same unit share one y axis."""
        index = len(self.pens)
        colour = theme.PEN_COLOURS[index % len(theme.PEN_COLOURS)]
        label = f"{spec.name} [{spec.unit}]" if spec.unit else spec.name
        shared = self._axes_by_unit.get(spec.unit)
        if shared is not None:
            view, axis = shared
        elif not self._axes_by_unit:
            view, axis = self.plot.vb, self.plot.getAxis("left")
        else:
            view = pg.ViewBox()
            view.setMouseEnabled(x=True, y=False)
            if len(self._axes_by_unit) == 1:
                self.plot.showAxis("right")
                axis = self.plot.getAxis("right")
            else:
                axis = pg.AxisItem("right")
                self.plot.layout.addItem(axis, 2, 1 + len(self._axes_by_unit))
                axis.setTextPen(theme.TEXT)
                axis.setPen(theme.TEXT_DIM)
            self.plot.scene().addItem(view)
            axis.linkToView(view)
            view.setXLink(self.plot)
        if shared is None:
            self._axes_by_unit[spec.unit] = (view, axis)
            # Y axes rarely change while the time axis scrolls: paint them from a cached
            # pixmap instead of re-rendering their text every frame (about 4 ms each here).
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            axis.setLabel(spec.unit or spec.name, color=colour)
            if spec.low is not None and spec.high is not None:
                # Fixed scales from the engineering range read calmer than autoscale,
                # which turns sensor noise into a wall of spikes.
                view.setYRange(spec.low, spec.high, padding=0.02)
                view.disableAutoRange(axis=pg.ViewBox.YAxis)
            else:
                view.enableAutoRange(axis=pg.ViewBox.YAxis)
        curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=1), name=label, connect="finite")
        if view is self.plot.vb:
            self.plot.addItem(curve)
        else:
            view.addItem(curve)
            self.plot.legend.addItem(curve, label)
        pen = Pen(tag_id, spec, colour, curve, view, axis)
        self.pens.append(pen)
        self.buffers.watch(tag_id)
        self._sync_views()
        return pen

    def _sync_views(self) -> None:
        rect = self.plot.vb.sceneBoundingRect()
        for view, _ in self._axes_by_unit.values():
            if view is not self.plot.vb:
                view.setGeometry(rect)
                view.linkedViewChanged(self.plot.vb, view.XAxis)

    # -- operator controls ----------------------------------------------------------------------

    def set_span(self, span_s: float) -> None:
        self.span_s = float(span_s)
        if not self.live:
            _x0, x1 = self.plot.vb.viewRange()[0]
            self.plot.setXRange(x1 - self.span_s, x1, padding=0)

    def set_live(self, live: bool) -> None:
        if live == self.live:
            return
        self.live = live
        self.live_button.setText("Pause" if live else "Live")
        self.paused_changed.emit(not live)

    def _on_view_changed_by_user(self, *_: object) -> None:
        self.set_live(False)

    def set_limits(self, tag_id: int, limits: list[tuple[float, str, str]]) -> None:
        """Draw horizontal lines (value, label, colour) on a pen's axis, e.g. its alarm limits."""
        for pen in self.pens:
            if pen.tag_id != tag_id:
                continue
            for line in pen.limit_lines:
                pen.view.removeItem(line)
            pen.limit_lines = []
            for value, label, colour in limits:
                line = pg.InfiniteLine(
                    pos=value,
                    angle=0,
                    movable=False,
                    pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine),
                    label=label,
                    labelOpts={"position": 0.02, "color": colour, "anchors": [(0, 1), (0, 1)]},
                )
                pen.view.addItem(line, ignoreBounds=True)
                pen.limit_lines.append(line)

    # -- drawing ------------------------------------------------------------------------------------

    def visible_range(self) -> tuple[float, float]:
        return tuple(self.plot.vb.viewRange()[0])

    def refresh(self, now_s: float | None = None) -> bool:
        """Scroll (when live) and redraw pens whose data or view changed; True if anything drew."""
        if self.live:
            now = self.clock() if now_s is None else now_s
            self.plot.setXRange(now - self.span_s, now, padding=0)
        x0, x1 = self.visible_range()
        width = max(int(self.plot.vb.width()), 100)
        drew = False
        for pen in self.pens:
            total = self.buffers.total(pen.tag_id)
            key = (total, round(x0, 3), round(x1, 3), width, id(pen.history))
            if key == pen.drawn_key:
                continue
            pen.drawn_key = key
            x, y = self._pen_points(pen, x0, x1, width)
            pen.curve.setData(x, y)
            drew = True
        if drew:
            self.frames_drawn += 1
        return drew

    def _pen_points(self, pen: Pen, x0: float, x1: float, width: int) -> tuple[np.ndarray, np.ndarray]:
        ts_ns, values, quality = self.buffers.get(pen.tag_id)
        ts = ts_ns.astype(np.float64) / 1e9
        y = values_for_plot(values, quality)
        oldest = ts[0] if ts.shape[0] else x1
        if self.history is not None and x0 < oldest:
            self._request_history(pen, x0, oldest, width)
        if pen.history is not None:
            hts, hy = pen.history
            keep = hts < oldest
            if keep.any():
                ts = np.concatenate([hts[keep], ts])
                y = np.concatenate([hy[keep], y])
        return minmax_decimate(ts, y, x0, x1, width)

    def _request_history(self, pen: Pen, x0: float, x1: float, width: int) -> None:
        if pen.history_pending is not None and not pen.history_pending.done():
            return
        if pen.history_range is not None and pen.history_range[0] <= x0 and pen.history_range[1] >= x1 - 1.0:
            return
        if self._history_pool is None:
            self._history_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trend-history")
        provider = self.history
        assert provider is not None
        name = pen.spec.name

        def load() -> None:
            try:
                ts_ns, values, quality = provider(name, int(x0 * 1e9), int(x1 * 1e9), 2 * width)
            except Exception:
                log.exception("history for %s failed", name)
                return
            with self._history_lock:
                pen.history = (ts_ns.astype(np.float64) / 1e9, values_for_plot(values, quality))
                pen.history_range = (x0, x1)

        pen.history_pending = self._history_pool.submit(load)

    def curve_data(self, tag_id: int) -> tuple[np.ndarray, np.ndarray]:
        """What the pen for `tag_id` currently draws (x in epoch seconds, y)."""
        for pen in self.pens:
            if pen.tag_id == tag_id:
                x, y = pen.curve.getData()
                return (np.zeros(0) if x is None else x), (np.zeros(0) if y is None else y)
        raise KeyError(tag_id)

    # -- cursor -------------------------------------------------------------------------------------

    def _on_mouse_moved(self, event: tuple) -> None:
        pos = event[0]
        if not self.plot.vb.sceneBoundingRect().contains(pos):
            self.cursor_line.setVisible(False)
            self.cursor_label.setVisible(False)
            return
        t = self.plot.vb.mapSceneToView(pos).x()
        self.show_cursor(t)

    def show_cursor(self, t: float) -> str:
        """Put the cursor at time t (epoch s); returns the text it shows (every pen's value)."""
        lines = [datetime.fromtimestamp(t, self.timezone).strftime("%H:%M:%S.%f")[:-3]]
        for pen in self.pens:
            ts_ns, values, quality = self.buffers.get(pen.tag_id)
            i = int(np.searchsorted(ts_ns, int(t * 1e9), side="right")) - 1
            if i < 0:
                text = "—"
            else:
                q = Quality(int(quality[i]))
                text = format_tag_value(float(values[i]), pen.spec)
                if q != Quality.GOOD:
                    text += f" ({theme.QUALITY_LABEL[q]})"
            lines.append(f"{pen.spec.name}: {text} {pen.spec.unit}".rstrip())
        label = "\n".join(lines)
        self.cursor_line.setPos(t)
        self.cursor_label.setText(label)
        y_top = self.plot.vb.viewRange()[1][1]
        self.cursor_label.setPos(t, y_top)
        self.cursor_line.setVisible(True)
        self.cursor_label.setVisible(True)
        return label

    # -- export --------------------------------------------------------------------------------------

    def export_png(self, path: str | Path) -> bool:
        return self.plot_widget.grab().save(str(path))

    def export_csv(self, path: str | Path) -> int:
        """The visible samples of every pen (long format: time, tag, value, unit, quality); returns rows."""
        x0, x1 = self.visible_range()
        rows = 0
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["time_utc", "tag", "value", "unit", "quality"])
            for pen in self.pens:
                ts_ns, values, quality = self.buffers.get(pen.tag_id)
                mask = (ts_ns >= int(x0 * 1e9)) & (ts_ns <= int(x1 * 1e9))
                for t, v, q in zip(ts_ns[mask], values[mask], quality[mask], strict=True):
                    stamp = datetime.fromtimestamp(int(t) / 1e9, UTC).isoformat(timespec="milliseconds")
                    writer.writerow([stamp, pen.spec.name, repr(float(v)), pen.spec.unit, Quality(int(q)).name])
                    rows += 1
        return rows

    def _ask_export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save trend image", "trend.png", "PNG images (*.png)")
        if path:
            self.export_png(path)

    def _ask_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save trend data", "trend.csv", "CSV files (*.csv)")
        if path:
            self.export_csv(path)

    # -- drag and drop from the tag browser ------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasFormat(TAGS_MIME) or event.mimeData().hasFormat(NODE_MIME):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        if mime.hasFormat(TAGS_MIME):
            self.tags_dropped.emit(json.loads(bytes(mime.data(TAGS_MIME).data()).decode()))
        elif mime.hasFormat(NODE_MIME):
            self.nodes_dropped.emit(json.loads(bytes(mime.data(NODE_MIME).data()).decode()))
        else:
            return
        event.acceptProposedAction()

    def has_pen(self, tag_id: int) -> bool:
        return any(p.tag_id == tag_id for p in self.pens)

    def closeEvent(self, event: object) -> None:
        if self._history_pool is not None:
            self._history_pool.shutdown(wait=False, cancel_futures=True)
        super().closeEvent(event)  # type: ignore[arg-type]
