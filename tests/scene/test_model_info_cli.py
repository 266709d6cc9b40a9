"""`hmi model-info FILE.glb`: the node tree and triangle count, or the error and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO
from tests.scene.hostile import HOSTILE


def model_info(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hmi", "model-info", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_good_model_prints_tree_and_triangles() -> None:
    """A demo model exits 0 and prints its verdict, triangle count and indented node tree."""
    result = model_info("models_glb/robot_arm.glb")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("models_glb/robot_arm.glb: OK: glTF 2.0")
    assert "1,848 triangles" in lines[0]
    assert "  RobotArm" in lines and any(line.startswith(" " * 16 + "Joint6  [") for line in lines)


def test_bad_model_prints_the_error_and_fails(tmp_path: Path) -> None:
    """A hostile file exits 1 with the reason on the first line."""
    path = tmp_path / "cycle.glb"
    path.write_bytes(HOSTILE["two-node cycle"][0])
    result = model_info(str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == f"{path}: INVALID: node 0 is its own ancestor (a cycle)"


def test_missing_file_fails() -> None:
    """A file that is not there is reported and exits 1."""
    result = model_info("no/such/model.glb")
    assert result.returncode == 1 and "cannot read model.glb" in result.stdout


def test_json_report_and_probe() -> None:
    """--json prints the full report; --probe adds the child-process import's verdict."""
    result = model_info("models_glb/cmm.glb", "--json", "--probe")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["probe"]["ok"] is True
    assert data["summary"]["triangles"] == 844
    assert [n["name"] for n in data["summary"]["nodes"]][:3] == ["Cmm", "Table", "Part"]


def test_no_file_is_a_usage_error() -> None:
    """Without a file the command says so and exits 2."""
    result = model_info()
    assert result.returncode == 2 and "a GLB file is required" in result.stderr
