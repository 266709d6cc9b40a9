"""The window does not keep the source of every module it imported (PySide6's import hook reads it)."""

from __future__ import annotations

import linecache
import sys
from pathlib import Path

import pytest


def test_modules_imported_after_pyside_leave_no_source_lines_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpatched, each module imported after PySide6 left its whole source in linecache (20-30 MB in
    the window); the hook's answer, whether the module uses PySide6, must stay the same."""
    import hmi.ui  # noqa: F401  (what the window imports first)

    (tmp_path / "hook_probe_plain.py").write_text("VALUE = 1\n")
    (tmp_path / "hook_probe_qt.py").write_text("import PySide6.QtCore\n\nVALUE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    linecache.clearcache()
    __import__("hook_probe_plain")  # the import statement's path, which shiboken hooks
    __import__("hook_probe_qt")
    assert not [name for name in linecache.cache if name.startswith(str(tmp_path))]
    feature = sys.modules["shibokensupport.feature"]
    assert feature.pyside_feature_dict["hook_probe_plain"] == -1  # "ignore this module"
    assert feature.pyside_feature_dict["hook_probe_qt"] == 0  # uses PySide6: default features
