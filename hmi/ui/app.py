"""The window process: Qt application, qasync loop, IPC client, main window."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import qasync
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget

from hmi.config.models import Project
from hmi.gcfreeze import FREEZE_AFTER_START_S, freeze_startup_objects
from hmi.historian.reader import HistoryLookup
from hmi.ipc.client import IpcClient
from hmi.ipc.curve import CurveClient
from hmi.ipc.mirror import BusMirror
from hmi.ui.gc_guard import GuiThreadCollector
from hmi.ui.main_window import MainWindow
from hmi.ui.theme import apply_theme

log = logging.getLogger(__name__)


def quit_on_signals(app: QApplication) -> QTimer:
    """SIGINT/SIGTERM close the application cleanly. Keep the returned timer alive."""
    # Qt's loop does not run Python signal handlers by itself; a short timer lets them in,
    # so the supervisor's SIGTERM closes the window cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: app.quit())
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(200)
    return heartbeat


def finish_after(
    app: QApplication, window: QWidget, screenshot: str | None, exit_after_s: float | None, default_s: float
) -> None:
    """With `screenshot`, save one of `window` after `exit_after_s` (or `default_s`) and quit;
    else quit after `exit_after_s` if given."""
    if screenshot:

        def save_and_quit() -> None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            # The main window composes its 3D view in (grab() leaves OpenGL areas black).
            picture = window.screenshot() if hasattr(window, "screenshot") else window.grab()
            picture.save(screenshot)
            log.info("screenshot saved to %s", screenshot)
            app.quit()

        QTimer.singleShot(int((exit_after_s or default_s) * 1000), save_and_quit)
    elif exit_after_s is not None:
        QTimer.singleShot(int(exit_after_s * 1000), app.quit)


def run_window(
    project: Project,
    stream_address: str,
    request_address: str,
    screenshot: str | None = None,
    exit_after_s: float | None = None,
    machine: str | None = None,
    curve: CurveClient | None = None,
) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("HMI")
    apply_theme(app)
    collector = GuiThreadCollector(app)  # Qt objects in garbage cycles die on the GUI thread
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)

    mirror = BusMirror()
    client = IpcClient(stream_address, request_address, mirror, curve=curve)
    # Trends reach back into the runtime's historian file beyond their ring buffers (WAL
    # lets this reader run beside the runtime's writer), or into [historian] read_url.
    window = MainWindow(project, mirror, client, history=HistoryLookup(project.historian.read_target))
    if machine:
        window.show_machine(machine)
    window.show()
    client.start()
    # After the first frames: a full collection over Qt's wrappers and the models stalled frames.
    loop.call_later(FREEZE_AFTER_START_S, freeze_startup_objects)

    heartbeat = quit_on_signals(app)
    finish_after(app, window, screenshot, exit_after_s, default_s=6.0)

    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    heartbeat.stop()
    # Quitting (SIGTERM, --exit-after) does not close the window, so its closeEvent never ran:
    # stop the 3D view's loader and release OpenGL before Python tears Qt down.
    if window.scene is not None:
        window.scene.shutdown()
    client.stop()
    collector.stop()
    return 0
