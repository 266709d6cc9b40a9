"""GLB models that passed validation and showed nothing: degenerate transforms and unusable
textures. Each case is a real model with one value changed in memory; `hmi model-info`
must say what the window will show, and the window's loader (run in a child process, as
a damaged PNG aborts VTK's process) must show exactly that, with finite bounds."""

from __future__ import annotations

import copy
import json
import math
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from hmi.core.bus import TagBus
from hmi.scene.builder import pack_glb
from hmi.scene.probe import VerdictCache
from hmi.ui.scene_view import SceneView
from tests.helpers import REPO, SHARED_TESTDATA
from tests.scene.mutate import read_glb
from tests.ui.test_scene_view import b, bus, dispose, probe_cache  # noqa: F401  (bus, probe_cache: fixtures)

CNC = REPO / "models_glb" / "cnc_mill.glb"
TRUCK = SHARED_TESTDATA / "glb" / "models" / "CesiumMilkTruck.glb"
SHEEN = SHARED_TESTDATA / "glb" / "models" / "SheenCloth.glb"
needs_testdata = pytest.mark.skipif(not TRUCK.exists(), reason="needs ../shared/testdata/glb (third-party GLBs)")

# What the window does with a model file (SceneView._check_worker, then _on_checked), minus
# Qt: check_model, import_glb into a renderer, then one offscreen frame with the camera reset.
LOADER = """
import json, math, sys
import vtkmodules.vtkRenderingOpenGL2
from vtkmodules.vtkCommonCore import vtkOutputWindow, vtkStringOutputWindow
from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow
from hmi.scene.probe import check_model
from hmi.ui.scene_loader import import_glb
vtkOutputWindow.SetInstance(vtkStringOutputWindow())
check = check_model(sys.argv[1], probe=False)
if not check.ok:
    print(json.dumps({"refused": check.message}))
    raise SystemExit(0)
summary = check.checked.report.summary
renderer = vtkRenderer()
model = import_glb(check.checked.data, renderer, summary)
window = vtkRenderWindow()
window.SetOffScreenRendering(True)
window.SetSize(64, 64)
window.AddRenderer(renderer)
renderer.ResetCamera()
window.Render()
print(json.dumps({
    "actors": model.actor_count,
    "nodes": sorted(model.node_actors),
    "textured": sum(1 for a in model.actors if a.GetTexture() is not None or a.GetProperty().GetNumberOfTextures()),
    "bounds": list(renderer.ComputeVisiblePropBounds()),
    "camera": list(renderer.GetActiveCamera().GetPosition()),
    "mapping_warnings": model.mapping_warnings,
}))
"""


def load_in_window(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"the loader died ({result.returncode}): {result.stderr[-600:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def model_info(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "hmi", "model-info", "--json", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(result.stdout)


def changed(source: Path, change: Callable[[dict[str, Any], bytearray], object]) -> bytes:
    doc, binary = read_glb(source)
    doc = copy.deepcopy(doc)
    data = bytearray(binary)
    replace = change(doc, data)
    text = json.dumps(doc, separators=(",", ":")).encode()
    for old, new in (replace or {}).items():  # JSON text no dict can produce (1e400)
        text = text.replace(old, new)
    return pack_glb(text, bytes(data))


def node_trs(index: int, **values: Any) -> Callable[[dict[str, Any], bytearray], None]:
    def change(doc: dict[str, Any], _: bytearray) -> None:
        node = doc["nodes"][index]
        for key in ("matrix", "translation", "rotation", "scale"):
            node.pop(key, None)
        node.update(values)

    return change


def scale_chain(doc: dict[str, Any], _: bytearray) -> None:
    """CncMill > Base both scaled by 1e200: finite alone, 1e400 (infinite) composed."""
    for index in (0, 1):
        doc["nodes"][index]["scale"] = [1e200, 1e200, 1e200]


def image_bytes(doc: dict[str, Any], data: bytearray, image: int = 0) -> memoryview:
    view = doc["bufferViews"][doc["images"][image]["bufferView"]]
    offset = view.get("byteOffset", 0)
    return memoryview(data)[offset : offset + view["byteLength"]]


def damage_png_header(doc: dict[str, Any], data: bytearray) -> None:
    image_bytes(doc, data)[20] ^= 0xFF  # inside IHDR: libpng reports a CRC error and VTK aborts


def nan_vertex(doc: dict[str, Any], data: bytearray) -> None:
    accessor = doc["accessors"][doc["meshes"][doc["nodes"][4]["mesh"]]["primitives"][0]["attributes"]["POSITION"]]
    view = doc["bufferViews"][accessor["bufferView"]]
    struct.pack_into("<f", data, view.get("byteOffset", 0) + accessor.get("byteOffset", 0), math.nan)


# name -> (source, change, expected): "left_out" nodes (their subtrees go too), "refused"
# with the node named in the message, or "untextured" images.
CASES: dict[str, tuple[Path, Callable[[dict[str, Any], bytearray], object], dict[str, Any]]] = {
    "all-zero matrix": (CNC, node_trs(2, matrix=[0.0] * 16), {"left_out": [2], "says": "node 2 'AxisY'"}),
    "scale 0 on a node with meshes": (CNC, node_trs(4, scale=[0.0, 0.0, 0.0]), {"left_out": [4]}),
    "scale 0 on one axis": (CNC, node_trs(4, scale=[1.0, 0.0, 1.0]), {"left_out": [4]}),
    "zero rotation quaternion": (CNC, node_trs(4, rotation=[0.0, 0.0, 0.0, 0.0]), {"left_out": [4]}),
    "translation 1e308": (CNC, node_trs(2, translation=[1e308, 0.0, 0.0]), {"refused": "node 2 'AxisY'"}),
    "scale 1e308": (CNC, node_trs(4, scale=[1e308, 1e308, 1e308]), {"refused": "node 4 'Table'"}),
    "TRS overflowing down the hierarchy": (CNC, scale_chain, {"refused": "node 1 'Base': its transform, composed"}),
    "a matrix of 1e400 (infinite in JSON)": (
        CNC,
        lambda d, b: node_trs(2, matrix=[12345.5] + [0.0] * 15)(d, b) or {b"12345.5": b"1e400"},
        {"refused": "node 2 'AxisY': matrix"},
    ),
    "a NaN vertex": (CNC, nan_vertex, {"refused": "'Table'"}),
}
TEXTURE_CASES: dict[str, tuple[Path, Callable[[dict[str, Any], bytearray], object], dict[str, Any]]] = {
    "external texture": (TRUCK, lambda d, b: d["images"].__setitem__(0, {"uri": "missing.png"}), {"images": [0]}),
    "texture of an unsupported type": (
        TRUCK,
        lambda d, b: d["images"][0].update(mimeType="image/webp"),
        {"images": [0]},
    ),
    "damaged PNG": (TRUCK, damage_png_header, {"images": [0]}),
    "not a PNG at all": (
        TRUCK,
        lambda d, b: image_bytes(d, b).__setitem__(slice(0, 8), b"GIF89a\0\0"),
        {"images": [0]},
    ),
}


def _check_agreement(tmp_path: Path, source: Path, change: Any, expected: dict[str, Any]) -> None:
    path = tmp_path / "model.glb"
    path.write_bytes(changed(source, change))
    info = model_info(path)
    window = load_in_window(path)
    if "refused" in expected:
        assert not info["ok"] and "refused" in window
        messages = [i["message"] for i in info["issues"] if i["severity"] == "error"]
        assert any(expected["refused"] in m for m in messages), messages
        assert expected["refused"] in window["refused"]
        return
    assert info["ok"], info["issues"]
    # Something shows, where the camera can see it (NaN bounds left the view empty).
    assert all(math.isfinite(v) for v in window["bounds"] + window["camera"]), window
    assert window["actors"] == info["summary"]["expected_actors"] > 0
    # The window shows exactly the parts model-info says, and nothing it says is left out.
    parts = info["parts"]
    assert window["nodes"] == sorted(parts["shown"])
    assert not window["mapping_warnings"]
    left_out_roots = [p["node"] for p in parts["left_out"] if "inside left-out node" not in p["reason"]]
    assert left_out_roots == expected.get("left_out", [])
    assert [p["image"] for p in parts["images_left_out"]] == expected.get("images", [])
    warnings = [i["message"] for i in info["issues"] if i["severity"] == "warning"]
    for node in expected.get("left_out", []):
        name = info["summary"]["nodes"][node]["name"]
        assert any(m.startswith(f"node {node} {name!r}") and "left out" in m for m in warnings), warnings
    if "says" in expected:
        assert any(expected["says"] in m for m in warnings)
    for image in expected.get("images", []):
        assert any(m.startswith(f"image {image}") and "left out" in m for m in warnings), warnings


@pytest.mark.parametrize("name", list(CASES))
def test_degenerate_transforms_are_left_out_or_refused_as_model_info_says(tmp_path: Path, name: str) -> None:
    """A degenerate transform leaves out its node (named) or refuses the file (naming the node), and the
    window's loader shows exactly the parts `hmi model-info` lists, with finite bounds."""
    _check_agreement(tmp_path, *CASES[name])


@needs_testdata
@pytest.mark.parametrize("name", list(TEXTURE_CASES))
def test_unusable_textures_are_stripped_and_the_model_shows_untextured(tmp_path: Path, name: str) -> None:
    """An external, unsupported or damaged image is stripped from what VTK gets: every part still shows,
    untextured, with a warning naming the image, as `hmi model-info` says."""
    _check_agreement(tmp_path, *TEXTURE_CASES[name])
    path = tmp_path / "model.glb"
    assert load_in_window(path)["textured"] == 0
    assert load_in_window(TRUCK)["textured"] > 0  # the control: the truck is textured when its image is good


@needs_testdata
def test_one_bad_image_of_four_leaves_the_other_textures(tmp_path: Path) -> None:
    """With one of SheenCloth's four images damaged, the others still texture the model (indices renumbered)."""
    good = load_in_window(SHEEN)

    def damage_second(doc: dict[str, Any], data: bytearray) -> None:
        image_bytes(doc, data, 1)[20] ^= 0xFF

    path = tmp_path / "sheen.glb"
    path.write_bytes(changed(SHEEN, damage_second))
    info = model_info(path)
    assert [p["image"] for p in info["parts"]["images_left_out"]] == [1]
    window = load_in_window(path)
    assert window["actors"] == good["actors"] and window["textured"] == good["textured"] > 0


@pytest.fixture
def scene_view(qtbot: QtBot, bus: TagBus, probe_cache: VerdictCache) -> Iterator[SceneView]:  # noqa: F811
    widget = SceneView(bus, cache=probe_cache)
    widget.resize(760, 520)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    dispose(widget)


def test_the_window_shows_the_rest_and_says_what_is_left_out(
    qtbot: QtBot, scene_view: SceneView, tmp_path: Path
) -> None:
    """In the window, a part with an all-zero matrix is left out with its subtree, the view says so (and that a
    binding on a part inside it has nothing to move), and the rest of the machine is drawn."""
    path = tmp_path / "cnc.glb"
    path.write_bytes(changed(CNC, node_trs(2, matrix=[0.0] * 16)))
    bindings = [
        b("m1", "AxisX", translate={"tag": "cnc01.axis_x", "axis": "x", "scale": 0.001}),
        b("m1", "Spindle", rotate={"tag": "cnc01.spindle_speed", "unit": "rpm"}),
    ]
    with qtbot.waitSignal(scene_view.model_loaded, timeout=30_000):
        scene_view.add_machine("m1", path, bindings)
    scene_view.show_machine("m1")
    assert scene_view.status("m1")[0] == "ready"
    assert scene_view.status_text("m1").splitlines() == [
        "Model: node 2 'AxisY' and the 2 node(s) below it are left out (6 drawn part(s)): its matrix is all zeros",
        "Bindings: node 'AxisX' is left out of the model: it is inside left-out node 2 'AxisY'",
    ]
    assert scene_view.node_actors("m1", "Spindle") and not scene_view.node_actors("m1", "AxisX")
    camera = scene_view._machines["m1"].renderer.GetActiveCamera()
    assert all(math.isfinite(v) for v in camera.GetPosition())
    image = scene_view.grab_frame()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 9) for y in range(0, image.height(), 9)}
    assert len(colours) > 20, "the machine is drawn, not an empty background"
