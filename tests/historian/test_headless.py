"""The historian and the replay source run without Qt."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO


def test_historian_and_replay_import_with_qt_blocked() -> None:
    """hmi.historian, hmi.sources.replay and the runtime import with PySide6 unavailable."""
    code = (
        "import sys\n"
        "for name in ('PySide6', 'pyqtgraph', 'vtk', 'qasync'):\n"
        "    sys.modules[name] = None\n"
        "import hmi.historian, hmi.historian.export, hmi.sources.replay, hmi.runtime\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
