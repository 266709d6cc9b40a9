"""Everything Qt: the window process. Nothing outside hmi/ui imports PySide6, pyqtgraph or vtk."""

from __future__ import annotations

import sys

import PySide6.QtCore  # noqa: F401  (installs shiboken's import hook, patched below)


def _source_mentions_pyside(module: object) -> bool:
    """What shiboken's `_mod_uses_pyside` answers, without keeping the source in linecache.

    PySide6 hooks every import after its own and calls inspect.getsource(module) to see
    whether the module's source mentions "PySide6" (to decide on its __feature__ switches).
    inspect keeps each file it read in linecache for good: 20-30 MB of source lines in the
    window (SQLAlchemy, pydantic, the app itself), never read again.
    """
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return False  # extension modules, frozen or bundled code: inspect finds no source either
    try:
        with open(path, "rb") as source:
            return b"PySide6" in source.read()
    except OSError:
        return False


def _tame_pyside_import_hook() -> None:
    feature = sys.modules.get("shibokensupport.feature")
    if feature is not None and hasattr(feature, "_mod_uses_pyside"):
        setattr(feature, "_mod_uses_pyside", _source_mentions_pyside)  # noqa: B010  (a module only known at run time)


_tame_pyside_import_hook()
