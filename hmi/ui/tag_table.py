"""The live tag table: name, value, unit, quality, timestamp for every tag on the bus."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.ui import theme
from hmi.ui.format import format_tag_value, format_time

COLUMNS = ("Tag", "Value", "Unit", "Quality", "Time")
COL_TAG, COL_VALUE, COL_UNIT, COL_QUALITY, COL_TIME = range(5)
# A tag nothing was ever published for (a twin output not derived yet): nothing is known,
# nothing was lost. A source that lost communication publishes COMM_LOST marks, so its tags
# have a latest value and read COMM LOST; the bus's "no latest value" means never published.
NO_DATA = "no data"

Index = QModelIndex | QPersistentModelIndex


class TagTableModel(QAbstractTableModel):
    """Rows follow the bus registry; `refresh()` (on the UI timer) picks up new tags and values."""

    def __init__(self, bus: TagBus) -> None:
        super().__init__()
        self.bus = bus
        self._rows = 0
        self._stale_font = QFont()
        self._stale_font.setItalic(True)
        self._stale_brush = QBrush(QColor(theme.STALE_TEXT))
        self._quality_brushes = {q: QBrush(QColor(c)) for q, c in theme.QUALITY_BACKGROUND.items()}

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def tag_id(self, row: int) -> int:
        return row

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        spec = self.bus.registry.spec(row)
        if col == COL_TAG:
            if role == Qt.ItemDataRole.DisplayRole:
                return spec.name
            if role == Qt.ItemDataRole.ToolTipRole:
                return spec.description or spec.name
            return None
        if col == COL_UNIT:
            return spec.unit if role == Qt.ItemDataRole.DisplayRole else None
        latest = self.bus.latest(row)
        if latest is None:
            return (NO_DATA if col == COL_QUALITY else "") if role == Qt.ItemDataRole.DisplayRole else None
        quality = latest.quality
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_VALUE:
                return format_tag_value(latest.value, spec)
            if col == COL_QUALITY:
                return theme.QUALITY_LABEL[quality]
            if col == COL_TIME:
                return format_time(latest.ts_ns)
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_VALUE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if quality == Quality.GOOD:
            return None
        if role == Qt.ItemDataRole.BackgroundRole and col == COL_QUALITY:
            return self._quality_brushes.get(quality)
        if role == Qt.ItemDataRole.ForegroundRole and quality == Quality.COMM_LOST:
            return self._stale_brush
        if role == Qt.ItemDataRole.FontRole and quality == Quality.COMM_LOST:
            return self._stale_font
        return None

    def refresh(self) -> None:
        size = len(self.bus.registry)
        if size > self._rows:
            self.beginInsertRows(QModelIndex(), self._rows, size - 1)
            self._rows = size
            self.endInsertRows()
        if self._rows:
            self.dataChanged.emit(self.index(0, COL_VALUE), self.index(self._rows - 1, COL_TIME))
