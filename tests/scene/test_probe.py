"""The probe import in a child process and the verdict cache: a crash is a verdict, a good
model is probed once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hmi.scene.probe import ProbeVerdict, VerdictCache, check_model, run_probe
from hmi.scene.validate import validate_file
from tests.helpers import REPO
from tests.scene.hostile import HOSTILE, base_doc, glb

CNC = REPO / "models_glb" / "cnc_mill.glb"


def test_probe_imports_a_good_model() -> None:
    """VTK imports a valid model in the child, which reports as many actors as the validator expects."""
    checked = validate_file(CNC)
    assert checked.data is not None and checked.report.summary is not None
    verdict = run_probe(checked.data)
    assert verdict.ok, verdict.message
    assert verdict.actors == checked.report.summary.expected_actors
    assert verdict.detail["mapped"] == verdict.actors and not verdict.detail["mapping_warnings"]


def test_a_crashing_child_becomes_a_verdict() -> None:
    """A child killed by SIGSEGV is reported as a VTK crash, and such a verdict is worth caching."""
    crash = [
        sys.executable,
        "-c",
        "import os, signal, sys; sys.stdin.buffer.read(); os.kill(os.getpid(), signal.SIGSEGV)",
    ]
    verdict = run_probe(b"bytes", command=crash)
    assert not verdict.ok
    assert "crashed" in verdict.message and "SIGSEGV" in verdict.message
    assert not verdict.detail["transient"]


def test_an_abort_and_a_hang_become_verdicts() -> None:
    """An abort is a crash verdict; a child that never answers is stopped at the timeout (not cached)."""
    abort = [sys.executable, "-c", "import os, sys; sys.stdin.buffer.read(); os.abort()"]
    assert "SIGABRT" in run_probe(b"x", command=abort).message
    hang = [sys.executable, "-c", "import time; time.sleep(30)"]
    verdict = run_probe(b"x", command=hang, timeout_s=0.5)
    assert not verdict.ok and "did not finish" in verdict.message and verdict.detail["transient"]


def test_vtk_importing_nothing_is_a_failure() -> None:
    """A child that survives but imports no actors from a model with geometry fails the probe."""
    empty = [
        sys.executable,
        "-c",
        "import sys, json; sys.stdin.buffer.read(); print(json.dumps({'version': 1, 'actors': 0, 'expected': 3, "
        "'messages': 'ERROR: In x.cxx, line 1\\nvtkGLTFImporter (0x1): Error loading binary data\\n'}))",
    ]
    verdict = run_probe(b"x", command=empty)
    assert not verdict.ok
    assert verdict.message == "VTK imported nothing from this model: Error loading binary data"


def test_the_child_refuses_bytes_the_validator_refuses() -> None:
    """The child validates again, so a child started on hostile bytes never hands them to VTK."""
    verdict = run_probe(HOSTILE["node is its own child"][0])
    assert not verdict.ok and "node 0 is its own child" in verdict.message


def test_cache_round_trip_and_versions(tmp_path: Path) -> None:
    """Verdicts survive a restart; an entry from another VTK version is ignored; transient ones are not stored."""
    path = tmp_path / "cache.json"
    cache = VerdictCache(path)
    cache.put("a" * 64, ProbeVerdict(True, "", 5, 0.4))
    cache.put("b" * 64, ProbeVerdict(False, "VTK crashed importing this model (SIGSEGV)", 0, 0.3))
    cache.put("c" * 64, ProbeVerdict(False, "timeout", detail={"transient": True}))
    again = VerdictCache(path)
    good, bad = again.get("a" * 64), again.get("b" * 64)
    assert good is not None and good.ok and good.actors == 5 and good.cached
    assert bad is not None and not bad.ok and "SIGSEGV" in bad.message
    assert again.get("c" * 64) is None
    stored = json.loads(path.read_text())
    assert stored["format"] == 1
    stored["entries"]["a" * 64]["vtk"] = "0.0.0"
    path.write_text(json.dumps(stored))
    assert VerdictCache(path).get("a" * 64) is None


def test_a_corrupt_cache_file_is_ignored(tmp_path: Path) -> None:
    """A damaged cache file is treated as empty and rewritten, never an error."""
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    cache = VerdictCache(path)
    assert cache.get("a" * 64) is None
    cache.put("a" * 64, ProbeVerdict(True, "", 1, 0.1))
    assert VerdictCache(path).get("a" * 64) is not None


def test_check_model_probes_once_per_file_content(tmp_path: Path) -> None:
    """The second check of the same bytes takes the cached verdict; changed bytes are probed again."""
    cache = VerdictCache(tmp_path / "cache.json")
    model = tmp_path / "model.glb"
    model.write_bytes(glb(base_doc()))
    first = check_model(model, cache)
    assert first.ok and first.probe is not None and not first.probe.cached
    second = check_model(model, cache)
    assert second.ok and second.probe is not None and second.probe.cached
    doc = base_doc()
    doc["nodes"][1]["name"] = "Renamed"
    model.write_bytes(glb(doc))
    third = check_model(model, cache)
    assert third.probe is not None and not third.probe.cached


def test_check_model_does_not_probe_an_invalid_file(tmp_path: Path) -> None:
    """An invalid file is refused by the validator alone: no child process, a readable message."""
    model = tmp_path / "bad.glb"
    model.write_bytes(HOSTILE["two-node cycle"][0])
    check = check_model(model, VerdictCache(tmp_path / "cache.json"))
    assert not check.ok and check.probe is None
    assert check.message == "invalid model file: node 0 is its own ancestor (a cycle)"
