"""The live tag table: name, value, unit, quality, timestamp for every tag on the bus."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.ui import theme
from hmi.ui.format import format_tag_value, format_time
from hmi.ui.item_models import row_runs

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
        self._shown: list[tuple[int, Quality, str] | None] = []  # per row, what the view was last told
        # The source rows a view shows (set by the view's owner); None: every row.
        self.rows_in_view: Callable[[], Iterable[int]] | None = None
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
        """New rows for new tags; `dataChanged` only for the rows whose value, quality or time
        changed since last shown (and, with `rows_in_view`, that are in view): a table of
        unchanged values repaints nothing. A row changed out of view is read when it is
        scrolled in (the view asks `data()`), and announced on the next refresh after that."""
        size = len(self.bus.registry)
        if size > self._rows:
            self.beginInsertRows(QModelIndex(), self._rows, size - 1)
            self._rows = size
            self._shown.extend([None] * (size - len(self._shown)))
            self.endInsertRows()
        rows = self.rows_in_view() if self.rows_in_view is not None else range(self._rows)
        changed = []
        for row in sorted(rows):
            latest = self.bus.latest(row)
            # NaN != NaN: compared as text, an unchanged NaN is unchanged.
            key = None if latest is None else (latest.ts_ns, latest.quality, repr(latest.value))
            if key != self._shown[row]:
                self._shown[row] = key
                changed.append(row)
        for first, last in row_runs(changed):
            self.dataChanged.emit(self.index(first, COL_VALUE), self.index(last, COL_TIME))
