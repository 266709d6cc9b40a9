"""One process records into a historian file at a time; readers are never locked out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian.lock import HistorianInUse, WriterLock
from tests.helpers import REPO, wait_until
from tests.historian.conftest import NS, T0, grid_batch

HOLD_LOCK = """
import sys, time
from pathlib import Path
from hmi.historian.lock import WriterLock
lock = WriterLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_writer_on_the_same_file_is_refused_until_the_first_closes(
    db_path: Path, make_writer: Callable[..., HistorianWriter]
) -> None:
    """While one writer runs, starting another on the same file raises HistorianInUse naming
    this process; a reader opens beside the first; once it closes, the second starts."""
    first = make_writer()
    first.submit(grid_batch(4, 0, 10))
    assert first.flush(10)
    second = make_writer(target=f"sqlite:///{db_path}", start=False)
    with pytest.raises(HistorianInUse, match=rf"already being recorded by another process \(pid {os.getpid()} "):
        second.start()
    assert not second.running
    with HistorianReader(db_path) as reader:  # WAL: readers need no lock
        assert reader.count("m.t0", T0, T0 + 10 * NS) == 10
    first.close()
    second.start()
    assert second.running


def test_the_lock_goes_with_a_killed_holder(tmp_path: Path) -> None:
    """A process holding the lock and killed with SIGKILL leaves no stale lock behind."""
    db = tmp_path / "h.sqlite"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = WriterLock(db)
        problem = lock.in_use()
        assert problem is not None and f"pid {holder.pid}" in problem
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    wait_until(lambda: lock.in_use() is None, 5, message="the killed holder's lock stayed")
    lock.acquire()
    lock.release()


def test_a_file_that_cannot_hold_a_lock_does_not_stop_recording(tmp_path: Path) -> None:
    """When the lock file cannot be created (a read-only folder), the writer still starts;
    the database itself reports what it can and cannot do."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "h.sqlite.lock").mkdir()  # a directory where the lock file should be
    lock = WriterLock(folder / "h.sqlite")
    lock.acquire()  # logged, not raised
    assert lock.in_use() is None
