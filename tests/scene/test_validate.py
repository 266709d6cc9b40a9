"""The GLB validator against real files, the Khronos validator's own verdicts, hand-made
hostile files and random damage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmi.scene.builder import pack_glb
from hmi.scene.report import Severity
from hmi.scene.validate import Limits, validate_bytes, validate_file
from tests.helpers import SHARED_TESTDATA
from tests.scene.hostile import BINARY, HOSTILE, base_doc, glb

GLB_DATA = SHARED_TESTDATA / "glb"
needs_testdata = pytest.mark.skipif(
    not GLB_DATA.is_dir(), reason="the shared third-party GLB files (../shared/testdata/glb) are not here"
)


def _files(folder: str) -> list[Path]:
    return sorted((GLB_DATA / folder).glob("*.glb")) if GLB_DATA.is_dir() else []


@needs_testdata
@pytest.mark.parametrize("path", _files("malformed"), ids=lambda p: p.name)
def test_fatal_verdicts_agree_with_the_khronos_validator(path: Path) -> None:
    """A Khronos fixture is refused exactly when the official validator reports an error."""
    khronos = json.loads(path.with_name(path.name + ".report.json").read_text())
    khronos_ok = khronos["issues"]["numErrors"] == 0
    report = validate_file(path).report
    assert report.ok == khronos_ok, f"{path.name}: ours {report.headline()!r}, Khronos {khronos['issues']['messages']}"
    if not report.ok:
        assert report.errors[0].message  # a readable reason, never an empty one


@needs_testdata
@pytest.mark.parametrize("path", _files("models"), ids=lambda p: p.name)
def test_real_models_pass_with_a_summary(path: Path) -> None:
    """Every real model VTK can load passes, with a node tree, triangles and actors to expect."""
    checked = validate_file(path)
    report = checked.report
    assert report.ok, report.headline()
    assert checked.data is not None and len(checked.data) == path.stat().st_size
    summary = report.summary
    assert summary is not None
    assert summary.triangles > 0 and summary.expected_actors > 0
    assert list(summary.walk()), "the scene has nodes"


@needs_testdata
def test_summaries_of_known_models() -> None:
    """Node names, VTK's names for unnamed nodes, animations and textures are reported as in the files."""
    truck = validate_file(GLB_DATA / "models" / "CesiumMilkTruck.glb").report.summary
    assert truck is not None
    assert [n.vtk_name for n in truck.walk()] == ["node_0", "node_3", "node_4", "node_1", "node_2"]
    assert truck.triangles == 3624 and truck.expected_actors == 5 and truck.textures >= 1
    assert len(truck.animations) == 1 and truck.animations[0].duration_s == pytest.approx(1.25, abs=0.05)
    interpolation = validate_file(GLB_DATA / "models" / "InterpolationTest.glb").report.summary
    assert interpolation is not None and len(interpolation.animations) == 9
    assert all("." in n.name for n in interpolation.nodes if n.name.startswith("Cube."))
    fox = validate_file(GLB_DATA / "models" / "Fox.glb").report.summary
    assert fox is not None and fox.skins == 1 and any(n.skinned for n in fox.nodes)


@needs_testdata
@pytest.mark.parametrize("path", _files("unsupported"), ids=lambda p: p.name)
def test_compressed_models_are_reported_as_unsupported(path: Path) -> None:
    """Draco, quantized and meshopt files are refused with "unsupported: <extension>"."""
    report = validate_file(path).report
    assert not report.ok
    assert report.headline().startswith("unsupported: ")
    expected = {
        "draco": "KHR_draco_mesh_compression",
        "Draco": "KHR_draco_mesh_compression",
        "quantized": "KHR_mesh_quantization",
        "meshopt": "EXT_meshopt_compression",
    }
    wanted = next(ext for key, ext in expected.items() if key in path.name)
    assert wanted in report.unsupported
    assert f"unsupported: {wanted}" in report.errors[0].message or any(wanted in e.message for e in report.errors)


def test_the_base_file_is_valid() -> None:
    """The hand-made base of the hostile files is itself valid (so each variant tests one thing)."""
    report = validate_bytes(glb(base_doc())).report
    assert report.ok, report.issues
    assert report.summary is not None and report.summary.triangles == 4 and report.summary.expected_actors == 2


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_refused(name: str) -> None:
    """Each hostile variant is refused with its own error code, and no bytes are released."""
    data, code = HOSTILE[name]
    checked = validate_bytes(data)
    assert not checked.report.ok
    assert code in [issue.code for issue in checked.report.errors], checked.report.issues
    assert checked.data is None


def test_external_uris_never_pass_and_say_where_they_point() -> None:
    """A buffer URI leaving the model's folder is named as such in the message."""
    message = validate_bytes(HOSTILE["external buffer ../../etc/passwd"][0]).report.headline()
    assert "outside the model's folder" in message and "../../etc/passwd" in message


def test_extra_bytes_after_the_glb_are_dropped_before_vtk() -> None:
    """Bytes past the declared length are a warning, and VTK is handed only the declared GLB."""
    data = glb(base_doc())
    checked = validate_bytes(data + b"\0\0\0\0garbage")
    assert checked.report.ok
    assert [i.code for i in checked.report.warnings] == ["GLB_EXTRA_DATA"]
    assert checked.data == data


def test_limits_are_configurable() -> None:
    """A file over a configured size limit is refused before it is parsed."""
    data = glb(base_doc())
    report = validate_bytes(data, limits=Limits(max_file_bytes=len(data) - 1)).report
    assert [i.code for i in report.errors] == ["FILE_TOO_LARGE"]


def test_missing_file_is_a_readable_error(tmp_path: Path) -> None:
    """A missing file is a verdict with the reason, not an exception."""
    report = validate_file(tmp_path / "nope.glb").report
    assert not report.ok and "No such file" in report.headline()


def test_severities_are_ordered_like_khronos() -> None:
    """ERROR < WARNING < INFO, as the Khronos reports number them (0, 1, 2)."""
    assert (Severity.ERROR, Severity.WARNING, Severity.INFO) == (0, 1, 2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_damage_never_raises(data: st.DataObject) -> None:
    """Truncating, flipping or splicing bytes of a valid GLB always yields a verdict, never an exception."""
    original = bytearray(glb(base_doc()))
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "set"]))
        if not damaged:
            break
        pos = data.draw(st.integers(0, len(damaged) - 1))
        if kind == "flip":
            damaged[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "truncate":
            damaged = damaged[:pos]
        elif kind == "insert":
            damaged[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            damaged[pos] = data.draw(st.integers(0, 255))
    report = validate_bytes(bytes(damaged)).report
    assert report.ok in (True, False)
    assert not any(i.code == "VALIDATOR_ERROR" for i in report.issues), report.issues


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(
        [
            "nodes",
            "meshes",
            "accessors",
            "bufferViews",
            "buffers",
            "scenes",
            "scene",
            "animations",
            "skins",
            "materials",
            "textures",
            "images",
            "cameras",
            "extensions",
            "extensionsRequired",
            "asset",
        ]
    ),
    json_values,
    st.integers(0, 3),
)
def test_random_json_never_raises(key: str, value: object, index: int) -> None:
    """Any JSON value in any glTF property (or inside its first elements) yields a verdict, never a crash."""
    doc = base_doc()
    target = doc.get(key)
    if isinstance(target, list) and target and index < len(target) and isinstance(value, dict):
        target[index] = {**target[index], **value} if isinstance(target[index], dict) else value
    else:
        doc[key] = value
    report = validate_bytes(pack_glb(doc, BINARY)).report
    assert not any(i.code == "VALIDATOR_ERROR" for i in report.issues), report.issues
