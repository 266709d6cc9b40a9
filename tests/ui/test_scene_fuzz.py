"""Fuzzing the validator against VTK itself: every mutant the validator lets through must
import without killing the process. This is how the crashes behind VTK_WOULD_SKIP and
VTK_UNSUPPORTED were found; a short seeded run guards them, `make soak` runs a long one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hmi.scene.validate import validate_bytes
from tests.helpers import REPO, SHARED_TESTDATA
from tests.scene.hostile import BINARY, base_doc
from tests.scene.mutate import mutants, read_glb

# Imports every .glb in a folder in turn, printing each name first: a crash names its file.
CHILD = """
import sys, glob
import vtkmodules.vtkRenderingOpenGL2
from vtkmodules.vtkCommonCore import vtkOutputWindow, vtkStringOutputWindow
from vtkmodules.vtkRenderingCore import vtkRenderer
from hmi.scene.validate import validate_bytes
from hmi.ui.scene_loader import import_glb
vtkOutputWindow.SetInstance(vtkStringOutputWindow())
for path in sorted(glob.glob(sys.argv[1] + "/*.glb")):
    print(path, flush=True)
    checked = validate_bytes(open(path, "rb").read())
    import_glb(checked.data, vtkRenderer(), checked.report.summary)
print("DONE", flush=True)
"""


def seeds() -> list[tuple[dict, bytes]]:
    files = [REPO / "models_glb" / f"{n}.glb" for n in ("robot_arm", "conveyor", "cmm")]
    files += [
        SHARED_TESTDATA / "glb" / "models" / f"{n}.glb"
        for n in ("CesiumMilkTruck", "InterpolationTest", "Fox", "CesiumMan", "AnimatedMorphCube")
    ]
    return [(base_doc(), BINARY)] + [read_glb(f) for f in files if f.exists()]


def fuzz(tmp_path: Path, count: int, seed: int) -> tuple[int, int]:
    accepted = 0
    for n, (data, changes) in enumerate(mutants(seeds(), count, seed)):
        if validate_bytes(data).report.ok:
            accepted += 1
            (tmp_path / f"{n:05d}.glb").write_bytes(data)
            (tmp_path / f"{n:05d}.json").write_text(json.dumps(changes))
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        last = [line for line in result.stdout.splitlines() if line.endswith(".glb")][-1]
        changes = Path(last).with_suffix(".json").read_text()
        pytest.fail(f"VTK died (status {result.returncode}) on {last}, which the validator passed: {changes}")
    assert result.stdout.splitlines()[-1] == "DONE"
    return accepted, count


def test_accepted_mutants_do_not_crash_vtk(tmp_path: Path) -> None:
    """A seeded batch of mutated real models: whatever the validator accepts, VTK imports and survives."""
    accepted, count = fuzz(tmp_path, 200, seed=2024)
    assert 20 < accepted < count, "the mutants exercise both verdicts"


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_accepted_mutants_do_not_crash_vtk_long(tmp_path: Path) -> None:
    """The long run (about 10 minutes, `make soak`): 20,000 mutants (about 5,000 accepted and imported)."""
    fuzz(tmp_path, 20_000, seed=11)
