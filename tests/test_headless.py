"""Everything but the pixels runs without Qt: the headless parts import with PySide6 blocked."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

BLOCKED_IMPORT = r"""
import sys
for name in ("PySide6", "pyqtgraph", "vtk", "vtkmodules", "qasync", "shiboken6"):
    sys.modules[name] = None  # any import of these now raises ImportError
import pkgutil, importlib
import hmi
skipped = []
for info in pkgutil.walk_packages(hmi.__path__, "hmi."):
    if info.name.startswith("hmi.ui") or info.name == "hmi.__main__":
        skipped.append(info.name)
        continue
    importlib.import_module(info.name)
from hmi.runtime import Runtime
from hmi.config import load_project
project = load_project(sys.argv[1])
runtime = Runtime(project)
print("ok", len(runtime.bus.registry))
"""


def test_every_package_but_ui_imports_and_builds_a_runtime_without_qt() -> None:
    """With PySide6, pyqtgraph, VTK and qasync unimportable, all of hmi except hmi.ui imports and a runtime builds."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT, str(REPO / "config" / "demo.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
