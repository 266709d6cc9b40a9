"""The tag browser on a live runtime: the OPC UA address space is browsed through the
runtime, configured nodes show their tag, and an unconfigured variable dropped on a trend
is watched as an ad-hoc tag whose values arrive and are drawn."""

from __future__ import annotations

from hmi.core.quality import Quality
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.ui.tag_browser import NODE_ROLE, suggested_tag_name


def find_child(model, parent_item, name: str):
    for row in range(parent_item.rowCount()):
        item = parent_item.child(row, 0)
        if item.text() == name:
            return item
    return None


def test_browse_the_plant_and_watch_an_unconfigured_node(qtbot, main_window_factory, live_runtime) -> None:
    """Objects/Plant/cnc01 lists its variables with their configured tags; the server's
    CurrentTime (configured nowhere) becomes a live ad-hoc pen when dropped on a trend."""
    mirror = BusMirror()
    client = IpcClient(live_runtime.stream, live_runtime.requests, mirror)
    window = main_window_factory(live_runtime.project, mirror, client, scene=False)
    client.start()
    browser = window.tag_browser
    model = browser.space_model
    qtbot.waitUntil(lambda: window.bus.latest("plant.connected") is not None
                    and window.bus.latest("plant.connected").value == 1.0, timeout=30000)  # fmt: skip
    browser.tabs.setCurrentIndex(1)  # the address space browses on first show
    root = model.invisibleRootItem()
    qtbot.waitUntil(lambda: find_child(model, root, "Plant") is not None, timeout=10000)
    plant = find_child(model, root, "Plant")
    browser.tree.expand(plant.index())
    qtbot.waitUntil(lambda: find_child(model, plant, "cnc01") is not None, timeout=10000)
    cnc = find_child(model, plant, "cnc01")
    browser.tree.expand(cnc.index())
    qtbot.waitUntil(lambda: find_child(model, cnc, "spindle_speed") is not None, timeout=10000)
    spindle = find_child(model, cnc, "spindle_speed").data(NODE_ROLE)
    assert spindle["node_class"] == "Variable" and spindle["data_type"] == "Double"
    assert spindle["tag"] == "cnc01.spindle_speed"
    assert spindle["path"] == ["Plant", "cnc01", "spindle_speed"]

    # The Server object's clock is configured nowhere: the runtime watches it on request.
    server = find_child(model, root, "Server")
    browser.tree.expand(server.index())
    qtbot.waitUntil(lambda: find_child(model, server, "ServerStatus") is not None, timeout=10000)
    status = find_child(model, server, "ServerStatus")
    browser.tree.expand(status.index())
    qtbot.waitUntil(lambda: find_child(model, status, "CurrentTime") is not None, timeout=10000)
    node = find_child(model, status, "CurrentTime").data(NODE_ROLE)
    assert node["tag"] is None
    view = window.trend
    before = len(view.pens)
    view.nodes_dropped.emit([node])
    name = suggested_tag_name("plant", node["path"])
    qtbot.waitUntil(lambda: len(view.pens) == before + 1, timeout=10000)
    assert view.pens[-1].spec.name == name == "plant.serverstatus_currenttime"
    qtbot.waitUntil(lambda: window.bus.latest(name) is not None and window.bus.latest(name).quality == Quality.GOOD,
                    timeout=10000)  # fmt: skip
    # Dropping a configured node adds its configured tag, not a copy.
    axis = find_child(model, cnc, "axis_x").data(NODE_ROLE)
    view.nodes_dropped.emit([axis])
    qtbot.waitUntil(lambda: view.pens[-1].spec.name == "cnc01.axis_x", timeout=5000)
    assert "plant.axis_x" not in window.bus.registry
    client.stop()


def test_suggested_names_are_tag_names() -> None:
    assert suggested_tag_name("plant", ["Plant", "cnc01", "spindle_speed"]) == "plant.cnc01_spindle_speed"
    assert suggested_tag_name("Line 2", ["9 Pressure (bar)"]) == "line_2.n_9_pressure_bar"


def test_browsed_variables_show_their_engineering_units_and_range(qtbot) -> None:
    """A variable's EngineeringUnits and EURange, as the runtime's browse reply carries them,
    show in the address space's "Unit / range" column; a variable without them shows nothing."""
    from dataclasses import replace

    from hmi.core.bus import TagBus
    from hmi.runtime import _browse_json
    from hmi.sources.opcua import BrowseEntry
    from hmi.ui.tag_browser import AddressSpaceModel, TagBrowser

    speed = BrowseEntry("ns=2;s=speed", "2:speed", "speed", "Variable", "Double", value=10.0, eu_unit="rpm")
    entries = [replace(speed, eu_range=(0.0, 6000.0)), BrowseEntry("ns=2;s=n", "2:n", "n", "Variable", "Int32")]

    def send(command, on_reply) -> None:  # the runtime's answer to `browse`, built as the runtime builds it
        on_reply({"ok": True, "nodes": [_browse_json(e, None) for e in entries]})

    browser = TagBrowser(TagBus(), ["plc"], send)
    qtbot.addWidget(browser)
    browser.refresh_address_space()
    column = AddressSpaceModel.COLUMNS.index("Unit / range")
    root = browser.space_model.invisibleRootItem()
    assert root.child(0, column).text() == "rpm, 0 … 6000"
    assert root.child(1, column).text() == ""
