"""The demo machines' models: valid, light, with the named movable parts at their pivots."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hmi.scene.report import ModelSummary
from hmi.scene.transforms import world_matrices
from hmi.scene.validate import validate_file
from tests.helpers import REPO

MODELS = REPO / "models_glb"
PARTS = {
    "cnc_mill": ["Base", "Table", "AxisX", "AxisY", "AxisZ", "SpindleHead", "Spindle"],
    "robot_arm": ["Base", "Joint1", "Joint2", "Joint3", "Joint4", "Joint5", "Joint6"],
    "conveyor": ["Frame", "Belt", "Rollers", "Items"],
    "pump": ["Casing", "Impeller", "Motor", "Coupling"],
    "cmm": ["Table", "Bridge", "Carriage", "Quill", "Probe", "Part"],
}


def summary_of(name: str) -> ModelSummary:
    report = validate_file(MODELS / f"{name}.glb").report
    assert report.ok, report.headline()
    assert report.summary is not None
    return report.summary


def parent_name(summary: ModelSummary, node: str) -> str:
    info = summary.node_named(node)
    assert info is not None, node
    return summary.nodes[info.parent].name if info.parent >= 0 else ""


def world(summary: ModelSummary, node: str) -> np.ndarray:
    local = [np.array(n.matrix).reshape(4, 4) for n in summary.nodes]
    info = summary.node_named(node)
    assert info is not None
    return world_matrices(local, [n.parent for n in summary.nodes])[info.index]


@pytest.mark.parametrize("name", sorted(PARTS))
def test_demo_model_is_valid_light_and_has_its_parts(name: str) -> None:
    """Each demo model validates, stays under 20k triangles and names every movable part."""
    summary = summary_of(name)
    assert 0 < summary.triangles <= 20_000
    names = [n.name for n in summary.walk()]
    for part in PARTS[name]:
        assert names.count(part) == 1, f"{name}: {part} missing or duplicated"
    assert all(n.vtk_name == n.name for n in summary.walk()), "plain names: VTK keeps them as they are"
    assert summary.materials >= 3


def test_robot_joints_form_a_chain() -> None:
    """Joint1..Joint6 hang from each other, so turning Joint2 carries Joint3..6."""
    summary = summary_of("robot_arm")
    chain = ["Base", "Joint1", "Joint2", "Joint3", "Joint4", "Joint5", "Joint6"]
    for parent, child in itertools.pairwise(chain):
        assert parent_name(summary, child) == parent
    joint2 = summary.node_named("Joint2")
    assert joint2 is not None
    carried = {summary.nodes[i].name for i in summary.descendants(joint2.index)}
    assert {"Joint3", "Joint4", "Joint5", "Joint6"} <= carried


def test_cnc_axes_carry_the_right_parts() -> None:
    """The table rides on X which rides on Y; the spindle hangs from the head on the Z carriage."""
    summary = summary_of("cnc_mill")
    assert parent_name(summary, "Table") == "AxisX"
    assert parent_name(summary, "AxisX") == "AxisY"
    assert parent_name(summary, "AxisY") == "Base"
    assert parent_name(summary, "Spindle") == "SpindleHead"
    assert parent_name(summary, "SpindleHead") == "AxisZ"
    assert parent_name(summary, "AxisZ") == "Base"


def test_cmm_bridge_carries_carriage_quill_and_probe() -> None:
    """Bridge > Carriage > Quill > Probe, and the measured part sits on the table."""
    summary = summary_of("cmm")
    assert parent_name(summary, "Probe") == "Quill"
    assert parent_name(summary, "Quill") == "Carriage"
    assert parent_name(summary, "Carriage") == "Bridge"
    assert parent_name(summary, "Part") == "Table"


def test_conveyor_rollers_and_items_are_grouped() -> None:
    """Roller1..N hang under Rollers and Item1.. under Items."""
    summary = summary_of("conveyor")
    rollers = summary.node_named("Rollers")
    items = summary.node_named("Items")
    assert rollers is not None and items is not None
    roller_names = [summary.nodes[i].name for i in rollers.children]
    assert roller_names == [f"Roller{i}" for i in range(1, len(roller_names) + 1)] and len(roller_names) >= 5
    assert all(summary.nodes[i].name.startswith("Item") for i in items.children) and items.children


def test_machines_stand_up_in_the_y_up_world() -> None:
    """The machines are modelled Z-up under a root that turns them Y-up: a joint's local z is world up."""
    summary = summary_of("robot_arm")
    up = world(summary, "Joint1")[:3, :3] @ np.array([0.0, 0.0, 1.0])
    assert np.allclose(up, [0.0, 1.0, 0.0], atol=1e-6)


def test_pivots_sit_on_the_rotation_axes() -> None:
    """The spindle, impeller and rollers turn about their own origin: their geometry is centred on it."""
    from tests.scene.hostile import doc_of

    for model, node, axis in (("cnc_mill", "Spindle", 2), ("pump", "Impeller", 0), ("conveyor", "Roller1", 1)):
        doc = doc_of((MODELS / f"{model}.glb").read_bytes())
        index = next(i for i, n in enumerate(doc["nodes"]) if n.get("name") == node)
        mesh = doc["meshes"][doc["nodes"][index]["mesh"]]
        lo = np.min([doc["accessors"][p["attributes"]["POSITION"]]["min"] for p in mesh["primitives"]], axis=0)
        hi = np.max([doc["accessors"][p["attributes"]["POSITION"]]["max"] for p in mesh["primitives"]], axis=0)
        centre = (lo + hi) / 2
        off_axis = [c for i, c in enumerate(centre) if i != axis]
        assert np.allclose(off_axis, 0.0, atol=0.01), f"{model}/{node}: centre {centre} is off the axis"


def test_make_models_reproduces_the_committed_files(tmp_path: Path) -> None:
    """tools/make_models.py is deterministic and its output is what is committed."""
    subprocess.run([sys.executable, str(REPO / "tools" / "make_models.py"), "--out", str(tmp_path)], check=True)
    for name in PARTS:
        assert (tmp_path / f"{name}.glb").read_bytes() == (MODELS / f"{name}.glb").read_bytes(), name
