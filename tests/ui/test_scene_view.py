"""SceneView with real VTK under Xvfb: demo models load, bound values move and colour the
parts, bad files show a message, and the view renders only as often as it must."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QPoint, Qt
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from hmi.config.bindings import BindingConfig, CameraPresetConfig
from hmi.config.loader import load_project
from hmi.core.alarms.model import Priority
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagSpec
from hmi.scene import probe as probe_module
from hmi.scene.probe import VerdictCache
from hmi.scene.transforms import rotation_about
from hmi.ui import theme
from hmi.ui.scene_view import SceneView
from tests.helpers import ARTIFACTS, REPO
from tests.scene.hostile import HOSTILE

MODELS = REPO / "models_glb"

# The demo machines with a binding of each kind, as a project file would bind them.
TAGS = [
    TagSpec("cnc01.spindle_speed", "rpm"),
    TagSpec("cnc01.axis_x", "mm"),
    TagSpec("cnc01.axis_y", "mm"),
    TagSpec("cnc01.axis_z", "mm"),
    TagSpec("cnc01.tool_temperature", "°C"),
    TagSpec("cnc01.vibration_spindle", "mm/s"),
    TagSpec("robot01.j1", "°"),
    TagSpec("robot01.j2", "°"),
    TagSpec("robot01.j3", "°"),
    TagSpec("conveyor01.belt_speed", "m/s"),
    TagSpec("pump01.speed", "rpm"),
    TagSpec("pump01.vibration", "mm/s"),
    TagSpec("cmm01.x", "mm"),
    TagSpec("cmm01.y", "mm"),
    TagSpec("cmm01.z", "mm"),
]


def b(machine: str, node: str, **actions: object) -> BindingConfig:
    return BindingConfig.model_validate({"machine": machine, "node": node, **actions})


BINDINGS = {
    "cnc01": (
        "cnc_mill",
        [
            b("cnc01", "Spindle", rotate={"tag": "cnc01.spindle_speed", "unit": "rpm"}),
            b("cnc01", "AxisX", translate={"tag": "cnc01.axis_x", "axis": "x", "scale": 0.001, "offset": -0.1}),
            b("cnc01", "AxisY", translate={"tag": "cnc01.axis_y", "axis": "y", "scale": -0.001, "offset": 0.06}),
            b("cnc01", "AxisZ", translate={"tag": "cnc01.axis_z", "axis": "z", "scale": 0.001}),
            b(
                "cnc01",
                "SpindleHead",
                alarm_colour=True,
                label={"tag": "cnc01.tool_temperature", "offset": [0.0, 0.45, 0.0]},
                shake={"tag": "cnc01.vibration_spindle", "above": 20},
            ),
        ],
    ),
    "robot01": (
        "robot_arm",
        [
            b("robot01", "Joint1", rotate={"tag": "robot01.j1", "axis": "z"}),
            b("robot01", "Joint2", rotate={"tag": "robot01.j2", "axis": "y"}),
            b("robot01", "Joint3", rotate={"tag": "robot01.j3", "axis": "y"}, alarm_colour=True),
        ],
    ),
    "conveyor01": (
        "conveyor",
        [
            b("conveyor01", "Items", translate={"tag": "conveyor01.belt_speed", "mode": "speed", "wrap": 2.6}),
            b("conveyor01", "BeltCleats", translate={"tag": "conveyor01.belt_speed", "mode": "speed", "wrap": 0.25}),
        ]
        + [
            b(
                "conveyor01",
                f"Roller{i}",
                rotate={"tag": "conveyor01.belt_speed", "unit": "deg/s", "axis": "y", "scale": 1364},
            )
            for i in range(1, 10)
        ],
    ),
    "pump01": (
        "pump",
        [
            b("pump01", "Impeller", rotate={"tag": "pump01.speed", "unit": "rpm", "axis": "x"}),
            b("pump01", "Coupling", rotate={"tag": "pump01.speed", "unit": "rpm", "axis": "x"}),
            b("pump01", "Motor", shake={"tag": "pump01.vibration", "above": 7.1}, alarm_colour=True),
        ],
    ),
    "cmm01": (
        "cmm",
        [
            b("cmm01", "Bridge", translate={"tag": "cmm01.y", "axis": "y", "scale": 0.001}),
            b("cmm01", "Carriage", translate={"tag": "cmm01.x", "axis": "x", "scale": 0.001}),
            b("cmm01", "Quill", translate={"tag": "cmm01.z", "axis": "z", "scale": 0.001}),
            b("cmm01", "Probe", label={"tag": "cmm01.z", "format": "Z {value} {unit}"}),
        ],
    ),
}


@pytest.fixture(scope="session")
def probe_cache(tmp_path_factory: pytest.TempPathFactory) -> VerdictCache:
    """One verdict cache for the session: each model is probed once, not once per test."""
    return VerdictCache(tmp_path_factory.mktemp("probe") / "verdicts.json")


@pytest.fixture
def bus() -> TagBus:
    bus = TagBus()
    bus.register(TAGS)
    return bus


def dispose(widget: SceneView) -> None:
    """Shut the view down and delete it now: a native VTK window still alive when
    pytest-xvfb stops the X server makes Xlib exit the test process with status 1."""
    widget.shutdown()
    widget.close()
    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def view(qtbot: QtBot, bus: TagBus, probe_cache: VerdictCache) -> Iterator[SceneView]:
    widget = SceneView(bus, cache=probe_cache)
    widget.resize(760, 520)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    dispose(widget)


def publish(bus: TagBus, values: dict[str, float], quality: Quality = Quality.GOOD) -> None:
    ids = [bus.registry.id_of(tag) for tag in values]
    bus.publish(SampleBatch.from_arrays(ids, time.time_ns(), list(values.values()), quality))


def load(qtbot: QtBot, view: SceneView, machine: str, path: Path | None = None, **kwargs: object) -> None:
    model, bindings = BINDINGS.get(machine, ("", []))
    with qtbot.waitSignal(view.model_loaded, timeout=30_000):
        view.add_machine(machine, path or MODELS / f"{model}.glb", bindings, label=machine, **kwargs)  # type: ignore[arg-type]
    view.show_machine(machine)


def wait_for_render(qtbot: QtBot, view: SceneView) -> None:
    """Wait for a frame drawn after this call (asking for one, as an expose event would)."""
    before = view.renders
    view._dirty = True
    qtbot.waitUntil(lambda: view.renders > before, timeout=5_000)


def save_artifact(view: SceneView, name: str) -> Path:
    folder = ARTIFACTS / "scene"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert view.grab_frame().save(str(path))
    return path


def rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


DEMO_VALUES = {
    "cnc01": {"cnc01.spindle_speed": 8000, "cnc01.axis_x": 160, "cnc01.axis_y": 60, "cnc01.axis_z": -120,
              "cnc01.tool_temperature": 46.5, "cnc01.vibration_spindle": 3},
    "robot01": {"robot01.j1": 30, "robot01.j2": 25, "robot01.j3": -30},
    "conveyor01": {"conveyor01.belt_speed": 0.4},
    "pump01": {"pump01.speed": 1480, "pump01.vibration": 2.0},
    "cmm01": {"cmm01.x": 120, "cmm01.y": 350, "cmm01.z": -260},
}  # fmt: skip


@pytest.mark.parametrize("machine", sorted(BINDINGS))
def test_each_demo_model_loads_and_is_shown(qtbot: QtBot, view: SceneView, bus: TagBus, machine: str) -> None:
    """Each demo model loads with all its parts and bindings; a screenshot is saved to look at."""
    load(qtbot, view, machine)
    state, message = view.status(machine)
    assert state == "ready", message
    assert view.status_text(machine) == "", "every binding found its node"
    publish(bus, DEMO_VALUES[machine])
    wait_for_render(qtbot, view)
    qtbot.wait(200)
    path = save_artifact(view, machine)
    image = view.grab_frame()
    assert image.width() == view.vtk_widget.width() and not image.isNull()
    pixels = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(pixels) > 50, f"{path} looks empty"


def test_a_tag_change_turns_the_bound_node(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """Joint2's actor turns by the tag's angle about its pivot, and Joint3 is carried along."""
    load(qtbot, view, "robot01")
    publish(bus, {"robot01.j1": 0, "robot01.j2": 0, "robot01.j3": 0})
    wait_for_render(qtbot, view)
    joint2_rest = view.node_matrix("robot01", "Joint2")
    joint3_rest = view.node_matrix("robot01", "Joint3")
    publish(bus, {"robot01.j2": 40.0})
    qtbot.waitUntil(lambda: not np.allclose(view.node_matrix("robot01", "Joint2"), joint2_rest), timeout=5_000)
    expected = joint2_rest @ rotation_about("y", math.radians(40.0))
    assert np.allclose(view.node_matrix("robot01", "Joint2"), expected, atol=1e-9)
    assert np.allclose(view.node_matrix("robot01", "Joint2")[:3, 3], joint2_rest[:3, 3])  # turns about its pivot
    assert not np.allclose(view.node_matrix("robot01", "Joint3")[:3, 3], joint3_rest[:3, 3], atol=1e-3)


def test_a_translate_binding_moves_the_node(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """The CMM bridge slides along its axis by value times scale; the carriage rides with it."""
    load(qtbot, view, "cmm01")
    publish(bus, {"cmm01.x": 0, "cmm01.y": 0, "cmm01.z": 0})
    wait_for_render(qtbot, view)
    bridge0 = view.node_matrix("cmm01", "Bridge")[:3, 3]
    carriage0 = view.node_matrix("cmm01", "Carriage")[:3, 3]
    publish(bus, {"cmm01.y": 250.0})
    qtbot.waitUntil(lambda: not np.allclose(view.node_matrix("cmm01", "Bridge")[:3, 3], bridge0), timeout=5_000)
    # Machine +y is world -z (the model stands Z-up under a root turned to glTF's Y-up).
    assert view.node_matrix("cmm01", "Bridge")[:3, 3] - bridge0 == pytest.approx([0, 0, -0.25], abs=1e-9)
    assert view.node_matrix("cmm01", "Carriage")[:3, 3] - carriage0 == pytest.approx([0, 0, -0.25], abs=1e-9)


def test_an_alarm_turns_the_part_colour(qtbot: QtBot, view: SceneView) -> None:
    """The machine's alarm priority colours the bound part; clearing it restores the part's own colour."""
    load(qtbot, view, "cnc01")
    wait_for_render(qtbot, view)
    own = view.node_colour("cnc01", "SpindleHead")
    assert own != pytest.approx(rgb(theme.ALARM_URGENT))
    view.set_alarm_state("cnc01", "urgent")
    qtbot.waitUntil(lambda: view.node_colour("cnc01", "SpindleHead") == pytest.approx(rgb(theme.ALARM_URGENT)))
    assert view.node_colour("cnc01", "Spindle") == pytest.approx(rgb(theme.ALARM_URGENT)), "its children too"
    assert view.node_colour("cnc01", "Base") != pytest.approx(rgb(theme.ALARM_URGENT)), "only the bound part"
    save_artifact(view, "cnc01_alarm_urgent")
    view.set_alarm_state("cnc01", Priority.MEDIUM)
    qtbot.waitUntil(lambda: view.node_colour("cnc01", "SpindleHead") == pytest.approx(rgb(theme.ALARM_MEDIUM)))
    view.set_alarm_state("cnc01", None)
    qtbot.waitUntil(lambda: view.node_colour("cnc01", "SpindleHead") == pytest.approx(own))


def test_a_corrupt_glb_shows_the_message_and_nothing_else_breaks(
    qtbot: QtBot, view: SceneView, bus: TagBus, tmp_path: Path
) -> None:
    """A truncated model shows why it is not shown over a placeholder; the other machine still animates."""
    load(qtbot, view, "robot01")
    good = (MODELS / "cnc_mill.glb").read_bytes()
    broken = tmp_path / "broken.glb"
    broken.write_bytes(good[: len(good) // 2])
    load(qtbot, view, "cnc02", broken)
    state, message = view.status("cnc02")
    assert state == "failed"
    assert (
        message == f"invalid model file: the file is truncated: {len(good) // 2} bytes, the header declares {len(good)}"
    )
    wait_for_render(qtbot, view)
    text = view.overlay_text("cnc02")
    assert "cnc02: 3D model not shown" in text and "truncated" in text and "broken.glb" in text
    save_artifact(view, "corrupt_model")
    view.show_machine("robot01")
    publish(bus, {"robot01.j1": 10.0})
    before = view.node_matrix("robot01", "Joint1").copy()
    publish(bus, {"robot01.j1": 50.0})
    qtbot.waitUntil(lambda: not np.allclose(view.node_matrix("robot01", "Joint1"), before), timeout=5_000)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "invalid model file: cannot read nowhere.glb: No such file or directory"),
        ("hostile", "invalid model file: node 0 is its own ancestor (a cycle)"),
        ("unsupported", "unsupported: EXT_made_up; re-export the model without it"),
        ("none", "no 3D model is configured for this machine"),
    ],
)
def test_unusable_models_say_why(qtbot: QtBot, view: SceneView, tmp_path: Path, case: str, expected: str) -> None:
    """A missing, hostile or unsupported file, or none at all, is a readable message, never a crash."""
    path: Path | None
    if case == "missing":
        path = tmp_path / "nowhere.glb"
    elif case == "none":
        path = None
    else:
        path = tmp_path / f"{case}.glb"
        name = "two-node cycle" if case == "hostile" else "required extension unknown to VTK"
        path.write_bytes(HOSTILE[name][0])
    with qtbot.waitSignal(view.model_loaded, timeout=30_000) as signal:
        view.add_machine("m1", path, label="Machine 1")
    assert signal.args == ["m1", False, expected]
    assert view.status("m1")[0] == ("empty" if case == "none" else "failed")
    assert expected.split(":")[0] in view.overlay_text("m1")


def test_a_model_that_crashes_vtk_is_refused_by_the_probe(
    qtbot: QtBot, view: SceneView, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """If the probe child dies, the window shows the crash as a message and stays up."""
    crash = ["python3", "-c", "import os, signal, sys; sys.stdin.buffer.read(); os.kill(os.getpid(), signal.SIGSEGV)"]
    monkeypatch.setattr(probe_module, "probe_command", lambda render=False: crash)
    view.cache = VerdictCache(tmp_path / "cache.json")  # not the session's verdicts
    with qtbot.waitSignal(view.model_loaded, timeout=30_000) as signal:
        view.add_machine("m1", MODELS / "pump.glb", label="Pump")
    assert signal.args == ["m1", False, "VTK crashed importing this model (SIGSEGV); it is not loaded"]
    assert view.isVisible() and view.status("m1")[0] == "failed"


def test_the_render_cap_holds(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """Many value changes between two frame ticks make one render; no change makes none; the
    timer ticks at the configured rate."""
    load(qtbot, view, "cmm01")
    view.set_max_fps(12)
    assert view._timer.interval() == round(1000 / 12)
    view._timer.stop()  # drive the frames by hand: counts, not timing
    view._on_frame_timer()
    renders = view.renders
    for value in range(50):
        publish(bus, {"cmm01.x": float(value)})
    view._on_frame_timer()
    assert view.renders == renders + 1
    for _ in range(5):
        view._on_frame_timer()
    assert view.renders == renders + 1, "nothing changed, nothing drawn"
    publish(bus, {"cmm01.x": 99.0})
    view._on_frame_timer()
    view._on_frame_timer()
    assert view.renders == renders + 2


def turning(qtbot: QtBot, view: SceneView, bus: TagBus, motion_fps: float) -> None:
    """cnc01's spindle turning under the motion cap `motion_fps`; frames driven by hand."""
    load(qtbot, view, "cnc01")
    view.set_motion_fps(motion_fps)
    publish(bus, {"cnc01.spindle_speed": 1200})
    view._timer.stop()


def test_continuous_motion_renders_once_per_tick(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """With the motion cap at the frame rate, a turning spindle renders on every tick and
    never more often than the ticks."""
    turning(qtbot, view, bus, view.max_fps)
    view._on_frame_timer()
    start = view.renders
    for _ in range(10):
        view._on_frame_timer()
    assert view.renders == start + 10
    publish(bus, {"cnc01.spindle_speed": 0})
    view._on_frame_timer()
    stopped = view.renders
    for _ in range(5):
        view._on_frame_timer()
    assert view.renders == stopped


@pytest.mark.parametrize("motion_fps", [30.0, 10.0, 5.0, 2.0])
def test_continuous_motion_draws_at_the_motion_cap(
    qtbot: QtBot, view: SceneView, bus: TagBus, motion_fps: float
) -> None:
    """A spindle turning for 30 ticks of the 30 Hz frame timer (one second) draws
    motion_fps frames, not 30: the operator's cap for continuous motion."""
    turning(qtbot, view, bus, motion_fps)
    assert view.max_fps == 30
    view._on_frame_timer()
    start = view.renders
    for _ in range(30):
        view._on_frame_timer()
    assert view.renders - start == motion_fps


def test_camera_moves_draw_at_once_under_the_motion_cap(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """The cap is for motion: a camera move (or an expose) draws on the next tick even right
    after a motion frame, so dragging the view stays at the full frame rate."""
    turning(qtbot, view, bus, 2)
    view._on_frame_timer()
    view._on_frame_timer()  # a motion frame: the next motion frame is 15 ticks away
    for _ in range(3):
        before = view.renders
        view.set_camera_preset("Top")
        view._on_frame_timer()
        assert view.renders == before + 1


def test_an_idle_scene_draws_nothing_and_a_bound_change_draws_one(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """On the real frame timer: a still machine whose values do not change draws no frame in
    a second; one change of a bound tag draws exactly one."""
    load(qtbot, view, "cmm01")
    publish(bus, {"cmm01.x": 10.0, "cmm01.y": 20.0, "cmm01.z": -150.0})
    wait_for_render(qtbot, view)
    qtbot.wait(500)  # the label's text refresh (5 Hz) may still be due once
    renders, ticks = view.renders, view.ticks
    qtbot.wait(1000)
    assert view.ticks - ticks >= 10, "the frame timer ran"
    assert view.renders == renders, "nothing changed, nothing drawn"
    publish(bus, {"cmm01.x": 11.0})
    qtbot.waitUntil(lambda: view.renders == renders + 1, timeout=2_000)
    qtbot.wait(500)
    assert view.renders == renders + 1, "one change, one frame"


def test_a_paused_playback_clock_draws_no_motion(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """A turning spindle on a clock that stands still (paused playback) draws nothing more."""
    load(qtbot, view, "cnc01")
    now = [100.0]
    view.set_clock(lambda: now[0])
    view.set_motion_fps(view.max_fps)
    publish(bus, {"cnc01.spindle_speed": 1200})
    view._timer.stop()
    view._on_frame_timer()
    view._on_frame_timer()
    renders = view.renders
    for _ in range(10):
        view._on_frame_timer()
    assert view.renders == renders
    now[0] += 0.1
    view._on_frame_timer()
    assert view.renders == renders + 1


def test_a_hidden_view_does_not_render(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """While hidden the frame timer stops and nothing is drawn, however the values change."""
    load(qtbot, view, "cnc01")
    publish(bus, {"cnc01.spindle_speed": 3000})
    wait_for_render(qtbot, view)
    view.hide()
    renders, ticks = view.renders, view.ticks
    for k in range(20):
        publish(bus, {"cnc01.axis_x": float(k)})
        qtbot.wait(20)
    assert (view.renders, view.ticks) == (renders, ticks)
    view.show()
    wait_for_render(qtbot, view)


def test_labels_show_values_and_stale_quality(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """A label reads value and unit, and says COMM LOST when the source is gone."""
    load(qtbot, view, "cnc01")
    publish(bus, {"cnc01.tool_temperature": 46.5})
    qtbot.waitUntil(lambda: view.label_texts("cnc01") == ["tool_temperature: 46.50 °C"], timeout=5_000)
    publish(bus, {"cnc01.tool_temperature": 46.5}, Quality.COMM_LOST)
    qtbot.waitUntil(lambda: view.label_texts("cnc01") == ["tool_temperature: 46.50 °C  (COMM LOST)"], timeout=5_000)


def test_picking_a_part_emits_its_name_and_tags(qtbot: QtBot, view: SceneView, bus: TagBus) -> None:
    """A click on the spindle head emits the part's glTF name and its bound tags, and lists them in the view."""
    load(qtbot, view, "cnc01")
    publish(bus, DEMO_VALUES["cnc01"])
    wait_for_render(qtbot, view)
    scene = view._machines["cnc01"]
    actor = view.node_actors("cnc01", "SpindleHead")[0]
    bounds = actor.GetBounds()
    centre = ((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)
    scene.renderer.SetWorldPoint(*centre, 1.0)
    scene.renderer.WorldToDisplay()
    x, y, _ = scene.renderer.GetDisplayPoint()
    ratio = view.vtk_widget.devicePixelRatioF()
    where = QPoint(round(x / ratio), round(view.vtk_widget.height() - y / ratio))
    with qtbot.waitSignal(view.part_picked, timeout=5_000) as signal:
        QTest.mouseClick(view.vtk_widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, where)
    assert signal.args == ["cnc01", "SpindleHead", ["cnc01.vibration_spindle", "cnc01.tool_temperature"]]
    qtbot.waitUntil(lambda: "cnc01.tool_temperature: 46.50 °C" in scene.pick.GetInput())  # type: ignore[union-attr]
    save_artifact(view, "cnc01_picked")


def test_camera_presets_and_reset(qtbot: QtBot, view: SceneView) -> None:
    """Configured presets come first and reset goes back to them; the fitted views follow."""
    operator = CameraPresetConfig(
        machine="cnc01", name="Operator", position=(0.0, 1.7, -3.0), focal_point=(0.0, 1.0, 0.0)
    )
    load(qtbot, view, "cnc01", cameras=[operator])
    assert view.camera_presets() == ["Operator", "Iso", "Front", "Side", "Top"]
    camera = view._machines["cnc01"].renderer.GetActiveCamera()
    assert camera.GetPosition() == pytest.approx((0.0, 1.7, -3.0))
    view.set_camera_preset("Top")
    direction = np.array(camera.GetDirectionOfProjection())
    assert direction == pytest.approx([0, -1, 0], abs=0.01)
    view.reset_view()
    assert camera.GetPosition() == pytest.approx((0.0, 1.7, -3.0))
    with pytest.raises(KeyError):
        view.set_camera_preset("Nope")


def test_binding_problems_are_shown_in_the_view(qtbot: QtBot, view: SceneView) -> None:
    """A binding to a node the model does not have is named in the view; the rest still loads."""
    bindings = [b("m1", "Spindel", rotate={"tag": "cnc01.spindle_speed", "unit": "rpm"})]
    with qtbot.waitSignal(view.model_loaded, timeout=30_000):
        view.add_machine("m1", MODELS / "cnc_mill.glb", bindings)
    assert view.status("m1")[0] == "ready"
    assert view.status_text("m1") == "Bindings: node 'Spindel' is not in the model"


def test_a_known_model_loads_from_the_verdict_cache(qtbot: QtBot, bus: TagBus, tmp_path: Path) -> None:
    """The second view to load a model takes the cached probe verdict instead of a child process."""
    cache = VerdictCache(tmp_path / "cache.json")
    verdicts = []
    for _ in range(2):
        widget = SceneView(bus, cache=cache)
        widget.show()
        with qtbot.waitSignal(widget.model_loaded, timeout=30_000):
            widget.add_machine("pump01", MODELS / "pump.glb")
        check = widget._machines["pump01"].check
        assert check is not None and check.probe is not None
        verdicts.append(check.probe.cached)
        dispose(widget)
    assert verdicts == [False, True]


def test_label_text_changes_are_throttled_but_never_lost(
    qtbot: QtBot, view: SceneView, bus: TagBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between text refreshes a new value waits (the part still moves); it shows at the next refresh."""
    import hmi.ui.scene_view as scene_view

    monkeypatch.setattr(scene_view, "LABEL_TEXT_HZ", 0.1)  # one refresh per 10 s: no race with the clock
    load(qtbot, view, "cmm01")
    view.set_motion_fps(view.max_fps)  # every tick may draw motion: the text's own throttle is tested
    view._timer.stop()
    publish(bus, {"cmm01.z": -100.0})
    view._on_frame_timer()
    assert view.label_texts("cmm01") == ["Z -100.0 mm"]
    probe_before = view.node_matrix("cmm01", "Probe").copy()
    publish(bus, {"cmm01.z": -150.0})
    view._on_frame_timer()
    assert view.label_texts("cmm01") == ["Z -100.0 mm"], "the text waits for its next refresh"
    assert not np.allclose(view.node_matrix("cmm01", "Probe"), probe_before), "the part does not wait"
    renders = view.renders
    view._on_frame_timer()
    assert view.renders == renders, "nothing to draw until the refresh is due"
    view._machines["cmm01"].label_text_due = 0.0  # the refresh falls due
    view._on_frame_timer()
    assert view.label_texts("cmm01") == ["Z -150.0 mm"] and view.renders == renders + 1


def test_an_alarm_colours_the_part_its_tag_is_bound_to(qtbot: QtBot, probe_cache: VerdictCache) -> None:
    """With the demo project's bindings, a bearing-temperature alarm colours the casing (which holds the
    bearing frame) and not the motor; an alarm on a tag no part shows falls back to the motor."""
    project = load_project(REPO / "config" / "demo.toml")
    bus = TagBus()
    bus.register(project.tag_specs())
    widget = SceneView(bus, cache=probe_cache)
    widget.resize(760, 520)
    widget.show()
    qtbot.waitExposed(widget)
    try:
        with qtbot.waitSignal(widget.model_loaded, timeout=30_000):
            widget.add_machine("pump01", MODELS / "pump.glb", project.bindings, project.cameras, "pump01")
        wait_for_render(qtbot, widget)
        motor, casing = widget.node_colour("pump01", "Motor"), widget.node_colour("pump01", "Casing")
        high = pytest.approx(rgb(theme.ALARM_HIGH))
        widget.set_alarms("pump01", {"pump01.bearing_temperature": Priority.HIGH})
        qtbot.waitUntil(lambda: widget.node_colour("pump01", "Casing") == high, timeout=5_000)
        assert widget.node_colour("pump01", "Motor") == pytest.approx(motor), "not the motor"
        save_artifact(widget, "pump01_bearing_alarm")
        # Both bound parts alarm: each takes its own alarm's colour.
        widget.set_alarms("pump01", {"pump01.bearing_temperature": "high", "pump01.vibration_rms": "urgent"})
        qtbot.waitUntil(lambda: widget.node_colour("pump01", "Motor") == pytest.approx(rgb(theme.ALARM_URGENT)))
        assert widget.node_colour("pump01", "Casing") == high
        # Suction pressure is shown by no part: the machine's main part (alarm_colour) takes it.
        widget.set_alarms("pump01", {"pump01.suction_pressure": Priority.MEDIUM})
        qtbot.waitUntil(lambda: widget.node_colour("pump01", "Motor") == pytest.approx(rgb(theme.ALARM_MEDIUM)))
        assert widget.node_colour("pump01", "Casing") == pytest.approx(casing), "the casing's own colour is back"
        widget.set_alarms("pump01", {})
        qtbot.waitUntil(lambda: widget.node_colour("pump01", "Motor") == pytest.approx(motor), timeout=5_000)
    finally:
        dispose(widget)
