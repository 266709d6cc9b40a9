"""Fixtures for window tests: a live runtime (real plant, real runtime processes) to attach to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hmi.config import Project, load_project
from tests.helpers import free_port, hmi_process, stop_process, wait_for_port, write_demo_project


@dataclass
class LiveRuntime:
    project: Project
    project_path: Path
    stream: str
    requests: str
    processes: dict


@pytest.fixture
def live_runtime(tmp_path: Path) -> Iterator[LiveRuntime]:
    """`hmi sim` (all five demo machines) and `hmi run --headless` as real processes on free ports."""
    opcua, stream, requests = free_port(), free_port(), free_port()
    path = write_demo_project(tmp_path, opcua, stream_port=stream, request_port=requests)
    sim = hmi_process("sim", "--opcua-port", str(opcua), "--rate", "20", "--speed", "5")
    runtime = hmi_process("run", "--project", str(path), "--headless")
    try:
        wait_for_port(opcua)
        wait_for_port(requests)
        yield LiveRuntime(load_project(path), path, f"tcp://127.0.0.1:{stream}", f"tcp://127.0.0.1:{requests}",
                          {"sim": sim, "runtime": runtime})  # fmt: skip
    finally:
        stop_process(runtime)
        stop_process(sim)


@pytest.fixture(autouse=True)
def _collect_on_the_gui_thread(qapp, request):
    """As in the window process (hmi/ui/gc_guard.py): a worker thread of a window under test
    must never collect a cycle holding Qt objects (a deadlock seen in the suite); what the
    test left is collected here, on the GUI thread."""
    import gc

    from hmi.ui.gc_guard import GuiThreadCollector

    if request.node.get_closest_marker("automatic_gc"):
        yield
        return
    collector = GuiThreadCollector()
    yield
    collector.stop()
    gc.collect()


def dispose_widget(widget) -> None:
    """Close and delete a window now (see main_window_factory for why)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    widget.close()
    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def main_window_factory(qapp):
    """Build MainWindows (theme applied, shown) and dispose of them at teardown: closed and
    deleted at once, because a native VTK window still alive when pytest-xvfb stops the X
    server makes Xlib exit the test process."""
    from hmi.ui.main_window import MainWindow
    from hmi.ui.theme import apply_theme

    windows: list[MainWindow] = []

    def make(project, mirror, *args, **kwargs) -> MainWindow:
        apply_theme(qapp)
        kwargs.setdefault("sound_player", lambda: None)
        window = MainWindow(project, mirror, *args, **kwargs)
        windows.append(window)
        window.show()
        return window

    yield make
    for window in windows:
        dispose_widget(window)


@pytest.fixture(scope="session", autouse=True)
def _no_native_windows_left_at_exit():
    """Safety net: whatever window a test left open is closed and deleted before
    pytest-xvfb stops the X server (a live VTK window would make Xlib kill the process)."""
    yield
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    import shiboken6

    for widget in QApplication.topLevelWidgets():
        if shiboken6.isValid(widget):  # deleting one may have deleted others
            dispose_widget(widget)
