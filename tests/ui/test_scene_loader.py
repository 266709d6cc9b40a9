"""vtkGLTFImporter 9.7 as it really behaves: its hazards, its names, and our map from glTF
nodes to its actors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vtkmodules.vtkCommonCore import vtkOutputWindow, vtkStringOutputWindow
from vtkmodules.vtkCommonDataModel import vtkDataAssembly
from vtkmodules.vtkIOGeometry import vtkGLTFDocumentLoader
from vtkmodules.vtkRenderingCore import vtkRenderer

from hmi.scene.builder import GltfBuilder, Mesh
from hmi.scene.names import make_valid_node_name
from hmi.scene.transforms import world_matrices
from hmi.scene.validate import VTK_SUPPORTED_EXTENSIONS, validate_bytes, validate_file
from hmi.ui.scene_loader import import_glb
from tests.helpers import REPO, SHARED_TESTDATA
from tests.scene.hostile import HOSTILE, base_doc, glb

MODEL_FILES = sorted((REPO / "models_glb").glob("*.glb")) + sorted((SHARED_TESTDATA / "glb" / "models").glob("*.glb"))

# Import a file straight into VTK, as an app without the validator would.
RAW_IMPORT = """
import sys
import vtkmodules.vtkRenderingOpenGL2
from vtkmodules.vtkIOImport import vtkGLTFImporter
from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow
importer = vtkGLTFImporter()
importer.SetFileName(sys.argv[1])
window = vtkRenderWindow()
renderer = vtkRenderer()
window.AddRenderer(renderer)
importer.SetRenderWindow(window)
importer.Update()
actors = renderer.GetActors()
actors.InitTraversal()
points = sum(actors.GetNextActor().GetMapper().GetInput().GetNumberOfPoints() for _ in range(actors.GetNumberOfItems()))
print(actors.GetNumberOfItems(), points)
"""


def raw_import(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RAW_IMPORT, str(path)], capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def quiet_vtk() -> None:
    vtkOutputWindow.SetInstance(vtkStringOutputWindow())


def test_vtk_really_dies_on_a_node_cycle(tmp_path: Path) -> None:
    """The hazard is real: VTK 9.7 crashes the whole process on a node cycle, so it must never see one."""
    path = tmp_path / "cycle.glb"
    path.write_bytes(HOSTILE["two-node cycle"][0])
    assert raw_import(path).returncode < 0
    assert not validate_file(path).report.ok


def test_vtk_reads_files_outside_the_model_folder_by_path(tmp_path: Path) -> None:
    """The hazard is real: by file name VTK follows ../ buffer URIs; from our memory stream it cannot."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(36, dtype=np.float32).tobytes())
    doc = base_doc()
    doc["meshes"][0]["primitives"][0].pop("indices")
    doc["accessors"] = [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}]
    doc["bufferViews"] = [{"buffer": 0, "byteLength": 36}]
    doc["buffers"] = [{"byteLength": 36, "uri": "../secret.bin"}]
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    data = json.dumps(doc).encode()  # a .gltf: JSON whose buffer is a file beside... or above
    (model_dir / "evil.gltf").write_bytes(data)
    result = raw_import(model_dir / "evil.gltf")
    assert result.returncode == 0 and result.stdout.split()[1] != "0", "VTK read the file outside the folder"
    # Our path: the validator refuses it, and even unvalidated bytes read nothing through the stream.
    assert not validate_bytes(data).report.ok
    summary = validate_bytes(glb(base_doc())).report.summary
    assert summary is not None
    assert import_glb(data, vtkRenderer(), summary).actor_count == 0


def test_supported_extensions_match_vtk() -> None:
    """The validator's list of extensions VTK implements is VTK's own list."""
    assert set(vtkGLTFDocumentLoader().GetSupportedExtensions()) == VTK_SUPPORTED_EXTENSIONS


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=24))
def test_name_rule_matches_vtk(name: str) -> None:
    """Our prediction of VTK's node names is vtkDataAssembly.MakeValidNodeName's result."""
    assert make_valid_node_name(name) == vtkDataAssembly.MakeValidNodeName(name)


def test_importer_names_and_order_match_the_prediction() -> None:
    """Odd, empty and duplicate names land where the validator's map says (no mapping warnings)."""
    builder = GltfBuilder()
    mesh = builder.mesh(
        "tri",
        [(Mesh(np.eye(3), np.tile([0.0, 0.0, 1.0], (3, 1)), np.array([[0, 1, 2]])), builder.material("m", "#808080"))],
    )
    names = ["", "Joint 1", "über", "1abc", "dup", "dup", "日本", "a/b:c", "Ab€"]
    parent = builder.node("Root")
    for name in names:
        builder.node(name, parent=parent, mesh=mesh)
    checked = validate_bytes(builder.to_glb())
    assert checked.data is not None and checked.report.summary is not None
    model = import_glb(checked.data, vtkRenderer(), checked.report.summary)
    assert model.mapping_warnings == []
    assert model.actor_count == len(names)
    vtk_names = [n.vtk_name for n in checked.report.summary.nodes[1:]]
    assert vtk_names == ["node_1", "Joint1", "ber", "_1abc", "dup", "dup", "_", "abc", "Ab"]


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_every_actor_maps_to_its_node_with_the_same_transform(path: Path) -> None:
    """Each VTK actor belongs to a glTF node, and VTK placed it at the world transform we compute."""
    checked = validate_file(path)
    summary = checked.report.summary
    assert checked.data is not None and summary is not None
    model = import_glb(checked.data, vtkRenderer(), summary)
    assert model.mapping_warnings == []
    assert model.actor_count == summary.expected_actors
    assert sum(len(a) for a in model.node_actors.values()) == model.actor_count
    world = world_matrices([np.array(n.matrix).reshape(4, 4) for n in summary.nodes], [n.parent for n in summary.nodes])
    for node, matrix in model.import_matrices.items():
        assert np.allclose(matrix, world[node], atol=1e-5), summary.nodes[node].label
