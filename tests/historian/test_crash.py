"""A writer killed with SIGKILL leaves a sound file holding every committed batch."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hmi.historian import HistorianReader
from tests.helpers import REPO

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from hmi.core.samples import SampleBatch
    from hmi.core.tags import TagRegistry, TagSpec
    from hmi.historian import HistorianWriter

    registry = TagRegistry(TagSpec(f"m.t{i}") for i in range(50))
    writer = HistorianWriter(sys.argv[1], registry, commit_interval_s=0.02, max_batch_samples=20_000)
    writer.start()
    ids = np.repeat(np.arange(50, dtype=np.int32), 100)
    step = 0
    reported = 0
    while True:
        ts = 1_790_000_000_000_000_000 + (step * 100 + np.tile(np.arange(100), 50)) * 1_000_000
        if writer.queue_depth < 200_000:
            writer.submit(SampleBatch.from_arrays(ids, ts, np.random.random(5000), 0))
            step += 1
        if writer.stats.written != reported:
            reported = writer.stats.written
            print("committed", reported, flush=True)
        else:
            time.sleep(0.001)
    """
)


@pytest.mark.parametrize("threshold", [150_000])
def test_sigkill_loses_nothing_committed(tmp_path: Path, threshold: int) -> None:
    """A child writing at full speed is SIGKILLed; the file passes integrity_check and has at
    least every sample the child saw committed."""
    path = tmp_path / "crash.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    committed = 0
    deadline = time.monotonic() + 60
    try:
        assert child.stdout is not None
        for line in child.stdout:
            committed = int(line.split()[1])
            if committed >= threshold or time.monotonic() > deadline:
                break
        # Let it keep writing for a moment, so the kill lands mid-transaction.
        time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert committed >= threshold, (
        f"the child only committed {committed} samples: {child.stderr.read() if child.stderr else ''}"
    )

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert rows >= committed
    with HistorianReader(path) as reader:
        assert len(reader.tags()) == 50
        assert sum(reader.count(t, 0, 2**62) for t in reader.tags()) == rows
