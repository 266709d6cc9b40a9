"""What the window costs while parts of it are hidden: a hidden 3D view draws nothing (and the
operator's choice is kept), a hidden machines dock updates no tile and catches up when shown,
a hidden trend is not refreshed. The demo project's main window, fed through its local bus."""

from __future__ import annotations

from hmi.config import load_project
from hmi.core.samples import SampleBatch, now_ns
from hmi.ipc.mirror import BusMirror
from hmi.ui.main_window import MainWindow
from tests.helpers import DEMO_PROJECT


def publish(window: MainWindow, values: dict[str, float]) -> None:
    registry = window.bus.registry
    ids = [registry.id_of(name) for name in values]
    window.bus.publish(SampleBatch.from_arrays(ids, now_ns(), list(values.values())))


def open_demo(qtbot, main_window_factory) -> MainWindow:  # type: ignore[no-untyped-def]
    window = main_window_factory(load_project(DEMO_PROJECT), BusMirror())
    qtbot.waitExposed(window)
    return window


def test_a_hidden_3d_view_draws_nothing_and_stays_hidden(qtbot, main_window_factory) -> None:  # type: ignore[no-untyped-def]
    """View > 3D view off: the spindle keeps turning on the bus but not one frame is drawn,
    and the next window on this project opens with the view hidden and the chosen motion rate."""
    window = open_demo(qtbot, main_window_factory)
    scene = window.scene
    qtbot.waitUntil(lambda: scene.status("cnc01")[0] == "ready", timeout=30_000)
    publish(window, {"cnc01.spindle_speed": 6000.0})
    qtbot.waitUntil(lambda: scene.renders > 0, timeout=5_000)
    window.motion_actions[5.0].trigger()  # View > 3D motion rate > 5 frames/s
    assert scene.motion_fps == 5.0 and window.motion_actions[5.0].isChecked()
    window.scene_action.trigger()  # the operator unticks View > 3D view
    assert not scene.isVisible() and window.scene_off.isVisible()
    renders = scene.renders
    for k in range(10):
        publish(window, {"cnc01.spindle_speed": 6000.0 + k, "cnc01.axis_x": float(k)})
        qtbot.wait(50)
    assert scene.renders == renders, "hidden, the 3D view draws nothing"
    assert not scene._timer.isActive()

    again = open_demo(qtbot, main_window_factory)
    assert not again.scene.isVisible() and not again.scene_action.isChecked()
    assert again.scene.motion_fps == 5.0 and again.motion_actions[5.0].isChecked()
    again.scene_action.trigger()
    assert again.scene.isVisible() and not again.scene_off.isVisible()


def test_a_hidden_machines_dock_updates_no_tile_and_catches_up(qtbot, main_window_factory) -> None:  # type: ignore[no-untyped-def]
    """Tiles are not touched while their dock is hidden; shown again they read the latest value at once."""
    window = open_demo(qtbot, main_window_factory)
    tile = window.overview.tiles["cnc01"].values[0].value_label
    publish(window, {"cnc01.spindle_speed": 1000.0})
    qtbot.waitUntil(lambda: tile.text() == "1 000", timeout=3_000)
    window.docks["machines"].hide()
    publish(window, {"cnc01.spindle_speed": 2000.0})
    qtbot.wait(1200)  # more than two ticks of the 2 Hz tile timer
    assert tile.text() == "1 000", "a hidden tile is not updated"
    window.docks["machines"].show()
    qtbot.waitUntil(lambda: tile.text() == "2 000", timeout=200)


def test_a_hidden_trend_is_not_refreshed(qtbot, main_window_factory) -> None:  # type: ignore[no-untyped-def]
    """With the Trends dock closed, the trend timer draws no trend; reopened, it draws again."""
    window = open_demo(qtbot, main_window_factory)
    trend = window.trend
    drawn: list[bool] = []
    refresh = trend.refresh
    trend.refresh = lambda now_s=None: drawn.append(refresh(now_s)) or drawn[-1]  # type: ignore[method-assign]
    qtbot.waitUntil(lambda: len(drawn) > 3, timeout=3_000)
    window.docks["trends"].toggleViewAction().trigger()  # View > Trends off
    assert not trend.isVisible()
    count = len(drawn)
    publish(window, {"cnc01.spindle_speed": 1500.0})
    qtbot.wait(500)
    assert len(drawn) == count, "a trend nobody sees is not refreshed"
    window.docks["trends"].toggleViewAction().trigger()
    qtbot.waitUntil(lambda: len(drawn) > count, timeout=2_000)
