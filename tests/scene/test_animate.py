"""Bindings turned into node transforms, colours, visibility and labels (no Qt, no VTK)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hmi.config.bindings import BindingConfig
from hmi.core.quality import Quality
from hmi.scene.animate import MachineAnimator, Reading, hex_colour
from hmi.scene.report import ModelSummary
from hmi.scene.validate import validate_file
from tests.helpers import REPO

ALARMS = {"urgent": "#d7191c", "high": "#f08c1e", "medium": "#f2d600", "low": "#8e5bbf"}


def summary(name: str) -> ModelSummary:
    report = validate_file(REPO / "models_glb" / f"{name}.glb").report
    assert report.summary is not None
    return report.summary


def good(value: float) -> Reading:
    return Reading(float(value), Quality.GOOD)


def bind(node: str, **actions: object) -> BindingConfig:
    return BindingConfig.model_validate({"machine": "m", "node": node, **actions})


def origin(matrix: np.ndarray) -> np.ndarray:
    return matrix[:3, 3]


def test_rotating_joint2_carries_joints_3_to_6() -> None:
    """A shoulder angle turns Joint2 about its pivot and moves the whole arm beyond it."""
    robot = summary("robot_arm")
    anim = MachineAnimator(robot, [bind("Joint2", rotate={"tag": "m.j2", "axis": "y"})])
    idx = {n.name: n.index for n in robot.nodes}
    rest = anim.step({"m.j2": good(0)}, 0.0)
    turned = anim.step({"m.j2": good(45)}, 0.1)
    # The pivot stays put; the wrist and flange swing with it.
    assert np.allclose(origin(rest.world[idx["Joint2"]]), origin(turned.world[idx["Joint2"]]))
    for child in ("Joint3", "Joint6"):
        assert not np.allclose(origin(rest.world[idx[child]]), origin(turned.world[idx[child]]), atol=1e-3)
    # Distances from the pivot are kept (a rigid rotation).
    pivot = origin(rest.world[idx["Joint2"]])
    for child in ("Joint3", "Joint6"):
        before = np.linalg.norm(origin(rest.world[idx[child]]) - pivot)
        after = np.linalg.norm(origin(turned.world[idx[child]]) - pivot)
        assert before == pytest.approx(after, abs=1e-9)
    assert idx["Base"] not in turned.world and idx["Joint1"] not in turned.world


def test_rpm_turns_continuously_and_stops_when_the_value_is_stale() -> None:
    """At 60 rpm the spindle turns 36 degrees in 0.1 s; with COMM_LOST it holds still."""
    cnc = summary("cnc_mill")
    anim = MachineAnimator(cnc, [bind("Spindle", rotate={"tag": "m.speed", "unit": "rpm", "axis": "z"})])
    spindle = cnc.node_named("Spindle").index  # type: ignore[union-attr]
    first = anim.step({"m.speed": good(60)}, 10.0)
    second = anim.step({"m.speed": good(60)}, 10.1)
    assert second.continuous
    r1, r2 = first.world[spindle][:3, :3], second.world[spindle][:3, :3]
    angle = math.degrees(math.acos((np.trace(r1.T @ r2) - 1) / 2))
    assert angle == pytest.approx(36.0, abs=0.01)
    lost = anim.step({"m.speed": Reading(60.0, Quality.COMM_LOST)}, 10.2)
    assert not lost.continuous
    assert np.allclose(lost.world[spindle], second.world[spindle])


def test_long_pauses_do_not_jump_the_animation() -> None:
    """A gap longer than half a second (view hidden) advances the rotation by at most 0.5 s."""
    cnc = summary("cnc_mill")
    anim = MachineAnimator(cnc, [bind("Spindle", rotate={"tag": "m.speed", "unit": "deg/s"})])
    spindle = cnc.node_named("Spindle").index  # type: ignore[union-attr]
    a = anim.step({"m.speed": good(10)}, 0.0).world[spindle]
    b = anim.step({"m.speed": good(10)}, 100.0).world[spindle]
    angle = math.degrees(math.acos(min(1.0, (np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2)))
    assert angle == pytest.approx(5.0, abs=0.01)


def test_translate_scales_offsets_and_clamps() -> None:
    """An axis in mm moves the carriage in metres along its own axis, within the limits."""
    cnc = summary("cnc_mill")
    anim = MachineAnimator(
        cnc,
        [bind("AxisX", translate={"tag": "m.x", "axis": "x", "scale": 0.001, "offset": -0.1, "limits": [-0.3, 0.3]})],
    )
    axis_x = cnc.node_named("AxisX").index  # type: ignore[union-attr]
    home = anim.step({"m.x": good(100)}, 0.0).world[axis_x]
    moved = anim.step({"m.x": good(250)}, 0.1).world[axis_x]
    # AxisX's local x is world x (the root turns Z-up into Y-up about x).
    assert origin(moved)[0] - origin(home)[0] == pytest.approx(0.15)
    clamped = anim.step({"m.x": good(10_000)}, 0.2).world[axis_x]
    assert origin(clamped)[0] - origin(home)[0] == pytest.approx(0.3)


def test_speed_translation_wraps() -> None:
    """Parcels driven by a belt speed move continuously and jump back every `wrap` metres."""
    conveyor = summary("conveyor")
    anim = MachineAnimator(
        conveyor, [bind("Items", translate={"tag": "m.v", "axis": "x", "mode": "speed", "wrap": 1.0})]
    )
    items = conveyor.node_named("Items").index  # type: ignore[union-attr]
    start = origin(anim.step({"m.v": good(0.4)}, 0.0).world[items])[0]
    positions = [origin(anim.step({"m.v": good(0.4)}, 0.5 * k).world[items])[0] - start for k in range(1, 7)]
    assert positions[:2] == pytest.approx([0.2, 0.4])
    assert max(positions) < 1.0 and positions[5] == pytest.approx(0.2, abs=1e-9)  # 1.2 m wrapped


def test_colour_ramp_and_alarm_precedence() -> None:
    """A value colours by its range; the machine's alarm outranks it; clearing restores the ramp."""
    cnc = summary("cnc_mill")
    anim = MachineAnimator(
        cnc,
        [
            bind("SpindleHead", colour={"tag": "m.t", "range": [0, 100], "colours": ["#000000", "#ffffff"]}),
            bind("SpindleHead", alarm_colour=True),
        ],
        ALARMS,
    )
    head = cnc.node_named("SpindleHead").index  # type: ignore[union-attr]
    spindle = cnc.node_named("Spindle").index  # type: ignore[union-attr]
    frame = anim.step({"m.t": good(25)}, 0.0)
    assert frame.colours[head] == pytest.approx((0.25, 0.25, 0.25))
    assert frame.colours[spindle] == frame.colours[head]  # children take the part's colour
    frame = anim.step({"m.t": good(25)}, 0.1, alarm="urgent")
    assert frame.colours[head] == hex_colour("#d7191c")
    frame = anim.step({"m.t": good(200)}, 0.2, alarm=None)
    assert frame.colours[head] == pytest.approx((1.0, 1.0, 1.0))


def test_alarm_colour_alone_is_none_without_an_alarm() -> None:
    """With no alarm the part keeps its own colour (None), and an unknown priority shows as high."""
    cnc = summary("cnc_mill")
    anim = MachineAnimator(cnc, [bind("Base", alarm_colour=True)], ALARMS)
    base = cnc.node_named("Base").index  # type: ignore[union-attr]
    assert anim.step({}, 0.0).colours[base] is None
    assert anim.step({}, 0.1, alarm="high").colours[base] == hex_colour("#f08c1e")


def test_visibility_follows_the_condition_and_hides_children() -> None:
    """A part shows only while its condition holds; its children hide with it; bad values hold."""
    robot = summary("robot_arm")
    anim = MachineAnimator(robot, [bind("Joint5", visible={"tag": "m.tool", "op": ">=", "value": 1})])
    j5, j6 = (robot.node_named(n).index for n in ("Joint5", "Joint6"))  # type: ignore[union-attr]
    shown = anim.step({"m.tool": good(1)}, 0.0)
    assert shown.visible[j5] and shown.visible[j6]
    hidden = anim.step({"m.tool": good(0)}, 0.1)
    assert not hidden.visible[j5] and not hidden.visible[j6]
    held = anim.step({"m.tool": Reading(5.0, Quality.BAD)}, 0.2)
    assert not held.visible[j5]


def test_shake_only_above_the_threshold() -> None:
    """Vibration above the threshold shakes the part (continuously); below it, it rests."""
    pump = summary("pump")
    anim = MachineAnimator(pump, [bind("Motor", shake={"tag": "m.vib", "above": 7.1, "amplitude": 0.01})])
    motor = pump.node_named("Motor").index  # type: ignore[union-attr]
    calm = anim.step({"m.vib": good(2.0)}, 0.0)
    assert not calm.continuous
    rest = calm.world[motor].copy()
    offsets = []
    for k in range(1, 10):
        frame = anim.step({"m.vib": good(9.0)}, 0.02 * k)
        assert frame.continuous
        offsets.append(np.linalg.norm(origin(frame.world[motor]) - origin(rest)))
    assert max(offsets) > 0.001 and max(offsets) <= 0.01 * math.sqrt(3) + 1e-9
    assert np.allclose(anim.step({"m.vib": good(1.0)}, 1.0).world[motor], rest)


def test_labels_anchor_to_the_moving_part() -> None:
    """A label sits at the node's world origin plus its offset and carries the reading."""
    cmm = summary("cmm")
    anim = MachineAnimator(
        cmm,
        [
            bind("Bridge", translate={"tag": "m.y", "axis": "y", "scale": 0.001}),
            bind("Probe", label={"tag": "m.y", "offset": [0, 0.1, 0]}),
        ],
    )
    probe = cmm.node_named("Probe").index  # type: ignore[union-attr]
    a = anim.step({"m.y": good(0)}, 0.0)
    b = anim.step({"m.y": good(300)}, 0.1)
    assert [label.node for label in b.labels] == [probe]
    moved = np.array(b.labels[0].anchor) - np.array(a.labels[0].anchor)
    # Machine y (the bridge's travel) is world -z after the Z-up to Y-up turn.
    assert moved == pytest.approx([0.0, 0.0, -0.3], abs=1e-9)
    assert b.labels[0].reading.value == 300


def test_unknown_nodes_are_reported_not_fatal() -> None:
    """A binding to a node the model lacks is listed as a problem; the others still work."""
    cnc = summary("cnc_mill")
    anim = MachineAnimator(cnc, [bind("Spindel", rotate={"tag": "m.s"}), bind("Spindle", rotate={"tag": "m.s"})])
    assert anim.problems == ["node 'Spindel' is not in the model"]
    assert len(anim.bindings) == 1 and anim.tags == ["m.s"]
