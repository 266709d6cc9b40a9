"""The alarm banner: always visible in the main window, the count of unacknowledged alarms
and the latest one, in the colour of the highest unacknowledged priority; flood warning;
the horn's silence button, which says whether the horn is sounding."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from hmi.ui import theme
from hmi.ui.alarm_feed import AlarmFeed
from hmi.ui.annunciator import Annunciator

HORN_QUIET = "Horn quiet"


class AlarmBanner(QFrame):
    open_requested = Signal()  # the operator clicked the banner: show the alarm summary

    def __init__(self, feed: AlarmFeed, annunciator: Annunciator | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("alarmBanner")
        self.feed = feed
        self.annunciator = annunciator
        # The station's operator position (name, machines): the banner counts its alarms only.
        self.position: tuple[str, frozenset[str]] | None = None
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 2, 6, 2)
        self.count_label = QLabel()
        font = self.count_label.font()
        font.setBold(True)
        self.count_label.setFont(font)
        self.count_label.setMinimumWidth(150)
        row.addWidget(self.count_label)
        self.latest_label = QLabel()
        row.addWidget(self.latest_label, 1)
        self.flood_label = QLabel()
        self.flood_label.setObjectName("flood")
        self.flood_label.hide()
        row.addWidget(self.flood_label)
        # Says whether the horn sounds, in words and enabled state only (ISA-101: no
        # blinking colour on a control).
        self.silence_button = QPushButton(HORN_QUIET)
        self.silence_button.setObjectName("silence")
        self.silence_button.setToolTip("Silence the horn until the next urgent or high alarm")
        self.silence_button.setEnabled(False)
        row.addWidget(self.silence_button)
        if annunciator is not None:
            self.silence_button.clicked.connect(annunciator.silence)
            annunciator.sounding_changed.connect(self._update_horn)
            annunciator.audio_changed.connect(self._update_horn)
        feed.changed.connect(self.refresh)
        self.refresh()
        self._update_horn()

    def _update_horn(self) -> None:
        horn = self.annunciator
        if horn is None or not horn.sounding:
            self.silence_button.setEnabled(False)
            self.silence_button.setText(HORN_QUIET)
            return
        self.silence_button.setEnabled(True)
        # Without an audio output the horn is "on" but nobody hears it: say so.
        self.silence_button.setText("Silence (sounding)" if horn.audible else "Silence (no audio)")

    @property
    def unacknowledged(self) -> int:
        return self.feed.alarms.counts().unacknowledged

    def set_position(self, name: str, machines: frozenset[str] | None) -> None:
        self.position = (name, machines) if name and machines is not None else None
        self.refresh()

    def refresh(self) -> None:
        counts = self.feed.alarms.counts(self.position[1] if self.position is not None else None)
        n = counts.unacknowledged
        self.count_label.setText(f"{n} unacknowledged" if n else "No unacknowledged alarms")
        latest = counts.latest_unack
        self.latest_label.setText(f"{latest.name}: {latest.message}" if latest is not None else "")
        if counts.highest_unack is not None:
            p = int(counts.highest_unack)
            style = f"background: {theme.ALARM_COLOURS[p]}; color: {theme.ALARM_TEXT_ON[p]}; padding: 2px 6px;"
        else:
            style = f"color: {theme.TEXT_DIM}; padding: 2px 6px;"
        self.count_label.setStyleSheet(style)
        flooded = self.feed.alarms.in_flood()
        if self.position is not None:
            flooded = [p for p in flooded if p == self.position[0]]
            self.count_label.setToolTip(f"Alarms of position {self.position[0]}: the summary shows all")
        else:
            self.count_label.setToolTip("")
        self.flood_label.setVisible(bool(flooded))
        self.flood_label.setText("ALARM FLOOD" if flooded else "")

    def mousePressEvent(self, event: object) -> None:
        self.open_requested.emit()
