"""`hmi check-config` and `hmi run` run the same checks: what one refuses the other never starts.
Every machine model is validated once, bound or not, and a bad one is reported once, at its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hmi.config import ConfigError, load_project
from hmi.project_checks import check_project_files, load_checked_project
from tests.helpers import REPO, SHARED_TESTDATA, free_port

MALFORMED = SHARED_TESTDATA / "glb" / "malformed"
needs_testdata = pytest.mark.skipif(not MALFORMED.is_dir(), reason="needs ../shared/testdata/glb/malformed")


def project_text(model: Path | str | None = None, bindings: str = "", extra: str = "") -> str:
    # The plant's port is closed: a runtime that starts anyway just retries until --duration ends.
    model_line = f"model = {str(model)!r}\n" if model is not None else ""
    return f"""
[project]
name = "Line 1"
{extra}
[connections.plc]
kind = "opcua"
endpoint = "opc.tcp://127.0.0.1:{free_port()}"

[machines.cnc01]
{model_line}
[tags."cnc01.speed"]
connection = "plc"
address = "ns=2;s=Speed"
{bindings}"""


def binding(node: str) -> str:
    return f'\n[[bindings]]\nmachine = "cnc01"\nnode = "{node}"\nrotate = {{ tag = "cnc01.speed" }}\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "project.toml"
    path.write_text(text, encoding="utf-8")
    return path


def hmi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hmi", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def run_headless(path: Path) -> subprocess.CompletedProcess[str]:
    # --duration bounds the old behaviour (the runtime starting anyway) to a couple of seconds.
    return hmi("run", "--project", str(path), "--headless", "--no-ipc", "--duration", "2")


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_checked_project(path)
    return [str(issue).removeprefix(f"{path}: ") for issue in info.value.issues]


CNC = REPO / "models_glb" / "cnc_mill.glb"

REFUSED = {
    "binding to a missing node": (
        project_text(CNC, binding("Spindel")),
        ["bindings[0].node: no node 'Spindel' in cnc_mill.glb (did you mean 'Spindle', 'SpindleHead'?)"],
    ),
    "missing model file": (
        project_text("no_such_model.glb"),
        ["machines.cnc01.model: no such file: {dir}/no_such_model.glb"],
    ),
    "unknown demo machine": (
        project_text(extra='\n[simulator]\nmachines = ["cnc99"]\n'),
        ["simulator.machines[0]: unknown demo machine 'cnc99'"],
    ),
}


@pytest.mark.parametrize("text, expected", list(REFUSED.values()), ids=list(REFUSED))
def test_check_config_and_run_refuse_the_same_project(tmp_path: Path, text: str, expected: list[str]) -> None:
    """check-config exits 2 with `FILE: key: message`; `hmi run --headless` exits 2 with the same lines
    and never starts the runtime."""
    path = write(tmp_path, text)
    lines = [f"{path}: " + line.format(dir=tmp_path) for line in expected]
    checked = hmi("check-config", str(path))
    assert (checked.returncode, checked.stderr.splitlines()) == (2, lines)
    run = run_headless(path)
    assert run.returncode == 2, run.stderr
    assert [line for line in run.stderr.splitlines() if line.startswith(f"{path}: ")] == lines
    assert "samples received" not in run.stdout


def test_run_refuses_absurd_nesting_like_check_config(tmp_path: Path) -> None:
    """A file nested thousands deep: `hmi run` exits 2 naming the file, no RecursionError traceback."""
    path = write(tmp_path, project_text() + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    run = run_headless(path)
    assert run.returncode == 2
    assert f"{path}: nesting deeper than 100 levels" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_good_project_passes_both(tmp_path: Path) -> None:
    """A project with a bound, valid model and a correct node loads through the same checks."""
    path = write(tmp_path, project_text(CNC, binding("Spindle")))
    assert load_checked_project(path).bindings[0].node == "Spindle"


@needs_testdata
def test_an_unbound_malformed_model_is_reported(tmp_path: Path) -> None:
    """No binding reads the model, yet a model the window cannot show is an error at its key."""
    bad = MALFORMED / "glb__invalid_magic.glb"
    path = write(tmp_path, project_text(bad))
    assert problems(path) == [
        "machines.cnc01.model: the model glb__invalid_magic.glb cannot be used: not a GLB file "
        "(starts with b'\\x00\\x00\\x00\\x00', expected b'glTF')"
    ]


@needs_testdata
@pytest.mark.parametrize("name", sorted(p.name for p in MALFORMED.glob("*.glb")) if MALFORMED.is_dir() else [])
def test_each_malformed_model_is_reported_once_at_its_key(tmp_path: Path, name: str) -> None:
    """Three bindings on one machine with a Khronos test fixture as its model: a refused model is one
    message at machines.<id>.model (none per binding); an accepted one only checks the bound nodes."""
    from hmi.scene.validate import validate_file

    model = MALFORMED / name
    path = write(tmp_path, project_text(model, binding("A") + binding("B") + binding("C")))
    issues = check_project_files(load_project(path))
    at_model = [i for i in issues if i.path == "machines.cnc01.model"]
    at_bindings = [i for i in issues if i.path.startswith("bindings")]
    if validate_file(model).report.ok:
        assert at_model == []
        assert [i.path for i in at_bindings] == ["bindings[0].node", "bindings[1].node", "bindings[2].node"]
    else:
        assert len(at_model) == 1 and f"the model {name} cannot be used: " in at_model[0].message
        assert at_bindings == []


@needs_testdata
def test_a_model_shared_by_two_machines_is_validated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two machines on one file: one validation, one message per machine key."""
    import hmi.project_checks

    calls: list[Path] = []
    real = hmi.project_checks.validate_file

    def counting(path: Path) -> object:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(hmi.project_checks, "validate_file", counting)
    bad = MALFORMED / "glb__truncated_chunk_data.glb"
    text = project_text(bad).replace("[tags.", f"[machines.cnc02]\nmodel = {str(bad)!r}\n\n[tags.")
    issues = check_project_files(load_project(write(tmp_path, text)))
    assert [i.path for i in issues] == ["machines.cnc01.model", "machines.cnc02.model"]
    assert len(calls) == 1
