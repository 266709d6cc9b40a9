"""A live trend: several pens, each with its own unit and y axis, on a date-time axis.

Data comes from TrendBuffers (filled on the IPC thread); `refresh()` runs on the UI frame
timer and redraws only when a pen's buffer changed. BAD and COMM_LOST samples are drawn
as gaps (NaN with connect="finite"), so a lost value never looks like a real one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from hmi.core.ringbuffer import TrendBuffers, values_for_plot
from hmi.core.tags import TagSpec
from hmi.ui import theme


@dataclass
class Pen:
    tag_id: int
    spec: TagSpec
    colour: str
    curve: pg.PlotDataItem
    view: pg.ViewBox
    drawn_total: int = -1


class TrendView(QWidget):
    def __init__(
        self,
        buffers: TrendBuffers,
        pens: list[tuple[int, TagSpec]],
        span_s: float = 300.0,
        title: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.buffers = buffers
        self.span_s = span_s
        self.live = True
        self.frames_drawn = 0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot_widget = pg.PlotWidget(
            background=theme.PLOT_BACKGROUND, axisItems={"bottom": pg.DateAxisItem(orientation="bottom")}
        )
        layout.addWidget(self.plot_widget)
        self.plot = self.plot_widget.getPlotItem()
        if title:
            self.plot.setTitle(title, color=theme.TEXT, size="10pt")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setMenuEnabled(False)
        for axis in ("left", "bottom", "right"):
            self.plot.getAxis(axis).setTextPen(theme.TEXT)
            self.plot.getAxis(axis).setPen(theme.TEXT_DIM)
        self.plot.addLegend(offset=(10, 10), labelTextColor=theme.TEXT, brush=pg.mkBrush(theme.PANEL))
        self.pens: list[Pen] = []
        for index, (tag_id, spec) in enumerate(pens):
            self.pens.append(self._add_pen(index, tag_id, spec))
        self.plot.vb.sigResized.connect(self._sync_views)
        self._sync_views()

    def _add_pen(self, index: int, tag_id: int, spec: TagSpec) -> Pen:
        colour = theme.PEN_COLOURS[index % len(theme.PEN_COLOURS)]
        label = f"{spec.name} [{spec.unit}]" if spec.unit else spec.name
        pen = pg.mkPen(colour, width=1.5)
        if index == 0:
            view = self.plot.vb
            axis = self.plot.getAxis("left")
        else:
            view = pg.ViewBox()
            if index == 1:
                self.plot.showAxis("right")
                axis = self.plot.getAxis("right")
            else:
                axis = pg.AxisItem("right")
                self.plot.layout.addItem(axis, 2, 1 + index)
                axis.setTextPen(theme.TEXT)
            self.plot.scene().addItem(view)
            axis.linkToView(view)
            view.setXLink(self.plot)
        axis.setLabel(label, color=colour)
        curve = pg.PlotDataItem(pen=pen, name=label, connect="finite")
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        if index == 0:
            self.plot.addItem(curve)
        else:
            view.addItem(curve)
            self.plot.legend.addItem(curve, label)
        if spec.low is not None and spec.high is not None:
            # Fixed scales from the tag's engineering range read calmer than autoscale,
            # which turns sensor noise into a wall of spikes.
            view.setYRange(spec.low, spec.high, padding=0.02)
            view.disableAutoRange(axis=pg.ViewBox.YAxis)
        else:
            view.enableAutoRange(axis=pg.ViewBox.YAxis)
        return Pen(tag_id, spec, colour, curve, view)

    def _sync_views(self) -> None:
        rect = self.plot.vb.sceneBoundingRect()
        for pen in self.pens[1:]:
            pen.view.setGeometry(rect)
            pen.view.linkedViewChanged(self.plot.vb, pen.view.XAxis)

    def refresh(self, now_s: float | None = None) -> bool:
        """Redraw pens whose data changed and scroll the time window; True if anything drew."""
        drew = False
        for pen in self.pens:
            total = self.buffers.total(pen.tag_id)
            if total == pen.drawn_total:
                continue
            ts, values, quality = self.buffers.get(pen.tag_id)
            pen.curve.setData(ts.astype(np.float64) / 1e9, values_for_plot(values, quality))
            pen.drawn_total = total
            drew = True
        if self.live:
            now = time.time() if now_s is None else now_s
            self.plot.setXRange(now - self.span_s, now, padding=0)
        if drew:
            self.frames_drawn += 1
        return drew

    def curve_data(self, tag_id: int) -> tuple[np.ndarray, np.ndarray]:
        """What the pen for `tag_id` currently draws (x in epoch seconds, y)."""
        for pen in self.pens:
            if pen.tag_id == tag_id:
                x, y = pen.curve.getData()
                return (np.zeros(0) if x is None else x), (np.zeros(0) if y is None else y)
        raise KeyError(tag_id)
