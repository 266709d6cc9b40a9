"""ISA-101 look: calm greys; colour only for abnormal states and alarms.

One place for every colour, so the whole window stays consistent.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from hmi.core.quality import Quality
from hmi.paths import install_root

BACKGROUND = "#d4d4d4"
PANEL = "#e0e0e0"
PANEL_DARK = "#c4c4c4"
TEXT = "#1e1e1e"
TEXT_DIM = "#5c5c5c"
TEXT_DISABLED = "#9a9a9a"  # a control that cannot be used now
GRID = "#b4b4b4"
PLOT_BACKGROUND = "#e8e8e8"

# Abnormal states.
STALE_TEXT = "#7a7a7a"  # COMM_LOST: the value is the last one received
QUALITY_BACKGROUND = {
    Quality.UNCERTAIN: "#e6dcb4",
    Quality.BAD: "#e3bfe3",
    Quality.COMM_LOST: "#bfd3e0",
}
ALARM_URGENT = "#d7191c"
ALARM_HIGH = "#f08c1e"
ALARM_MEDIUM = "#f2d600"
ALARM_LOW = "#8e5bbf"
BANNER_BAD = ALARM_URGENT
# ISA-101: one colour per alarm priority, used for nothing else; text drawn on it.
ALARM_COLOURS = {4: ALARM_URGENT, 3: ALARM_HIGH, 2: ALARM_MEDIUM, 1: ALARM_LOW}  # by Priority value
ALARM_TEXT_ON = {4: "#ffffff", 3: "#1e1e1e", 2: "#1e1e1e", 1: "#ffffff"}
ALARM_SHELVED = "#9a9a9a"
# Playback must never be mistaken for live: a colour no live state uses.
PLAYBACK = "#2b4f8a"

# Trend pens: dark, muted, told apart by hue and by their axis colour.
PEN_COLOURS = ("#1f4e79", "#8a4b08", "#2e6b30", "#5b2c6f", "#3d3d3d", "#7a6a10", "#1d6b6b", "#7a1f3d")

QUALITY_LABEL = {
    Quality.GOOD: "GOOD",
    Quality.UNCERTAIN: "UNCERTAIN",
    Quality.BAD: "BAD",
    Quality.COMM_LOST: "COMM LOST",
}


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    icon = install_root() / "resources" / "hmi.png"  # drawn by tools/make_icon.py
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, QColor(BACKGROUND))
    palette.setColor(QPalette.ColorRole.Base, QColor(PANEL))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#d9d9d9"))
    palette.setColor(QPalette.ColorRole.Button, QColor(PANEL))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Text, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.ButtonText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Highlight, QColor("#9aa7b4"))
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor(TEXT))
    # setColor(role, ...) sets every colour group, the disabled one too: a disabled button
    # (Call… before a method is chosen, Confirm while a command is on its way) looked usable.
    for role in (QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText, QPalette.ColorRole.Text):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(TEXT_DISABLED))
    app.setPalette(palette)
    font = QFont(app.font())
    font.setPointSize(10)
    app.setFont(font)
    app.setStyleSheet(
        f"""
        QHeaderView::section {{ background: {PANEL_DARK}; color: {TEXT}; border: 0;
                                border-right: 1px solid {GRID}; padding: 3px 6px; }}
        QTableView {{ gridline-color: {GRID}; }}
        QStatusBar {{ background: {PANEL_DARK}; }}
        QFrame#header {{ background: {PANEL_DARK}; }}
        QLabel#banner[state="bad"] {{ background: {BANNER_BAD}; color: white; font-weight: bold;
                                     padding: 2px 8px; }}
        QLabel#banner[state="ok"] {{ color: {TEXT_DIM}; padding: 2px 8px; }}
        QLabel#flood {{ background: {ALARM_HIGH}; color: {TEXT}; font-weight: bold; padding: 2px 8px; }}
        QFrame#alarmBanner {{ background: {PANEL}; border: 1px solid {GRID}; }}
        QLabel#banner[state="playback"] {{ background: {PLAYBACK}; color: white; font-weight: bold;
                                          padding: 2px 8px; }}
        """
    )
