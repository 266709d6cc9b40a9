"""Machine overview: a tile per machine with its state and key values.

Calm grey while everything is normal. A tile changes only for abnormal states: the
machine's data is stale (COMM_LOST/BAD) or it has an active alarm (a strip in the
priority colour, set through `set_alarm`).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.tags import DataType, TagSpec
from hmi.ui import theme
from hmi.ui.format import format_tag_value

MAX_KEY_VALUES = 4
ALARM_BORDER_PX = 4  # the widest tile border (an alarm's): natural widths leave room for it
PRIORITY_COLOURS = {
    "urgent": theme.ALARM_URGENT,
    "high": theme.ALARM_HIGH,
    "medium": theme.ALARM_MEDIUM,
    "low": theme.ALARM_LOW,
}


@dataclass
class KeyValue:
    spec: TagSpec
    value_label: QLabel
    stale: bool = False

    def show(self, text: str, stale: bool) -> None:
        """Touch the label only when what it shows changes: a style sheet set again, even the
        same one, re-polishes and repaints the label (under the window's style sheet)."""
        if text != self.value_label.text():
            self.value_label.setText(text)
        if stale != self.stale:
            self.stale = stale
            self.value_label.setStyleSheet(f"color: {theme.STALE_TEXT}; font-style: italic;" if stale else "")


class FittedLabel(QLabel):
    """One line that asks the layout for its whole text and, only when there is truly no room,
    shows it elided with "…" (the whole name stays in the tooltip), never cut mid-letter."""

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        return QSize(min(hint.width(), self.fontMetrics().horizontalAdvance("xxx…")), hint.height())

    def paintEvent(self, event: QPaintEvent) -> None:
        room = self.contentsRect()
        if self.fontMetrics().horizontalAdvance(self.text()) <= room.width():
            super().paintEvent(event)
            return
        elided = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, room.width())
        painter = QPainter(self)
        self.style().drawItemText(
            painter, room, int(self.alignment()), self.palette(), self.isEnabled(), elided, self.foregroundRole()
        )


class MachineTile(QFrame):
    clicked = Signal(str)

    def __init__(self, machine_id: str, label: str, key_specs: list[TagSpec], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.machine_id = machine_id
        self.setObjectName("machineTile")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.alarm_priority: str | None = None
        self.selected = False
        self.state = "unknown"
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(2)
        self.title = QLabel(label or machine_id)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.title.setToolTip(label or machine_id)
        # A long name ("CMM 1 (coordinate measuring machine)") wraps in a narrow dock, never cut.
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.state_label = QLabel()
        self.state_label.setObjectName("tileState")
        self.state_label.setWordWrap(True)  # "ALARM (urgent), COMM LOST" may not fit one line
        layout.addWidget(self.state_label)
        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(0)
        self.values: list[KeyValue] = []
        self._grid = grid
        for row, spec in enumerate(key_specs[:MAX_KEY_VALUES]):
            name = FittedLabel(spec.signal.replace("_", " "))
            name.setStyleSheet(f"color: {theme.TEXT_DIM};")
            name.setToolTip(spec.description or spec.name)
            # A narrow dock elides the name, never the value.
            name.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            value = QLabel("—")
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            value.setMinimumWidth(60)
            unit = QLabel(spec.unit)
            unit.setStyleSheet(f"color: {theme.TEXT_DIM};")
            grid.addWidget(name, row, 0)
            grid.addWidget(value, row, 1)
            grid.addWidget(unit, row, 2)
            self.values.append(KeyValue(spec, value))
        grid.setColumnStretch(0, 1)
        layout.addLayout(grid)
        self._apply_style()

    def natural_width(self) -> int:
        """The width at which the title fits one line and no signal name, value or unit is
        elided, whatever the border (an alarm's is the widest)."""
        grid = self._grid
        columns = [0, 0, 0]
        for row in range(grid.rowCount()):
            for col in range(3):
                item = grid.itemAtPosition(row, col)
                label = item.widget() if item is not None else None
                if isinstance(label, QLabel):
                    text = label.fontMetrics().horizontalAdvance(label.text())
                    columns[col] = max(columns[col], text + 2 * label.margin(), label.minimumWidth())
        body = sum(columns) + 2 * grid.horizontalSpacing()
        title = self.title.fontMetrics().horizontalAdvance(self.title.text()) + 2 * self.title.margin()
        layout = self.layout()
        assert layout is not None  # set in __init__
        margins = layout.contentsMargins()
        return max(body, title) + margins.left() + margins.right() + 2 * ALARM_BORDER_PX

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.clicked.emit(self.machine_id)
        super().mousePressEvent(event)

    def set_alarm(self, priority: str | None) -> None:
        if priority != self.alarm_priority:
            self.alarm_priority = priority
            self._apply_style()

    def set_selected(self, selected: bool) -> None:
        if selected != self.selected:
            self.selected = selected
            self._apply_style()

    def refresh(self, bus: TagBus) -> None:
        worst = Quality.GOOD
        seen = False
        for item in self.values:
            latest = bus.latest(item.spec.name)
            if latest is None:
                item.show("—", stale=False)
                worst = max(worst, Quality.COMM_LOST)
                continue
            seen = True
            worst = max(worst, latest.quality)
            item.show(format_tag_value(latest.value, item.spec), stale=latest.quality >= Quality.BAD)
        state = (
            "no data"
            if not seen
            else {
                Quality.GOOD: "normal",
                Quality.UNCERTAIN: "uncertain values",
                Quality.BAD: "bad values",
                Quality.COMM_LOST: "COMM LOST",
            }[Quality(worst)]
        )
        if self.alarm_priority:
            state = f"ALARM ({self.alarm_priority})" + ("" if state == "normal" else f", {state}")
        if state != self.state:
            self.state = state
            self.state_label.setText(state)
            self._apply_style()

    def _apply_style(self) -> None:
        border = theme.GRID
        width = 1
        if self.selected:
            border, width = theme.TEXT_DIM, 2
        if self.alarm_priority:
            border, width = PRIORITY_COLOURS.get(self.alarm_priority, theme.ALARM_URGENT), ALARM_BORDER_PX
        background = theme.PANEL
        if "COMM LOST" in self.state or "no data" in self.state:
            background = theme.QUALITY_BACKGROUND[Quality.COMM_LOST]
        elif "bad" in self.state:
            background = theme.QUALITY_BACKGROUND[Quality.BAD]
        self.setStyleSheet(
            f"QFrame#machineTile {{ background: {background}; border: {width}px solid {border}; border-radius: 2px; }}"
        )


class MachineOverview(QScrollArea):
    """Tiles for every machine; `machine_selected` when the operator clicks one."""

    machine_selected = Signal(str)

    def __init__(self, machines: dict[str, tuple[str, list[TagSpec]]], bus: TagBus, parent: QWidget | None = None):
        super().__init__(parent)
        self.bus = bus
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(220)
        inner = QWidget()
        self._layout = QVBoxLayout(inner)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self._layout.setSpacing(6)
        self.tiles: dict[str, MachineTile] = {}
        for machine_id, (label, specs) in machines.items():
            tile = MachineTile(machine_id, label, specs)
            tile.clicked.connect(self._on_tile_clicked)
            self._layout.addWidget(tile)
            self.tiles[machine_id] = tile
        self._layout.addStretch(1)
        self.setWidget(inner)

    def natural_width(self) -> int:
        """The width at which every tile shows its title and names whole (plus the scroll bar)."""
        margins = self._layout.contentsMargins()
        tiles = max((t.natural_width() for t in self.tiles.values()), default=self.minimumWidth())
        frame = 2 * self.frameWidth()
        return tiles + margins.left() + margins.right() + frame + self.verticalScrollBar().sizeHint().width()

    def _on_tile_clicked(self, machine_id: str) -> None:
        self.select(machine_id)
        self.machine_selected.emit(machine_id)

    def select(self, machine_id: str) -> None:
        for mid, tile in self.tiles.items():
            tile.set_selected(mid == machine_id)

    def refresh(self) -> None:
        for tile in self.tiles.values():
            tile.refresh(self.bus)


def key_specs_for(machine_id: str, specs: list[TagSpec], key_tags: list[str] | None = None) -> list[TagSpec]:
    """The tags a tile shows: the configured key tags, else the machine's first numeric tags."""
    by_name = {s.name: s for s in specs}
    if key_tags:
        return [by_name[name] for name in key_tags if name in by_name]
    own = [s for s in specs if s.machine == machine_id and s.datatype in (DataType.FLOAT, DataType.INT)]
    return own[:MAX_KEY_VALUES]
