"""Import validated GLB bytes with vtkGLTFImporter and map its actors back to glTF nodes.

Only bytes the validator passed reach this module (`CheckedModel.data`, with any parts
and images it left out already stripped); they are handed to VTK through a memory stream,
so VTK reads exactly what was checked and can follow no file path (an external URI has no
loader to go through).

VTK's scene hierarchy (a vtkDataAssembly) lists each node's mesh primitives (leaves with a
`flat_actor_id`) and then its children, visiting siblings in reverse order (it walks the
glTF with a stack). Names there are VTK's renamed ones, so the map is built structurally
from the validator's node tree, and each name is checked against the rule in
hmi/scene/names.py on the way.

Runs on the GUI thread in the window, or in the probe child process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the importer needs real OpenGL classes)
from vtkmodules.vtkCommonCore import vtkOutputWindow, vtkStringOutputWindow
from vtkmodules.vtkCommonDataModel import vtkDataAssembly
from vtkmodules.vtkIOCore import vtkMemoryResourceStream
from vtkmodules.vtkIOImport import vtkGLTFImporter
from vtkmodules.vtkRenderingCore import vtkActor, vtkRenderer, vtkRenderWindow

from hmi.scene.report import ModelSummary

log = logging.getLogger(__name__)


@dataclass
class ImportedModel:
    """What VTK made of a model: its actors, and which glTF node each belongs to."""

    actors: list[vtkActor]
    node_actors: dict[int, list[vtkActor]]  # glTF node index -> actors of its own mesh
    import_matrices: dict[int, np.ndarray] = field(default_factory=dict)  # node -> VTK's world matrix
    vtk_messages: str = ""  # what VTK printed while importing (it prints even for good files)
    mapping_warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def actor_count(self) -> int:
        return len(self.actors)


class _CapturedOutput:
    """Route VTK's error/warning text into a string while importing, instead of stderr."""

    def __enter__(self) -> _CapturedOutput:
        self.window = vtkStringOutputWindow()
        self.previous = vtkOutputWindow.GetInstance()
        vtkOutputWindow.SetInstance(self.window)
        return self

    def __exit__(self, *exc: object) -> None:
        self.text = self.window.GetOutput() or ""
        vtkOutputWindow.SetInstance(self.previous)


def import_glb(data: bytes, renderer: vtkRenderer, summary: ModelSummary) -> ImportedModel:
    """Import `data` (already validated) into `renderer`, which must not be in a window
    that is rendering; the importer gets a private render window that never renders."""
    started = time.perf_counter()
    stream = vtkMemoryResourceStream()
    stream.SetBuffer(data, len(data), True)
    importer = vtkGLTFImporter()
    importer.SetStream(stream)
    with _CapturedOutput() as output:
        private = vtkRenderWindow()
        private.AddRenderer(renderer)
        importer.SetRenderWindow(private)
        importer.Update()
        private.RemoveRenderer(renderer)
        importer.SetRenderWindow(None)
    collection = importer.GetImportedActors()
    actors = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
    model = ImportedModel(actors, {}, vtk_messages=output.text)
    _map_actors(importer.GetSceneHierarchy(), summary, model)
    for node, node_actors in model.node_actors.items():
        matrix = node_actors[0].GetUserMatrix()
        if matrix is not None:
            model.import_matrices[node] = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    model.seconds = time.perf_counter() - started
    return model


def _map_actors(assembly: vtkDataAssembly | None, summary: ModelSummary, model: ImportedModel) -> None:
    if assembly is None:
        if summary.expected_actors:
            model.mapping_warnings.append("VTK returned no scene hierarchy")
        return
    # (assembly node id, glTF node index or -1 for the scene)
    stack: list[tuple[int, int]] = [(0, -1)]
    while stack:
        assembly_id, gltf_index = stack.pop()
        # Left-out nodes (degenerate transforms) were detached from the bytes VTK got.
        expected_children = list(reversed(summary.shown_children(gltf_index)))
        child_nodes = []
        for child in assembly.GetChildNodes(assembly_id, False):
            actor_id = assembly.GetAttributeOrDefault(child, "flat_actor_id", -1)
            if actor_id >= 0 and gltf_index >= 0:
                if actor_id < len(model.actors):
                    model.node_actors.setdefault(gltf_index, []).append(model.actors[actor_id])
                else:
                    model.mapping_warnings.append(f"actor {actor_id} of node {gltf_index} does not exist")
            else:
                child_nodes.append(child)
        if len(child_nodes) != len(expected_children):
            model.mapping_warnings.append(
                f"node {gltf_index}: VTK lists {len(child_nodes)} children, the file {len(expected_children)}"
            )
        for child, index in zip(child_nodes, expected_children):
            expected_name = summary.nodes[index].vtk_name
            actual = assembly.GetNodeName(child)
            if actual != expected_name:
                model.mapping_warnings.append(f"node {index}: VTK calls it {actual!r}, expected {expected_name!r}")
            stack.append((child, index))
    if model.mapping_warnings:
        log.warning("scene hierarchy differs from the file: %s", "; ".join(model.mapping_warnings[:5]))
