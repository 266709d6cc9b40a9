"""The main window on a live runtime: table values, trend points, runtime loss, screenshot."""

from __future__ import annotations

import numpy as np
import pytest

from hmi.core.quality import Quality
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.ui.main_window import MainWindow
from hmi.ui.tag_table import COL_QUALITY, COL_TAG, COL_VALUE
from tests.helpers import ARTIFACTS


@pytest.fixture
def window(main_window_factory, live_runtime):
    mirror = BusMirror()
    client = IpcClient(live_runtime.stream, live_runtime.requests, mirror)
    win = main_window_factory(live_runtime.project, mirror, client)
    client.start()
    yield win
    client.stop()


def table_row(win: MainWindow, tag: str) -> dict[str, str]:
    model = win.table_model
    for row in range(model.rowCount()):
        if model.index(row, COL_TAG).data() == tag:
            return {
                "value": model.index(row, COL_VALUE).data(),
                "quality": model.index(row, COL_QUALITY).data(),
            }
    return {}


def test_table_shows_live_values_and_trend_has_points(qtbot, window) -> None:
    """The tag table shows GOOD CNC values, the trend draws points, and a screenshot is saved."""
    qtbot.waitUntil(lambda: table_row(window, "cnc01.tool_temperature").get("quality") == "GOOD", timeout=20000)
    qtbot.waitUntil(lambda: table_row(window, "cnc01.program_name").get("value") == "O1001 POCKET", timeout=10000)
    temperature = float(table_row(window, "cnc01.tool_temperature")["value"])
    assert 15.0 < temperature < 120.0
    tag_id = window.bus.registry.id_of("cnc01.tool_temperature")
    qtbot.waitUntil(lambda: window.trend.curve_data(tag_id)[0].shape[0] > 20, timeout=10000)
    x, y = window.trend.curve_data(tag_id)
    assert np.all(np.diff(x) >= 0), "trend points out of time order"
    assert np.nanmin(y) > 15.0
    assert "Runtime connected" in window.banner.text()
    # The status bar's texts refresh once a second (main_window.STATUS_PERIOD_S).
    qtbot.waitUntil(lambda: "plant: connected" in window.connection_label.text(), timeout=3000)
    # All five machines are live: every tile leaves "no data" for "normal".
    qtbot.waitUntil(
        lambda: (
            (window.overview.refresh() or True)
            and all(tile.state == "normal" for tile in window.overview.tiles.values())
        ),
        timeout=20000,
    )
    assert len(window.overview.tiles) == 5
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.screenshot().save(str(ARTIFACTS / "main_window.png"))


def test_banner_and_values_turn_stale_when_the_runtime_dies(qtbot, window, live_runtime) -> None:
    """Killing the runtime: within about a second the banner says so and every value shows COMM LOST."""
    qtbot.waitUntil(lambda: table_row(window, "cnc01.axis_z").get("quality") == "GOOD", timeout=20000)
    live_runtime.processes["runtime"].kill()
    qtbot.waitUntil(lambda: "RUNTIME NOT RESPONDING" in window.banner.text(), timeout=3000)
    qtbot.waitUntil(lambda: table_row(window, "cnc01.axis_z").get("quality") == "COMM LOST", timeout=2000)
    assert window.bus.latest("cnc01.tool_temperature").quality == Quality.COMM_LOST
    ARTIFACTS.mkdir(exist_ok=True)
    window.grab().save(str(ARTIFACTS / "main_window_runtime_lost.png"))
