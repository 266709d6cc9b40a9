"""`hmi replay` with a window: the main window in playback mode.

The replay feeds the window's local bus in-process (instead of the IPC mirror), so the
trends, tag table and every other view show the recording exactly as they show live data.
Opening happens on the replay thread; the window stays responsive and shows progress.

Without a project file the window shows the project the recording's runtime ran (the
historian records it with each session: hmi/historian/sessions.py), so machines, 3D models
and trend groups appear by themselves; the playback bar says where they come from and which
model file is missing. Motion in the 3D view follows the replay's clock, not the wall's.
"""

from __future__ import annotations

import logging
import sys

from PySide6.QtWidgets import QApplication

from hmi.config.models import Project
from hmi.historian.reader import HistorianReader, HistoryLookup, TimeRange, target_label
from hmi.ipc.mirror import BusMirror
from hmi.scene.animate import MAX_STEP_S
from hmi.sources.replay import MAX_SPEED, RecordingProject, ReplaySource, project_of_recording
from hmi.ui.app import finish_after, quit_on_signals
from hmi.ui.gc_guard import GuiThreadCollector
from hmi.ui.main_window import MainWindow
from hmi.ui.playback import PlaybackBar, PlaybackClock
from hmi.ui.theme import apply_theme

log = logging.getLogger(__name__)


class PlaybackSession:
    """A main window, its replay source and playback bar, wired together."""

    def __init__(self, db: str, time_range: TimeRange, project: Project | None, speed: float = 1.0) -> None:
        if project is None:
            # The session record, the tag list and one indexed lookup per tag for where the data
            # begins (milliseconds); the data itself loads on the replay thread.
            with HistorianReader(db) as reader:
                self.recorded = project_of_recording(
                    reader,
                    time_range.start_ns,
                    time_range.end_ns,
                    time_range.timezone,
                    f"Recording {target_label(str(db))}",
                )
        else:
            origin = f"project {project.source_path.name if project.source_path else project.project.name} (--project)"
            self.recorded = RecordingProject(project, origin)
        project = self.recorded.project
        self.project = project
        self.mirror = BusMirror()  # a local bus; nothing connects it to a runtime
        self.history = HistoryLookup(db)
        self.window = MainWindow(project, self.mirror, history=self.history)
        pens = [name for trend in project.trends for name in trend.pens]
        span = max((trend.span_s for trend in project.trends), default=0.0)
        self.source = ReplaySource(
            db,
            time_range.start_ns,
            time_range.end_ns,
            self.mirror.bus,
            speed=speed,
            history_tags=pens,
            history_s=span,
            autoplay=True,
        )
        # Replay thread: a jump must not leave samples of another time in the trend.
        self.source.on_seek(lambda _ts: self.window.trend_buffers.clear())
        self.bar = PlaybackBar(self.source, time_range.timezone, time_range.label)
        self.bar.set_project(self.recorded.origin, self.recorded.notes)
        self.bar.seeked.connect(self._on_bar_seeked)
        self.clock = PlaybackClock(self.source)
        if self.window.scene is not None:
            # Paused: still; 50x: fifty times faster. The clock caps its own wall gaps.
            self.window.scene.set_clock(self.clock, max_step_s=MAX_STEP_S * MAX_SPEED)
        self.window.enter_playback(self.bar, self.bar.replay_time_s)

    def start(self) -> None:
        self.source.start()

    def _on_bar_seeked(self) -> None:
        for trend in self.window.trends:
            for pen in trend.pens:
                pen.drawn_key = ()  # redraw even if nothing new arrived for this pen

    def close(self) -> None:
        self.source.close()


def run_replay_window(
    db: str,
    time_range: TimeRange,
    project: Project | None,
    speed: float = 1.0,
    screenshot: str | None = None,
    exit_after_s: float | None = None,
) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("HMI playback")
    apply_theme(app)
    collector = GuiThreadCollector(app)  # Qt objects in garbage cycles die on the GUI thread
    session = PlaybackSession(db, time_range, project, speed)
    session.window.show()
    session.start()

    heartbeat = quit_on_signals(app)
    finish_after(app, session.window, screenshot, exit_after_s, default_s=4.0)
    code = app.exec()
    heartbeat.stop()
    session.close()
    collector.stop()
    return int(code)
