"""The operator's main window (walking skeleton): live tag table, a trend, link status."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMenu,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from hmi.config.models import Project
from hmi.core.quality import Quality
from hmi.core.ringbuffer import TrendBuffers
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.ui.advisory_panel import AdvisoryPanel
from hmi.ui.alarm_banner import AlarmBanner
from hmi.ui.alarm_feed import AlarmFeed
from hmi.ui.alarm_journal import AlarmJournal
from hmi.ui.alarm_panel import AlarmPanel
from hmi.ui.annunciator import Annunciator, Player
from hmi.ui.login import UserIndicator
from hmi.ui.tag_table import COL_TAG, TagTableModel
from hmi.ui.trend import HistoryProvider, TrendView
from hmi.ui.write_dialog import WriteDialog

TREND_FPS = 20
TABLE_HZ = 5
TREND_CAPACITY = 60_000  # samples per pen: 100 minutes at 10 Hz


class MainWindow(QMainWindow):
    def __init__(
        self,
        project: Project,
        mirror: BusMirror,
        client: IpcClient | None = None,
        history: HistoryProvider | None = None,
        sound_player: Player | None = None,
    ) -> None:
        """`history` backfills trends from the historian beyond what the ring buffers hold;
        `sound_player` plays the alarm horn (default: the system's player)."""
        super().__init__()
        self.project = project
        self.mirror = mirror
        self.client = client
        self.bus = mirror.bus
        self.setWindowTitle(f"{project.project.name} — HMI")
        self.resize(1280, 800)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        header_frame = self._build_header()
        layout.addWidget(header_frame)
        # Alarms: feed (snapshot + event stream + commands), banner, horn, user, summary, journal.
        self.alarm_feed = AlarmFeed(mirror, client, self)
        self.annunciator = Annunciator(self.alarm_feed, sound_player)
        self.alarm_banner = AlarmBanner(self.alarm_feed, self.annunciator)
        layout.addWidget(self.alarm_banner)
        self.user_indicator = UserIndicator(self.alarm_feed.session)
        header_frame.layout().addWidget(self.user_indicator)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.table_model = TagTableModel(self.bus)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col, width in ((1, 120), (2, 50), (3, 90), (4, 95)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Fixed)
            self.table.setColumnWidth(col, width)
        splitter.addWidget(self.table)

        # Pens come from the project's first trend; their tag ids are the mirror's (the
        # configured tags are registered up front, so the ids exist before data arrives).
        trend_config = project.trends[0] if project.trends else None
        specs = {s.name: s for s in project.tag_specs()}
        self.bus.register(project.tag_specs())
        pens = []
        if trend_config is not None:
            pens = [(self.bus.registry.id_of(name), specs[name]) for name in trend_config.pens]
        self.trend_buffers = TrendBuffers(TREND_CAPACITY, [tag_id for tag_id, _ in pens])
        self.bus.subscribe(self.trend_buffers.append_batch, name="trend-buffers")
        self.trend = TrendView(
            self.trend_buffers,
            pens,
            span_s=trend_config.span_s if trend_config else 300.0,
            title=trend_config.name if trend_config else "",
            history=history,
        )
        splitter.addWidget(self.trend)
        splitter.setSizes([520, 760])
        self.alarm_panel = AlarmPanel(self.alarm_feed)
        self.alarm_journal = AlarmJournal(self.alarm_feed.events.between)
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.addTab(self.alarm_panel, "Alarms")
        self.bottom_tabs.addTab(self.alarm_journal, "Journal")
        self.advisory_panel = AdvisoryPanel(self.alarm_feed)
        self.bottom_tabs.addTab(self.advisory_panel, "Advisories")
        self.alarm_banner.open_requested.connect(lambda: self.bottom_tabs.setCurrentWidget(self.alarm_panel))
        vertical = QSplitter(Qt.Orientation.Vertical)
        vertical.addWidget(splitter)
        vertical.addWidget(self.bottom_tabs)
        vertical.setSizes([480, 320])
        layout.addWidget(vertical, 1)
        self.setCentralWidget(central)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._on_table_menu)
        self.table.doubleClicked.connect(lambda index: self.open_write_dialog(self._tag_at(index.row())))
        self.write_dialog: WriteDialog | None = None

        self.connection_label = QLabel()
        self.rate_label = QLabel()
        self.statusBar().addWidget(self.connection_label, 1)
        self.statusBar().addPermanentWidget(self.rate_label)
        self.alarm_feed.session.message.connect(lambda text: self.statusBar().showMessage(text, 5000))

        self._last_samples = 0
        self._last_rate_time = time.monotonic()
        # Set in playback mode: the replayed time (epoch s) that trends and the clock follow.
        self._playback_clock: Callable[[], float] | None = None
        self.trend_timer = QTimer(self)
        self.trend_timer.timeout.connect(self._refresh_trend)
        self.trend_timer.start(1000 // TREND_FPS)
        self.table_timer = QTimer(self)
        self.table_timer.timeout.connect(self._refresh_slow)
        self.table_timer.start(1000 // TABLE_HZ)
        self._refresh_slow()

    def _build_header(self) -> QWidget:
        header = QFrame()
        header.setObjectName("header")
        row = QHBoxLayout(header)
        row.setContentsMargins(8, 4, 8, 4)
        title = QLabel(self.project.project.name)
        font = title.font()
        font.setBold(True)
        title.setFont(font)
        row.addWidget(title)
        self.banner = QLabel()
        self.banner.setObjectName("banner")
        row.addWidget(self.banner, 1)
        self.clock = QLabel()
        row.addWidget(self.clock)
        return header

    def enter_playback(self, bar: QWidget, clock: Callable[[], float]) -> None:
        """Playback mode: `bar` (a PlaybackBar) goes under the header, the trend and clock
        follow `clock()` (the replayed time, epoch seconds), the banner says PLAYBACK."""
        self._playback_clock = clock
        central = self.centralWidget()
        layout = central.layout() if central is not None else None
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(1, bar)
        self.setWindowTitle(f"PLAYBACK — {self.project.project.name} — HMI")
        self._refresh_slow()

    def _refresh_trend(self) -> None:
        self.trend.refresh(self._playback_clock() if self._playback_clock is not None else None)

    def _refresh_slow(self) -> None:
        self.table_model.refresh()
        playback = self._playback_clock is not None
        moment = datetime.fromtimestamp(self._playback_clock()) if self._playback_clock is not None else datetime.now()
        self.clock.setText(moment.strftime("%Y-%m-%d  %H:%M:%S"))
        link_up = self.mirror.link_up
        state = "playback" if playback else "ok" if link_up else "bad"
        text = "Runtime connected" if link_up else "RUNTIME NOT RESPONDING: values are stale"
        if playback:
            text = "PLAYBACK of recorded data: not live"
        if self.banner.property("state") != state or self.banner.text() != text:
            self.banner.setProperty("state", state)
            self.banner.setText(text)
            self.banner.style().unpolish(self.banner)
            self.banner.style().polish(self.banner)
        self.connection_label.setText(self._connections_text())
        now = time.monotonic()
        samples = self.bus.samples_published
        rate = (samples - self._last_samples) / max(now - self._last_rate_time, 1e-6)
        self._last_samples, self._last_rate_time = samples, now
        gaps = self.client.stats.gaps if self.client is not None else 0
        self.rate_label.setText(f"{rate:,.0f} samples/s" + (f"   {gaps} messages lost" if gaps else ""))

    def _connections_text(self) -> str:
        parts = []
        for name in self.project.connections:
            tag = f"{name}.connected"
            latest = self.bus.latest(tag) if tag in self.bus.registry else None
            if latest is None or latest.quality != Quality.GOOD:
                state = "unknown"
            else:
                state = "connected" if latest.value else "DISCONNECTED"
            parts.append(f"{name}: {state}")
        return "   ".join(parts)

    # -- writes ------------------------------------------------------------------------------------

    def _tag_at(self, row: int) -> str:
        return str(self.table_model.index(row, COL_TAG).data() or "")

    def _on_table_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        name = self._tag_at(index.row())
        menu = QMenu(self)
        action = menu.addAction("Write value…")
        action.setEnabled(name in self.bus.registry and self.bus.registry.by_name(name).writable)
        action.triggered.connect(lambda: self.open_write_dialog(name))
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def open_write_dialog(self, name: str) -> WriteDialog | None:
        """The write dialog for a writable tag (None for others)."""
        if name not in self.bus.registry or not self.bus.registry.by_name(name).writable:
            return None
        self.write_dialog = WriteDialog(self.bus.registry.by_name(name), self.bus, self.alarm_feed, self)
        self.write_dialog.open()
        return self.write_dialog
