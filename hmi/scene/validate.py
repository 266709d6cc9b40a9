"""Structural validation of GLB/glTF files before VTK ever sees them.

vtkGLTFImporter 9.7 trusts its input: node cycles, out-of-range indices, accessors past
their buffer, huge counts or a JSON root that is not an object kill the whole process,
and an external buffer URI such as `../../etc/passwd` is read as vertex data. So every
index, offset and count VTK will follow is checked here first, with plain Python and
numpy, and only the exact bytes checked are ever handed on (`CheckedModel.data`).

What is an ERROR here matches what the Khronos glTF-Validator calls an error for the
container and the document's structure; data-level findings that cannot hurt VTK
(unnormalised skin weights, non-increasing key times) are not checked, because widely
used sample files carry them and load fine. Policy beyond the spec: buffers must be
embedded (GLB BIN chunk or data: URI), and required extensions VTK cannot decode are
reported as "unsupported: <extension>". Parts with a degenerate transform and images VTK
cannot decode are left out of the bytes VTK gets (with a warning naming them); transforms
that put drawn parts at non-finite coordinates refuse the file (docs/models.md).

Runs on any thread; pure function of the bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hmi.scene.builder import pack_glb
from hmi.scene.container import IssueList, read_container
from hmi.scene.images import image_problem
from hmi.scene.names import vtk_node_name
from hmi.scene.report import EXTENSION_NAMES, AnimationInfo, ImageInfo, ModelReport, ModelSummary, NodeInfo
from hmi.scene.sanitise import vtk_document
from hmi.scene.transforms import gltf_matrix, trs_matrix

# Extensions vtkGLTFDocumentLoader 9.7 implements (GetSupportedExtensions(); a UI test
# keeps this in step with VTK). A file that *requires* anything else cannot be shown.
VTK_SUPPORTED_EXTENSIONS = frozenset(
    {"KHR_lights_punctual", "KHR_materials_unlit", "KHR_texture_transform", "KHR_materials_ior"}
)

COMPONENT_SIZE = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
COMPONENT_DTYPE = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
INDEX_COMPONENTS = (5121, 5123, 5125)
ANIMATION_PATHS = {"translation": 3, "rotation": 4, "scale": 3, "weights": 1}
# World coordinates past this (metres; a million kilometres) make VTK's camera reset and
# float32 rendering overflow to an empty view; no machine model comes near it.
MAX_WORLD_COORDINATE = 1e9
TOP_LEVEL_ARRAYS = (
    "accessors",
    "animations",
    "bufferViews",
    "buffers",
    "cameras",
    "images",
    "materials",
    "meshes",
    "nodes",
    "samplers",
    "scenes",
    "skins",
    "textures",
)
log = logging.getLogger(__name__)

_DATA_URI = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*?),(?P<data>.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes past which a file is refused: far above any machine model, well below what
    would exhaust memory or a software renderer."""

    max_file_bytes: int = 512 * 1024 * 1024
    max_objects: int = 1_000_000  # entries in any top-level array
    max_nodes: int = 100_000
    max_node_depth: int = 256
    max_accessor_count: int = 1 << 26  # elements in one accessor
    max_triangles: int = 20_000_000


@dataclass(frozen=True, slots=True)
class CheckedModel:
    """A verdict plus, when it is OK, the bytes VTK gets: the checked bytes themselves, or,
    when parts or textures are left out (see the summary's `left_out` and `dropped_images`),
    the same GLB with only those references removed (hmi/scene/sanitise.py)."""

    report: ModelReport
    data: bytes | None
    is_glb: bool = True


def validate_file(path: str | Path, limits: Limits = Limits()) -> CheckedModel:
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            issues = IssueList()
            issues.error(
                "FILE_TOO_LARGE", f"the file is {size / 1e6:.0f} MB; at most {limits.max_file_bytes / 1e6:.0f} MB"
            )
            return CheckedModel(ModelReport(source, size, "", tuple(issues), None), None)
        data = path.read_bytes()
    except OSError as exc:
        issues = IssueList()
        reason = exc.strerror or str(exc)
        issues.error("FILE_UNREADABLE", f"cannot read {path.name}: {reason}")
        return CheckedModel(ModelReport(source, 0, "", tuple(issues), None), None)
    return validate_bytes(data, source, limits)


def validate_bytes(data: bytes, source: str = "<memory>", limits: Limits = Limits()) -> CheckedModel:
    digest = hashlib.sha256(data).hexdigest()
    issues = IssueList()
    if len(data) > limits.max_file_bytes:
        issues.error(
            "FILE_TOO_LARGE", f"the file is {len(data) / 1e6:.0f} MB; at most {limits.max_file_bytes / 1e6:.0f} MB"
        )
        return CheckedModel(ModelReport(source, len(data), digest, tuple(issues), None), None)
    container = read_container(data, issues)
    summary = None
    unsupported: tuple[str, ...] = ()
    if container.document is not None and not issues_have_errors(issues):
        checker = _Checker(container.document, container.binary, container.is_glb, issues, limits)
        try:
            summary = checker.run()
        except Exception as exc:  # a shape no check foresaw: refuse the file, never pass it on
            log.exception("the GLB validator failed on %s", source)
            issues.error("VALIDATOR_ERROR", f"the file has a structure the validator cannot follow ({exc!r:.80})")
            summary = None
        unsupported = tuple(checker.unsupported)
    report = ModelReport(source, len(data), digest, tuple(issues), summary, unsupported)
    payload = data[: container.end] if report.ok else None
    if payload is not None and summary is not None and (summary.left_out_roots or summary.dropped_images):
        assert container.document is not None
        document = vtk_document(
            container.document, set(summary.left_out_roots), {image.index for image in summary.dropped_images}
        )
        if container.is_glb:
            payload = pack_glb(document, container.binary)
        else:
            payload = json.dumps(document, separators=(",", ":")).encode()
    return CheckedModel(report, payload, container.is_glb)


def issues_have_errors(issues: IssueList) -> bool:
    return any(i.severity == 0 for i in issues)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Checker:
    def __init__(
        self, doc: dict[str, Any], binary: bytes | None, is_glb: bool, issues: IssueList, limits: Limits
    ) -> None:
        self.doc = doc
        self.binary = binary
        self.is_glb = is_glb
        self.issues = issues
        self.limits = limits
        self.unsupported: list[str] = []
        self.arrays: dict[str, list[dict[str, Any]]] = {}
        self.buffer_data: list[bytes | None] = []
        self.accessor_ok: list[bool] = []
        self.view_ok: list[bool] = []
        self.dropped_images: dict[int, str] = {}  # image -> why VTK must not get it
        self.mesh_bounds: list[tuple[np.ndarray, np.ndarray] | None] = []  # float64 (lo, hi) per mesh
        self._bounds: list[tuple[np.ndarray, np.ndarray]] = []  # of the mesh being checked
        self._label = ""  # the primitive being checked, for messages
        self._scene_nodes: set[int] = set()
        self.left_out_roots: set[int] = set()  # nodes left out with their subtrees

    # -- helpers ----------------------------------------------------------------------------

    def error(self, code: str, message: str, where: str = "") -> None:
        self.issues.error(code, message, where)

    def warning(self, code: str, message: str, where: str = "") -> None:
        self.issues.warning(code, message, where)

    def index(self, value: Any, array: str, where: str, required: bool = True) -> int | None:
        """A valid index into a top-level array, or None (with an error if it is bad)."""
        if value is None:
            if required:
                self.error("UNDEFINED_PROPERTY", f"{where} is missing", where)
            return None
        if not _is_index(value):
            self.error("INVALID_INDEX", f"{where} must be an integer index, not {value!r:.40}", where)
            return None
        size = len(self.arrays.get(array, []))
        if not 0 <= value < size:
            self.error("INDEX_OUT_OF_RANGE", f"{where} = {value} is out of range ({array} has {size} entries)", where)
            return None
        return int(value)

    def integer(self, obj: dict[str, Any], key: str, where: str, default: int | None, minimum: int = 0) -> int | None:
        value = obj.get(key, default)
        if value is None:
            self.error("UNDEFINED_PROPERTY", f"{where}/{key} is missing", f"{where}/{key}")
            return None
        if not _is_index(value) or value < minimum:
            self.error(
                "INVALID_VALUE", f"{where}/{key} must be an integer >= {minimum}, not {value!r:.40}", f"{where}/{key}"
            )
            return None
        return int(value)

    def numbers(self, value: Any, length: int, where: str, label: str = "") -> list[float] | None:
        if not isinstance(value, list) or len(value) != length or not all(_is_number(v) for v in value):
            self.error("INVALID_VALUE", f"{label or where} must be {length} finite numbers", where)
            return None
        return [float(v) for v in value]

    # -- the passes ---------------------------------------------------------------------------

    def run(self) -> ModelSummary | None:
        if not self._asset() or not self._arrays():
            return None
        self._extensions()
        self._vtk_drops()
        self._buffers()
        self._buffer_views()
        self._accessors()
        self._images_textures_materials()
        meshes = self._meshes()
        nodes = self._nodes()
        self._skins(meshes)
        animations = self._animations()
        self._lights()
        if nodes is None or issues_have_errors(self.issues):
            return None
        return self._summary(nodes, meshes, animations)

    def _vtk_drops(self) -> None:
        """Elements vtkGLTFDocumentLoader 9.7 silently skips while loading its arrays. A
        skipped element shifts every later index, so references that looked valid then
        point past the end, and VTK crashes. Some are valid glTF (an empty scene or
        texture object, a sparse accessor relying on the default byteOffset); all are
        refused here, each with the reason."""

        def dropped(kind: str, i: int, why: str) -> None:
            self.error("VTK_WOULD_SKIP", f"{kind} {i} {why}; the 3D view cannot load it safely", f"/{kind}s/{i}")

        for i, acc in enumerate(self.arrays["accessors"]):
            comps = TYPE_COMPONENTS.get(acc.get("type")) if isinstance(acc.get("type"), str) else None
            if comps is not None and "min" in acc and "max" in acc:
                for key in ("min", "max"):
                    value = acc[key]
                    if not isinstance(value, list) or len(value) != comps or not all(_is_number(v) for v in value):
                        dropped("accessor", i, f"has a '{key}' that is not {comps} number(s)")
            sparse = acc.get("sparse")
            if isinstance(sparse, dict):
                for part in ("indices", "values"):
                    obj = sparse.get(part)
                    if isinstance(obj, dict) and not _is_index(obj.get("byteOffset")):
                        dropped("accessor", i, f"has sparse {part} without an explicit byteOffset")
        for i, view in enumerate(self.arrays["bufferViews"]):
            target = view.get("target")
            if target is not None and target not in (34962, 34963):
                dropped("bufferView", i, f"has target {target!r:.20} (only 34962 or 34963)")
        for i, camera in enumerate(self.arrays["cameras"]):
            why = _camera_problem(camera)
            if why:
                dropped("camera", i, why)
        for i, image in enumerate(self.arrays["images"]):
            mime = image.get("mimeType")
            if not image:
                dropped("image", i, "is empty")
            elif mime is not None and not isinstance(mime, str):
                dropped("image", i, f"has a mimeType that is not text ({mime!r:.30})")
            elif "bufferView" not in image and not isinstance(image.get("uri"), str):
                dropped("image", i, "has neither a bufferView nor a uri")
        for i, node in enumerate(self.arrays["nodes"]):
            if "matrix" in node and isinstance(node["matrix"], list) and node.get("skin") is not None:
                dropped("node", i, "has both a matrix and a skin")
        for kind in ("scene", "texture"):
            for i, obj in enumerate(self.arrays[kind + "s"]):
                if not obj:
                    dropped(kind, i, "is an empty object")
        ext = self.doc.get("extensions")
        lights = ext.get("KHR_lights_punctual") if isinstance(ext, dict) else None
        if isinstance(lights, dict):
            entries = lights.get("lights", [])
            for i, light in enumerate(entries if isinstance(entries, list) else []):
                kind = light.get("type") if isinstance(light, dict) else None
                if kind not in ("directional", "point", "spot") or (
                    kind == "spot" and not isinstance(light.get("spot"), dict)
                ):
                    dropped("light", i, "has no valid type (directional, point or spot with a spot object)")

    def _asset(self) -> bool:
        asset = self.doc.get("asset")
        if not isinstance(asset, dict):
            self.error("UNDEFINED_PROPERTY", "the glTF has no 'asset' object (it is not a glTF 2.0 document)", "/asset")
            return False
        version = asset.get("version")
        match = re.fullmatch(r"(\d+)\.(\d+)", version) if isinstance(version, str) else None
        if match is None:
            self.error("INVALID_VALUE", f"asset.version must be like '2.0', not {version!r:.40}", "/asset/version")
            return False
        if match.group(1) != "2":
            self.error("UNSUPPORTED_VERSION", f"glTF version {version} is not supported (only 2.x)", "/asset/version")
            return False
        return True

    def _arrays(self) -> bool:
        ok = True
        for name in TOP_LEVEL_ARRAYS:
            value = self.doc.get(name, [])
            if not isinstance(value, list):
                self.error("TYPE_MISMATCH", f"'{name}' must be an array", f"/{name}")
                ok = False
                continue
            if len(value) > self.limits.max_objects:
                self.error("TOO_MANY_OBJECTS", f"'{name}' has {len(value)} entries; at most {self.limits.max_objects}")
                ok = False
                continue
            bad = next((i for i, item in enumerate(value) if not isinstance(item, dict)), None)
            if bad is not None:
                self.error("TYPE_MISMATCH", f"{name}[{bad}] must be an object", f"/{name}/{bad}")
                ok = False
                continue
            self.arrays[name] = value
        return ok

    def _extensions(self) -> None:
        used = self.doc.get("extensionsUsed", [])
        required = self.doc.get("extensionsRequired", [])
        for key, value in (("extensionsUsed", used), ("extensionsRequired", required)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.error("TYPE_MISMATCH", f"'{key}' must be an array of names", f"/{key}")
                return
        for name in required:
            if name not in used:
                self.warning(
                    "UNUSED_EXTENSION_REQUIRED", f"{name} is required but not listed as used", "/extensionsRequired"
                )
            if name not in VTK_SUPPORTED_EXTENSIONS and name not in self.unsupported:
                self.unsupported.append(name)
                what = f" ({EXTENSION_NAMES[name]})" if name in EXTENSION_NAMES else ""
                self.error(
                    "UNSUPPORTED_EXTENSION",
                    f"unsupported: {name}{what}: the 3D view cannot decode it; re-export the model without it",
                    "/extensionsRequired",
                )
        for name in used:
            if name not in VTK_SUPPORTED_EXTENSIONS and name not in required:
                self.issues.info(
                    "UNSUPPORTED_EXTENSION_USED", f"{name} is used but optional; it is ignored", "/extensionsUsed"
                )

    # -- buffers ----------------------------------------------------------------------------------

    def _buffers(self) -> None:
        for i, buffer in enumerate(self.arrays["buffers"]):
            where = f"/buffers/{i}"
            length = self.integer(buffer, "byteLength", where, None, minimum=1)
            uri = buffer.get("uri")
            data: bytes | None = None
            if length is None:
                self.buffer_data.append(None)
                continue
            if uri is None:
                if i == 0 and self.is_glb:
                    if self.binary is None:
                        self.error(
                            "BUFFER_MISSING_GLB_DATA", "buffer 0 refers to a BIN chunk the file does not have", where
                        )
                    elif len(self.binary) < length:
                        self.error(
                            "BUFFER_BYTE_LENGTH_MISMATCH",
                            f"the BIN chunk holds {len(self.binary)} bytes, buffer 0 declares {length}",
                            where,
                        )
                    else:
                        if len(self.binary) - length > 3:
                            self.issues.info(
                                "BUFFER_GLB_CHUNK_TOO_BIG",
                                f"the BIN chunk has {len(self.binary) - length} spare bytes",
                                where,
                            )
                        data = self.binary
                # Else a placeholder (data supplied by an extension): usable by nothing else.
            elif not isinstance(uri, str):
                self.error("TYPE_MISMATCH", "buffer uri must be a string", f"{where}/uri")
            elif uri.startswith("data:"):
                data = self._data_uri(uri, f"{where}/uri", ("application/octet-stream", "application/gltf-buffer"))
                # The view hands VTK a memory stream with no URI loader, so nothing outside
                # the checked bytes can ever be read; the price is that URI buffers fail.
                self.warning(
                    "DATA_URI_NOT_LOADED",
                    f"buffer {i} is a data: URI, which the 3D view does not load (embed it in the GLB's BIN chunk)",
                    f"{where}/uri",
                )
                if data is not None and len(data) < length:
                    self.error(
                        "BUFFER_BYTE_LENGTH_MISMATCH",
                        f"buffer {i} holds {len(data)} bytes but declares {length}",
                        where,
                    )
                    data = None
            else:
                self.error("EXTERNAL_RESOURCE", _external_message(f"buffer {i}", uri), f"{where}/uri")
            self.buffer_data.append(data)

    def _data_uri(self, uri: str, where: str, mimes: tuple[str, ...]) -> bytes | None:
        match = _DATA_URI.match(uri)
        if match is None:
            self.error("INVALID_URI", "a data: URI needs a comma before its data ('data:<type>;base64,...')", where)
            return None
        if match["mime"] not in mimes:
            self.warning("INVALID_URI_MIME", f"unexpected data: URI type {match['mime']!r}", where)
        if ";base64" not in match["params"]:
            return urllib.parse.unquote_to_bytes(match["data"])  # RFC 2397 percent-encoded data
        try:
            return base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            self.error("INVALID_URI", "the data: URI is not valid base64", where)
            return None

    def _buffer_views(self) -> None:
        for i, view in enumerate(self.arrays["bufferViews"]):
            where = f"/bufferViews/{i}"
            ok = True
            buffer = self.index(view.get("buffer"), "buffers", f"{where}/buffer")
            length = self.integer(view, "byteLength", where, None, minimum=1)
            offset = self.integer(view, "byteOffset", where, 0)
            stride = view.get("byteStride")
            if stride is not None and (not _is_index(stride) or not 4 <= stride <= 252 or stride % 4):
                self.error("INVALID_VALUE", f"byteStride must be a multiple of 4 in 4..252, not {stride!r:.20}", where)
                ok = False
            if buffer is None or length is None or offset is None:
                ok = False
            else:
                declared = self.arrays["buffers"][buffer].get("byteLength")
                if _is_index(declared) and offset + length > declared:
                    self.error(
                        "BUFFER_VIEW_TOO_LONG",
                        f"bufferView {i} ends at byte {offset + length}, past its buffer's {declared} bytes",
                        where,
                    )
                    ok = False
            self.view_ok.append(ok)

    def view_bytes(self, index: int) -> memoryview | None:
        view = self.arrays["bufferViews"][index]
        data = self.buffer_data[view["buffer"]] if view["buffer"] < len(self.buffer_data) else None
        if data is None:
            return None
        offset = view.get("byteOffset", 0)
        return memoryview(data)[offset : offset + view["byteLength"]]

    # -- accessors ---------------------------------------------------------------------------------

    def _accessors(self) -> None:
        for i, acc in enumerate(self.arrays["accessors"]):
            self.accessor_ok.append(self._accessor(i, acc))

    def _accessor(self, i: int, acc: dict[str, Any]) -> bool:
        where = f"/accessors/{i}"
        component = acc.get("componentType")
        kind = acc.get("type")
        if not _is_index(component) or component not in COMPONENT_SIZE:
            self.error("INVALID_VALUE", f"accessor {i} has an invalid componentType {component!r:.20}", where)
            return False
        if not isinstance(kind, str) or kind not in TYPE_COMPONENTS:
            self.error("INVALID_VALUE", f"accessor {i} has an invalid type {kind!r:.20}", where)
            return False
        count = self.integer(acc, "count", where, None, minimum=1)
        offset = self.integer(acc, "byteOffset", where, 0)
        if count is None or offset is None:
            return False
        if count > self.limits.max_accessor_count:
            self.error(
                "ACCESSOR_TOO_LARGE",
                f"accessor {i} has {count:,} elements; at most {self.limits.max_accessor_count:,}",
                where,
            )
            return False
        size = COMPONENT_SIZE[component]
        elem = element_size(component, kind)
        view_index = acc.get("bufferView")
        if view_index is not None:
            view = self.index(view_index, "bufferViews", f"{where}/bufferView")
            if view is None or not self.view_ok[view]:
                return False
            view_obj = self.arrays["bufferViews"][view]
            stride = view_obj.get("byteStride") or elem
            if stride < elem:
                self.error(
                    "ACCESSOR_STRIDE_TOO_SMALL", f"accessor {i}: byteStride {stride} < element size {elem}", where
                )
                return False
            if offset % size or (view_obj.get("byteOffset", 0) + offset) % size:
                self.error("ACCESSOR_OFFSET_ALIGNMENT", f"accessor {i} is not aligned to its component size", where)
                return False
            needed = offset + stride * (count - 1) + elem
            if needed > view_obj["byteLength"]:
                self.error(
                    "ACCESSOR_TOO_LONG",
                    f"accessor {i} needs {needed} bytes, its bufferView {view} has {view_obj['byteLength']}",
                    where,
                )
                return False
            if self.buffer_data[view_obj["buffer"]] is None and not view_obj.get("extensions"):
                self.error("BUFFER_NO_DATA", f"accessor {i} reads a buffer that holds no data", where)
                return False
        else:
            # All-zero (or sparse-only) data: valid glTF, but vtkGLTFImporter 9.7 reads it
            # from a buffer that does not exist and crashes (found by fuzzing).
            self.error("VTK_UNSUPPORTED", f"accessor {i} has no bufferView, which VTK cannot read", where)
            return False
        sparse = acc.get("sparse")
        if sparse is not None:
            return self._sparse(i, acc, sparse, count, elem, f"{where}/sparse")
        return True

    def _sparse(self, i: int, acc: dict[str, Any], sparse: Any, count: int, elem: int, where: str) -> bool:
        if not isinstance(sparse, dict):
            self.error("TYPE_MISMATCH", "sparse must be an object", where)
            return False
        n = self.integer(sparse, "count", where, None, minimum=1)
        indices, values = sparse.get("indices"), sparse.get("values")
        if n is None or not isinstance(indices, dict) or not isinstance(values, dict):
            self.error("INVALID_VALUE", f"accessor {i}: sparse needs count, indices and values", where)
            return False
        if n > count:
            self.error("INVALID_VALUE", f"accessor {i}: {n} sparse elements but only {count} in all", where)
            return False
        component = indices.get("componentType")
        if component not in INDEX_COMPONENTS:
            self.error("INVALID_VALUE", f"accessor {i}: sparse indices need an unsigned componentType", where)
            return False
        for part, obj, width in (("indices", indices, COMPONENT_SIZE[component]), ("values", values, elem)):
            view = self.index(obj.get("bufferView"), "bufferViews", f"{where}/{part}/bufferView")
            offset = self.integer(obj, "byteOffset", f"{where}/{part}", 0)
            if view is None or offset is None or not self.view_ok[view]:
                return False
            if offset + n * width > self.arrays["bufferViews"][view]["byteLength"]:
                self.error("ACCESSOR_TOO_LONG", f"accessor {i}: sparse {part} run past their bufferView", where)
                return False
        raw = self.view_bytes(indices["bufferView"])
        if raw is not None:
            idx = np.frombuffer(raw, COMPONENT_DTYPE[component], n, indices.get("byteOffset", 0))
            if idx.size and (int(idx.max()) >= count or np.any(np.diff(idx.astype(np.int64)) <= 0)):
                self.error(
                    "ACCESSOR_SPARSE_INDEX_OOB",
                    f"accessor {i}: sparse indices must increase and stay below {count}",
                    where,
                )
                return False
        return True

    def read_accessor(self, index: int) -> np.ndarray | None:
        """The accessor's elements as (count, components), or None if it has no bytes here
        (zeros, sparse or extension data are not needed by the checks that read)."""
        acc = self.arrays["accessors"][index]
        if acc.get("bufferView") is None or acc.get("sparse") is not None:
            return None
        raw = self.view_bytes(acc["bufferView"])
        if raw is None:
            return None
        component, kind, count = acc["componentType"], acc["type"], acc["count"]
        comps = TYPE_COMPONENTS[kind]
        dtype = np.dtype(COMPONENT_DTYPE[component])
        stride = self.arrays["bufferViews"][acc["bufferView"]].get("byteStride") or element_size(component, kind)
        if kind.startswith("MAT") and stride != comps * dtype.itemsize:
            return None  # padded matrix columns; nothing here reads those
        return np.ndarray(
            (count, comps), dtype, buffer=raw, offset=acc.get("byteOffset", 0), strides=(stride, dtype.itemsize)
        )

    def accessor_count(self, index: int) -> int:
        return int(self.arrays["accessors"][index]["count"])

    # -- materials ---------------------------------------------------------------------------------

    def _images_textures_materials(self) -> None:
        """Images VTK cannot decode are left out of what it receives (hmi/scene/sanitise.py
        strips them and the material references to them): an external or missing file (the
        view loads no URIs), a type other than PNG or JPEG, or bytes that are not a complete
        PNG or JPEG (a damaged PNG aborts VTK's process). The model then shows untextured."""
        codes: dict[int, str] = {}
        for i, image in enumerate(self.arrays["images"]):
            where = f"/images/{i}"
            uri = image.get("uri")
            mime = image.get("mimeType")
            data: bytes | memoryview | None = None
            if image.get("bufferView") is not None:
                view = self.index(image.get("bufferView"), "bufferViews", f"{where}/bufferView")
                if view is not None and self.view_ok[view]:
                    data = self.view_bytes(view)
                if mime is None:
                    self.error("UNDEFINED_PROPERTY", f"image {i} in a bufferView needs a mimeType", where)
                    continue
            elif isinstance(uri, str) and uri.startswith("data:"):
                data = self._image_data_uri(uri)
                if data is None:
                    self.dropped_images[i] = "its data: URI is not valid base64 or percent-encoded data"
                    codes[i] = "INVALID_URI"
                    continue
                mime = _DATA_URI.match(uri)["mime"]  # type: ignore[index]
            elif isinstance(uri, str):
                self.dropped_images[i] = _external_message("it", uri)
                codes[i] = "EXTERNAL_RESOURCE"
                continue
            else:
                self.error("UNDEFINED_PROPERTY", f"image {i} has neither a bufferView nor a uri", where)
                continue
            if data is None:
                continue  # its bufferView is already an error
            problem = image_problem(data, mime)
            if problem:
                self.dropped_images[i] = problem
                codes[i] = "IMAGE_UNRECOGNIZED_FORMAT" if mime in ("image/png", "image/jpeg") else "IMAGE_UNSUPPORTED"
        sources: dict[int, list[int]] = {}  # image -> textures using it
        for i, texture in enumerate(self.arrays["textures"]):
            where = f"/textures/{i}"
            source = self.index(texture.get("source"), "images", f"{where}/source", required=False)
            if source is not None:
                sources.setdefault(source, []).append(i)
            self.index(texture.get("sampler"), "samplers", f"{where}/sampler", required=False)
        users: dict[int, list[int]] = {}  # texture -> materials using it
        for i, material in enumerate(self.arrays["materials"]):
            self._texture_refs(material, f"/materials/{i}", 0, i, users)
        for i, why in self.dropped_images.items():
            materials = sorted({m for t in sources.get(i, []) for m in users.get(t, [])})
            if materials:
                listed = ", ".join(str(m) for m in materials[:8]) + (" ..." if len(materials) > 8 else "")
                effect = f"material(s) {listed} are shown without it"
            else:
                effect = "no material uses it"
            self.warning(
                codes[i],
                f"image {i}{_quoted_name(self.arrays['images'][i])} is left out: {why}; {effect}",
                f"/images/{i}",
            )

    def _image_data_uri(self, uri: str) -> bytes | None:
        """A data: URI image's bytes, or None when they cannot be decoded (no error: the
        image is left out, the model still shows)."""
        match = _DATA_URI.match(uri)
        if match is None:
            return None
        if ";base64" not in match["params"]:
            return urllib.parse.unquote_to_bytes(match["data"])
        try:
            return base64.b64decode(match["data"], validate=True)
        except (binascii.Error, ValueError):
            return None

    def _texture_refs(
        self, obj: dict[str, Any], where: str, depth: int, material: int, users: dict[int, list[int]]
    ) -> None:
        """Every `...Texture: {index}` reference in a material, extensions included."""
        if depth > 8:
            return
        for key, value in obj.items():
            if not isinstance(value, dict):
                continue
            if key.endswith("Texture") or key.endswith("texture"):
                texture = self.index(value.get("index"), "textures", f"{where}/{key}/index")
                if texture is not None:
                    users.setdefault(texture, []).append(material)
                tex_coord = value.get("texCoord", 0)
                if not _is_index(tex_coord) or tex_coord < 0:
                    self.error("INVALID_VALUE", f"{where}/{key}/texCoord must be an integer >= 0", where)
            else:
                self._texture_refs(value, f"{where}/{key}", depth + 1, material, users)

    # -- meshes ------------------------------------------------------------------------------------

    def _meshes(self) -> list[tuple[int, int, int]]:
        """Per mesh: (primitives with geometry, triangles, vertices)."""
        out = []
        for m, mesh in enumerate(self.arrays["meshes"]):
            where = f"/meshes/{m}"
            primitives = mesh.get("primitives")
            if not isinstance(primitives, list) or not primitives or not all(isinstance(p, dict) for p in primitives):
                self.error("INVALID_VALUE", f"mesh {m} needs a non-empty list of primitives", f"{where}/primitives")
                out.append((0, 0, 0))
                continue
            drawn = triangles = vertices = 0
            self._bounds = []
            for p, prim in enumerate(primitives):
                self._label = f"mesh {m}{_quoted_name(mesh)}, primitive {p}"
                result = self._primitive(prim, f"{where}/primitives/{p}")
                if result is not None:
                    drawn += 1
                    triangles += result[0]
                    vertices += result[1]
            out.append((drawn, triangles, vertices))
            if self._bounds:
                lows, highs = zip(*self._bounds, strict=True)
                self.mesh_bounds.append((np.min(lows, axis=0), np.max(highs, axis=0)))
            else:
                self.mesh_bounds.append(None)
        return out

    def _primitive(self, prim: dict[str, Any], where: str) -> tuple[int, int] | None:
        attributes = prim.get("attributes")
        if not isinstance(attributes, dict):
            self.error("UNDEFINED_PROPERTY", "a primitive needs an 'attributes' object", where)
            return None
        counts = {}
        for name, value in attributes.items():
            acc = self.index(value, "accessors", f"{where}/attributes/{name}")
            if acc is not None and self.accessor_ok[acc]:
                counts[name] = self.accessor_count(acc)
        if len(set(counts.values())) > 1:
            self.error("MESH_PRIMITIVE_UNEQUAL_ACCESSOR_COUNT", f"attributes have different counts {counts}", where)
            return None
        mode = prim.get("mode", 4)
        if not _is_index(mode) or not 0 <= mode <= 6:
            self.error("INVALID_VALUE", f"primitive mode must be 0..6, not {mode!r:.20}", f"{where}/mode")
            return None
        self.index(prim.get("material"), "materials", f"{where}/material", required=False)
        targets = prim.get("targets", [])
        if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
            self.error("TYPE_MISMATCH", "targets must be a list of objects", f"{where}/targets")
            return None
        for t, target in enumerate(targets):
            for name, value in target.items():
                acc = self.index(value, "accessors", f"{where}/targets/{t}/{name}")
                if acc is None or not self.accessor_ok[acc]:
                    continue
                if counts and self.accessor_count(acc) != next(iter(counts.values())):
                    self.error(
                        "MESH_PRIMITIVE_MORPH_TARGET_INVALID_ATTRIBUTE_COUNT", "morph target count differs", where
                    )
        position = attributes.get("POSITION")
        if "POSITION" not in counts:
            if "POSITION" not in attributes and not prim.get("extensions"):
                self.warning("MESH_PRIMITIVE_NO_POSITION", "a primitive without POSITION is not drawn", where)
            return None
        pos_acc = self.arrays["accessors"][position]
        if pos_acc["type"] != "VEC3":
            self.error("INVALID_VALUE", "POSITION must be a VEC3 accessor", f"{where}/attributes/POSITION")
            return None
        vertices = counts["POSITION"]
        if pos_acc["componentType"] == 5126:
            points = self.read_accessor(position)
            if points is not None:
                # NaN or infinite vertices give VTK NaN bounds: the camera resets to nothing.
                low, high = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
                if not (np.isfinite(low).all() and np.isfinite(high).all()):
                    self.error(
                        "POSITION_NOT_FINITE",
                        f"{self._label}: vertex positions (accessor {position}) include "
                        "NaN or infinite values, which leave the 3D view empty",
                        f"{where}/attributes/POSITION",
                    )
                    return None
                self._bounds.append((low, high))
        n = vertices
        index_value = prim.get("indices")
        if index_value is not None:
            acc = self.index(index_value, "accessors", f"{where}/indices")
            if acc is None or not self.accessor_ok[acc]:
                return None
            index_acc = self.arrays["accessors"][acc]
            if index_acc["type"] != "SCALAR" or index_acc["componentType"] not in INDEX_COMPONENTS:
                self.error("INVALID_VALUE", "indices must be an unsigned SCALAR accessor", f"{where}/indices")
                return None
            n = index_acc["count"]
            values = self.read_accessor(acc)
            if values is not None and values.size and int(values.max()) >= vertices:
                self.error(
                    "ACCESSOR_INDEX_OOB",
                    f"an index refers to vertex {int(values.max())} of {vertices}",
                    f"{where}/indices",
                )
                return None
        if mode == 4:
            triangles = n // 3
        elif mode in (5, 6):
            triangles = max(n - 2, 0)
        else:
            triangles = 0
        return triangles, vertices

    # -- nodes ----------------------------------------------------------------------------------

    def _nodes(self) -> list[tuple[int, np.ndarray]] | None:
        """Per node: (parent, local matrix); None if the graph is unusable."""
        nodes = self.arrays["nodes"]
        if len(nodes) > self.limits.max_nodes:
            self.error("TOO_MANY_OBJECTS", f"{len(nodes)} nodes; at most {self.limits.max_nodes}", "/nodes")
            return None
        parents = [-1] * len(nodes)
        local: list[np.ndarray] = []
        graph_ok = True
        for i, node in enumerate(nodes):
            where = f"/nodes/{i}"
            children = node.get("children", [])
            if not isinstance(children, list):
                self.error("TYPE_MISMATCH", f"node {i}: children must be an array", f"{where}/children")
                graph_ok = False
                children = []
            for c, child in enumerate(children):
                index = self.index(child, "nodes", f"{where}/children/{c}")
                if index is None:
                    graph_ok = False
                elif index == i:
                    self.error("NODE_LOOP", f"node {i} is its own child", f"{where}/children/{c}")
                    graph_ok = False
                elif parents[index] != -1:
                    self.error(
                        "NODE_PARENT_OVERRIDE",
                        f"node {index} has two parents (nodes {parents[index]} and {i})",
                        f"{where}/children/{c}",
                    )
                    graph_ok = False
                else:
                    parents[index] = i
            self.index(node.get("mesh"), "meshes", f"{where}/mesh", required=False)
            self.index(node.get("camera"), "cameras", f"{where}/camera", required=False)
            skin = self.index(node.get("skin"), "skins", f"{where}/skin", required=False)
            if skin is not None and node.get("mesh") is None:
                self.warning("NODE_SKIN_NO_MESH", f"node {i} has a skin but no mesh", where)
            local.append(self._local_matrix(node, where, f"node {i}{_quoted_name(node)}"))
        if not graph_ok:
            return None
        # With one parent each, a cycle is a chain of parents that never reaches a root.
        state = [0] * len(nodes)  # 0 unseen, 1 on the current chain, 2 known to reach a root
        for start in range(len(nodes)):
            chain = []
            node_index = start
            while node_index != -1 and state[node_index] == 0:
                state[node_index] = 1
                chain.append(node_index)
                node_index = parents[node_index]
            if node_index != -1 and state[node_index] == 1:
                self.error("NODE_LOOP", f"node {node_index} is its own ancestor (a cycle)", f"/nodes/{node_index}")
                return None
            for item in chain:
                state[item] = 2
        depth = self._depths(parents)
        if max(depth, default=0) > self.limits.max_node_depth:
            self.error(
                "NODE_TOO_DEEP", f"the node tree is {max(depth)} levels deep; at most {self.limits.max_node_depth}"
            )
            return None
        self._scenes(parents)
        return list(zip(parents, local, strict=True))

    def _local_matrix(self, node: dict[str, Any], where: str, label: str) -> np.ndarray:
        if "matrix" in node:
            values = self.numbers(node["matrix"], 16, f"{where}/matrix", f"{label}: matrix")
            if any(k in node for k in ("translation", "rotation", "scale")):
                self.warning("NODE_MATRIX_TRS", "a node has both matrix and TRS; the matrix is used", where)
            return gltf_matrix(values) if values is not None else np.eye(4)
        t, r, s = (
            self.numbers(node[key], size, f"{where}/{key}", f"{label}: {key}") if key in node else None
            for key, size in (("translation", 3), ("rotation", 4), ("scale", 3))
        )
        if r is not None and abs(math.sqrt(sum(c * c for c in r)) - 1.0) > 1e-3:
            self.warning("ROTATION_NON_UNIT", "a node's rotation is not a unit quaternion", f"{where}/rotation")
        return trs_matrix(t or (0.0, 0.0, 0.0), r or (0.0, 0.0, 0.0, 1.0), s or (1.0, 1.0, 1.0))

    @staticmethod
    def _depths(parents: list[int]) -> list[int]:
        depth = [-1] * len(parents)
        for start in range(len(parents)):
            chain = []
            node = start
            while node != -1 and depth[node] == -1:
                chain.append(node)
                node = parents[node]
            base = depth[node] if node != -1 else -1
            for item in reversed(chain):
                base += 1
                depth[item] = base
        return depth

    def _scenes(self, parents: list[int]) -> None:
        for s, scene in enumerate(self.arrays["scenes"]):
            roots = scene.get("nodes", [])
            if not isinstance(roots, list):
                self.error("TYPE_MISMATCH", f"scene {s}: nodes must be an array", f"/scenes/{s}/nodes")
                continue
            seen = set()
            for r, root in enumerate(roots):
                index = self.index(root, "nodes", f"/scenes/{s}/nodes/{r}")
                if index is None:
                    continue
                if index in seen:
                    self.error("DUPLICATE_ELEMENTS", f"scene {s} lists node {index} twice", f"/scenes/{s}/nodes/{r}")
                elif parents[index] != -1:
                    self.error(
                        "SCENE_NON_ROOT_NODE",
                        f"scene {s} lists node {index}, which is a child of node {parents[index]}",
                        f"/scenes/{s}/nodes/{r}",
                    )
                seen.add(index)
        if "scene" in self.doc:
            self.index(self.doc["scene"], "scenes", "/scene")

    # -- skins, animations, lights ----------------------------------------------------------------

    def _skins(self, meshes: list[tuple[int, int, int]]) -> None:
        for i, skin in enumerate(self.arrays["skins"]):
            where = f"/skins/{i}"
            joints = skin.get("joints")
            if not isinstance(joints, list) or not joints:
                self.error("INVALID_VALUE", f"skin {i} needs a non-empty joints list", f"{where}/joints")
                continue
            for j, joint in enumerate(joints):
                self.index(joint, "nodes", f"{where}/joints/{j}")
            self.index(skin.get("skeleton"), "nodes", f"{where}/skeleton", required=False)
            ibm = self.index(
                skin.get("inverseBindMatrices"), "accessors", f"{where}/inverseBindMatrices", required=False
            )
            if ibm is not None and self.accessor_ok[ibm]:
                acc = self.arrays["accessors"][ibm]
                if acc["type"] != "MAT4" or acc["componentType"] != 5126:
                    self.error("INVALID_VALUE", f"skin {i}: inverseBindMatrices must be float MAT4", where)
                elif acc["count"] < len(joints):
                    self.error(
                        "INVALID_IBM_ACCESSOR_COUNT",
                        f"skin {i} has {len(joints)} joints but {acc['count']} inverse bind matrices",
                        where,
                    )
        # Joint indices in skinned meshes must stay inside their skin's joint list.
        for n, node in enumerate(self.arrays["nodes"]):
            skin, mesh = node.get("skin"), node.get("mesh")
            if not (_is_index(skin) and _is_index(mesh)):
                continue
            if not (0 <= skin < len(self.arrays["skins"]) and 0 <= mesh < len(self.arrays["meshes"])):
                continue
            joints = self.arrays["skins"][skin].get("joints")
            if not isinstance(joints, list):
                continue
            for prim in self.arrays["meshes"][mesh].get("primitives") or []:
                attributes = prim.get("attributes") if isinstance(prim, dict) else None
                for name, acc in (attributes or {}).items():
                    if not name.startswith("JOINTS_") or not _is_index(acc) or not 0 <= acc < len(self.accessor_ok):
                        continue
                    values = self.read_accessor(acc) if self.accessor_ok[acc] else None
                    if values is not None and values.size and int(values.max()) >= len(joints):
                        self.error(
                            "ACCESSOR_JOINTS_INDEX_OOB",
                            f"node {n}: {name} refers to joint {int(values.max())} of {len(joints)}",
                            f"/nodes/{n}",
                        )

    def _animations(self) -> list[AnimationInfo]:
        out = []
        for a, anim in enumerate(self.arrays["animations"]):
            where = f"/animations/{a}"
            samplers, channels = anim.get("samplers"), anim.get("channels")
            if not isinstance(samplers, list) or not isinstance(channels, list):
                self.error("INVALID_VALUE", f"animation {a} needs samplers and channels arrays", where)
                continue
            if not all(isinstance(s, dict) for s in samplers) or not all(isinstance(c, dict) for c in channels):
                self.error("TYPE_MISMATCH", f"animation {a}: samplers and channels must be objects", where)
                continue
            duration = 0.0
            for c, channel in enumerate(channels):
                cw = f"{where}/channels/{c}"
                sampler = channel.get("sampler")
                if not _is_index(sampler) or not 0 <= sampler < len(samplers):
                    self.error("INDEX_OUT_OF_RANGE", f"animation {a} channel {c}: bad sampler {sampler!r:.20}", cw)
                    continue
                target = channel.get("target")
                if not isinstance(target, dict):
                    self.error("UNDEFINED_PROPERTY", f"animation {a} channel {c} has no target", cw)
                    continue
                node = self.index(target.get("node"), "nodes", f"{cw}/target/node", required=False)
                path = target.get("path")
                if not isinstance(path, str) or path not in ANIMATION_PATHS:
                    self.warning("ANIMATION_CHANNEL_PATH", f"animation {a}: unknown target path {path!r:.30}", cw)
                    continue
                duration = max(duration, self._sampler(samplers[sampler], path, node, f"{where}/samplers/{sampler}"))
            name = anim.get("name") if isinstance(anim.get("name"), str) else ""
            out.append(AnimationInfo(name, len(channels), duration))
        return out

    def _sampler(self, sampler: dict[str, Any], path: str, node: int | None, where: str) -> float:
        inp = self.index(sampler.get("input"), "accessors", f"{where}/input")
        outp = self.index(sampler.get("output"), "accessors", f"{where}/output")
        interpolation = sampler.get("interpolation", "LINEAR")
        if interpolation not in ("LINEAR", "STEP", "CUBICSPLINE"):
            self.error("INVALID_VALUE", f"unknown interpolation {interpolation!r:.20}", where)
            return 0.0
        if inp is None or outp is None or not (self.accessor_ok[inp] and self.accessor_ok[outp]):
            return 0.0
        in_acc, out_acc = self.arrays["accessors"][inp], self.arrays["accessors"][outp]
        if in_acc["type"] != "SCALAR" or in_acc["componentType"] != 5126:
            self.error("INVALID_VALUE", "an animation input must be a float SCALAR accessor", where)
            return 0.0
        per_key = 3 if interpolation == "CUBICSPLINE" else 1
        if path == "weights":
            per_key *= max(self._morph_targets(node), 1)
        elif TYPE_COMPONENTS[out_acc["type"]] != ANIMATION_PATHS[path]:
            self.error("INVALID_VALUE", f"animation output for {path} has type {out_acc['type']}", where)
            return 0.0
        if not isinstance(in_acc.get("max"), list):
            self.warning(
                "ANIMATION_INPUT_NO_MAX", "an animation input accessor has no max; VTK skips the animation", where
            )
        expected = in_acc["count"] * per_key
        if out_acc["count"] != expected:
            self.error(
                "ANIMATION_SAMPLER_OUTPUT_ACCESSOR_INVALID_COUNT",
                f"{out_acc['count']} output values for {in_acc['count']} key times (expected {expected})",
                where,
            )
            return 0.0
        times = self.read_accessor(inp)
        if times is not None and times.size:
            finite = times[np.isfinite(times)]
            return float(finite.max()) if finite.size else 0.0
        return 0.0

    def _morph_targets(self, node: int | None) -> int:
        if node is None:
            return 0
        mesh = self.arrays["nodes"][node].get("mesh")
        if not _is_index(mesh) or not 0 <= mesh < len(self.arrays["meshes"]):
            return 0
        prims = self.arrays["meshes"][mesh].get("primitives") or [{}]
        targets = prims[0].get("targets", []) if isinstance(prims[0], dict) else []
        return len(targets) if isinstance(targets, list) else 0

    def _lights(self) -> None:
        ext = self.doc.get("extensions", {})
        lights = ext.get("KHR_lights_punctual", {}).get("lights", []) if isinstance(ext, dict) else []
        count = len(lights) if isinstance(lights, list) else 0
        for i, node in enumerate(self.arrays["nodes"]):
            node_ext = node.get("extensions")
            light = node_ext.get("KHR_lights_punctual") if isinstance(node_ext, dict) else None
            if light is None:
                continue
            index = light.get("light") if isinstance(light, dict) else None
            if not _is_index(index) or not 0 <= index < count:
                self.error("INDEX_OUT_OF_RANGE", f"node {i} refers to light {index!r:.20} of {count}", f"/nodes/{i}")

    # -- summary ------------------------------------------------------------------------------------

    def _summary(
        self,
        nodes: list[tuple[int, np.ndarray]],
        meshes: list[tuple[int, int, int]],
        animations: list[AnimationInfo],
    ) -> ModelSummary | None:
        scenes = self.arrays["scenes"]
        scene = int(self.doc.get("scene", 0)) if scenes else -1
        roots: tuple[int, ...] = tuple(scenes[scene].get("nodes", [])) if scene >= 0 else ()
        if scene < 0:
            self.warning("NO_SCENE", "the file has no scene: there is nothing to show")
        in_scene = [False] * len(nodes)
        stack = list(roots)
        while stack:
            n = stack.pop()
            in_scene[n] = True
            stack.extend(self.arrays["nodes"][n].get("children", []))
        self._scene_nodes = {i for i, shown in enumerate(in_scene) if shown}
        # VTK computes world transforms only for the shown scene's nodes; a skin with a
        # joint elsewhere makes its joint matrices dereference nothing (found by fuzzing).
        for i, node in enumerate(self.arrays["nodes"]):
            if in_scene[i] and node.get("skin") is not None and node.get("mesh") is not None:
                joints = self.arrays["skins"][node["skin"]]["joints"]
                outside = [j for j in joints if not in_scene[j]]
                if outside:
                    self.error(
                        "VTK_UNSUPPORTED",
                        f"node {i}'s skin uses joint node {outside[0]}, which is outside the shown scene",
                        f"/nodes/{i}/skin",
                    )
        if issues_have_errors(self.issues):
            return None
        left_out = self._degenerate_transforms(roots, nodes, meshes)
        if left_out is None:
            return None
        depth = self._depths([p for p, _ in nodes])
        infos = []
        triangles = vertices = actors = 0
        for i, (parent, matrix) in enumerate(nodes):
            node = self.arrays["nodes"][i]
            name = node.get("name") if isinstance(node.get("name"), str) else ""
            mesh = node.get("mesh")
            drawn, tris, verts = meshes[mesh] if mesh is not None else (0, 0, 0)
            if in_scene[i] and i not in left_out:
                triangles += tris
                vertices += verts
                actors += drawn
            infos.append(
                NodeInfo(
                    index=i,
                    name=name,
                    vtk_name=vtk_node_name(name, i),
                    parent=parent,
                    children=tuple(node.get("children", [])),
                    mesh=mesh,
                    primitives=drawn,
                    triangles=tris,
                    matrix=tuple(float(v) for v in matrix.reshape(-1)),
                    in_scene=in_scene[i],
                    depth=depth[i],
                    skinned=node.get("skin") is not None,
                    camera=node.get("camera"),
                    left_out=left_out.get(i, ""),
                )
            )
        if triangles > self.limits.max_triangles:
            self.error(
                "MODEL_TOO_LARGE",
                f"the model has {triangles:,} triangles; at most {self.limits.max_triangles:,} are shown",
            )
            return None
        if roots and actors == 0:
            self.warning("NO_GEOMETRY", "the scene has no drawable geometry")
        asset = self.doc["asset"]
        return ModelSummary(
            generator=str(asset.get("generator", ""))[:200],
            scene=scene,
            roots=roots,
            nodes=tuple(infos),
            triangles=triangles,
            vertices=vertices,
            meshes=len(self.arrays["meshes"]),
            materials=len(self.arrays["materials"]),
            textures=len(self.arrays["textures"]),
            images=len(self.arrays["images"]),
            skins=len(self.arrays["skins"]),
            cameras=len(self.arrays["cameras"]),
            animations=tuple(animations),
            extensions_used=tuple(self.doc.get("extensionsUsed", [])),
            extensions_required=tuple(self.doc.get("extensionsRequired", [])),
            expected_actors=actors,
            left_out_roots=tuple(sorted(self.left_out_roots)),
            dropped_images=tuple(
                ImageInfo(i, str(self.arrays["images"][i].get("name", ""))[:200], why)
                for i, why in sorted(self.dropped_images.items())
            ),
        )

    def _degenerate_transforms(
        self, roots: tuple[int, ...], nodes: list[tuple[int, np.ndarray]], meshes: list[tuple[int, int, int]]
    ) -> dict[int, str] | None:
        """The rule for transforms VTK cannot show (docs/models.md, "Degenerate transforms"),
        shared by `hmi model-info` and the window because both read this summary:

        - a node whose own transform is singular (a scale of 0, an all-zero matrix, a zero
          rotation quaternion) or not affine is left out with its subtree, with a warning
          naming it; VTK would give it NaN or infinite bounds and the whole view would be
          empty, and a collapsed part shows nothing anyway. A skinned mesh whose skin uses a
          joint in a left-out subtree is left out too (VTK cannot pose it).
        - a drawn part whose world bounds are not finite or beyond +-MAX_WORLD_COORDINATE
          (a transform of 1e308, or TRS that overflow when composed down the hierarchy)
          refuses the file, naming the node: the numbers are broken, not one part.

        Returns node -> why it is left out (None when the file is refused)."""
        doc_nodes = self.arrays["nodes"]
        count = len(nodes)
        if not count:
            return {}
        local = np.stack([m for _, m in nodes])
        affine = np.all(local[:, 3, :] == (0.0, 0.0, 0.0, 1.0), axis=1)
        with np.errstate(all="ignore"):  # a huge but finite scale overflows det: the world check refuses it
            det = np.linalg.det(local[:, :3, :3])
        reasons: dict[int, str] = {}
        for i in (int(k) for k in np.flatnonzero(~affine | (det == 0.0))):
            node = doc_nodes[i]
            if "matrix" in node and not np.any(local[i]):
                why = "its matrix is all zeros"
            elif not affine[i]:
                why = "its matrix is not an affine transform (the last row must be 0 0 0 1)"
            else:
                why = "its transform is singular (a scale of 0 collapses it)"
            reasons[i] = why
        # A zero quaternion is singular to VTK even though trs_matrix reads it as no rotation.
        for i, node in enumerate(doc_nodes):
            rotation = node.get("rotation")
            if "matrix" not in node and isinstance(rotation, list) and rotation and not any(rotation):
                reasons[i] = "its rotation is a zero quaternion"
        children = [tuple(node.get("children", [])) for node in doc_nodes]
        skins = self.arrays["skins"]
        while True:
            left_out: dict[int, str] = {}
            owner: dict[int, int] = {}  # left-out node -> the left-out root above it
            stack = [(r, -1) for r in reversed(roots)]
            while stack:
                n, inside = stack.pop()
                if inside >= 0:
                    left_out[n] = f"it is inside left-out node {inside}{_quoted_name(doc_nodes[inside])}"
                    owner[n] = inside
                elif n in reasons:
                    left_out[n] = reasons[n]
                    owner[n] = inside = n
                stack.extend((c, inside) for c in reversed(children[n]))
            more = {}
            for n, node in enumerate(doc_nodes):
                skin = node.get("skin")
                if skin is None or node.get("mesh") is None or n in left_out or n not in self._scene_nodes:
                    continue
                joint = next((j for j in skins[skin]["joints"] if j in left_out), None)
                if joint is not None:
                    more[n] = f"its skin uses joint node {joint}{_quoted_name(doc_nodes[joint])}, which is left out"
            if not more:
                break
            reasons.update(more)
        self.left_out_roots = {n for n, root in owner.items() if n == root}
        for n in sorted(self.left_out_roots):
            below = [m for m, root in owner.items() if root == n and m != n]
            parts = sum(meshes[doc_nodes[m]["mesh"]][0] for m in [n, *below] if doc_nodes[m].get("mesh") is not None)
            extent = f" and the {len(below)} node(s) below it are" if below else " is"
            self.warning(
                "NODE_LEFT_OUT",
                f"node {n}{_quoted_name(doc_nodes[n])}{extent} left out ({parts} drawn part(s)): {left_out[n]}",
                f"/nodes/{n}",
            )
        # World bounds of every part that is shown, composed from the roots down.
        world = np.eye(4)
        stack2: list[tuple[int, np.ndarray]] = [(r, world) for r in reversed(roots)]
        while stack2:
            n, parent_world = stack2.pop()
            if n in left_out:
                continue
            with np.errstate(all="ignore"):
                world = parent_world @ local[n]
            mesh = doc_nodes[n].get("mesh")
            bounds = self.mesh_bounds[mesh] if mesh is not None and meshes[mesh][0] else None
            problem = ""
            if not np.isfinite(world).all():
                problem = "its transform, composed with its parents', overflows to infinity or NaN"
            elif bounds is not None:
                corners = np.array(np.meshgrid(*zip(*bounds, strict=True), indexing="ij")).reshape(3, -1)
                with np.errstate(all="ignore"):
                    placed = world[:3, :3] @ corners + world[:3, 3:4]
                if not np.isfinite(placed).all():
                    problem = "its vertices, placed by its transform and its parents', overflow to infinity or NaN"
                elif np.abs(placed).max() > MAX_WORLD_COORDINATE:
                    problem = (
                        f"its transform places it {np.abs(placed).max():.3g} m from the origin "
                        f"(at most {MAX_WORLD_COORDINATE:.0e} m are shown)"
                    )
            if problem:
                if self._draws(n, meshes):
                    where = f"/nodes/{n}"
                    self.error("NODE_TRANSFORM_OVERFLOW", f"node {n}{_quoted_name(doc_nodes[n])}: {problem}", where)
                    return None
                continue  # nothing below it is drawn
            stack2.extend((c, world) for c in reversed(children[n]))
        return left_out

    def _draws(self, n: int, meshes: list[tuple[int, int, int]]) -> bool:
        """Whether node n or a node below it has a drawn mesh."""
        stack = [n]
        while stack:
            node = self.arrays["nodes"][stack.pop()]
            mesh = node.get("mesh")
            if mesh is not None and meshes[mesh][0]:
                return True
            stack.extend(node.get("children", []))
        return False


def _quoted_name(obj: dict[str, Any]) -> str:
    name = obj.get("name")
    return f" {name[:60]!r}" if isinstance(name, str) and name else ""


def _camera_problem(camera: dict[str, Any]) -> str:
    """Why VTK would skip this camera, or ''."""
    kind = camera.get("type")
    if kind not in ("perspective", "orthographic"):
        return "has no valid type (perspective or orthographic)"
    params = camera.get(kind)
    if not isinstance(params, dict) or not _is_number(params.get("znear")):
        return f"has no {kind}.znear"
    if kind == "orthographic":
        if not all(_is_number(params.get(k)) for k in ("zfar", "xmag", "ymag")):
            return "needs orthographic zfar, xmag and ymag"
    else:
        if not _is_number(params.get("yfov")) or params["yfov"] <= 0:
            return "needs a positive perspective.yfov"
        if "aspectRatio" in params and (not _is_number(params["aspectRatio"]) or params["aspectRatio"] <= 0):
            return "has a non-positive aspectRatio"
    return ""


def element_size(component: int, kind: str) -> int:
    """Bytes per element, with glTF's 4-byte column padding for small matrices."""
    size = COMPONENT_SIZE[component]
    if kind == "MAT2" and size == 1:
        return 8
    if kind == "MAT3" and size in (1, 2):
        return 12 * size
    return TYPE_COMPONENTS[kind] * size


def _external_message(what: str, uri: str) -> str:
    shown = uri if len(uri) <= 60 else uri[:57] + "..."
    escapes = (
        uri.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", uri) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri)
    )
    where = "outside the model's folder" if escapes else "in a separate file"
    return f"{what} refers to {shown!r}, {where}; only embedded data (GLB BIN chunk or data: URI) is loaded"
