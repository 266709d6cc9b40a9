"""Qt objects in garbage cycles are destroyed on the GUI thread, never on a worker's.

A worker thread (the 3D view's model check) that allocates triggers Python's cyclic
collection on itself; a cycle holding a QMenu destroyed there deadlocked the window against
the GUI thread. The window process collects on the GUI thread only (hmi/ui/gc_guard.py).
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from PySide6.QtCore import QObject

from hmi.ui.gc_guard import GuiThreadCollector

# These tests compare the guard against Python's own collection: not under the suite's guard.
pytestmark = pytest.mark.automatic_gc


class _Cyclic(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.me = self  # a cycle: only the cyclic collector frees it


def _garbage_cycle(destroyed_on: list[str]) -> weakref.ref[_Cyclic]:
    """A QObject in a garbage cycle; the thread that frees it is appended to `destroyed_on`."""
    return weakref.ref(_Cyclic(), lambda _: destroyed_on.append(threading.current_thread().name))


def _allocate_on_a_worker() -> None:
    def churn() -> None:
        # 50 000 live containers while the list is built: past any generation-0 threshold.
        assert len([[i] for i in range(50_000)]) == 50_000

    worker = threading.Thread(target=churn, name="worker")
    worker.start()
    worker.join()


def test_a_garbage_cycle_with_a_qt_object_dies_on_the_gui_thread_while_a_worker_allocates(qapp) -> None:
    destroyed_on: list[str] = []
    collector = GuiThreadCollector()
    try:
        ref = _garbage_cycle(destroyed_on)
        _allocate_on_a_worker()
        assert destroyed_on == [], "the worker's allocations collected nothing"
        while ref() is not None and collector.check() >= 0:
            pass  # the GUI thread's timer: collects what is due, oldest generation when due
        gc.collect()
        assert destroyed_on == [threading.current_thread().name]
    finally:
        collector.stop()
    assert gc.isenabled()


def test_without_the_guard_a_worker_collects_the_cycle(qapp) -> None:
    """What the guard prevents: the same cycle collected by the worker that allocated."""
    destroyed_on: list[str] = []
    gc.collect()
    ref = _garbage_cycle(destroyed_on)
    _allocate_on_a_worker()
    gc.collect()  # whatever the worker left
    assert destroyed_on == ["worker"] and ref() is None
