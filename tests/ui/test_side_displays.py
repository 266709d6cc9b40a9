"""Side displays tell the truth: a tag that never had a value reads "no data", not COMM LOST
(a tag whose source is gone still reads COMM LOST); the part-pick readout follows its tags;
the advisories tab carries its count."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import Qt

from hmi.config import load_project
from hmi.core.alarms import AlarmDefinition, AlarmEngine, Condition, Priority
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagRegistry, TagSpec
from hmi.ipc.mirror import BusMirror
from hmi.ui.main_window import MainWindow
from hmi.ui.tag_table import COL_QUALITY, COL_VALUE, TagTableModel
from tests.helpers import DEMO_PROJECT

SPECS = [TagSpec("pump01.flow", "m³/h"), TagSpec("pump01.twin.anomaly_score")]


def cell(model: TagTableModel, row: int, col: int) -> str:
    return str(model.index(row, col).data() or "")


def test_a_tag_that_never_had_a_value_reads_no_data_and_a_lost_source_reads_comm_lost() -> None:
    """The twin's score, not derived yet, says "no data" without the stale styling; the flow,
    whose source lost communication, says COMM LOST and keeps its last value."""
    bus = TagBus(TagRegistry(SPECS))
    model = TagTableModel(bus)
    model.refresh()
    bus.publish(SampleBatch.from_arrays([0], [now_ns()], [42.0]))
    bus.publish(SampleBatch.from_arrays([0], [now_ns()], [42.0], Quality.COMM_LOST))
    assert cell(model, 1, COL_QUALITY) == "no data"
    assert cell(model, 1, COL_VALUE) == ""
    assert model.index(1, COL_QUALITY).data(Qt.ItemDataRole.BackgroundRole) is None  # calm: no stale colour
    assert model.index(1, COL_VALUE).data(Qt.ItemDataRole.ForegroundRole) is None
    assert cell(model, 0, COL_QUALITY) == "COMM LOST"
    assert cell(model, 0, COL_VALUE).startswith("42")


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(list(Quality)), st.floats(allow_nan=True, allow_infinity=False, width=32))
def test_a_published_sample_never_reads_no_data(quality: Quality, value: float) -> None:
    """Whatever a source published (any quality, a NaN placeholder too), the table names its
    quality: "no data" is only for a tag nothing was ever published for."""
    bus = TagBus(TagRegistry(SPECS))
    model = TagTableModel(bus)
    model.refresh()
    bus.publish(SampleBatch.from_arrays([1], [now_ns()], [value], quality))
    label = cell(model, 1, COL_QUALITY)
    assert label != "no data"
    assert label == {Quality.GOOD: "GOOD", Quality.UNCERTAIN: "UNCERTAIN", Quality.BAD: "BAD",
                     Quality.COMM_LOST: "COMM LOST"}[quality]  # fmt: skip


@pytest.fixture
def demo(qtbot, main_window_factory) -> MainWindow:
    window = main_window_factory(load_project(DEMO_PROJECT), BusMirror())
    qtbot.waitExposed(window)
    return window


def publish(window: MainWindow, values: dict[str, float]) -> None:
    ids = [window.bus.registry.id_of(name) for name in values]
    window.bus.publish(SampleBatch.from_arrays(ids, now_ns(), list(values.values())))


def test_the_pick_readout_follows_the_tags_of_the_picked_part(qtbot, demo: MainWindow) -> None:
    """Pick a part, then its tag changes: the readout above the 3D view shows the new value
    within a refresh, without picking again."""
    publish(demo, {"cnc01.tool_temperature": 46.5})
    assert demo.scene is not None
    demo.scene.part_picked.emit("cnc01", "spindle", ["cnc01.tool_temperature"])
    assert "= 46.5 °C" in demo.picked_label.text()
    publish(demo, {"cnc01.tool_temperature": 71.25})
    qtbot.waitUntil(lambda: "= 71.2" in demo.picked_label.text(), timeout=2000)
    assert "46.5" not in demo.picked_label.text()


def test_the_advisories_tab_shows_how_many_need_attention(qtbot, demo: MainWindow) -> None:
    """The dock's tab reads "Advisories (N)", N the advisories needing attention, like the alarm counts."""
    dock = demo.docks["advisories"]
    qtbot.waitUntil(lambda: dock.windowTitle() == "Advisories (0)", timeout=2000)
    # Two advisories raised by a real engine, handed over as the runtime's snapshot is.
    names = ["pump01.advisory.cavitation", "cnc01.advisory.tool_wear"]
    registry = TagRegistry([TagSpec("pump01.x"), TagSpec("cnc01.y")])
    definitions = [
        AlarmDefinition(name, tag, Condition.HI, Priority.MEDIUM, limit=1.0)
        for name, tag in zip(names, ["pump01.x", "cnc01.y"], strict=True)
    ]
    engine = AlarmEngine(definitions, registry)
    engine.evaluate(SampleBatch.from_arrays([0, 1], now_ns(), [5.0, 5.0]))
    snapshot = {"ok": True, "epoch": engine.epoch, "alarms": [s.to_json() for s in engine.statuses()]}
    demo.advisory_panel.advisories.apply_snapshot(snapshot)
    qtbot.waitUntil(lambda: dock.windowTitle() == "Advisories (2)", timeout=2000)
