"""The window does not keep the source of every module it imported (PySide6's import hook reads it)."""

from __future__ import annotations

import importlib
import linecache
import sys
from pathlib import Path

import pytest


def test_modules_imported_after_pyside_leave_no_source_lines_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpatched, shiboken's per-import check (`feature_imported`) left each module's whole source
    in linecache (20-30 MB in the window); its verdict, whether the module uses PySide6, must stay
    the same."""
    import hmi.ui  # noqa: F401  (what the window imports first)

    (tmp_path / "hook_probe_plain.py").write_text("VALUE = 1\n")
    (tmp_path / "hook_probe_qt.py").write_text("import PySide6.QtCore\n\nVALUE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plain = importlib.import_module("hook_probe_plain")
    qt = importlib.import_module("hook_probe_qt")
    feature = sys.modules["shibokensupport.feature"]
    linecache.clearcache()
    # What shiboken's import hook calls for each newly imported module (called here directly:
    # whether the hook runs for an import depends on what else replaced __import__ before).
    for module in (plain, qt):
        feature.pyside_feature_dict.pop(module.__name__, None)
        feature.feature_imported(module)
    assert not [name for name in linecache.cache if name.startswith(str(tmp_path))]
    assert feature.pyside_feature_dict["hook_probe_plain"] == -1  # "ignore this module"
    assert feature.pyside_feature_dict["hook_probe_qt"] == 0  # uses PySide6: default features
