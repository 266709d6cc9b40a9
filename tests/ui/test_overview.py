"""Machine tiles: key values, calm when normal, marked when stale or in alarm."""

from __future__ import annotations

from PySide6.QtCore import Qt

from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType, TagRegistry, TagSpec
from hmi.ui.overview import MachineOverview, key_specs_for

SPECS = [
    TagSpec("cnc01.spindle_speed", "rpm"),
    TagSpec("cnc01.tool_temperature", "°C"),
    TagSpec("cnc01.program_name", datatype=DataType.STRING),
    TagSpec("pump01.flow", "m³/h"),
]


def make(qtbot):
    bus = TagBus(TagRegistry(SPECS))
    machines = {
        "cnc01": ("CNC mill 1", key_specs_for("cnc01", SPECS)),
        "pump01": ("Pump 1", key_specs_for("pump01", SPECS)),
    }
    overview = MachineOverview(machines, bus)
    qtbot.addWidget(overview)
    return bus, overview


def test_key_values_default_to_the_machines_numeric_tags() -> None:
    assert [s.name for s in key_specs_for("cnc01", SPECS)] == ["cnc01.spindle_speed", "cnc01.tool_temperature"]
    assert [s.name for s in key_specs_for("cnc01", SPECS, ["cnc01.program_name"])] == ["cnc01.program_name"]


def test_tiles_show_values_and_stale_state(qtbot) -> None:
    """A tile shows its values and says 'normal'; when data goes COMM_LOST it says so."""
    bus, overview = make(qtbot)
    bus.publish(SampleBatch.from_arrays([0, 1, 3], [1, 1, 1], [11980.0, 41.5, 12.0]))
    overview.refresh()
    tile = overview.tiles["cnc01"]
    assert [v.value_label.text() for v in tile.values] == ["11 980", "41.50"]
    assert tile.state_label.text() == "normal"
    bus.publish(SampleBatch.from_arrays([0, 1], [2, 2], [11980.0, 41.5], Quality.COMM_LOST))
    overview.refresh()
    assert tile.state_label.text() == "COMM LOST"
    assert overview.tiles["pump01"].state_label.text() == "normal"


def test_alarm_marks_the_tile_and_click_selects(qtbot) -> None:
    bus, overview = make(qtbot)
    bus.publish(SampleBatch.from_arrays([0, 1], [1, 1], [1.0, 2.0]))
    overview.tiles["cnc01"].set_alarm("high")
    overview.refresh()
    assert overview.tiles["cnc01"].state_label.text() == "ALARM (high)"
    assert "#f08c1e" in overview.tiles["cnc01"].styleSheet()
    selected = []
    overview.machine_selected.connect(selected.append)
    qtbot.mouseClick(overview.tiles["pump01"], Qt.MouseButton.LeftButton)
    assert selected == ["pump01"] and overview.tiles["pump01"].selected
