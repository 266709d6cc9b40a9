"""The operator's main window: machines, 3D view, trends, alarms, journal, tags, status.

Layout (ISA-101: grey, no decoration, colour only for abnormal states and alarms): a
header row (project, runtime link, clock, user) and the alarm banner span the window;
the 3D view of the selected machine is in the middle; docks hold the machine overview,
trends, tag browser, alarm summary and journal. The operator may rearrange the docks;
the layout is saved per project in the user's data folder and restored.

Painting follows timers, never arrivals: trends at TREND_FPS (only the trend shown),
table and status at TABLE_HZ, tiles at OVERVIEW_HZ, the 3D view at its own capped rate.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import psutil
from PySide6.QtCore import QByteArray, QPoint, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QImage, QKeySequence, QPainter, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from hmi.config.models import Project
from hmi.core.alarms.model import Mode, Priority
from hmi.core.quality import Quality
from hmi.core.ringbuffer import TrendBuffers
from hmi.core.tags import DataType
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.paths import data_dir
from hmi.security.roles import REQUIRED_ROLE, Action
from hmi.ui import theme
from hmi.ui.about import AboutDialog, GuideWindow, ShortcutsDialog
from hmi.ui.advisory_panel import AdvisoryPanel
from hmi.ui.alarm_banner import AlarmBanner
from hmi.ui.alarm_feed import AlarmFeed
from hmi.ui.alarm_journal import AlarmJournal
from hmi.ui.alarm_panel import AlarmPanel
from hmi.ui.annunciator import Annunciator, Player
from hmi.ui.demo_menu import DemoMenu, demo_connection
from hmi.ui.format import display_timezone, format_tag_value, set_display_timezone
from hmi.ui.login import UserIndicator
from hmi.ui.overview import MachineOverview, key_specs_for
from hmi.ui.pending_writes import open_pending_writes
from hmi.ui.role_gate import RoleGate, refusal
from hmi.ui.stations_panel import StationsDialog, StationWatch, follow_positions, gate_stations
from hmi.ui.stop_dialog import StopSystemDialog, close_confirmation
from hmi.ui.tag_browser import TagBrowser, suggested_tag_name
from hmi.ui.trend import HistoryProvider, TrendView
from hmi.ui.trend_groups import TrendGroup, TrendGroupStore, TrendSettings, os_user
from hmi.ui.trend_tabs import TrendTabs
from hmi.ui.write_dialog import WriteDialog

log = logging.getLogger(__name__)

TREND_FPS = 30
TABLE_HZ = 2  # numbers read at most twice a second (faster changes cannot be read, and cost CPU)
OVERVIEW_HZ = 2
STATUS_PERIOD_S = 1.0  # the status bar's texts (connections, historian, samples/s)
TREND_CAPACITY = 40_000  # per pen: 66 min at 10 Hz, past the 1 h span; 8 h backfills from the historian
MACHINES_DOCK_MAX_PX = 360
TRENDS_DOCK_PX = 620
SCENE_BOX_MIN_PX = 110  # the 3D view's pickers shrink to this before the window outgrows a 1280 px screen
LAYOUT_VERSION = 3  # bump when the docks change, so an old saved layout is not applied

LIMIT_CONDITIONS = ("hi", "hihi", "lo", "lolo")
PRIORITY_COLOURS = {
    "urgent": theme.ALARM_URGENT,
    "high": theme.ALARM_HIGH,
    "medium": theme.ALARM_MEDIUM,
    "low": theme.ALARM_LOW,
}

SHORTCUTS = (
    ("F1", "Open the operator's guide"),
    ("F9", "Acknowledge the selected alarms"),
    ("Ctrl+Shift+A", "Acknowledge all visible alarms (asks first)"),
    ("F10", "Silence the alarm horn"),
    ("Ctrl+1 … Ctrl+9", "Show machine 1 … 9"),
    ("Ctrl+0", "Reset the 3D view"),
    ("F11", "Full-screen control-room mode"),
    ("Ctrl+L", "Log in or out"),
)


class MainWindow(QMainWindow):
    def __init__(
        self,
        project: Project,
        mirror: BusMirror,
        client: IpcClient | None = None,
        history: HistoryProvider | None = None,
        sound_player: Player | None = None,
        scene: bool = True,
    ) -> None:
        """`history` backfills trends from the historian beyond what the ring buffers hold;
        `sound_player` plays the alarm horn (default: the system's player); `scene=False`
        leaves the 3D view out (a window on a machine without OpenGL)."""
        super().__init__()
        self.project = project
        self.mirror = mirror
        self.client = client
        self.bus = mirror.bus
        self.setWindowTitle(f"{project.project.name} — HMI")
        self.setObjectName("mainWindow")
        self.resize(1440, 900)
        set_display_timezone(ZoneInfo(project.project.timezone))
        # Configured tags take their ids now, so pens and bindings exist before data arrives.
        self.bus.register(project.tag_specs())
        self._specs = {s.name: s for s in project.tag_specs()}
        self._started = time.time()
        self._first_live_logged = False
        # Set in playback mode: the replayed time (epoch s) that trends and the clock follow.
        self._playback_clock: Callable[[], float] | None = None
        self._picked: tuple[str, list[str]] | None = None  # the 3D part picked: node, bound tags

        # Alarms: feed (snapshot + event stream + commands), horn, banner, user.
        self.alarm_feed = AlarmFeed(mirror, client, self)
        horn = project.alarm_system
        self.annunciator = Annunciator(
            self.alarm_feed, sound_player, horn.horn_repeat_s, Priority.parse(horn.horn_min_priority)
        )
        self.alarm_banner = AlarmBanner(self.alarm_feed, self.annunciator)
        self.user_indicator = UserIndicator(self.alarm_feed.session)
        self._build_header()

        # The 3D view of the selected machine, in the middle.
        self.scene = self._build_scene() if scene else None
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        if self.scene is not None:
            self.scene_bar = self._build_scene_bar()
            column.addWidget(self.scene_bar)
            column.addWidget(self.scene, 1)
            # View > 3D view off: on software OpenGL the view is most of the window's CPU.
            self.scene_off = QLabel("3D view hidden (View ▸ 3D view)")
            self.scene_off.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.scene_off.hide()
            column.addWidget(self.scene_off, 1)
        else:
            placeholder = QLabel("3D view off")
            placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
            column.addWidget(placeholder, 1)
        self.setCentralWidget(central)

        self.overview = MachineOverview(
            {
                mid: (m.label or mid, key_specs_for(mid, list(self._specs.values()), m.key_tags))
                for mid, m in project.machines.items()
            },
            self.bus,
        )
        self.overview.machine_selected.connect(self.show_machine)

        self.trend_buffers = TrendBuffers(TREND_CAPACITY, [])
        self.bus.subscribe(self.trend_buffers.append_batch, name="trend-buffers")
        # Trend groups are the user's own (hmi/ui/trend_groups.py), the project's at first.
        self.trend_tabs = TrendTabs()
        self.trends: list[TrendView] = []
        self._history = history
        self._load_trend_groups()

        browsable = [name for name, c in project.connections.items() if c.browsable]
        self.tag_browser = TagBrowser(self.bus, browsable, self._send if client is not None else None,
                                      feed=self.alarm_feed if client is not None else None)  # fmt: skip
        self.tag_browser.write_requested.connect(self.open_write_dialog)
        self.table_model = self.tag_browser.table_model
        self.table = self.tag_browser.table
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._on_table_menu)
        self.write_dialog: WriteDialog | None = None

        self.alarm_panel = AlarmPanel(self.alarm_feed)
        # The journal reads the historian the trends read (a recording's, in playback).
        self.alarm_journal = AlarmJournal.for_project(
            project, self.bus, getattr(history, "target", None), station=self.alarm_feed.station
        )
        self.alarm_banner.open_requested.connect(self._show_alarms)
        self.alarm_feed.changed.connect(self._on_alarms_changed)
        # Operator positions and the station list, asked of the runtime once a second.
        self.station_watch = StationWatch(self.alarm_feed, self)
        follow_positions(self.station_watch, self.alarm_panel, self.alarm_banner)
        self.stations_dialog = StationsDialog(self.station_watch, self)

        self.docks: dict[str, QDockWidget] = {}
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        right = Qt.DockWidgetArea.RightDockWidgetArea
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        self._dock("machines", "Machines", self.overview, left)
        self._dock("trends", "Trends", self.trend_tabs, right)
        self._dock("tags", "Tags", self.tag_browser, right)
        self._dock("alarms", "Alarm summary", self.alarm_panel, bottom)
        self._dock("journal", "Journal", self.alarm_journal, bottom)
        self.advisory_panel = AdvisoryPanel(self.alarm_feed)  # the twin's advisories (hmi/ui/advisory_panel.py)
        self._dock("advisories", "Advisories", self.advisory_panel, bottom)
        self.advisory_panel.count_changed.connect(self._on_advisory_count)
        # Tags under the trends, not tabbed with them: a tag is dragged onto a trend in view.
        self.splitDockWidget(self.docks["trends"], self.docks["tags"], Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.docks["alarms"], self.docks["journal"])
        self.tabifyDockWidget(self.docks["journal"], self.docks["advisories"])
        self.docks["trends"].raise_()
        self.docks["alarms"].raise_()
        self._size_docks_when_shown = True  # unless a saved layout is restored
        self._default_state = self._size_docks()

        self.close_box: QMessageBox | None = None
        self._close_confirmed = False
        self.stop_dialog: StopSystemDialog | None = None
        self.stop_message: QMessageBox | None = None
        self._build_status_bar()
        self._build_menus()
        self.alarm_feed.session.message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.alarm_feed.session.changed.connect(self._on_session_changed)  # each user has own trends
        self._apply_alarm_limits()
        if project.machines:
            self.show_machine(next(iter(project.machines)))

        self._last_samples = 0
        self._last_rate_time = time.monotonic()
        self._status_due = 0.0  # the first refresh fills the status bar
        self.trend_timer = QTimer(self)
        self.trend_timer.timeout.connect(self._refresh_trend)
        self.trend_timer.start(1000 // TREND_FPS)
        self.table_timer = QTimer(self)
        self.table_timer.timeout.connect(self._refresh_slow)
        self.table_timer.start(1000 // TABLE_HZ)
        self.overview_timer = QTimer(self)
        self.overview_timer.timeout.connect(self._refresh_tiles)
        self.overview_timer.start(1000 // OVERVIEW_HZ)
        self.docks["machines"].visibilityChanged.connect(self._refresh_tiles)  # catch up when shown
        self._restore_layout()
        self._restore_scene_settings()
        self._refresh_slow()

    # -- construction -------------------------------------------------------------------------------

    def _build_header(self) -> None:
        header = QFrame()
        header.setObjectName("header")
        row = QHBoxLayout(header)
        row.setContentsMargins(8, 2, 8, 2)
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
        row.addWidget(self.user_indicator)
        self._top_bar(header, "header")
        self.addToolBarBreak()
        self._top_bar(self.alarm_banner, "alarmBanner")

    def _top_bar(self, widget: QWidget, name: str) -> QToolBar:
        """A fixed full-width row above the docks (a toolbar, so it spans the left dock too)."""
        bar = QToolBar()
        bar.setObjectName(name)
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.toggleViewAction().setEnabled(False)
        bar.setContextMenuPolicy(Qt.ContextMenuPolicy.PreventContextMenu)
        bar.setStyleSheet("QToolBar { border: 0; padding: 0; spacing: 0; }")
        bar.addWidget(widget)
        widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        return bar

    def _build_scene(self) -> Any:
        from hmi.ui.scene_view import SceneView

        scene = SceneView(self.bus)
        for machine, config in self.project.machines.items():
            path = self.project.resolve_path(config.model) if config.model else None
            scene.add_machine(machine, path, self.project.bindings, self.project.cameras, config.label or machine)
        scene.part_picked.connect(self._on_part_picked)
        return scene

    def _build_scene_bar(self) -> QWidget:
        bar = QFrame()
        bar.setObjectName("sceneBar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(6, 2, 6, 2)
        self.machine_box = QComboBox()
        self.machine_box.setMinimumWidth(SCENE_BOX_MIN_PX)  # wider when there is room (its size hint)
        for machine, config in self.project.machines.items():
            self.machine_box.addItem(config.label or machine, machine)
        self.machine_box.activated.connect(lambda i: self.show_machine(self.machine_box.itemData(i)))
        row.addWidget(self.machine_box)
        self.camera_box = QComboBox()
        self.camera_box.setMinimumWidth(SCENE_BOX_MIN_PX)
        self.camera_box.setToolTip("Camera preset")
        self.camera_box.activated.connect(lambda _: self._apply_camera())
        row.addWidget(self.camera_box)
        reset = QPushButton("Reset view")
        reset.clicked.connect(self.reset_view)
        row.addWidget(reset)
        self.picked_label = QLabel()
        self.picked_label.setStyleSheet(f"color: {theme.TEXT_DIM};")
        # Clipped rather than holding the 3D view wide: the docks beside it come first.
        self.picked_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._show_picked("Click a part to see its tags")
        row.addWidget(self.picked_label, 1)
        return bar

    def _add_trend(self, name: str, pens: list[str], span_s: float, history: HistoryProvider | None) -> TrendView:
        pen_specs = [(self.bus.registry.id_of(tag), self._specs[tag]) for tag in pens if tag in self._specs]
        view = TrendView(
            self.trend_buffers,
            pen_specs,
            span_s=span_s,
            title=name,
            history=history,
            timezone=display_timezone(),
            clock=self._clock,
            lazy=True,  # built when its tab is first shown (TrendTabs)
        )
        view.tags_dropped.connect(lambda names, v=view: self.add_pens(v, names))
        view.nodes_dropped.connect(lambda nodes, v=view: self._watch_nodes(v, nodes))
        view.export_dir = self._trend_settings.export_dir
        view.pens_changed.connect(self._save_trend_groups)
        view.export_dir_changed.connect(self._on_export_dir_changed)
        self.trend_tabs.addTab(view, name)
        return view

    # -- trend groups: the user's own, saved per project ------------------------------------------------

    def _trend_user(self) -> str:
        session = self.alarm_feed.session
        return session.user if session.logged_in else os_user()

    def _load_trend_groups(self) -> None:
        """(Re)build the trend tabs from the current user's saved groups."""
        self._trend_owner = self._trend_user()
        self._trend_store = TrendGroupStore.for_user(data_dir(), self.project, self._trend_owner)
        self._trend_settings = self._trend_store.load()
        self.trend_tabs.blockSignals(True)  # each removal made the next group current: built to be deleted
        for view in self.trend_tabs.views():
            self.trend_tabs.removeTab(self.trend_tabs.indexOf(view))
            view.close()
            view.deleteLater()
        self.trend_tabs.blockSignals(False)
        self.trends = [self._add_trend(g.name, g.pens, g.span_s, self._history) for g in self._trend_settings.groups]
        self.trend = self.trends[0]

    def _save_trend_groups(self) -> None:
        groups = [
            TrendGroup(self.trend_tabs.tabText(i), view.pen_names(), view.span_s)
            for i, view in enumerate(self.trend_tabs.views())
        ]
        self._trend_settings = TrendSettings(groups, self._trend_settings.export_dir)
        self._trend_store.save(self._trend_settings)

    def _on_export_dir_changed(self, folder: str) -> None:
        self._trend_settings.export_dir = folder
        for view in self.trends:
            view.export_dir = folder
        self._save_trend_groups()

    def _on_session_changed(self) -> None:
        if self._trend_user() != self._trend_owner:
            self._load_trend_groups()
            self._apply_alarm_limits()

    def new_trend(self, name: str) -> TrendView:
        view = self._add_trend(name or "Trend", [], 300.0, self._history)
        self.trends.append(view)
        self.trend_tabs.setCurrentWidget(view)
        self._save_trend_groups()
        return view

    def rename_trend(self, name: str) -> None:
        index = self.trend_tabs.currentIndex()
        if name and index >= 0:
            self.trend_tabs.setTabText(index, name)
            self.trends[index].title_label.setText(name)
            self._save_trend_groups()

    def delete_trend(self) -> None:
        """Delete the trend shown; the last one is emptied instead (there is always one)."""
        index = self.trend_tabs.currentIndex()
        if self.trend_tabs.count() == 1:
            self.trends[0].set_pens([])
        else:
            view = self.trends.pop(index)
            self.trend_tabs.removeTab(index)
            view.close()
            view.deleteLater()
            self.trend = self.trends[0]
        self._save_trend_groups()

    def reset_trends(self) -> None:
        """Back to the project's trend groups."""
        self._trend_store.save(TrendSettings(self._trend_store.defaults, self._trend_settings.export_dir))
        self._load_trend_groups()
        self._apply_alarm_limits()

    def _ask_rename_trend(self) -> None:
        self._ask_trend_name("Rename trend", self.trend_tabs.tabText(self.trend_tabs.currentIndex()), self.rename_trend)

    def _ask_trend_name(self, title: str, current: str, then: Callable[[str], object]) -> None:
        dialog = QInputDialog(self)
        dialog.setWindowTitle(title)
        dialog.setLabelText("Trend name:")
        dialog.setTextValue(current)
        # open(), not exec(): no nested event loop (see _ask_to_close).
        dialog.textValueSelected.connect(lambda text: then(text.strip()))
        dialog.open()

    def _dock(self, key: str, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{key}")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        self.docks[key] = dock
        return dock

    def _build_status_bar(self) -> None:
        self.connection_label = QLabel()
        self.historian_label = QLabel()
        self.rate_label = QLabel()
        self.statusBar().addWidget(self.connection_label, 1)
        self.statusBar().addPermanentWidget(self.historian_label)
        self.statusBar().addPermanentWidget(self.rate_label)
        # Room for the usual figures, so a changing count does not re-lay out the bar.
        self.rate_label.setMinimumWidth(self.rate_label.fontMetrics().horizontalAdvance("99,999 samples/s"))
        self.rate_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        # Whether the horn can be heard, always in view: an operator must not rely on a
        # horn that nobody hears (hmi/ui/annunciator.py).
        self.horn_label = QLabel()
        self.horn_label.setObjectName("horn")
        self.statusBar().addPermanentWidget(self.horn_label)
        self.annunciator.audio_changed.connect(self._on_horn_audio_changed)
        self._on_horn_audio_changed()

    def _on_horn_audio_changed(self) -> None:
        text = self.annunciator.audio_text()
        self.horn_label.setText(text)
        if self.annunciator.audible:
            self.horn_label.setStyleSheet("")
            log.info("alarm %s", text)
        else:
            self.horn_label.setStyleSheet(f"color: {theme.ALARM_HIGH};")  # abnormal: the one colour here
            log.warning("alarm %s: new alarms will not be heard", text)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self._action(file_menu, "Close window…", None, self.close_window)
        file_menu.addSeparator()
        # Stops recording for everyone: the runtime checks the engineer role and audits it.
        self.stop_system_action = self._action(file_menu, "Stop system…", None, self.stop_system)
        # Actions that need a role say so while the user lacks it (hmi/ui/role_gate.py).
        self.role_gate = RoleGate(self.alarm_feed.session, self)
        self.role_gate.gate(self.stop_system_action, Action.STOP_SYSTEM, also=lambda: self.client is not None,
                            tooltip="Stops recording for everyone; the reason is recorded")  # fmt: skip
        view = menu.addMenu("&View")
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        self.fullscreen_action = self._action(view, "Full-screen control-room mode", "F11", self.toggle_full_screen)
        self.fullscreen_action.setCheckable(True)
        self._action(view, "Reset layout", None, self.reset_layout)
        self._action(view, "Reset 3D view", "Ctrl+0", self.reset_view)
        if self.scene is not None:
            self._build_scene_menu(view)

        trends = menu.addMenu("&Trends")
        self._action(trends, "New trend…", None, lambda: self._ask_trend_name("New trend", "Trend", self.new_trend))
        self._action(trends, "Rename trend…", None, self._ask_rename_trend)
        self._action(trends, "Delete trend", None, self.delete_trend)
        trends.addSeparator()
        self._action(trends, "Reset to the project's trends", None, self.reset_trends)

        machines = menu.addMenu("&Machines")
        for i, (machine, config) in enumerate(self.project.machines.items()):
            shortcut = f"Ctrl+{i + 1}" if i < 9 else None
            self._action(machines, config.label or machine, shortcut, functools.partial(self.show_machine, machine))

        alarms = menu.addMenu("&Alarms")
        panel = self.alarm_panel
        ack = self._action(alarms, "Acknowledge selected", "F9", panel.acknowledge_selected)
        ack_all = self._action(alarms, "Acknowledge all visible…", "Ctrl+Shift+A", panel.acknowledge_all_visible)
        for action in (ack, ack_all):
            self.role_gate.gate(action, Action.ACKNOWLEDGE)
        self._action(alarms, "Silence horn", "F10", self.annunciator.silence)
        self._action(alarms, "Show alarm summary", None, self._show_alarms)

        user = menu.addMenu("&User")
        self._action(user, "Log in / log out", "Ctrl+L", self.user_indicator.button.click)
        # Two-person writes waiting for a second user: verify, reject, cancel (hmi/ui/pending_writes.py).
        self._action(user, "Pending write verifications…", None, lambda: open_pending_writes(self.alarm_feed, self))
        stations = self.stations_dialog.panel  # positions: taken and handed over (hmi/ui/stations_panel.py)
        take = self._action(user, "Take position…", None, lambda: stations.open_position_dialog(False))
        hand_over = self._action(user, "Hand over position…", None, lambda: stations.open_position_dialog(True))
        for action in (take, hand_over):
            self.role_gate.gate(action, Action.TAKE_POSITION)
        gate_stations(self.role_gate, self._action(user, "Stations…", None, self.stations_dialog.show))

        # The embedded demo plant's faults, injected and cleared by an engineer (hmi/ui/demo_menu.py).
        connection = demo_connection(self.project) if self.client is not None else None
        self.demo_menu: DemoMenu | None = None
        if connection is not None:
            self.demo_menu = DemoMenu(self.project, connection, self.alarm_feed, self.role_gate,
                                      lambda text: self.statusBar().showMessage(text, 8000), self)  # fmt: skip
            menu.addMenu(self.demo_menu)

        help_menu = menu.addMenu("&Help")
        self._action(help_menu, "Operator's guide", "F1", self.show_guide)
        self._action(help_menu, "Keyboard shortcuts", None, self.show_shortcuts)
        help_menu.addSeparator()
        self._action(help_menu, "About", None, self.show_about)
        for entry in menu.actions():  # a disabled entry's tooltip says who may use it
            if isinstance(submenu := entry.menu(), QMenu):
                submenu.setToolTipsVisible(True)

    def _action(self, menu: QMenu, text: str, shortcut: str | None, slot: Callable[[], Any]) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        self.addAction(action)  # shortcuts work even when the menu bar is hidden (full screen)
        return action

    # -- layout -----------------------------------------------------------------------------------

    def _settings(self) -> QSettings:
        settings = QSettings(str(data_dir() / "window.ini"), QSettings.Format.IniFormat)
        settings.beginGroup("project_" + "".join(c if c.isalnum() else "_" for c in self.project.project.name))
        return settings

    def _restore_layout(self) -> None:
        settings = self._settings()
        geometry = settings.value("geometry")
        state = settings.value("state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        elif (screen := self.screen()) is not None:
            # First start on this workstation: the whole screen, as a control-room display is
            # used (maximising is the window manager's job, and Xvfb or a kiosk may have none).
            self.setGeometry(screen.availableGeometry())
        if isinstance(state, QByteArray):
            if self.restoreState(state, LAYOUT_VERSION):
                self._size_docks_when_shown = False
            else:
                log.info("saved window layout is from another version; using the default")

    def _size_docks(self) -> QByteArray:
        """The default dock sizes; returns the layout they make (what "Reset layout" restores)."""
        widths = self._side_dock_widths()
        self.resizeDocks([self.docks[key] for key in widths], list(widths.values()), Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["alarms"]], [260], Qt.Orientation.Vertical)
        return self.saveState(LAYOUT_VERSION)

    def _side_dock_widths(self) -> dict[str, int]:
        """The default widths of the side docks: the machines dock wide enough for every tile's
        title and signal names (within reason on a small screen), the trends a readable plot."""
        machines = self.docks["machines"]
        frame = max(0, machines.width() - self.overview.width()) if machines.isVisible() else 0
        natural = self.overview.natural_width() + frame
        return {"machines": min(max(natural, 260), MACHINES_DOCK_MAX_PX), "trends": TRENDS_DOCK_PX}

    def _widen_side_docks(self) -> None:
        """Give a side dock narrower than its default width its room back when there is some.
        QMainWindow hands a growing window's width to the 3D view alone: a dock squeezed by a
        small window stayed narrow (tiles reading "spindle sp") even full screen."""
        narrow = {
            key: width
            for key, width in self._side_dock_widths().items()
            if (dock := self.docks[key]).isVisible() and not dock.isFloating() and dock.width() < width
        }
        if narrow:
            docks = [self.docks[key] for key in narrow]
            self.resizeDocks(docks, list(narrow.values()), Qt.Orientation.Horizontal)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            QTimer.singleShot(0, self._widen_side_docks)  # once the docks have their new sizes

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._size_docks_when_shown:
            # Sizes set before the first show are redistributed when the window takes its
            # final size (a restored geometry squeezed the machines dock to 210 px): again now.
            self._size_docks_when_shown = False
            QTimer.singleShot(0, lambda: setattr(self, "_default_state", self._size_docks()))

    def save_layout(self) -> None:
        settings = self._settings()
        settings.setValue("geometry", self.saveGeometry())
        settings.setValue("state", self.saveState(LAYOUT_VERSION))
        settings.sync()

    def reset_layout(self) -> None:
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.show()
        self.restoreState(self._default_state, LAYOUT_VERSION)

    def toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
            self.menuBar().show()
        else:
            self.showFullScreen()
            self.menuBar().hide()  # the shortcuts stay: they are on the window too
        self.fullscreen_action.setChecked(self.isFullScreen())

    def show_shortcuts(self) -> QDialog:
        self.help_dialog: QDialog = ShortcutsDialog(SHORTCUTS, self)
        self.help_dialog.open()
        return self.help_dialog

    def show_about(self) -> QDialog:
        self.help_dialog = AboutDialog(self)
        self.help_dialog.open()
        return self.help_dialog

    def show_guide(self) -> QDialog:
        self.help_dialog = GuideWindow(self)
        self.help_dialog.show()  # not modal: read beside the window
        return self.help_dialog

    def _asks_before_closing(self) -> bool:
        """A window on a live runtime asks first (closing it leaves the runtime running);
        a playback window or one without a runtime just closes."""
        return self.client is not None and self._playback_clock is None and not self._close_confirmed

    def close_window(self) -> None:
        """File ▸ Close window: ask, then close only this window."""
        if self._asks_before_closing():
            self._ask_to_close()
        else:
            self.close()

    def _ask_to_close(self) -> None:
        if self.close_box is not None and self.close_box.isVisible():
            self.close_box.raise_()
            return
        # open(), not exec(): no nested event loop, so a SIGTERM (the supervisor stopping
        # everything) still quits the application while the question is on screen.
        self.close_box = close_confirmation(self)
        self.close_box.accepted.connect(self._on_close_confirmed)
        self.close_box.open()

    def _on_close_confirmed(self) -> None:
        log.info("window closed by the operator; the runtime keeps recording")
        self._close_confirmed = True
        self.close()

    def stop_system(self) -> None:
        """File ▸ Stop system: an engineer confirms and gives a reason; the runtime checks the
        role, audits the stop and stops plant connections, recording and every window."""
        session = self.alarm_feed.session
        if not session.logged_in:
            self._stop_message(QMessageBox.Icon.Information, "Stopping the system needs an engineer: log in first.")
            return
        dialog = StopSystemDialog(session.user, self)
        self.stop_dialog = dialog

        def on_finished(result: int) -> None:
            if result == QDialog.DialogCode.Accepted:
                self.alarm_feed.send({"command": "stop_system", "reason": dialog.reason_text()}, self._on_stop_reply)

        dialog.finished.connect(on_finished)
        dialog.open()

    def _on_stop_reply(self, reply: dict[str, Any]) -> None:
        if reply.get("ok"):
            # The supervisor closes this window once the runtime has stopped.
            self.statusBar().showMessage(f"System stopping, requested by {reply.get('user', '')}")
            return
        self._stop_message(QMessageBox.Icon.Warning, f"The system was not stopped: {reply.get('error', 'refused')}")

    def _stop_message(self, icon: QMessageBox.Icon, text: str) -> None:
        box = QMessageBox(icon, "Stop system", text, QMessageBox.StandardButton.Close, self)
        box.setObjectName("stopSystemMessage")
        self.stop_message = box
        box.open()

    def closeEvent(self, event: QCloseEvent) -> None:
        # Only a close the operator asked for (the window manager's close button) is
        # questioned; the application quitting (SIGTERM from the supervisor, --exit-after)
        # closes at once.
        if event.spontaneous() and self._asks_before_closing():
            event.ignore()
            self._ask_to_close()
            return
        self.save_layout()
        for timer in (self.trend_timer, self.table_timer, self.overview_timer):
            timer.stop()
        self.station_watch.close()
        self.alarm_feed.close()
        self.advisory_panel.close_feed()
        if self.scene is not None:
            self.scene.shutdown()
        super().closeEvent(event)

    # -- machines and the 3D view ---------------------------------------------------------------------

    def show_machine(self, machine: str) -> None:
        if machine not in self.project.machines:
            return
        self.overview.select(machine)
        self.overview.ensureWidgetVisible(self.overview.tiles[machine])
        # The machine's own trend group, when one has only its tags.
        for index, view in enumerate(self.trends):
            specs = [spec for _, spec in view.pen_specs()]
            if specs and all(spec.machine == machine for spec in specs):
                self.trend_tabs.setCurrentIndex(index)
                break
        if self.scene is None:
            return
        self.scene.show_machine(machine)
        index = self.machine_box.findData(machine)
        if index >= 0:
            self.machine_box.setCurrentIndex(index)
        self.camera_box.clear()
        self.camera_box.addItems(self.scene.camera_presets(machine))

    def _apply_camera(self) -> None:
        if self.scene is not None and self.camera_box.currentText():
            self.scene.set_camera_preset(self.camera_box.currentText())

    def reset_view(self) -> None:
        if self.scene is not None:
            self.scene.reset_view()

    def _build_scene_menu(self, view: QMenu) -> None:
        """View > 3D view (on/off) and 3D motion rate: the operator's, kept per project."""
        from hmi.ui.scene_view import MOTION_FPS_CHOICES

        self.scene_action = self._action(
            view, "3D view", None, lambda: self.set_scene_visible(self.scene_action.isChecked())
        )
        self.scene_action.setCheckable(True)
        self.scene_action.setChecked(True)
        motion = view.addMenu("3D motion rate")
        self.motion_actions: dict[float, QAction] = {}
        group = QActionGroup(self)
        for fps in MOTION_FPS_CHOICES:
            action = motion.addAction(f"{fps:g} frames/s")
            action.triggered.connect(functools.partial(self._choose_motion_fps, fps))
            action.setCheckable(True)
            group.addAction(action)
            self.motion_actions[fps] = action

    def _restore_scene_settings(self) -> None:
        if self.scene is None:
            return
        settings = self._settings()
        self.set_scene_visible(str(settings.value("scene/visible", "true")).lower() != "false", save=False)
        try:
            fps = float(settings.value("scene/motion_fps", self.scene.motion_fps))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            fps = self.scene.motion_fps
        self.set_motion_fps(fps, save=False)

    def set_scene_visible(self, visible: bool, save: bool = True) -> None:
        """Show or hide the 3D view; hidden, it draws nothing (its frame timer stops)."""
        if self.scene is None:
            return
        self.scene.setVisible(visible)
        self.scene_bar.setVisible(visible)
        self.scene_off.setVisible(not visible)
        self.scene_action.setChecked(visible)
        if save:
            self._settings().setValue("scene/visible", visible)

    def _choose_motion_fps(self, fps: float, _checked: bool = False) -> None:
        self.set_motion_fps(fps)

    def set_motion_fps(self, fps: float, save: bool = True) -> None:
        """The 3D view's cap for motion (spindles, belts, moving axes), in frames per second."""
        if self.scene is None:
            return
        self.scene.set_motion_fps(fps)
        for choice, action in self.motion_actions.items():
            action.setChecked(choice == fps)
        if save:
            self._settings().setValue("scene/motion_fps", fps)

    def _show_picked(self, text: str) -> None:
        self.picked_label.setText(text)
        self.picked_label.setToolTip(text)  # the label may be clipped

    def _on_part_picked(self, machine: str, node: str, tags: list[str]) -> None:
        self._picked = (node, list(tags))
        self._show_pick_readout()
        if tags:
            self.tag_browser.filter.setText(f"{machine}.")

    def _show_pick_readout(self) -> None:
        """The picked part's tags and their values, again at each table refresh: the readout
        stays live (it froze at the values of the moment of the click)."""
        if self._picked is None:
            return
        node, tags = self._picked
        if not tags:
            self._show_picked(f"{node}: no tags bound")
            return
        parts = []
        for tag in tags:
            latest = self.bus.latest(tag)
            spec = self._specs.get(tag)
            value = format_tag_value(latest.value, spec) if latest is not None and spec is not None else "—"
            parts.append(f"{tag} = {value} {spec.unit if spec else ''}".rstrip())
        text = f"{node}: " + ";  ".join(parts)
        if text != self.picked_label.text():
            self._show_picked(text)

    # -- alarms on machines and trends -------------------------------------------------------------

    def _on_alarms_changed(self) -> None:
        """Each machine's tile takes the colour of its worst active alarm; in 3D the part bound
        to the alarming tag does (the machine's main part when no part shows that tag)."""
        worst: dict[str, Priority] = {}
        by_tag: dict[str, dict[str, Priority]] = {}  # machine -> tag -> worst priority
        for status in self.alarm_feed.alarms.statuses():
            if not status.active or status.mode != Mode.IN_SERVICE:
                continue  # shelved, suppressed and out-of-service alarms are not annunciated
            machine = status.tag.split(".", 1)[0]
            if machine not in worst or status.priority > worst[machine]:
                worst[machine] = status.priority
            tags = by_tag.setdefault(machine, {})
            if status.tag not in tags or status.priority > tags[status.tag]:
                tags[status.tag] = status.priority
        for machine, tile in self.overview.tiles.items():
            priority = worst.get(machine)
            tile.set_alarm(priority.label if priority is not None else None)
            if self.scene is not None and machine in self.scene.machines():
                self.scene.set_alarms(machine, by_tag.get(machine, {}))

    def _on_advisory_count(self, count: int) -> None:
        self.docks["advisories"].setWindowTitle(f"Advisories ({count})")  # on its tab, like "Shelved (n)"

    def _show_alarms(self) -> None:
        self.docks["alarms"].show()
        self.docks["alarms"].raise_()

    def _apply_alarm_limits(self) -> None:
        limits: dict[str, list[tuple[float, str, str]]] = {}
        for alarm in self.project.alarms:
            if alarm.condition in LIMIT_CONDITIONS and alarm.limit is not None:
                colour = PRIORITY_COLOURS.get(str(alarm.priority), theme.ALARM_MEDIUM)
                limits.setdefault(alarm.tag, []).append(
                    (alarm.limit, f"{alarm.condition.upper()} {alarm.limit:g}", colour)
                )
        for view in self.trends:
            for tag_id, spec in view.pen_specs():
                if spec.name in limits:
                    view.set_limits(tag_id, limits[spec.name])

    # -- trends: pens dragged in --------------------------------------------------------------------

    def add_pens(self, view: TrendView, names: list[str]) -> None:
        for name in names:
            tag_id = self.bus.registry.get_id(name)
            if tag_id is None or view.has_pen(tag_id):
                continue
            spec = self.bus.registry.spec(tag_id)
            if spec.datatype == DataType.STRING:
                self.statusBar().showMessage(f"{name} is text; it cannot be trended", 5000)
                continue
            view.add_pen(tag_id, spec)
        self._apply_alarm_limits()
        self._save_trend_groups()

    def _watch_nodes(self, view: TrendView, nodes: list[dict[str, Any]]) -> None:
        """Browsed OPC UA variables dropped on a trend: configured ones become pens at once;
        others are watched by the runtime as ad-hoc tags first."""
        for node in nodes:
            if node.get("tag"):
                self.add_pens(view, [node["tag"]])
                continue
            name = suggested_tag_name(node["connection"], node.get("path") or [node["display_name"]])
            datatype = "bool" if node.get("data_type") == "Boolean" else "float"
            command = {"command": "watch", "connection": node["connection"], "node_id": node["node_id"],
                       "tag": name, "datatype": datatype}  # fmt: skip

            def on_reply(reply: dict[str, Any], v: TrendView = view) -> None:
                if not reply.get("ok"):
                    self.statusBar().showMessage(f"Cannot watch that node: {reply.get('error')}", 8000)
                    return
                self._add_pen_when_known(v, reply["tag"], attempts=30)

            self._send(command, on_reply)

    def _add_pen_when_known(self, view: TrendView, name: str, attempts: int) -> None:
        """The runtime announces a new tag on its stream; wait for it (up to ~3 s)."""
        if name in self.bus.registry:
            self.add_pens(view, [name])
        elif attempts > 0:
            QTimer.singleShot(100, lambda: self._add_pen_when_known(view, name, attempts - 1))

    def _send(self, command: dict[str, Any], on_reply: Callable[[dict[str, Any]], None]) -> None:
        self.alarm_feed.send(command, on_reply, with_session=False)

    # -- playback -----------------------------------------------------------------------------------

    def enter_playback(self, bar: QWidget, clock: Callable[[], float]) -> None:
        """Playback mode: `bar` (a PlaybackBar) goes under the header, the trends and clock
        follow `clock()` (the replayed time, epoch seconds), the banner says PLAYBACK."""
        self._playback_clock = clock
        self.addToolBarBreak()
        self._top_bar(bar, "playbackBar")
        self.setWindowTitle(f"PLAYBACK — {self.project.project.name} — HMI")
        self._refresh_slow()

    def _clock(self) -> float:
        return self._playback_clock() if self._playback_clock is not None else time.time()

    # -- timers ---------------------------------------------------------------------------------------

    def _refresh_tiles(self) -> None:
        if self.overview.isVisible():  # a hidden dock costs nothing; shown, it catches up at once
            self.overview.refresh()

    def _refresh_trend(self) -> None:
        view = self.trend_tabs.currentWidget()
        if isinstance(view, TrendView) and view.isVisible():
            drew = view.refresh()
            # The trend draws a new value within a frame; the table only at its TABLE_HZ refresh.
            if drew and not self._first_live_logged and self._playback_clock is None:
                self._log_first_live_frame(view.pen_names())

    def _refresh_slow(self) -> None:
        self.table_model.refresh()
        self._show_pick_readout()
        if self.demo_menu is not None and not self.demo_menu.loaded and self.mirror.link_up:
            self.demo_menu.load()  # filled before it is first opened
        playback = self._playback_clock is not None
        moment = datetime.fromtimestamp(self._clock(), display_timezone())
        self.clock.setText(moment.strftime("%Y-%m-%d  %H:%M:%S %Z"))
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
        now = time.monotonic()
        # The status texts once a second: read at a glance, and a label whose text changes
        # repaints (and may re-lay out) the status bar; 5 Hz of "samples/s" cost more than it told.
        if now >= self._status_due:
            self._refresh_status(now)
        if not self._first_live_logged and not playback:
            self._log_first_live_frame()

    def _refresh_status(self, now: float) -> None:
        self._status_due = now + STATUS_PERIOD_S
        self.connection_label.setText(self._connections_text())  # QLabel skips an unchanged text
        self.historian_label.setText(self._historian_text())
        samples = self.bus.samples_published
        rate = (samples - self._last_samples) / max(now - self._last_rate_time, 1e-6)
        self._last_samples, self._last_rate_time = samples, now
        # Gaps and stalls are repaired by a fresh snapshot (hmi.ipc.client); both counts say how often.
        stats = self.client.stats if self.client is not None else None
        lost = ""
        if stats is not None and (stats.gaps or stats.repairs):
            lost = f"   {stats.gaps} messages lost, {stats.repairs} resyncs"
        self.rate_label.setText(f"{rate:,.0f} samples/s{lost}")

    def _log_first_live_frame(self, drawn: list[str] | None = None) -> None:
        """Once: how long from the start of `hmi run` (or of this process) to a GOOD value of the
        plant on screen (`drawn`: the tags just drawn; default the table's, every configured tag)."""
        names = self.project.tags if drawn is None else drawn
        if not any((v := self.bus.latest(n)) is not None and v.quality == Quality.GOOD for n in names):
            return
        self._first_live_logged = True
        started = psutil.Process().create_time()
        since_run = os.environ.get("HMI_RUN_STARTED")
        origin = float(since_run) if since_run else started
        log.info("first live frame %.2f s after %s", time.time() - origin, "hmi run" if since_run else "window start")

    def _connections_text(self) -> str:
        parts = []
        for name in self.project.connections:
            latest = self.bus.latest(f"{name}.connected")
            if latest is None or latest.quality != Quality.GOOD:
                parts.append(f"{name}: unknown")
                continue
            if not latest.value:
                parts.append(f"{name}: DISCONNECTED")
                continue
            details = []
            age = self.bus.latest(f"{name}.last_message_age_s")
            rate = self.bus.latest(f"{name}.messages_per_s")
            if age is not None and isinstance(age.value, float):
                details.append(f"last {age.value:.1f} s ago")
            if rate is not None and isinstance(rate.value, float):
                details.append(f"{rate.value:,.0f}/s")
            parts.append(f"{name}: connected" + (f" ({', '.join(details)})" if details else ""))
        return "    ".join(parts)

    def _historian_text(self) -> str:
        depth = self.bus.latest("historian.queue_depth")
        ok = self.bus.latest("historian.write_ok")
        dropped = self.bus.latest("historian.dropped_samples")
        if depth is None:
            return ""
        text = f"historian: {depth.value:,.0f} queued" if isinstance(depth.value, float) else "historian"
        if ok is not None and not ok.value:
            text += "  NOT WRITING"
        if dropped is not None and isinstance(dropped.value, float) and dropped.value > 0:
            text += f"  {dropped.value:,.0f} lost"
        # Store-and-forward ([historian.forward]): the buffer depth, and whether the link is up.
        behind = self.bus.latest("historian.forward.backlog_rows")
        if behind is not None and isinstance(behind.value, float):
            linked = self.bus.latest("historian.forward.connected")
            text += f"  forward: {behind.value:,.0f} behind"
            if linked is not None and not linked.value:
                text += " (offline)"
        return text

    # -- writes ---------------------------------------------------------------------------------------

    def _on_table_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        name = self.tag_browser.tag_at(index.row())
        menu = QMenu(self)
        action = menu.addAction("Write value…")
        menu.setToolTipsVisible(True)
        writable = name in self.bus.registry and self.bus.registry.by_name(name).writable
        # Before pressing: a viewer reads here that writing needs the operator role.
        why = refusal(self.alarm_feed.session, REQUIRED_ROLE[Action.WRITE])
        action.setEnabled(writable and not why)
        action.setToolTip(why)
        action.triggered.connect(lambda: self.open_write_dialog(name))
        trend = menu.addAction(f"Add to trend “{self.trend_tabs.tabText(self.trend_tabs.currentIndex())}”")
        trend.triggered.connect(lambda: self.add_pens(cast(TrendView, self.trend_tabs.currentWidget()), [name]))
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def open_write_dialog(self, name: str) -> WriteDialog | None:
        """The write dialog for a writable tag (None for others)."""
        if name not in self.bus.registry or not self.bus.registry.by_name(name).writable:
            return None
        self.write_dialog = WriteDialog(self.bus.registry.by_name(name), self.bus, self.alarm_feed, self)
        self.write_dialog.open()
        return self.write_dialog

    # -- pictures -------------------------------------------------------------------------------------

    def screenshot(self) -> QImage:
        """The window as the operator sees it, with the 3D view's OpenGL frame painted in
        (QWidget.grab() leaves an OpenGL area black)."""
        image = self.grab().toImage()
        if self.scene is not None and self.scene.isVisible():
            frame = self.scene.grab_frame()
            origin = self.scene.mapTo(self, QPoint(0, 0))
            painter = QPainter(image)
            painter.drawImage(origin, frame.scaled(self.scene.size()))
            painter.end()
        return image
