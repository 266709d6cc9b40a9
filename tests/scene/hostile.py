"""Hand-made GLB files: a small valid one, and hostile variants that vtkGLTFImporter 9.7
trusts (and dies on, or follows out of the model's folder)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from hmi.scene.builder import pack_glb

POSITIONS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)
INDICES = np.array([0, 1, 2, 2, 1, 3], np.uint16)
BINARY = POSITIONS.tobytes() + INDICES.tobytes()  # 48 + 12 bytes


def base_doc() -> dict[str, Any]:
    """Two nodes (Parent > Child), one mesh of two triangles, indexed."""
    return {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [
            {"name": "Parent", "children": [1], "mesh": 0},
            {"name": "Child", "mesh": 0, "translation": [2.0, 0.0, 0.0]},
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5123, "count": 6, "type": "SCALAR"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 48},
            {"buffer": 0, "byteOffset": 48, "byteLength": 12},
        ],
        "buffers": [{"byteLength": len(BINARY)}],
    }


def glb(doc: dict[str, Any] | bytes, binary: bytes | None = BINARY) -> bytes:
    return pack_glb(doc, binary)


def variant(change: Callable[[dict[str, Any]], object]) -> bytes:
    doc = copy.deepcopy(base_doc())
    change(doc)
    return glb(doc)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        keys = path.split("/")
        target: Any = doc
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _external_buffer(uri: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["buffers"][0]["uri"] = uri

    return change


def _deep_nodes(depth: int) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["nodes"] = [{"name": f"n{i}", "children": [i + 1]} for i in range(depth)] + [{"name": "leaf", "mesh": 0}]

    return change


def _many_nodes(count: int) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["nodes"] = [{}] * count
        doc["scenes"] = [{"nodes": [0]}]

    return change


def _animation(output_count: int, target_node: int = 1, sampler: int = 0) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["accessors"] += [
            {"bufferView": 0, "componentType": 5126, "count": 2, "type": "SCALAR"},
            {"bufferView": 0, "componentType": 5126, "count": output_count, "type": "VEC3"},
        ]
        doc["animations"] = [
            {
                "channels": [{"sampler": sampler, "target": {"node": target_node, "path": "translation"}}],
                "samplers": [{"input": 2, "output": 3}],
            }
        ]

    return change


def skinned(joints: list[int], ibm_count: int, extra_nodes: int = 0) -> bytes:
    """The base file with a skin whose inverse bind matrices follow the other data
    (and `extra_nodes` nodes outside the scene)."""
    doc = base_doc()
    doc["nodes"] += [{"name": f"Outside{i}"} for i in range(extra_nodes)]
    ibm = np.tile(np.eye(4, dtype=np.float32).T.reshape(-1), ibm_count).tobytes()
    doc["bufferViews"].append({"buffer": 0, "byteOffset": len(BINARY), "byteLength": len(ibm)})
    doc["accessors"].append({"bufferView": 2, "componentType": 5126, "count": ibm_count, "type": "MAT4"})
    doc["buffers"][0]["byteLength"] = len(BINARY) + len(ibm)
    doc["skins"] = [{"joints": joints, "inverseBindMatrices": 2}]
    doc["nodes"][0]["skin"] = 0
    return glb(doc, BINARY + ibm)


def deep_json(levels: int) -> bytes:
    """A valid-looking document whose `extras` nest `levels` arrays deep."""
    return glb(b'{"asset":{"version":"2.0"},"extras":' + b"[" * levels + b"]" * levels + b"}", None)


# name -> (file bytes, the error code the validator must report)
HOSTILE: dict[str, tuple[bytes, str]] = {
    "node is its own child": (variant(_set("nodes/0/children", [0])), "NODE_LOOP"),
    "two-node cycle": (variant(_set("nodes/1/children", [0])), "NODE_LOOP"),
    "cycle outside the scene": (
        variant(lambda d: d["nodes"].extend([{"children": [3]}, {"children": [2]}])),
        "NODE_LOOP",
    ),
    "node with two parents": (
        variant(lambda d: d["nodes"].append({"children": [1]})),
        "NODE_PARENT_OVERRIDE",
    ),
    "scene root is a child": (variant(_set("scenes/0/nodes", [0, 1])), "SCENE_NON_ROOT_NODE"),
    "scene index out of range": (variant(_set("scene", 5)), "INDEX_OUT_OF_RANGE"),
    "scene node out of range": (variant(_set("scenes/0/nodes", [0, 99])), "INDEX_OUT_OF_RANGE"),
    "child index out of range": (variant(_set("nodes/0/children", [1, 7])), "INDEX_OUT_OF_RANGE"),
    "negative child index": (variant(_set("nodes/0/children", [-1])), "INDEX_OUT_OF_RANGE"),
    "index that is a float": (variant(_set("nodes/0/mesh", 0.0)), "INVALID_INDEX"),
    "index that is a boolean": (variant(_set("nodes/0/mesh", True)), "INVALID_INDEX"),
    "mesh index out of range": (variant(_set("nodes/1/mesh", 3)), "INDEX_OUT_OF_RANGE"),
    "attribute accessor out of range": (
        variant(_set("meshes/0/primitives/0/attributes/POSITION", 9)),
        "INDEX_OUT_OF_RANGE",
    ),
    "indices accessor out of range": (variant(_set("meshes/0/primitives/0/indices", 4)), "INDEX_OUT_OF_RANGE"),
    "material out of range": (variant(_set("meshes/0/primitives/0/material", 0)), "INDEX_OUT_OF_RANGE"),
    "bufferView out of range": (variant(_set("accessors/0/bufferView", 2)), "INDEX_OUT_OF_RANGE"),
    "buffer out of range": (variant(_set("bufferViews/0/buffer", 1)), "INDEX_OUT_OF_RANGE"),
    "accessor offset past its bufferView": (variant(_set("accessors/0/byteOffset", 40)), "ACCESSOR_TOO_LONG"),
    "accessor count past its bufferView": (variant(_set("accessors/0/count", 5)), "ACCESSOR_TOO_LONG"),
    "huge accessor count": (variant(_set("accessors/0/count", 2**31)), "ACCESSOR_TOO_LARGE"),
    "huge count without a bufferView": (
        variant(lambda d: d["accessors"].__setitem__(0, {"componentType": 5126, "count": 2**40, "type": "VEC3"})),
        "ACCESSOR_TOO_LARGE",
    ),
    "camera without a type": (
        variant(lambda d: d.update(cameras=[{"perspective": {"yfov": 1, "znear": 0.1}}])),
        "VTK_WOULD_SKIP",
    ),
    "zero accessor count": (variant(_set("accessors/0/count", 0)), "INVALID_VALUE"),
    "bufferView past its buffer": (variant(_set("bufferViews/1/byteLength", 100)), "BUFFER_VIEW_TOO_LONG"),
    "buffer longer than the BIN chunk": (variant(_set("buffers/0/byteLength", 4096)), "BUFFER_BYTE_LENGTH_MISMATCH"),
    "index past the vertices": (
        glb(base_doc(), POSITIONS.tobytes() + np.array([0, 1, 2, 2, 1, 99], np.uint16).tobytes()),
        "ACCESSOR_INDEX_OOB",
    ),
    "attributes with different counts": (
        variant(
            lambda d: (
                d["accessors"].append({"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}),
                d["meshes"][0]["primitives"][0]["attributes"].update(NORMAL=2),
            )
        ),
        "MESH_PRIMITIVE_UNEQUAL_ACCESSOR_COUNT",
    ),
    "bad component type": (variant(_set("accessors/0/componentType", 1234)), "INVALID_VALUE"),
    "external buffer ../../etc/passwd": (variant(_external_buffer("../../etc/passwd")), "EXTERNAL_RESOURCE"),
    "external buffer /etc/passwd": (variant(_external_buffer("/etc/passwd")), "EXTERNAL_RESOURCE"),
    "external buffer file:// URI": (variant(_external_buffer("file:///etc/passwd")), "EXTERNAL_RESOURCE"),
    "external buffer in the same folder": (variant(_external_buffer("model.bin")), "EXTERNAL_RESOURCE"),
    "external buffer over http": (variant(_external_buffer("http://example.com/x.bin")), "EXTERNAL_RESOURCE"),
    "data URI that is not base64": (
        variant(_external_buffer("data:application/octet-stream;base64,%%%")),
        "INVALID_URI",
    ),
    "data URI shorter than the buffer": (
        variant(_external_buffer("data:application/octet-stream;base64," + base64.b64encode(b"1234").decode())),
        "BUFFER_BYTE_LENGTH_MISMATCH",
    ),
    "deep JSON beyond Python's recursion limit": (deep_json(100_000), "JSON_TOO_DEEP"),
    "deep JSON within Python's limit": (deep_json(200), "JSON_TOO_DEEP"),
    "JSON that is an array": (glb(b"[1, 2, 3]", None), "INVALID_JSON"),
    "JSON that is a string": (glb(b'"glTF"', None), "INVALID_JSON"),
    "JSON that is null": (glb(b"null", None), "INVALID_JSON"),
    "JSON with NaN": (glb(b'{"asset":{"version":"2.0"},"x":NaN}', None), "INVALID_JSON"),
    "JSON that is not UTF-8": (glb(b'{"asset":{"version":"\xff"}}', None), "INVALID_JSON"),
    "no asset": (glb({"scenes": []}, None), "UNDEFINED_PROPERTY"),
    "glTF 1.0": (glb({"asset": {"version": "1.0"}}, None), "UNSUPPORTED_VERSION"),
    "nodes is an object": (variant(_set("nodes", {"0": {}})), "TYPE_MISMATCH"),
    "a node that is a number": (variant(_set("nodes/1", 5)), "TYPE_MISMATCH"),
    "node hierarchy 1000 deep": (variant(_deep_nodes(1000)), "NODE_TOO_DEEP"),
    "200k nodes": (variant(_many_nodes(200_000)), "TOO_MANY_OBJECTS"),
    "matrix with 15 numbers": (variant(_set("nodes/1/matrix", [1.0] * 15)), "INVALID_VALUE"),
    "translation that is text": (variant(_set("nodes/1/translation", ["a", "b", "c"])), "INVALID_VALUE"),
    "animation output too short": (variant(_animation(1)), "ANIMATION_SAMPLER_OUTPUT_ACCESSOR_INVALID_COUNT"),
    "animation target out of range": (variant(_animation(2, target_node=9)), "INDEX_OUT_OF_RANGE"),
    "animation sampler out of range": (variant(_animation(2, sampler=3)), "INDEX_OUT_OF_RANGE"),
    "skin joint out of range": (skinned([0, 5], 2), "INDEX_OUT_OF_RANGE"),
    "too few inverse bind matrices": (skinned([0, 1], 1), "INVALID_IBM_ACCESSOR_COUNT"),
    "skin joint outside the scene": (skinned([0, 2], 2, extra_nodes=1), "VTK_UNSUPPORTED"),
    "accessor without a bufferView": (
        variant(lambda d: d["accessors"][0].pop("bufferView")),
        "VTK_UNSUPPORTED",
    ),
    "bufferView with an invalid target": (variant(_set("bufferViews/0/target", 2)), "VTK_WOULD_SKIP"),
    "empty scene object": (variant(_set("scenes/0", {})), "VTK_WOULD_SKIP"),
    "node with a matrix and a skin": (
        variant(lambda d: d["nodes"][0].update(matrix=[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], skin=0)),
        "VTK_WOULD_SKIP",
    ),
    "light index out of range": (
        variant(_set("nodes/1/extensions", {"KHR_lights_punctual": {"light": 3}})),
        "INDEX_OUT_OF_RANGE",
    ),
    "texture source out of range": (
        variant(lambda d: d.update(textures=[{"source": 2}])),
        "INDEX_OUT_OF_RANGE",
    ),
    "material texture out of range": (
        variant(lambda d: d.update(materials=[{"pbrMetallicRoughness": {"baseColorTexture": {"index": 4}}}])),
        "INDEX_OUT_OF_RANGE",
    ),
    "sparse index past the count": (
        glb(
            {
                **base_doc(),
                "accessors": [
                    {
                        **base_doc()["accessors"][0],
                        "sparse": {
                            "count": 1,
                            "indices": {"bufferView": 1, "componentType": 5123},
                            "values": {"bufferView": 0},
                        },
                    },
                    base_doc()["accessors"][1],
                ],
            },
            POSITIONS.tobytes() + np.array([9, 0, 0, 0, 0, 0], np.uint16).tobytes(),
        ),
        "ACCESSOR_SPARSE_INDEX_OOB",
    ),
    "required extension unknown to VTK": (
        variant(lambda d: d.update(extensionsUsed=["EXT_made_up"], extensionsRequired=["EXT_made_up"])),
        "UNSUPPORTED_EXTENSION",
    ),
}


def doc_of(data: bytes) -> dict[str, Any]:
    """The JSON chunk of a GLB made by pack_glb."""
    length = int.from_bytes(data[12:16], "little")
    return json.loads(data[20 : 20 + length])
