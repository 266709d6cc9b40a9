"""3D bindings and camera presets in the project file: what is accepted and what each mistake says."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hmi.config.bindings import BindingConfig, CameraPresetConfig, check_bindings
from hmi.config.loader import format_key_path
from tests.helpers import REPO


def errors(data: dict[str, object]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        BindingConfig.model_validate(data)
    return [f"{format_key_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in info.value.errors()]


def test_the_design_sketch_binding_is_valid() -> None:
    """The binding written in DESIGN.md's sketch (with our key `unit`) validates."""
    binding = BindingConfig.model_validate(
        {"machine": "cnc01", "node": "Spindle", "rotate": {"axis": "z", "tag": "cnc01.spindle_speed", "unit": "rpm"}}
    )
    assert binding.rotate is not None and binding.rotate.unit == "rpm"
    assert binding.tags() == ["cnc01.spindle_speed"]


def test_every_action_together() -> None:
    """All actions on one node validate and list their tags once each."""
    binding = BindingConfig.model_validate(
        {
            "machine": "pump01",
            "node": "Motor",
            "rotate": {"tag": "pump01.speed", "unit": "rpm", "axis": [1, 0, 0]},
            "translate": {"tag": "pump01.pos", "axis": "-y", "scale": 0.001, "limits": [0, 1]},
            "colour": {"tag": "pump01.temp", "range": [20, 90], "colours": ["#8f9296", "#f08c1e", "#d7191c"]},
            "alarm_colour": True,
            "visible": {"tag": "pump01.running", "op": "==", "value": 1},
            "shake": {"tag": "pump01.vibration", "above": 7.1, "style": "glitch"},
            "label": {"tag": "pump01.temp", "format": "{value} {unit}", "offset": [0, 0.3, 0]},
        }
    )
    assert binding.tags() == ["pump01.speed", "pump01.pos", "pump01.temp", "pump01.running", "pump01.vibration"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"machine": "m", "node": "n"}, ": a binding needs at least one of rotate"),
        ({"machine": "m", "node": "n", "rotate": {"tag": "m.a", "unit": "rps"}}, "rotate.unit: Input should be"),
        ({"machine": "m", "node": "n", "rotate": {"tag": "m.a", "axis": [0, 0, 0]}}, "rotate.axis: an axis vector"),
        ({"machine": "m", "node": "n", "translate": {"tag": "m.a", "wrap": 2}}, "translate: wrap applies to mode"),
        ({"machine": "m", "node": "n", "translate": {"tag": "m.a", "limits": [1, 0]}}, "translate: limits must be"),
        ({"machine": "m", "node": "n", "colour": {"tag": "m.a", "range": [5, 5]}}, "colour.range: range must be"),
        (
            {"machine": "m", "node": "n", "colour": {"tag": "m.a", "range": [0, 1], "colours": ["red"]}},
            "colour.colours",
        ),
        ({"machine": "m", "node": "n", "shake": {"tag": "m.a", "above": 1, "amplitude": 0}}, "shake.amplitude"),
        (
            {"machine": "m", "node": "n", "label": {"tag": "m.a", "format": "{value.real}"}},
            "label.format: unknown field",
        ),
        ({"machine": "m", "node": "n", "label": {"tag": "m.a", "format": "{value"}}, "label.format: bad format"),
        ({"machine": "m", "node": "n", "color": {"tag": "m.a", "range": [0, 1]}}, "color: Extra inputs"),
    ],
)
def test_mistakes_name_their_key(data: dict[str, object], message: str) -> None:
    """Each mistake is reported at its key with a message an engineer can act on."""
    found = errors(data)
    assert any(line.startswith(message) or message in line for line in found), found


def test_camera_presets_validate() -> None:
    """A camera preset needs distinct position and focal point and a non-zero view-up."""
    CameraPresetConfig(machine="cnc01", name="Operator", position=(0, 1.6, 3), focal_point=(0, 1, 0))
    with pytest.raises(ValidationError, match="position and focal_point must differ"):
        CameraPresetConfig(machine="cnc01", name="Bad", position=(1, 1, 1), focal_point=(1, 1, 1))


def test_cross_references() -> None:
    """Unknown machines and tags, and duplicate camera names, are reported with their key paths."""
    bindings = [
        BindingConfig(machine="cnc01", node="Spindle", rotate={"tag": "cnc01.speed"}),
        BindingConfig(machine="cnc02", node="Spindle", label={"tag": "cnc01.nope"}),
    ]
    cameras = [
        CameraPresetConfig(machine="cnc01", name="Front", position=(0, 1, 3), focal_point=(0, 1, 0)),
        CameraPresetConfig(machine="cnc01", name="Front", position=(0, 2, 3), focal_point=(0, 1, 0)),
    ]
    problems = check_bindings(bindings, cameras, {"cnc01"}, {"cnc01.speed"})
    assert [(format_key_path(loc), msg) for loc, msg in problems] == [
        ("bindings[1].machine", "unknown machine 'cnc02'"),
        ("bindings[1].label.tag", "unknown tag 'cnc01.nope'"),
        ("cameras[1].name", "a second camera 'Front' for cnc01"),
    ]


def test_binding_nodes_are_checked_against_the_model(tmp_path: Path) -> None:
    """A misspelt node is named with the closest real names; a machine without a usable model is reported."""
    from hmi.scene.bindings_check import check_binding_nodes

    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"glTF")
    bindings = [
        BindingConfig(machine="cnc01", node="Spindle", rotate={"tag": "cnc01.speed"}),
        BindingConfig(machine="cnc01", node="Spindel", rotate={"tag": "cnc01.speed"}),
        BindingConfig(machine="robot01", node="Joint1", rotate={"tag": "robot01.j1"}),
        BindingConfig(machine="pump01", node="Impeller", rotate={"tag": "pump01.speed"}),
    ]
    models = {"cnc01": REPO / "models_glb" / "cnc_mill.glb", "robot01": None, "pump01": broken}
    problems = [(format_key_path(loc), msg) for loc, msg in check_binding_nodes(bindings, models)]
    assert problems == [
        ("bindings[1].node", "no node 'Spindel' in cnc_mill.glb (did you mean 'Spindle', 'SpindleHead'?)"),
        ("bindings[2].machine", "machine 'robot01' has no model to bind to"),
        ("bindings[3].node", "the model broken.glb cannot be used: not a GLB file: only 4 byte(s), a header is 12"),
    ]
