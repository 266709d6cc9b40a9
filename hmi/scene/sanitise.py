"""The glTF document VTK receives when the validator left parts or images out.

vtkGLTFImporter loads every image a file lists and gives up on the whole model when one
fails ("Invalid Uri", a PNG libpng cannot read), and a node with a degenerate transform
gives the whole scene NaN bounds. So the validator's verdict (hmi/scene/validate.py) is
applied to the document itself, in memory, keeping everything else exactly as it was:

- a left-out node is detached from its parent's `children` (or the scenes' `nodes`); it
  and its subtree stay in `nodes`, so no index shifts and VTK simply never visits them;
- a left-out image is removed from `images`, textures that use it are removed from
  `textures`, every material reference to such a texture is removed, and the remaining
  texture and image indices are renumbered. Those materials show their base colour.

The BIN chunk is not touched (the dropped images' bytes stay as unreferenced data).
"""

from __future__ import annotations

import copy
from typing import Any


def vtk_document(document: dict[str, Any], left_out: set[int], dropped_images: set[int]) -> dict[str, Any]:
    """A copy of `document` without the left-out subtrees' links and the dropped images."""
    doc = copy.deepcopy(document)
    if left_out:
        for node in doc.get("nodes", []):
            if isinstance(node.get("children"), list):
                node["children"] = [c for c in node["children"] if c not in left_out]
                if not node["children"]:
                    del node["children"]  # an empty array is invalid glTF
        for scene in doc.get("scenes", []):
            if isinstance(scene.get("nodes"), list):
                scene["nodes"] = [n for n in scene["nodes"] if n not in left_out]
    if dropped_images:
        _drop_images(doc, dropped_images)
    return doc


def _drop_images(doc: dict[str, Any], dropped: set[int]) -> None:
    images = doc.get("images", [])
    image_map = _renumber(len(images), dropped)
    doc["images"] = [image for i, image in enumerate(images) if i not in dropped]
    textures = doc.get("textures", [])
    gone = {i for i, texture in enumerate(textures) if texture.get("source") in dropped}
    texture_map = _renumber(len(textures), gone)
    kept = []
    for i, texture in enumerate(textures):
        if i in gone:
            continue
        if texture.get("source") is not None:
            texture["source"] = image_map[texture["source"]]
        kept.append(texture)
    doc["textures"] = kept
    for material in doc.get("materials", []):
        _rewrite_refs(material, gone, texture_map, 0)
    for key in ("images", "textures"):
        if not doc[key]:
            del doc[key]  # an empty array is invalid glTF


def _renumber(count: int, removed: set[int]) -> dict[int, int]:
    out, next_index = {}, 0
    for i in range(count):
        if i not in removed:
            out[i] = next_index
            next_index += 1
    return out


def _rewrite_refs(obj: dict[str, Any], gone: set[int], texture_map: dict[int, int], depth: int) -> None:
    """The same walk as the validator's `_texture_refs`: every `...Texture: {index}`."""
    if depth > 8:
        return
    for key in list(obj):
        value = obj[key]
        if not isinstance(value, dict):
            continue
        if key.endswith("Texture") or key.endswith("texture"):
            index = value.get("index")
            if index in gone:
                del obj[key]
            elif index in texture_map:
                value["index"] = texture_map[index]
        else:
            _rewrite_refs(value, gone, texture_map, depth + 1)
