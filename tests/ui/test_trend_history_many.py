"""A trend reads the history of all its pens together (issue #18: fifty pens of a shift open
in under a second) and draws what it drew reading them one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hmi.core.ringbuffer import TrendBuffers
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec
from hmi.historian.reader import HISTORY_SPLIT_TAGS, HistoryLookup
from hmi.historian.writer import HistorianWriter
from hmi.ui.trend import TrendView

NOW = 1_800_000_000.0
PENS = HISTORY_SPLIT_TAGS + 3  # enough for the lookup to split the read over two connections


def record(path: Path, specs: list[TagSpec], start_s: float, seconds: int) -> None:
    """1 Hz samples of every tag through the real writer; tag i reads 10 + i, and a ramp."""
    writer = HistorianWriter(str(path), TagRegistry(specs), commit_interval_s=0.02)
    writer.start()
    ts = ((start_s + np.arange(seconds)) * 1e9).astype(np.int64)
    for i in range(len(specs)):
        writer.submit(SampleBatch.from_arrays(np.full(ts.shape, i), ts, 10.0 + i + (np.arange(seconds) % 2) * 0.5))
    writer.close()


def open_trend(qtbot, buffers: TrendBuffers, specs: list[TagSpec], history) -> TrendView:
    view = TrendView(buffers, list(enumerate(specs)), span_s=3600, clock=lambda: NOW, history=history)
    view.resize(900, 450)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)

    def drawn() -> bool:
        view.refresh()
        return view.history_idle() and all(
            p.history is not None and p.drawn_key[-1] == id(p.history) for p in view.pens
        )

    qtbot.waitUntil(drawn, timeout=15000)
    return view


def live(buffers: TrendBuffers, tag_id: int, since_s: float, value: float) -> None:
    t = ((since_s + np.arange(int(NOW - since_s))) * 1e9).astype(np.int64)
    buffers.append_batch(SampleBatch.from_arrays(np.full(t.shape, tag_id), t, np.full(t.shape, value)))


def test_pens_read_together_draw_what_pens_read_one_by_one_draw(qtbot, tmp_path: Path) -> None:
    """One pen with ten minutes of live data, one never recorded, the rest history only: each
    draws the same curve as a trend whose provider reads one pen per call."""
    specs = [TagSpec(f"m.pen{i:02d}", "u") for i in range(PENS)]
    db = tmp_path / "h.sqlite"
    record(db, specs[:-1], NOW - 2 * 3600, 2 * 3600)
    views = []
    for together in (True, False):
        lookup = HistoryLookup(db)
        buffers = TrendBuffers(10_000)
        live(buffers, 0, NOW - 600, 50.0)
        provider = lookup if together else (lambda *a, lookup=lookup: lookup(*a))  # no `many`: pen by pen
        views.append((open_trend(qtbot, buffers, specs, provider), lookup))
    (together, _), (one_by_one, _) = views
    for i in range(PENS):
        x_a, y_a = together.curve_data(i)
        x_b, y_b = one_by_one.curve_data(i)
        assert np.array_equal(x_a, x_b) and np.array_equal(y_a, y_b, equal_nan=True), specs[i].name
    x, y = together.curve_data(1)
    assert x[0] < NOW - 3000 and set(np.unique(y)) == {11.0, 11.5}
    assert together.curve_data(PENS - 1)[0].shape == (0,)
    for view, lookup in views:
        view.close()
        lookup.close()


def test_pens_whose_live_data_begin_apart_draw_history_only_before_their_own(qtbot, tmp_path: Path) -> None:
    """Pens read in one call up to the latest of their live starts still draw, each, the
    historian's values before its own live data and its live values after, never both."""
    specs = [TagSpec(f"m.pen{i:02d}", "u") for i in range(PENS)]
    db = tmp_path / "h.sqlite"
    record(db, specs, NOW - 2 * 3600, 2 * 3600)
    buffers = TrendBuffers(10_000)
    starts = {i: NOW - 600 + 3 * i for i in range(PENS)}  # within the read's slack of each other
    for i, since in starts.items():
        live(buffers, i, since, 50.0 + i)
    lookup = HistoryLookup(db)
    view = open_trend(qtbot, buffers, specs, lookup)
    try:
        for i, since in starts.items():
            x, y = view.curve_data(i)
            assert np.all(np.diff(x) >= 0), specs[i].name
            before, after = y[x < since], y[x >= since]
            assert x[0] < NOW - 3000 and set(np.unique(before)) <= {10.0 + i, 10.5 + i}
            assert after.shape[0] > 0 and np.all(after == 50.0 + i)
    finally:
        view.close()
        lookup.close()
