"""Write glTF 2.0 binary (GLB) files from numpy meshes: what tools/make_models.py uses, and
what tests use to make hostile files (`pack_glb` packs any JSON and bytes, valid or not).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A  # "JSON"
CHUNK_BIN = 0x004E4942  # "BIN\0"

FLOAT = 5126
UNSIGNED_SHORT = 5123
UNSIGNED_INT = 5125
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963


def pack_glb(document: dict[str, Any] | bytes, binary: bytes | None = None, version: int = 2) -> bytes:
    """A GLB container: 12-byte header, a JSON chunk (space padded), an optional BIN chunk
    (zero padded). `document` may be raw bytes so tests can pack broken JSON."""
    text = document if isinstance(document, bytes) else json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), CHUNK_JSON) + text
    if binary is not None:
        padded = binary + b"\0" * (-len(binary) % 4)
        chunks += struct.pack("<II", len(padded), CHUNK_BIN) + padded
    return struct.pack("<III", GLB_MAGIC, version, 12 + len(chunks)) + chunks


@dataclass
class Mesh:
    """Triangles: positions (N, 3), normals (N, 3), indices (M, 3)."""

    positions: np.ndarray
    normals: np.ndarray
    indices: np.ndarray

    @property
    def triangle_count(self) -> int:
        return int(self.indices.shape[0])

    @staticmethod
    def merge(meshes: list[Mesh]) -> Mesh:
        positions, normals, indices = [], [], []
        offset = 0
        for mesh in meshes:
            positions.append(mesh.positions)
            normals.append(mesh.normals)
            indices.append(mesh.indices + offset)
            offset += mesh.positions.shape[0]
        return Mesh(np.concatenate(positions), np.concatenate(normals), np.concatenate(indices))

    def transformed(self, matrix: np.ndarray) -> Mesh:
        """The mesh moved by a 4x4 matrix (normals by its inverse transpose)."""
        pos = self.positions @ matrix[:3, :3].T + matrix[:3, 3]
        normal_matrix = np.linalg.inv(matrix[:3, :3]).T
        nrm = self.normals @ normal_matrix.T
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        return Mesh(pos, nrm, self.indices.copy())


@dataclass
class GltfBuilder:
    """Accumulates buffers, accessors, meshes, materials and nodes; `to_glb()` writes them."""

    generator: str = "hmi"
    doc: dict[str, Any] = field(default_factory=dict)
    _binary: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.doc = {
            "asset": {"version": "2.0", "generator": self.generator},
            "scene": 0,
            "scenes": [{"nodes": []}],
            "nodes": [],
            "meshes": [],
            "materials": [],
            "accessors": [],
            "bufferViews": [],
            "buffers": [],
        }

    # -- raw data -------------------------------------------------------------------------

    def _view(self, data: bytes, target: int | None = None) -> int:
        self._binary.extend(b"\0" * (-len(self._binary) % 4))
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self._binary), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self._binary.extend(data)
        self.doc["bufferViews"].append(view)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int | None = None, minmax: bool = False) -> int:
        array = np.ascontiguousarray(array)
        component = {
            np.dtype(np.float32): FLOAT,
            np.dtype(np.uint16): UNSIGNED_SHORT,
            np.dtype(np.uint32): UNSIGNED_INT,
        }[array.dtype]
        count = array.shape[0] if kind != "SCALAR" else array.size
        acc: dict[str, Any] = {
            "bufferView": self._view(array.tobytes(), target),
            "componentType": component,
            "count": int(count),
            "type": kind,
        }
        if minmax:
            flat = array.reshape(count, -1)
            acc["min"] = [float(v) for v in flat.min(axis=0)]
            acc["max"] = [float(v) for v in flat.max(axis=0)]
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    # -- scene content ----------------------------------------------------------------------

    def material(
        self, name: str, colour: str | tuple[float, float, float], metallic: float = 0.1, roughness: float = 0.6
    ) -> int:
        rgb = hex_to_rgb(colour) if isinstance(colour, str) else colour
        self.doc["materials"].append(
            {
                "name": name,
                "pbrMetallicRoughness": {
                    "baseColorFactor": [*[float(c) for c in rgb], 1.0],
                    "metallicFactor": float(metallic),
                    "roughnessFactor": float(roughness),
                },
            }
        )
        return len(self.doc["materials"]) - 1

    def mesh(self, name: str, parts: list[tuple[Mesh, int]]) -> int:
        """One glTF mesh with a primitive per (mesh, material) part."""
        primitives = []
        for mesh, material in parts:
            positions = mesh.positions.astype(np.float32)
            normals = mesh.normals.astype(np.float32)
            flat = mesh.indices.reshape(-1)
            index_type = np.uint16 if positions.shape[0] < 65536 else np.uint32
            primitives.append(
                {
                    "attributes": {
                        "POSITION": self.accessor(positions, "VEC3", ARRAY_BUFFER, minmax=True),
                        "NORMAL": self.accessor(normals, "VEC3", ARRAY_BUFFER),
                    },
                    "indices": self.accessor(flat.astype(index_type), "SCALAR", ELEMENT_ARRAY_BUFFER),
                    "material": material,
                    "mode": 4,
                }
            )
        self.doc["meshes"].append({"name": name, "primitives": primitives})
        return len(self.doc["meshes"]) - 1

    def node(
        self,
        name: str,
        parent: int | None = None,
        mesh: int | None = None,
        translation: tuple[float, float, float] | None = None,
        rotation: tuple[float, float, float, float] | None = None,
        scale: tuple[float, float, float] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> int:
        node: dict[str, Any] = {"name": name}
        if mesh is not None:
            node["mesh"] = mesh
        for key, value in (("translation", translation), ("rotation", rotation), ("scale", scale)):
            if value is not None:
                node[key] = [float(v) for v in value]
        if extras:
            node["extras"] = extras
        self.doc["nodes"].append(node)
        index = len(self.doc["nodes"]) - 1
        if parent is None:
            self.doc["scenes"][0]["nodes"].append(index)
        else:
            self.doc["nodes"][parent].setdefault("children", []).append(index)
        return index

    def triangle_count(self) -> int:
        return sum(
            self.doc["accessors"][p["indices"]]["count"] // 3 for m in self.doc["meshes"] for p in m["primitives"]
        )

    def to_glb(self) -> bytes:
        doc = {k: v for k, v in self.doc.items() if v != []}
        if self._binary:
            doc["buffers"] = [{"byteLength": len(self._binary)}]
        return pack_glb(doc, bytes(self._binary) if self._binary else None)


def hex_to_rgb(colour: str) -> tuple[float, float, float]:
    """'#rrggbb' as linear-ish 0..1 floats (glTF base colours are linear; we keep sRGB
    values, which VTK also treats as-is, so the colour on screen is the one written)."""
    text = colour.lstrip("#")
    return (int(text[0:2], 16) / 255.0, int(text[2:4], 16) / 255.0, int(text[4:6], 16) / 255.0)
