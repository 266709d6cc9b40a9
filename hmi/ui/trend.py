"""Trends: several pens, each with its unit and y axis, on a date-time axis.

Live data comes from TrendBuffers (filled on the IPC or replay thread). `refresh()` runs
on the window's frame timer: while live it scrolls the time window by whole pixels (when a
pixel's worth of time has passed), and it redraws a pen only when its data or the visible
range changed, so an idle trend paints nothing. Each pen is decimated to min/max per pixel
column before it reaches pyqtgraph, so twenty pens of an hour at 10 Hz draw as fast as
twenty short ones (pyqtgraph's own peak downsampling still walks every point each frame).
BAD and COMM_LOST samples draw as gaps. When the window reaches past what the ring buffer
holds, a history provider (the historian) backfills the rest on a worker thread, for every
pen that needs it in one job.

Panning or zooming the time with the mouse pauses the live scroll; "Live" resumes it.
Each y axis zooms with the mouse wheel over it and pans by dragging it; "Auto-scale Y"
(right-click in the plot) fits it to the data again. Y axes without an engineering range
auto-scale with hysteresis: the range changes when the data leaves it or fills less than
half of it, not every frame (a jumping scale is unreadable, and re-rendering the axis text
each frame is what made fifty pens pan slowly).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QMimeData, QObject, QPoint, QPointF, QRect, QRectF, QStandardPaths, Qt, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QFont, QImage, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QMenu,
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
WHEEL_ZOOM = 0.85  # per wheel notch over a y axis: the range shrinks to 85 % (zoom in)
CURSOR_MARGIN_PX = 10
# A live trend scrolls in whole pixels, at most once a second (as SCADA trends update): every
# scroll repaints the whole plot with its axes' text, the dearest thing the window draws with
# the 3D view hidden. New samples still show at once, in the strip at the right edge.
SCROLL_EVERY_S = 1.0
# An export asks the historian for this many points: it returns every raw sample unless a
# range holds more than that (then min/max pairs), so a CSV is the recorded data.
EXPORT_POINTS = 20_000_000
# Pens per read of a provider that reads many at once; a hand-over (and repaint) may follow
# each read. Fifty pens in one read opened the bench's trend faster than five reads of ten
# with repaints between (the reads compete with the paints for both cores).
HISTORY_PENS_PER_READ = 50

# (ts ns, values, quality) for a tag name over [t0_ns, t1_ns], decimated to about `points`.
HistoryProvider = Callable[[str, int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class History:
    """What the historian gave for a pen, before its ring buffer begins."""

    ts: np.ndarray  # epoch s
    y: np.ndarray  # values for drawing (NaN where not GOOD)
    values: np.ndarray
    quality: np.ndarray
    range: tuple[float, float]  # the interval asked for (epoch s)


@dataclass
class YScale:
    """One y axis, shared by the pens of one unit. `auto`: fit to the data (with hysteresis)."""

    unit: str
    view: pg.ViewBox
    axis: pg.AxisItem
    auto: bool


@dataclass
class Pen:
    tag_id: int
    spec: TagSpec
    colour: str
    curve: Curve
    view: pg.ViewBox
    axis: pg.AxisItem
    drawn_key: tuple = ()
    limits: list[tuple[float, str, str]] = field(default_factory=list)  # (value, label, colour)
    limit_lines: list[pg.InfiniteLine] = field(default_factory=list)
    history: History | None = None
    extent: tuple[float, float] | None = None  # finite min and max of what is drawn


class Curve(pg.PlotCurveItem):
    """A pen's curve whose data bounds come from what TrendView computed when it set the data:
    pyqtgraph recomputed them from the points several times per frame per curve (a third of
    a frame's time with fifty pens)."""

    extent: tuple[float, float] | None = None
    # The time range of the view it was drawn for: its bounds stay put while samples are
    # appended between scrolls, so appending needs no geometry change (see set_points).
    x_bounds: tuple[float, float] | None = None
    _strip: tuple[float, float] | None = None  # while set_points runs: the x range to repaint

    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange: object = None) -> tuple:
        x = self.xData
        if x is None or x.shape[0] == 0:
            return (None, None)
        if ax == 0:
            return self.x_bounds if self.x_bounds is not None else (float(x[0]), float(x[-1]))
        return self.extent if self.extent is not None else (None, None)

    def set_points(
        self, x: np.ndarray, y: np.ndarray, extent: tuple[float, float] | None, x_bounds: tuple[float, float]
    ) -> None:
        """Draw these points. When the bounds are what they were (the view did not move, the
        y extent did not grow), only the strip from the first changed point to the right end
        is repainted: a new sample repaints a few pixels at the right edge, not the whole
        plot with its grid, axes and every other pen (most of the window's CPU on the demo plant)."""
        old_x, old_y = self.xData, self.yData
        if x.shape[0]:  # the decimation keeps a point either side of the view, for lines to the edges
            x_bounds = (min(x_bounds[0], float(x[0])), max(x_bounds[1], float(x[-1])))
        same = (
            extent == self.extent
            and x_bounds == self.x_bounds
            and old_x is not None
            and old_y is not None
            and old_x.shape[0] > 0
            and x.shape[0] > 0
        )
        self.extent, self.x_bounds = extent, x_bounds
        if same:
            assert old_x is not None and old_y is not None
            n = min(old_x.shape[0], x.shape[0])
            with np.errstate(invalid="ignore"):
                differs = (old_x[:n] != x[:n]) | ((old_y[:n] != y[:n]) & ~(np.isnan(old_y[:n]) & np.isnan(y[:n])))
            first = int(np.argmax(differs)) if differs.any() else n
            if first == n == old_x.shape[0] == x.shape[0]:
                return  # nothing to draw
            # The segment into the first changed point changes too.
            self._strip = (float(min(old_x[max(first - 1, 0)], x[max(first - 1, 0)])), float(max(old_x[-1], x[-1])))
        try:
            self.setData(x, y)
        finally:
            self._strip = None

    def prepareGeometryChange(self) -> None:
        if self._strip is None:  # appending within unchanged bounds: the geometry stays
            super().prepareGeometryChange()

    def update(self, *args: object) -> None:
        if self._strip is None or args:
            super().update(*args)
            return
        lo, hi = self._strip
        bounds = self.boundingRect()
        pad = 3 * (self.pixelWidth() or 0.0)  # the pen's width and its antialiasing
        super().update(QRectF(lo - pad, bounds.top(), hi - lo + 2 * pad, bounds.height()))


class YAxis(pg.AxisItem):
    """A y axis the operator zooms with the wheel and pans by dragging. The plot itself pans
    only in time: panning y inside it would fight the live scroll."""

    user_scaled = Signal(object)  # this axis

    def wheelEvent(self, event: object) -> None:
        view = self.linkedView()
        if view is None:
            return
        factor = WHEEL_ZOOM ** (event.delta() / 120)  # type: ignore[attr-defined]
        y = view.mapSceneToView(event.scenePos()).y()  # type: ignore[attr-defined]
        lo, hi = view.viewRange()[1]
        view.setYRange(y - (y - lo) * factor, y + (hi - y) * factor, padding=0)
        self.user_scaled.emit(self)
        event.accept()  # type: ignore[attr-defined]

    def mouseDragEvent(self, event: object) -> None:
        view = self.linkedView()
        if view is None or event.button() != Qt.MouseButton.LeftButton:  # type: ignore[attr-defined]
            event.ignore()  # type: ignore[attr-defined]
            return
        event.accept()  # type: ignore[attr-defined]
        before = view.mapSceneToView(event.lastScenePos()).y()  # type: ignore[attr-defined]
        after = view.mapSceneToView(event.scenePos()).y()  # type: ignore[attr-defined]
        view.translateBy(y=before - after)
        self.user_scaled.emit(self)


class TrendView(QWidget):
    paused_changed = Signal(bool)
    tags_dropped = Signal(list)  # tag names dragged from the tag browser
    nodes_dropped = Signal(list)  # browsed OPC UA nodes (dicts) dragged from the address space
    pens_changed = Signal()  # the operator removed or reordered a pen, or changed the span
    export_dir_changed = Signal(str)  # the folder an export was saved to

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
        lazy: bool = False,
    ) -> None:
        """`timezone`: what the time axis and the cursor show (the plant's); default local time.
        `lazy`: build the plot when `build()` is called (TrendTabs does when its tab first
        becomes the current one; not on a show event, which a tab removed before it gets);
        until then it keeps its pens as a list, and their ring buffers fill as usual. A window with
        eight trend groups built one plot instead of eight (27 pyqtgraph view boxes, each
        building its context menu, were half of the window's construction)."""
        super().__init__(parent)
        self.timezone = timezone
        self.setAcceptDrops(True)
        self.buffers = buffers
        self.span_s = float(span_s)
        self.clock = clock
        self.history = history
        self.live = True
        self.frames_drawn = 0
        self.export_dir = ""  # "" = the documents folder
        self._history_pool: ThreadPoolExecutor | None = None
        self._history_job: Future | None = None
        self._history_lock = threading.Lock()
        self.pens: list[Pen] = []
        self.scales: dict[str, YScale] = {}
        self._extra_axes: list[pg.AxisItem] = []
        # Before the plot is built: the pens (in order) and their limit lines.
        self._unbuilt: list[tuple[int, TagSpec]] | None = []
        self._history_generation = 0  # grows when history reaches a pen
        self._pens_generation = 0  # grows with every pen put on the plot (added, replaced, moved)
        self._quiet_key: tuple = ()
        self._quiet_until = -math.inf
        self._unbuilt_limits: dict[int, list[tuple[float, str, str]]] = {}

        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        self._layout.addLayout(self._build_toolbar(title))
        for tag_id, spec in pens:
            self.add_pen(tag_id, spec)
        if not lazy:
            self.build()

    @property
    def built(self) -> bool:
        return self._unbuilt is None

    def build(self) -> None:
        """Build the plot with the pens and limits given so far (once)."""
        if self._unbuilt is None:
            return
        pens, limits = self._unbuilt, self._unbuilt_limits
        self._unbuilt, self._unbuilt_limits = None, {}
        axis_options = {}
        timezone = self.timezone
        if timezone is not None:
            offset = datetime.now(timezone).utcoffset()
            # pyqtgraph counts seconds west of UTC, like time.timezone.
            axis_options["utcOffset"] = -int(offset.total_seconds()) if offset is not None else 0
        self.plot_widget = pg.PlotWidget(
            background=theme.PLOT_BACKGROUND,
            axisItems={
                "bottom": pg.DateAxisItem(orientation="bottom", **axis_options),
                "left": YAxis("left"),
                "right": YAxis("right"),
            },
        )
        self.plot_widget.setAcceptDrops(False)  # drops land on this widget, not the plot's
        self._layout.addWidget(self.plot_widget, 1)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        for name in ("left", "bottom", "right"):
            self.plot.getAxis(name).setTextPen(theme.TEXT)
            self.plot.getAxis(name).setPen(theme.TEXT_DIM)
        for name in ("left", "right"):
            self.plot.getAxis(name).user_scaled.connect(self._on_axis_scaled)
        self.plot.addLegend(offset=(10, 10), labelTextColor=theme.TEXT, brush=pg.mkBrush(theme.PANEL))
        self.plot.vb.setMouseEnabled(x=True, y=False)
        self.plot.vb.disableAutoRange(axis=pg.ViewBox.YAxis)
        self.plot_widget.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.plot_widget.customContextMenuRequested.connect(self._on_context_menu)
        for tag_id, spec in pens:
            pen = self._plot_pen(tag_id, spec)
            if tag_id in limits:
                self._draw_limits(pen, limits[tag_id])
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
        self.span_combo.currentTextChanged.connect(self._on_span_chosen)
        self.span_combo.setToolTip("Time span shown")
        bar.addWidget(self.span_combo)
        self.live_button = QPushButton("Pause")
        self.live_button.setToolTip("Pause or resume the live scroll (panning also pauses it)")
        self.live_button.clicked.connect(lambda: self.set_live(not self.live))
        bar.addWidget(self.live_button)
        png = QPushButton("PNG…")
        png.setToolTip("Save the trend as an image, with its title, time range and pens")
        png.clicked.connect(self._ask_export_png)
        bar.addWidget(png)
        csv_button = QPushButton("CSV…")
        csv_button.setToolTip("Save every sample in the visible time range, history included, as CSV")
        csv_button.clicked.connect(self._ask_export_csv)
        bar.addWidget(csv_button)
        return bar

    def _build_cursor(self) -> None:
        self.cursor_line = pg.InfiniteLine(
            angle=90, movable=False, pen=pg.mkPen(theme.TEXT_DIM, style=Qt.PenStyle.DashLine)
        )
        self.cursor_line.setVisible(False)
        self.plot.addItem(self.cursor_line, ignoreBounds=True)
        # A widget over the plot, not an item in it: placed in pixels, it can be kept inside
        # the plot and clear of the legend whatever the ranges (an item in the view box was
        # clipped at its right edge).
        self.cursor_label = QLabel(self.plot_widget.viewport())
        self.cursor_label.setObjectName("trendCursor")
        self.cursor_label.setStyleSheet(
            f"QLabel {{ background: {theme.PANEL}; color: {theme.TEXT}; border: 1px solid {theme.TEXT_DIM};"
            " padding: 2px 4px; }"
        )
        self.cursor_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.cursor_label.hide()
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot_widget.viewport().installEventFilter(self)

    def add_pen(self, tag_id: int, spec: TagSpec) -> Pen | None:
        """Add a pen; pens with the same unit share one y axis. Before the plot is built the
        pen is only listed (None is returned); its ring buffer fills from now on all the same."""
        if self._unbuilt is not None:
            self._unbuilt.append((tag_id, spec))
            self.buffers.watch(tag_id)
            return None
        return self._plot_pen(tag_id, spec)

    def _plot_pen(self, tag_id: int, spec: TagSpec) -> Pen:
        colour = theme.PEN_COLOURS[len(self.pens) % len(theme.PEN_COLOURS)]
        label = f"{spec.name} [{spec.unit}]" if spec.unit else spec.name
        scale = self.scales.get(spec.unit)
        if scale is None:
            scale = self._new_scale(spec, colour)
        curve = Curve(pen=pg.mkPen(colour, width=1), name=label, connect="finite")
        if scale.view is self.plot.vb:
            self.plot.addItem(curve)
        else:
            scale.view.addItem(curve)
            self.plot.legend.addItem(curve, label)
        pen = Pen(tag_id, spec, colour, curve, scale.view, scale.axis)
        self.pens.append(pen)
        self._pens_generation += 1
        self.buffers.watch(tag_id)
        self._sync_views()
        return pen

    def _new_scale(self, spec: TagSpec, colour: str) -> YScale:
        if not self.scales:
            view, axis = self.plot.vb, self.plot.getAxis("left")
        else:
            view = pg.ViewBox()
            view.setMouseEnabled(x=True, y=False)
            view.disableAutoRange(axis=pg.ViewBox.YAxis)
            if len(self.scales) == 1:
                self.plot.showAxis("right")
                axis = self.plot.getAxis("right")
            else:
                axis = YAxis("right")
                axis.user_scaled.connect(self._on_axis_scaled)
                self.plot.layout.addItem(axis, 2, 1 + len(self.scales))
                axis.setTextPen(theme.TEXT)
                axis.setPen(theme.TEXT_DIM)
                self._extra_axes.append(axis)
            self.plot.scene().addItem(view)
            axis.linkToView(view)
            view.setXLink(self.plot)
        # Y axes rarely change while the time axis scrolls: paint them from a cached
        # pixmap instead of re-rendering their text every frame (about 4 ms each here).
        axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        axis.setLabel(spec.unit or spec.name, color=colour)
        fixed = spec.low is not None and spec.high is not None
        if fixed:
            # Fixed scales from the engineering range read calmer than autoscale,
            # which turns sensor noise into a wall of spikes.
            view.setYRange(spec.low, spec.high, padding=0.02)
        scale = YScale(spec.unit, view, axis, auto=not fixed)
        self.scales[spec.unit] = scale
        return scale

    def _clear_plot(self) -> None:
        """Take every pen, extra axis and extra view out of the plot (before re-adding them)."""
        for pen in self.pens:
            for line in pen.limit_lines:
                pen.view.removeItem(line)
            pen.view.removeItem(pen.curve)
        self.plot.legend.clear()
        for scale in self.scales.values():
            if scale.view is not self.plot.vb:
                scale.view.setXLink(None)
                self.plot.scene().removeItem(scale.view)
        for axis in self._extra_axes:
            self.plot.layout.removeItem(axis)
            self.plot.scene().removeItem(axis)
        self._extra_axes = []
        self.plot.hideAxis("right")
        self.plot.getAxis("left").setLabel("")
        self.scales = {}

    def set_pens(self, pens: list[tuple[int, TagSpec]]) -> None:
        """Replace the pens (in this order); history already read and limits are kept."""
        if self._unbuilt is not None:
            self._unbuilt = []
            for tag_id, spec in pens:
                self.add_pen(tag_id, spec)
            return
        old = {pen.tag_id: pen for pen in self.pens}
        self._clear_plot()
        self.pens = []
        for tag_id, spec in pens:
            pen = self._plot_pen(tag_id, spec)
            previous = old.get(tag_id)
            if previous is not None:
                pen.history = previous.history
                self._draw_limits(pen, previous.limits)

    def remove_pen(self, tag_id: int) -> None:
        self.set_pens([(t, spec) for t, spec in self.pen_specs() if t != tag_id])
        self.pens_changed.emit()

    def move_pen(self, tag_id: int, step: int) -> None:
        """Move a pen up (-1) or down (+1) in the legend order."""
        order = self.pen_specs()
        i = next(i for i, (t, _) in enumerate(order) if t == tag_id)
        j = min(max(i + step, 0), len(order) - 1)
        if i == j:
            return
        order.insert(j, order.pop(i))
        self.set_pens(order)
        self.pens_changed.emit()

    def pen_specs(self) -> list[tuple[int, TagSpec]]:
        """The pens (tag id, spec) in legend order, built or not."""
        if self._unbuilt is not None:
            return list(self._unbuilt)
        return [(p.tag_id, p.spec) for p in self.pens]

    def pen_names(self) -> list[str]:
        return [spec.name for _, spec in self.pen_specs()]

    def _sync_views(self) -> None:
        rect = self.plot.vb.sceneBoundingRect()
        for scale in self.scales.values():
            if scale.view is not self.plot.vb:
                scale.view.setGeometry(rect)
                scale.view.linkedViewChanged(self.plot.vb, scale.view.XAxis)

    # -- operator controls ----------------------------------------------------------------------

    def _on_span_chosen(self, text: str) -> None:
        self.set_span(SPANS_S[text])
        self.pens_changed.emit()

    def set_span(self, span_s: float) -> None:
        self.span_s = float(span_s)
        if not self.live and self.built:
            _x0, x1 = self.plot.vb.viewRange()[0]
            self.plot.setXRange(x1 - self.span_s, x1, padding=0)

    def set_live(self, live: bool) -> None:
        if live == self.live:
            return
        self.live = live
        self.live_button.setText("Pause" if live else "Live")
        self.paused_changed.emit(not live)

    def _on_view_changed_by_user(self, mask: object = None, *_: object) -> None:
        # Only a change of the time range stops the scroll (the plot's y never pans by mouse).
        if not isinstance(mask, list | tuple) or mask[0]:
            self.set_live(False)

    def _on_axis_scaled(self, axis: pg.AxisItem) -> None:
        for scale in self.scales.values():
            if scale.axis is axis:
                scale.auto = False

    def auto_scale(self, unit: str | None = None) -> None:
        """Fit one axis (or every axis) to the data in view, and keep fitting it."""
        for scale in self.scales.values():
            if unit is None or scale.unit == unit:
                scale.auto = True
                self._fit(scale, force=True)

    def y_range(self, unit: str) -> tuple[float, float]:
        lo, hi = self.scales[unit].view.viewRange()[1]
        return float(lo), float(hi)

    def _fit(self, scale: YScale, force: bool = False) -> None:
        extents = [p.extent for p in self.pens if p.view is scale.view and p.extent is not None]
        if not extents:
            return
        lo = min(e[0] for e in extents)
        hi = max(e[1] for e in extents)
        if hi - lo < 1e-12:
            pad = max(abs(hi) * 0.05, 1.0)
            lo, hi = lo - pad, hi + pad
        cur_lo, cur_hi = scale.view.viewRange()[1]
        # Hysteresis: only when the data leaves the range or fills less than half of it.
        if not force and cur_lo <= lo and hi <= cur_hi and (hi - lo) >= 0.5 * (cur_hi - cur_lo):
            return
        pad = (hi - lo) * 0.05
        scale.view.setYRange(lo - pad, hi + pad, padding=0)

    def _on_context_menu(self, pos: QPoint) -> None:
        self.context_menu().popup(self.plot_widget.mapToGlobal(pos))

    def context_menu(self) -> QMenu:
        """The plot's right-click menu: auto-scale, and each pen's order and removal."""
        menu = QMenu(self)
        menu.addAction("Auto-scale Y").triggered.connect(lambda: self.auto_scale())
        if len(self.scales) > 1:
            for unit in self.scales:
                menu.addAction(f"Auto-scale {unit or 'axis'}").triggered.connect(
                    lambda _=False, u=unit: self.auto_scale(u)
                )
        menu.addAction("Live").triggered.connect(lambda: self.set_live(True))
        if self.pens:
            menu.addSeparator()
            pens = menu.addMenu("Pens")
            for i, pen in enumerate(self.pens):
                sub = pens.addMenu(pen.spec.name)
                up = sub.addAction("Move up")
                up.setEnabled(i > 0)
                up.triggered.connect(lambda _=False, t=pen.tag_id: self.move_pen(t, -1))
                down = sub.addAction("Move down")
                down.setEnabled(i < len(self.pens) - 1)
                down.triggered.connect(lambda _=False, t=pen.tag_id: self.move_pen(t, 1))
                sub.addAction("Remove").triggered.connect(lambda _=False, t=pen.tag_id: self.remove_pen(t))
        return menu

    def set_limits(self, tag_id: int, limits: list[tuple[float, str, str]]) -> None:
        """Draw horizontal lines (value, label, colour) on a pen's axis, e.g. its alarm limits;
        each label starts with the pen's tag, in the pen's colour ("cnc01.spindle_temp HI 65")."""
        if self._unbuilt is not None:
            self._unbuilt_limits[tag_id] = list(limits)
            return
        for pen in self.pens:
            if pen.tag_id == tag_id:
                self._draw_limits(pen, limits)

    def _draw_limits(self, pen: Pen, limits: list[tuple[float, str, str]]) -> None:
        for line in pen.limit_lines:
            pen.view.removeItem(line)
        pen.limits = list(limits)
        pen.limit_lines = []
        for value, label, colour in limits:
            line = pg.InfiniteLine(
                pos=value,
                angle=0,
                movable=False,
                pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine),
                label=f"{pen.spec.name} {label}",
                # At the right end: the legend sits at the top left.
                labelOpts={"position": 0.98, "color": pen.colour, "anchors": [(1, 1), (1, 1)]},
            )
            pen.view.addItem(line, ignoreBounds=True)
            pen.limit_lines.append(line)

    # -- drawing ------------------------------------------------------------------------------------

    def visible_range(self) -> tuple[float, float]:
        self.build()  # an export or the cursor of a group never shown
        x0, x1 = self.plot.vb.viewRange()[0]
        return float(x0), float(x1)

    def refresh(self, now_s: float | None = None) -> bool:
        """Scroll (when live) and redraw pens whose data or view changed; True if anything drew.

        Live, the right edge is `now` rounded up to a scroll step (whole pixels, about a
        second: `scroll_step_s`): the view moves once a step, not on every tick, and a sample
        (stamped at or before now) is always inside it. Between moves only pens with new
        samples redraw, so an idle trend paints nothing and a new sample shows on the next
        tick without repainting the axes."""
        if self._unbuilt is not None:
            return False
        now = self.clock() if now_s is None else now_s
        # Most ticks (30 a second, values at 10) have nothing to draw: tell that from a few
        # numbers, before asking pyqtgraph for widths and ranges (its Python is most of a tick).
        quiet_key = (self.buffers.version, self._history_generation, self._pens_generation, self.span_s, self.width())
        if self.live and quiet_key == self._quiet_key and now <= self._quiet_until:
            return False
        width = max(int(self.plot.vb.width()), 100)
        if self.live:
            self._scroll_to(now, width)
        x0, x1 = self.visible_range()
        drew = False
        wanted: list[tuple[Pen, float, float]] = []
        for pen in self.pens:
            total = self.buffers.total(pen.tag_id)
            key = (total, round(x0, 3), round(x1, 3), width, id(pen.history))
            if key == pen.drawn_key:
                continue
            pen.drawn_key = key
            x, y = self._pen_points(pen, x0, x1, width, wanted)
            finite = y[np.isfinite(y)]
            pen.extent = (float(finite.min()), float(finite.max())) if finite.shape[0] else None
            pen.curve.set_points(x, y, pen.extent, (x0, x1))
            drew = True
        if wanted:
            self._request_history(wanted, width)
        # Quiet until new samples, history, pens, span or size, or the next scroll step
        # (the right edge: `now` past it moves the view).
        self._quiet_key, self._quiet_until = (quiet_key, x1) if self.live else ((), -math.inf)
        if drew:
            for scale in self.scales.values():
                if scale.auto:
                    self._fit(scale)
            self.frames_drawn += 1
        return drew

    def scroll_step_s(self, width: int | None = None) -> float:
        """How far a live view moves at a time: whole pixels, about SCROLL_EVERY_S."""
        pixel = self.span_s / (width or max(int(self.plot.vb.width()), 100))
        return pixel * max(1, math.ceil(SCROLL_EVERY_S / pixel - 1e-9))

    def _scroll_to(self, now: float, width: int) -> None:
        step = self.scroll_step_s(width)
        x1 = math.ceil(now / step) * step
        cur0, cur1 = self.plot.vb.viewRange()[0]
        # Only a change reaches pyqtgraph: a move repaints the whole plot, axes included.
        if abs(cur1 - x1) > 1e-3 * step or abs(cur0 - (x1 - self.span_s)) > 1e-3 * step:
            self.plot.setXRange(x1 - self.span_s, x1, padding=0)

    def _pen_points(
        self, pen: Pen, x0: float, x1: float, width: int, wanted: list[tuple[Pen, float, float]]
    ) -> tuple[np.ndarray, np.ndarray]:
        ts_ns, values, quality = self.buffers.get(pen.tag_id)
        ts = ts_ns.astype(np.float64) / 1e9
        y = values_for_plot(values, quality)
        oldest = ts[0] if ts.shape[0] else x1
        if self.history is not None and x0 < oldest and not self._history_covers(pen, x0, oldest):
            wanted.append((pen, x0, oldest))
        history = pen.history
        if history is not None:
            keep = history.ts < oldest
            if keep.any():
                ts = np.concatenate([history.ts[keep], ts])
                y = np.concatenate([history.y[keep], y])
        return minmax_decimate(ts, y, x0, x1, width)

    def _history_covers(self, pen: Pen, x0: float, x1: float) -> bool:
        if pen.history is None:
            return False
        lo, hi = pen.history.range
        # What the last read missed at its end is asked again once it is worth a pixel or
        # two; otherwise a pen with no live data would re-read 8 hours every frame.
        return lo <= x0 and hi >= x1 - max(1.0, 0.01 * self.span_s)

    def _pool(self) -> ThreadPoolExecutor:
        # One worker: the provider's reader belongs to the thread that opened it (SQLite).
        if self._history_pool is None:
            self._history_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trend-history")
        return self._history_pool

    def _request_history(self, wanted: list[tuple[Pen, float, float]], width: int) -> None:
        """Read what the pens lack, all in one job on the worker; a pan while it runs asks again after."""
        if self._history_job is not None and not self._history_job.done():
            return
        provider = self.history
        assert provider is not None
        # Half a span more than in view: a pan back reads again only after half a screen.
        margin = 0.5 * self.span_s
        jobs = [(pen, pen.spec.name, x0 - margin, x1) for pen, x0, x1 in wanted]
        # A provider that reads many pens at once (HistoryLookup.many) gets pens whose ranges
        # end within the slack _history_covers allows in one call, up to the end of the
        # latest: each pen draws history only before its own ring buffer begins.
        many = getattr(provider, "many", None)
        groups: list[list[tuple[Pen, str, float, float]]] = []
        if many is None:
            groups = [[job] for job in jobs]
        else:
            slack = max(1.0, 0.01 * self.span_s)
            for job in sorted(jobs, key=lambda j: (j[2], j[3])):
                group = groups[-1] if groups else None
                if (
                    group is None
                    or len(group) >= HISTORY_PENS_PER_READ
                    or job[2] != group[0][2]
                    or job[3] - group[0][3] > slack
                ):
                    groups.append([job])
                else:
                    group.append(job)

        def load() -> None:
            # Handed over in groups (every 250 ms and at the end), not pen by pen: each
            # hand-over repaints every pen, and fifty repaints made opening take seconds.
            ready: list[tuple[Pen, History]] = []
            handed = time.monotonic()
            for group in groups:
                t0, t1 = group[0][2], max(job[3] for job in group)
                names = [name for _, name, _, _ in group]
                try:
                    if many is not None:
                        got = many(names, int(t0 * 1e9), int(t1 * 1e9), 2 * width)
                    else:
                        got = {names[0]: provider(names[0], int(t0 * 1e9), int(t1 * 1e9), 2 * width)}
                except Exception:
                    log.exception("history for %s failed", ", ".join(names))
                    continue
                for pen, name, _, _ in group:
                    ts_ns, values, quality = got[name]
                    y = values_for_plot(values, quality)
                    ready.append((pen, History(ts_ns.astype(np.float64) / 1e9, y, values, quality, (t0, t1))))
                if time.monotonic() - handed > 0.25:
                    self._hand_over(ready)
                    ready, handed = [], time.monotonic()
            self._hand_over(ready)

        self._history_job = self._pool().submit(load)

    def _hand_over(self, ready: list[tuple[Pen, History]]) -> None:
        with self._history_lock:
            for pen, history in ready:
                pen.history = history
            self._history_generation += 1

    def history_idle(self) -> bool:
        """No history read in progress (for tests and benchmarks)."""
        return self._history_job is None or self._history_job.done()

    def curve_data(self, tag_id: int) -> tuple[np.ndarray, np.ndarray]:
        """What the pen for `tag_id` currently draws (x in epoch seconds, y)."""
        for pen in self.pens:
            if pen.tag_id == tag_id:
                x, y = pen.curve.getData()
                return (np.zeros(0) if x is None else x), (np.zeros(0) if y is None else y)
        raise KeyError(tag_id)

    # -- cursor -------------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self.hide_cursor()
        return False

    def hide_cursor(self) -> None:
        if not self.built:
            return
        self.cursor_line.setVisible(False)
        self.cursor_label.hide()

    def _on_mouse_moved(self, pos: QPointF) -> None:
        if not self.plot.vb.sceneBoundingRect().contains(pos):
            self.hide_cursor()
            return
        self.show_cursor(self.plot.vb.mapSceneToView(pos).x(), pos.x())

    def show_cursor(self, t: float, scene_x: float | None = None) -> str:
        """Put the cursor at time t (epoch s); returns the text it shows (every pen's value,
        from the ring buffer or, before it, from the history read for the pen)."""
        self.build()
        lines = [datetime.fromtimestamp(t, self.timezone).strftime("%H:%M:%S.%f")[:-3]]
        for pen in self.pens:
            sample = self._sample_at(pen, t)
            if sample is None:
                text = "—"
            else:
                value, q = sample
                text = format_tag_value(value, pen.spec)
                if q != Quality.GOOD:
                    text += f" ({theme.QUALITY_LABEL[q]})"
            lines.append(f"{pen.spec.name}: {text} {pen.spec.unit}".rstrip())
        label = "\n".join(lines)
        self.cursor_line.setPos(t)
        self.cursor_line.setVisible(True)
        self.cursor_label.setText(label)
        self.cursor_label.adjustSize()
        if scene_x is None:
            scene_x = self.plot.vb.mapViewToScene(QPointF(t, 0.0)).x()
        self._place_cursor_label(scene_x)
        self.cursor_label.show()
        self.cursor_label.raise_()
        return label

    def _sample_at(self, pen: Pen, t: float) -> tuple[float, Quality] | None:
        ts_ns, values, quality = self.buffers.get(pen.tag_id)
        t_ns = int(t * 1e9)
        if ts_ns.shape[0] and ts_ns[0] <= t_ns:
            i = int(np.searchsorted(ts_ns, t_ns, side="right")) - 1
            return float(values[i]), Quality(int(quality[i]))
        history = pen.history
        if history is None:
            return None
        i = int(np.searchsorted(history.ts, t, side="right")) - 1
        if i < 0:
            return None
        return float(history.values[i]), Quality(int(history.quality[i]))

    def plot_rect(self) -> QRect:
        """The plot area (inside the axes) in the viewport's pixels."""
        return self.plot_widget.mapFromScene(self.plot.vb.sceneBoundingRect()).boundingRect()

    def legend_rect(self) -> QRect:
        legend = self.plot.legend
        if legend is None or not legend.isVisible() or not self.pens:
            return QRect()
        return self.plot_widget.mapFromScene(legend.sceneBoundingRect()).boundingRect()

    def _place_cursor_label(self, scene_x: float) -> None:
        """Beside the cursor line, flipped to its left near the right edge, inside the plot
        and clear of the legend where the plot leaves room."""
        area = self.plot_rect()
        legend = self.legend_rect()
        size = self.cursor_label.size()
        rect = self.plot.vb.sceneBoundingRect()
        if not np.isfinite(scene_x):
            scene_x = rect.right()
        scene_x = min(max(scene_x, rect.left()), rect.right())
        x_line = self.plot_widget.mapFromScene(QPointF(scene_x, 0.0)).x()
        xs = [x_line + CURSOR_MARGIN_PX, x_line - CURSOR_MARGIN_PX - size.width()]
        top = area.top() + 4
        below_legend = legend.bottom() + 4 if not legend.isNull() else top
        ys = [top, below_legend, area.bottom() - size.height() - 4]
        candidates = [QRect(QPoint(x, y), size) for y in ys for x in xs]
        inside = [r for r in candidates if area.contains(r)]
        clear = [r for r in inside if legend.isNull() or not r.intersects(legend)]
        chosen = (clear or inside or candidates)[0]
        # Whatever was chosen, never past the plot's edges (a label wider than the plot is cut
        # on its right only).
        x = min(max(chosen.left(), area.left()), max(area.right() - size.width(), area.left()))
        y = min(max(chosen.top(), area.top()), max(area.bottom() - size.height(), area.top()))
        self.cursor_label.move(x, y)

    # -- export --------------------------------------------------------------------------------------

    def caption(self) -> list[str]:
        """What an exported image says above the plot: title, time range, pens."""
        x0, x1 = self.visible_range()
        a = datetime.fromtimestamp(x0, self.timezone)
        b = datetime.fromtimestamp(x1, self.timezone)
        end = b.strftime("%H:%M:%S") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M:%S")
        zone = a.strftime("%Z")
        span = f"{a:%Y-%m-%d %H:%M:%S} – {end}" + (f" {zone}" if zone else "")
        pens = "   ".join(f"{p.spec.name} [{p.spec.unit}]" if p.spec.unit else p.spec.name for p in self.pens)
        return [self.title_label.text() or "Trend", span, pens]

    def export_png(self, path: str | Path) -> bool:
        """The plot under a caption (title, time range, each pen's name in its colour)."""
        plot = self.plot_widget.grab().toImage()
        title, span, _ = self.caption()
        font = QFont(self.font())
        bold = QFont(font)
        bold.setBold(True)
        bold.setPointSizeF(font.pointSizeF() * 1.25)
        line = self.fontMetrics().height() + 4
        pen_rows: list[list[Pen]] = [[]]
        x = 0
        for pen in self.pens:
            w = self.fontMetrics().horizontalAdvance(pen.spec.name) + 40
            if x + w > plot.width() - 16 and pen_rows[-1]:
                pen_rows.append([])
                x = 0
            pen_rows[-1].append(pen)
            x += w
        header = 8 + int(line * 1.4) + line + line * len(pen_rows) + 6
        image = QImage(plot.width(), plot.height() + header, QImage.Format.Format_RGB32)
        image.fill(QColor(theme.PLOT_BACKGROUND))
        painter = QPainter(image)
        try:
            painter.setPen(QColor(theme.TEXT))
            painter.setFont(bold)
            y = 8 + int(line * 1.4) - 6
            painter.drawText(8, y, title)
            painter.setFont(font)
            y += line
            painter.drawText(8, y, span)
            for row in pen_rows:
                y += line
                x = 8
                for pen in row:
                    painter.fillRect(x, y - line // 2, 16, 3, QColor(pen.colour))
                    painter.setPen(QColor(pen.colour))
                    painter.drawText(x + 20, y, pen.spec.name)
                    x += self.fontMetrics().horizontalAdvance(pen.spec.name) + 40
            painter.drawImage(0, header, plot)
        finally:
            painter.end()
        return image.save(str(path))

    def export_csv(self, path: str | Path) -> int:
        """Every sample of every pen in the visible range, from the historian before the ring
        buffer begins (long format: time, tag, value, unit, quality); returns rows."""
        x0, x1 = self.visible_range()
        t0, t1 = int(x0 * 1e9), int(x1 * 1e9)
        rows = 0
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["time_utc", "tag", "value", "unit", "quality"])
            for pen in self.pens:
                ts_ns, values, quality = self.buffers.get(pen.tag_id)
                oldest = int(ts_ns[0]) if ts_ns.shape[0] else t1 + 1
                parts = []
                if self.history is not None and t0 < oldest:
                    parts.append(self._history_for_export(pen.spec.name, t0, min(oldest, t1 + 1)))
                mask = (ts_ns >= t0) & (ts_ns <= t1)
                parts.append((ts_ns[mask], values[mask], quality[mask]))
                for p_ts, p_values, p_quality in parts:
                    for t, v, q in zip(p_ts.tolist(), p_values.tolist(), p_quality.tolist(), strict=True):
                        stamp = datetime.fromtimestamp(t / 1e9, UTC).isoformat(timespec="milliseconds")
                        writer.writerow([stamp, pen.spec.name, repr(float(v)), pen.spec.unit, Quality(int(q)).name])
                        rows += 1
        return rows

    def _history_for_export(self, name: str, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        provider = self.history
        assert provider is not None
        empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8))
        try:
            # On the history thread: the provider's reader is that thread's.
            ts, values, quality = self._pool().submit(provider, name, t0, t1, EXPORT_POINTS).result(timeout=120)
        except Exception:
            log.exception("history of %s for the export failed", name)
            return empty
        keep = (ts >= t0) & (ts < t1)
        return ts[keep], values[keep], quality[keep]

    def suggested_path(self, suffix: str) -> Path:
        """Where a save dialog starts: the folder of the last export, else the documents folder."""
        folder = Path(self.export_dir) if self.export_dir and Path(self.export_dir).is_dir() else documents_dir()
        title = "".join(c if c.isalnum() or c in "-_" else "_" for c in (self.title_label.text() or "trend"))
        stamp = datetime.fromtimestamp(self.visible_range()[1], self.timezone).strftime("%Y%m%d-%H%M")
        return folder / f"{title}-{stamp}.{suffix}"

    def _remember_folder(self, path: str) -> None:
        folder = str(Path(path).parent)
        if folder != self.export_dir:
            self.export_dir = folder
            self.export_dir_changed.emit(folder)

    def _ask_export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save trend image", str(self.suggested_path("png")), "PNG images (*.png)"
        )
        if path:
            self.export_png(path)
            self._remember_folder(path)

    def _ask_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save trend data", str(self.suggested_path("csv")), "CSV (*.csv)")
        if path:
            self.export_csv(path)
            self._remember_folder(path)

    # -- drag and drop from the tag browser ------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if accepts(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        if self.take_drop(event.mimeData()):
            event.acceptProposedAction()

    def take_drop(self, mime: QMimeData) -> bool:
        """Dropped tags or browsed nodes become pens (through the window); False if neither."""
        if mime.hasFormat(TAGS_MIME):
            self.tags_dropped.emit(json.loads(bytes(mime.data(TAGS_MIME).data()).decode()))
        elif mime.hasFormat(NODE_MIME):
            self.nodes_dropped.emit(json.loads(bytes(mime.data(NODE_MIME).data()).decode()))
        else:
            return False
        return True

    def has_pen(self, tag_id: int) -> bool:
        return any(t == tag_id for t, _ in self.pen_specs())

    def closeEvent(self, event: object) -> None:
        if self._history_pool is not None:
            self._history_pool.shutdown(wait=False, cancel_futures=True)
        super().closeEvent(event)  # type: ignore[arg-type]


def accepts(mime: QMimeData) -> bool:
    """Whether a drag carries tags or browsed nodes a trend takes."""
    return mime.hasFormat(TAGS_MIME) or mime.hasFormat(NODE_MIME)


def documents_dir() -> Path:
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(location) if location else Path.home()
