"""What the GLB validator finds: issues, and a summary of a model that passed.

Frozen records, JSON-serialisable (the probe verdict cache and `hmi model-info --json`
store them), so the window, the CLI and the tests read the same facts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

# What the extensions export pipelines turn on by default do, in words.
EXTENSION_NAMES = {
    "KHR_draco_mesh_compression": "Draco mesh compression",
    "KHR_mesh_quantization": "quantized vertex data",
    "EXT_meshopt_compression": "meshopt compression",
    "KHR_texture_basisu": "Basis Universal textures",
    "EXT_texture_webp": "WebP textures",
}


class Severity(IntEnum):
    """Ordered like the Khronos validator's severities: lower is worse."""

    ERROR = 0  # the file is refused: VTK never sees it
    WARNING = 1  # loads, but something is off (shown with the model)
    INFO = 2


@dataclass(frozen=True, slots=True)
class Issue:
    severity: Severity
    code: str  # stable identifier, Khronos glTF-Validator's code where one matches
    message: str  # one readable sentence for the operator or engineer
    where: str = ""  # JSON pointer (/nodes/3/children/0) or "byte N" in the container

    def __str__(self) -> str:
        label = self.severity.name.lower()
        return f"{label}: {self.message}" + (f" ({self.where})" if self.where else "")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One glTF node. `vtk_name` is what vtkGLTFImporter calls it in its scene hierarchy
    (non-ASCII and spaces dropped, empty names become node_N); duplicates stay duplicates."""

    index: int
    name: str
    vtk_name: str
    parent: int  # -1 for a root of the shown scene or a node outside it
    children: tuple[int, ...]
    mesh: int | None
    primitives: int  # primitives of its mesh that carry geometry (one VTK actor each)
    triangles: int  # of its own mesh
    matrix: tuple[float, ...]  # local transform, 16 floats, row-major
    in_scene: bool
    depth: int  # 0 for a scene root
    skinned: bool = False
    camera: int | None = None
    left_out: str = ""  # why VTK does not get this node (degenerate transform), "" when shown

    @property
    def label(self) -> str:
        return self.name or f"node {self.index}"

    @property
    def shown(self) -> bool:
        """In the shown scene and not left out: what the 3D view draws."""
        return self.in_scene and not self.left_out


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image left out of what VTK receives: its materials show untextured."""

    index: int
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class AnimationInfo:
    name: str
    channels: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class ModelSummary:
    generator: str
    scene: int  # the scene shown (glTF `scene`, else 0), -1 when the file has none
    roots: tuple[int, ...]
    nodes: tuple[NodeInfo, ...]
    triangles: int  # drawn: each scene node's mesh counted once per node
    vertices: int
    meshes: int
    materials: int
    textures: int
    images: int
    skins: int
    cameras: int
    animations: tuple[AnimationInfo, ...]
    extensions_used: tuple[str, ...]
    extensions_required: tuple[str, ...]
    expected_actors: int  # (node, primitive) pairs in the scene: what VTK should create
    left_out_roots: tuple[int, ...] = ()  # nodes left out with their subtrees (NodeInfo.left_out says why)
    dropped_images: tuple[ImageInfo, ...] = ()  # images stripped from what VTK receives

    def shown_children(self, index: int) -> list[int]:
        """Children VTK gets (index -1: the scene's roots), in the file's order."""
        children = self.roots if index == -1 else self.nodes[index].children
        return [c for c in children if not self.nodes[c].left_out]

    def parts(self) -> dict[str, Any]:
        """What the 3D view shows: drawn nodes shown and left out (with why), images left out.
        `hmi model-info --json` prints it; the window's import must produce exactly `shown`."""
        return {
            "shown": [n.index for n in self.walk() if n.shown and n.primitives],
            "left_out": [
                {"node": n.index, "name": n.name, "parts": n.primitives, "reason": n.left_out}
                for n in self.walk()
                if n.left_out
            ],
            "images_left_out": [{"image": i.index, "name": i.name, "reason": i.reason} for i in self.dropped_images],
        }

    def node_named(self, name: str) -> NodeInfo | None:
        """The first scene node with this glTF name (preorder), else any node with it."""
        found = [n for n in self.walk() if n.name == name]
        if found:
            return found[0]
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def walk(self) -> Iterator[NodeInfo]:
        """Scene nodes depth first, in the file's order."""
        stack = list(reversed(self.roots))
        while stack:
            node = self.nodes[stack.pop()]
            yield node
            stack.extend(reversed(node.children))

    def descendants(self, index: int) -> list[int]:
        out, stack = [], list(self.nodes[index].children)
        while stack:
            child = stack.pop()
            out.append(child)
            stack.extend(self.nodes[child].children)
        return out


@dataclass(frozen=True, slots=True)
class ModelReport:
    """The verdict on one file: `ok` means VTK may be given these exact bytes."""

    source: str
    size: int
    sha256: str
    issues: tuple[Issue, ...]
    summary: ModelSummary | None
    unsupported: tuple[str, ...] = field(default=())  # required extensions VTK refuses

    @property
    def ok(self) -> bool:
        return not any(i.severity == Severity.ERROR for i in self.issues)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == Severity.ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == Severity.WARNING]

    def left_out_messages(self) -> list[str]:
        """The warnings that say what the 3D view leaves out (parts, textures), for the view."""
        return [
            i.message
            for i in self.warnings
            if i.code == "NODE_LEFT_OUT" or (i.where.startswith("/images/") and "left out" in i.message)
        ]

    def headline(self) -> str:
        """One line for the view's placeholder or a log: the first error, or OK."""
        if self.unsupported:
            names = ", ".join(f"{n} ({EXTENSION_NAMES[n]})" if n in EXTENSION_NAMES else n for n in self.unsupported)
            return f"unsupported: {names}; re-export the model without it"
        errors = self.errors
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return errors[0].message + more
        return "OK"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        if self.summary is not None:
            data["parts"] = self.summary.parts()
        for issue in data["issues"]:
            issue["severity"] = Severity(issue["severity"]).name.lower()
        return data


def describe(report: ModelReport) -> list[str]:
    """`hmi model-info` text: the verdict, the model's figures and its node tree."""
    lines: list[str] = []
    summary = report.summary
    if not report.ok:
        lines.append(f"{report.source}: INVALID: {report.headline()}")
        if len(report.errors) > 1:
            lines += [f"  {issue}" for issue in report.errors]
    else:
        assert summary is not None
        generator = f" ({summary.generator})" if summary.generator else ""
        hidden = sum(n.primitives for n in summary.walk() if n.left_out)
        left_out = f" ({hidden} left out)" if summary.left_out_roots else ""
        dropped = f" ({len(summary.dropped_images)} image(s) left out)" if summary.dropped_images else ""
        lines.append(
            f"{report.source}: OK: glTF 2.0{generator}, {summary.triangles:,} triangles, "
            f"{summary.expected_actors} drawn part(s){left_out}, {len(summary.nodes)} node(s), "
            f"{len(summary.animations)} animation(s), {summary.textures} texture(s){dropped}, {report.size:,} bytes"
        )
    lines += [f"  {issue}" for issue in report.warnings]
    if summary is None:
        return lines
    for anim in summary.animations:
        lines.append(f"  animation {anim.name or '(unnamed)'}: {anim.channels} channel(s), {anim.duration_s:.2f} s")
    if summary.extensions_used:
        lines.append(f"  extensions: {', '.join(summary.extensions_used)}")
    lines.append(f"scene {summary.scene} (glTF name, then VTK's name where it differs):")
    for node in summary.walk():
        shown = repr(node.name) if node.name != node.name.strip() else node.name
        text = "  " * (node.depth + 1) + (shown if node.name else f"(unnamed node {node.index})")
        if node.vtk_name != node.name:
            text += f"  -> VTK: {node.vtk_name}"
        if node.mesh is not None:
            text += f"  [{node.triangles:,} triangles, {node.primitives} primitive(s)]"
        if node.skinned:
            text += "  [skinned]"
        if node.index in summary.left_out_roots:
            text += f"  [LEFT OUT with its subtree: {node.left_out}]"
        elif node.left_out:
            text += "  [left out]"
        lines.append(text)
    outside = [n for n in summary.nodes if not n.in_scene]
    if outside:
        lines.append(f"  ({len(outside)} node(s) outside the shown scene)")
    return lines
