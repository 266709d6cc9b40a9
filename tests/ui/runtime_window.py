"""The demo project's main window on an in-process runtime's command channel (real commands,
sessions, users and audit trail), as the window tests that log in and act use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hmi.config import load_project
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.ui.main_window import MainWindow
from tests.alarm_runtime import PASSWORD, InProcessRuntime
from tests.helpers import DEMO_PROJECT


@contextmanager
def window_on(qtbot: Any, main_window_factory: Callable[..., MainWindow], rt: InProcessRuntime) -> Iterator[MainWindow]:
    """The window (no 3D scene) shown and linked to `rt`; its IPC client stops on leaving."""
    mirror = BusMirror()
    client = IpcClient(rt.stream, rt.requests, mirror)
    window = main_window_factory(load_project(DEMO_PROJECT), mirror, client, scene=False)
    client.start()
    try:
        qtbot.waitExposed(window)
        qtbot.waitUntil(lambda: mirror.link_up, timeout=10000)
        yield window
    finally:
        client.stop()


def log_in(qtbot: Any, window: MainWindow, user: str, timeout_ms: int = 5000) -> None:
    window.alarm_feed.session.login(user, PASSWORD)
    qtbot.waitUntil(lambda: window.alarm_feed.session.user == user, timeout=timeout_ms)
