"""The rule for degenerate transforms and unusable images, without VTK: what the validator
leaves out, what it refuses, and the bytes it hands on (tests/ui/test_scene_degenerate.py
imports them with VTK)."""

from __future__ import annotations

import copy
import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.scene.images import image_problem
from hmi.scene.report import describe
from hmi.scene.transforms import world_matrices
from hmi.scene.validate import MAX_WORLD_COORDINATE, validate_bytes
from tests.helpers import SHARED_TESTDATA
from tests.scene.hostile import base_doc, glb
from tests.scene.mutate import read_glb

SHEEN = SHARED_TESTDATA / "glb" / "models" / "SheenCloth.glb"
CORNERS = np.array([[x, y, 0.0, 1.0] for x in (0.0, 1.0) for y in (0.0, 1.0)]).T  # base_doc's mesh bounds


def json_of(data: bytes) -> dict[str, Any]:
    length = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20 : 20 + length])


floats = st.one_of(
    st.floats(-10, 10),
    st.sampled_from([0.0, -0.0, 1e-200, 1e10, -1e154, 1e200, 1e308, -1e308]),
)
vec3 = st.lists(floats, min_size=3, max_size=3)
quat = st.one_of(st.just([0.0, 0.0, 0.0, 1.0]), st.just([0.0, 0.0, 0.0, 0.0]), st.lists(floats, min_size=4, max_size=4))


@settings(max_examples=300, deadline=None)
@given(
    node=st.sampled_from([0, 1]), key=st.sampled_from(["translation", "scale", "rotation", "matrix"]), data=st.data()
)
def test_every_transform_is_shown_finite_left_out_or_refused_with_the_node_named(
    node: int, key: str, data: st.DataObject
) -> None:
    """For any transform on either node, the model is refused naming a node, or every part shown has finite
    world bounds within the limit, every part left out is named in a warning, and the bytes VTK gets
    validate again with nothing left out."""
    doc = base_doc()
    if key == "matrix":
        value: list[float] = data.draw(st.lists(floats, min_size=16, max_size=16))
    else:
        value = data.draw(quat if key == "rotation" else vec3)
    doc["nodes"][node][key] = value
    checked = validate_bytes(glb(doc))
    report = checked.report
    if not report.ok:
        assert any(e.message.startswith(("node 0 'Parent'", "node 1 'Child'")) for e in report.errors), report.errors
        return
    summary = report.summary
    assert summary is not None and checked.data is not None
    with np.errstate(all="ignore"):
        world = world_matrices(
            [np.array(n.matrix).reshape(4, 4) for n in summary.nodes], [n.parent for n in summary.nodes]
        )
    for info in summary.walk():
        if info.shown:
            with np.errstate(all="ignore"):
                placed = world[info.index] @ CORNERS
            assert np.isfinite(placed).all() and np.abs(placed).max() <= MAX_WORLD_COORDINATE
    left_out = [n for n in summary.nodes if n.left_out]
    for info in left_out:
        if info.index in summary.left_out_roots:
            assert any(w.message.startswith(f"node {info.index} {info.name!r}") for w in report.warnings)
    assert summary.expected_actors == sum(1 for n in summary.walk() if n.shown)
    again = validate_bytes(checked.data)
    assert again.report.ok and again.report.summary is not None
    assert not again.report.summary.left_out_roots
    assert sorted(n.index for n in again.report.summary.walk()) == [n.index for n in summary.nodes if n.shown]


def test_a_singular_parent_takes_its_subtree_and_model_info_says_so() -> None:
    """A scale of 0 on Parent leaves Parent and Child out; model-info's text names the node and the reason."""
    doc = base_doc()
    doc["nodes"][0]["scale"] = [0.0, 1.0, 1.0]
    checked = validate_bytes(glb(doc), "flat.glb")
    report = checked.report
    assert report.ok and report.summary is not None
    assert [n.left_out != "" for n in report.summary.nodes] == [True, True]
    assert report.summary.expected_actors == 0 and report.summary.triangles == 0
    text = "\n".join(describe(report))
    assert "node 0 'Parent' and the 1 node(s) below it are left out (2 drawn part(s))" in text
    assert "0 drawn part(s) (2 left out)" in text
    assert "Parent  [2 triangles, 1 primitive(s)]  [LEFT OUT with its subtree: its transform is singular" in text
    assert json_of(checked.data or b"")["scenes"][0]["nodes"] == []


def test_a_skin_whose_joint_is_left_out_is_left_out_too() -> None:
    """A skinned mesh cannot be posed without its joint: when the joint's subtree is left out, so is the mesh."""
    doc = base_doc()
    doc["nodes"].append({"name": "Joint", "scale": [0.0, 0.0, 0.0]})
    doc["nodes"].append({"name": "Skinned", "mesh": 0, "skin": 0})
    doc["scenes"][0]["nodes"] += [2, 3]
    doc["skins"] = [{"joints": [2]}]
    report = validate_bytes(glb(doc)).report
    assert report.ok and report.summary is not None
    assert report.summary.left_out_roots == (2, 3)
    assert "its skin uses joint node 2 'Joint', which is left out" in report.summary.nodes[3].left_out


def test_only_the_left_out_links_change_in_the_bytes_vtk_gets() -> None:
    """Sanitising detaches the left-out node and changes nothing else; a clean file is handed on byte for byte."""
    doc = base_doc()
    clean = glb(doc)
    assert validate_bytes(clean).data == clean
    doc["nodes"][1]["matrix"] = [0.0] * 16
    data = validate_bytes(glb(doc)).data
    assert data is not None
    sent = json_of(data)
    expected = copy.deepcopy(doc)
    del expected["nodes"][0]["children"]
    assert sent == expected

    def bin_chunk(glb_bytes: bytes) -> bytes:
        return glb_bytes[20 + struct.unpack_from("<I", glb_bytes, 12)[0] :]

    assert bin_chunk(data) == bin_chunk(glb(doc))


@pytest.mark.skipif(not SHEEN.exists(), reason="needs ../shared/testdata/glb (third-party GLBs)")
def test_a_dropped_image_is_removed_and_the_rest_renumbered() -> None:
    """With image 1 of SheenCloth's four unusable, VTK gets three images, no texture using image 1, no
    material reference to such a texture, and every other reference still pointing at the same image."""
    doc, binary = read_glb(SHEEN)
    doc = copy.deepcopy(doc)
    doc["images"][1] = {"uri": "elsewhere/missing.png", "name": "gone"}
    checked = validate_bytes(glb(doc, binary))
    assert checked.report.ok and checked.data is not None and checked.report.summary is not None
    assert [(i.index, i.name) for i in checked.report.summary.dropped_images] == [(1, "gone")]
    sent = json_of(checked.data)
    assert len(sent["images"]) == 3 and all(i.get("name") != "gone" for i in sent["images"])

    def image_of(document: dict[str, Any], material: dict[str, Any], found: dict[str, Any]) -> dict[str, str]:
        out = {}
        for key, value in found.items():
            if isinstance(value, dict) and key.endswith("Texture"):
                out[key] = json.dumps(document["images"][document["textures"][value["index"]]["source"]])
            elif isinstance(value, dict):
                out.update({f"{key}/{k}": v for k, v in image_of(document, material, value).items()})
        return out

    for before, after in zip(doc["materials"], sent["materials"], strict=True):
        old = image_of(doc, before, before)
        new = image_of(sent, after, after)
        gone = json.dumps(doc["images"][1])
        assert new == {k: v for k, v in old.items() if v != gone}


def test_image_checks_accept_real_textures_and_name_the_damage() -> None:
    """The PNG/JPEG check passes every texture of the third-party models and says what is wrong with a damaged one."""
    checked = 0
    for path in sorted((SHARED_TESTDATA / "glb" / "models").glob("*.glb")):
        doc, binary = read_glb(path)
        for image in doc.get("images", []):
            view = doc["bufferViews"][image["bufferView"]]
            data = binary[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
            assert image_problem(data, image["mimeType"]) == "", (path.name, image)
            checked += 1
            if image["mimeType"] == "image/png":
                damaged = bytearray(data)
                damaged[len(damaged) // 2] ^= 0x01
                assert "CRC error" in image_problem(bytes(damaged), "image/png")
            assert "cut off" in image_problem(data[: len(data) // 2], image["mimeType"])
    if not checked:
        pytest.skip("needs ../shared/testdata/glb (third-party GLBs)")
    assert image_problem(b"RIFF....WEBP", "image/webp") == "its type 'image/webp' is not PNG or JPEG"
