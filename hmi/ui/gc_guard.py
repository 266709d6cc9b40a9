"""Python's cyclic garbage collection on the GUI thread only.

Python collects cycles in whichever thread happens to allocate when a generation fills up.
A cycle that holds Qt objects (a closed dialog whose slots reference it, a window's menus)
is then destroyed on that thread: the 3D view's model-check worker, collecting a window's
QMenu, deadlocked against the GUI thread (Qt's object mutex held by one, the GIL by the
other; the window froze for good, seen in the test suite). So a window process turns
automatic collection off and collects from a GUI-thread timer, with the generation
thresholds Python would use.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

CHECK_INTERVAL_MS = 250  # a GUI-thread collection of generation 0 takes well under 1 ms


class GuiThreadCollector(QObject):
    def __init__(self, parent: QObject | None = None, interval_ms: int = CHECK_INTERVAL_MS) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    def check(self) -> int:
        """Collect the oldest generation that is due, as the interpreter would; returns it (-1: none)."""
        counts = gc.get_count()
        if counts[0] <= self.thresholds[0]:
            return -1
        generation = 2 if counts[2] > self.thresholds[2] else 1 if counts[1] > self.thresholds[1] else 0
        gc.collect(generation)
        return generation

    def stop(self) -> None:
        """Back to automatic collection (the window is gone; no worker touches Qt any more)."""
        self._timer.stop()
        if self.was_enabled:
            gc.enable()
