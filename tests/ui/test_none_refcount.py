"""Regression guard: a live pyqtgraph trend must not drain None's refcount (PySide6 6.12 on 3.11)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

PROBE = r"""
import sys, time
import numpy as np
from PySide6.QtWidgets import QApplication
from hmi.core.ringbuffer import TrendBuffers
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagSpec
from hmi.ui.trend import TrendView

FRAMES = int(sys.argv[1])
app = QApplication([])
buffers = TrendBuffers(5000, [0, 1])
view = TrendView(buffers, [(0, TagSpec("m.a", "rpm", low=0, high=1)), (1, TagSpec("m.b", "C"))], span_s=60)
view.resize(480, 320)
view.show()
app.processEvents()
start = sys.getrefcount(None)
t0 = time.time()
for frame in range(FRAMES):
    now = t0 + frame * 0.05
    batch = SampleBatch.from_arrays([0, 1], [int(now * 1e9)] * 2, [np.sin(frame / 10), frame % 7])
    buffers.append_batch(batch)
    view.refresh(now_s=now)
    view.repaint()
    app.processEvents()
print("frames", view.frames_drawn, "none_refcount", start, sys.getrefcount(None), flush=True)
"""


@pytest.mark.timeout(400)
def test_live_trend_survives_thousands_of_frames_without_draining_none() -> None:
    """2,000 painted frames: the process lives and sys.getrefcount(None) does not fall."""
    result = subprocess.run([sys.executable, "-c", PROBE, "2000"], cwd=REPO, capture_output=True, text=True,
                            timeout=380)  # fmt: skip
    assert result.returncode == 0, f"trend process died ({result.returncode}): {result.stderr[-2000:]}"
    fields = result.stdout.split()
    frames, before, after = int(fields[1]), int(fields[3]), int(fields[4])
    assert frames == 2000
    # Python 3.12+ reports a constant for the immortal None. On 3.11, PySide6 6.11 gains a
    # few references per frame (harmless), 6.12.0 loses one per void call and the process
    # dies of none_dealloc within ~40 frames.
    assert after >= before - 50, f"None refcount fell from {before} to {after}: the PySide6 leak is back"
