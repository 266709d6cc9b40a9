"""The status bar shows the store-and-forward buffer ("forward: N behind", "(offline)" while
the central historian cannot be reached), from the historian.forward.* tags a real
forwarding writer publishes on the window's bus (in a plant, the runtime's, over IPC)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.config import load_project
from hmi.config.models import ForwardConfig
from hmi.historian import HistorianWriter
from hmi.ipc.mirror import BusMirror
from hmi.ui.main_window import MainWindow
from tests.helpers import DEMO_PROJECT
from tests.historian.conftest import grid_batch
from tests.pg import CentralDatabase

FAST = {"retry_initial_s": 0.05, "retry_max_s": 0.5, "status_interval_s": 0.1, "poll_s": 0.05}


@pytest.fixture
def window(qtbot, main_window_factory) -> MainWindow:
    win = main_window_factory(load_project(DEMO_PROJECT), BusMirror(), scene=False)
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def writers() -> Iterator[list[HistorianWriter]]:
    made: list[HistorianWriter] = []
    yield made
    for writer in made:
        writer.close()


def forwarding_writer(window: MainWindow, path: Path, config: ForwardConfig) -> HistorianWriter:
    writer = HistorianWriter(
        str(path), window.bus.registry, commit_interval_s=0.05, forward=config, forward_kwargs=FAST
    )
    writer.attach(window.bus)
    writer.start()
    return writer


def behind(window: MainWindow) -> int | None:
    found = re.search(r"forward: ([\d,]+) behind", window.historian_label.text())
    return None if found is None else int(found.group(1).replace(",", ""))


def test_an_unreachable_central_historian_shows_the_backlog_growing_and_offline(
    qtbot, window: MainWindow, writers: list[HistorianWriter], tmp_path: Path
) -> None:
    assert "forward" not in window.historian_label.text(), "nothing said before the tags exist"
    unreachable = ForwardConfig(url="postgresql://nobody@127.0.0.1:1/central", station="ws1")
    writer = forwarding_writer(window, tmp_path / "h.sqlite", unreachable)
    writers.append(writer)
    qtbot.waitUntil(lambda: "(offline)" in window.historian_label.text(), timeout=10_000)
    writer.submit(grid_batch(4, 0, 30))  # 120 samples recorded locally, none sent
    assert writer.flush()
    qtbot.waitUntil(lambda: (behind(window) or 0) >= 120, timeout=10_000)
    text = window.historian_label.text()
    assert text.startswith("historian: ") and "(offline)" in text


@pytest.mark.postgres
def test_a_connected_forwarder_shows_its_backlog_back_at_zero_and_not_offline(
    qtbot, window: MainWindow, writers: list[HistorianWriter], tmp_path: Path, central_db: CentralDatabase
) -> None:
    config = ForwardConfig(url=central_db.url, password_ref=central_db.password_ref, station="ws1")
    writer = forwarding_writer(window, tmp_path / "h.sqlite", config)
    writers.append(writer)
    writer.submit(grid_batch(4, 0, 30))
    assert writer.flush()
    assert writer.forwarder is not None and writer.forwarder.wait_caught_up(20)
    qtbot.waitUntil(lambda: behind(window) == 0, timeout=10_000)
    assert "(offline)" not in window.historian_label.text()
