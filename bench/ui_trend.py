"""Trends under Xvfb, each figure beside the raw pyqtgraph ceiling measured in the same run.

1. Redraw rate: 20 pens x 1 hour at 10 Hz (36,000 points each) at 1280x800, every frame a
   live frame at its dearest (a scroll step and a new sample per pen), with our per-pixel
   min/max decimation, beside the same plot drawn with pyqtgraph's own
   peak downsampling and clip-to-view only.
2. History: 50 pens x 8 hours at 1 Hz written by the real HistorianWriter to a SQLite file;
   how long a TrendView on an empty ring buffer takes to show all of it (open), and its
   frame rate while the operator pans back through it; beside a plain PlotWidget given
   every raw sample of the same file (read, setData, paint) and panned the same way.
   Targets (issue #18): open < 1 s, pan >= 30 fps."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import print_table

PENS = 20
SECONDS = 3600
HZ = 10
FRAMES = 60
HISTORY_PENS = 50
HISTORY_SECONDS = 8 * 3600
HISTORY_HZ = 1


def main() -> dict[str, float]:
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        print("\nTrend redraw: skipped, no display (run under xvfb-run, as `make bench` does)")
        return {}
    results = redraw()
    results.update(history())
    return results


def redraw() -> dict[str, float]:
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from hmi.core.ringbuffer import TrendBuffers
    from hmi.core.samples import SampleBatch
    from hmi.core.tags import TagSpec
    from hmi.ui.trend import TrendView

    app = QApplication.instance() or QApplication([])
    now = time.time()
    t = np.arange(now - SECONDS, now, 1 / HZ)
    ts_ns = (t * 1e9).astype(np.int64)
    rng = np.random.default_rng(1)
    data = [np.cumsum(rng.standard_normal(t.shape[0])) for _ in range(PENS)]

    buffers = TrendBuffers(SECONDS * HZ + 1000)
    pens = [(i, TagSpec(f"m.pen{i:02d}", f"u{i % 4}")) for i in range(PENS)]
    for i in range(PENS):
        buffers.append_batch(SampleBatch.from_arrays(np.full(t.shape, i), ts_ns, data[i]))
    clock = [now]
    ours = TrendView(buffers, pens, span_s=SECONDS, clock=lambda: clock[0])
    ours.resize(1280, 800)
    ours.show()
    app.processEvents()

    step_s = ours.scroll_step_s()
    drawn = [0]

    def frame_ours(k: int) -> None:
        # Every frame a live frame that costs the most: the view scrolls a step and every pen
        # has a new sample (between scrolls the app repaints only the right edge, or nothing).
        clock[0] = now + k * step_s
        stamp = np.full(PENS, int(clock[0] * 1e9), dtype=np.int64)
        buffers.append_batch(SampleBatch.from_arrays(np.arange(PENS), stamp, rng.standard_normal(PENS)))
        drawn[0] += ours.refresh()  # the paint itself happens in processEvents, as in the app

    plain = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
    plain.resize(1280, 800)
    curves = []
    for _ in range(PENS):
        curve = plain.plot(pen=pg.mkPen(width=1))  # the same 1-pixel pens as TrendView
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        curves.append(curve)
    plain.show()
    app.processEvents()

    def frame_plain(k: int) -> None:
        for i, curve in enumerate(curves):
            curve.setData(t, data[i])
        x1 = now + k * step_s
        plain.setXRange(x1 - SECONDS, x1, padding=0)

    results = {}
    rows = []
    for name, frame in (
        ("TrendView (min/max per pixel)", frame_ours),
        ("pyqtgraph peak downsampling only", frame_plain),
    ):
        for k in range(5):  # warm-up
            frame(k)
            app.processEvents()
        times = []
        for k in range(FRAMES):
            start = time.perf_counter()
            frame(k + 5)
            app.processEvents()
            times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1000
        fps = 1000 / ms.mean()
        results[name] = fps
        rows.append((name, f"{fps:.1f}", f"{np.median(ms):.1f}", f"{np.percentile(ms, 95):.1f}"))
    assert drawn[0] == FRAMES + 5, f"every frame of ours drew ({drawn[0]} of {FRAMES + 5})"
    ratio = results["TrendView (min/max per pixel)"] / results["pyqtgraph peak downsampling only"]
    rows[0] = (*rows[0], f"{ratio:.1f}x")
    rows[1] = (*rows[1], "1.0x")
    print_table(
        f"Trend redraw, {PENS} pens x {SECONDS // 3600} h at {HZ} Hz ({t.shape[0]} points each), 1280x800,"
        " each frame a scroll step and a new sample per pen",
        rows,
        ("path", "fps", "median ms", "p95 ms", "vs pyqtgraph"),
    )
    ours.close()
    plain.close()
    return results


def _write_history(path: Path, end_s: float) -> list[str]:
    """50 tags x 8 h at 1 Hz through the real writer; returns the tag names."""
    from hmi.core.samples import SampleBatch
    from hmi.core.tags import TagRegistry, TagSpec
    from hmi.historian import HistorianWriter

    specs = [TagSpec(f"m{i // 10}.pen{i:02d}", f"u{i % 5}") for i in range(HISTORY_PENS)]
    writer = HistorianWriter(str(path), TagRegistry(specs), commit_interval_s=0.2, max_batch_samples=500_000)
    writer.start()
    rng = np.random.default_rng(2)
    steps = HISTORY_SECONDS * HISTORY_HZ
    ts = ((end_s - HISTORY_SECONDS + np.arange(steps) / HISTORY_HZ) * 1e9).astype(np.int64)
    for i in range(HISTORY_PENS):
        values = np.cumsum(rng.standard_normal(steps))
        writer.submit(SampleBatch.from_arrays(np.full(steps, i), ts, values))
    writer.close()
    return [s.name for s in specs]


def _pan_fps(app: object, pan: object, frames: int) -> tuple[float, float, float]:
    """fps, median and p95 ms of `frames` pans (each followed by the paint)."""
    times = []
    for k in range(frames):
        start = time.perf_counter()
        pan(k)  # type: ignore[operator]
        app.processEvents()  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000
    return 1000 / ms.mean(), float(np.median(ms)), float(np.percentile(ms, 95))


def history() -> dict[str, float]:
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from hmi.core.ringbuffer import TrendBuffers
    from hmi.core.tags import TagSpec
    from hmi.historian.reader import HistorianReader, HistoryLookup
    from hmi.ui.trend import TrendView

    app = QApplication.instance() or QApplication([])
    end = float(int(time.time()))
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "historian.sqlite"
        started = time.perf_counter()
        names = _write_history(db, end)
        written_s = time.perf_counter() - started

        # Ours: an empty ring buffer, everything from the historian.
        lookup = HistoryLookup(db)
        start = time.perf_counter()
        pens = [(i, TagSpec(name, f"u{i % 5}")) for i, name in enumerate(names)]
        ours = TrendView(TrendBuffers(1000), pens, span_s=HISTORY_SECONDS, clock=lambda: end, history=lookup)
        ours.resize(1280, 800)
        ours.show()
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            ours.refresh()
            app.processEvents()
            if ours.history_idle() and all(p.drawn_key and p.drawn_key[-1] == id(p.history) for p in ours.pens):
                break
            time.sleep(0.002)
        open_ours = time.perf_counter() - start
        ours.set_live(False)
        step = HISTORY_SECONDS / 200

        def pan_ours(k: int) -> None:
            x0, x1 = ours.visible_range()
            ours.plot.setXRange(x0 - step, x1 - step, padding=0)
            ours.refresh()

        fps_ours = _pan_fps(app, pan_ours, FRAMES)
        while not ours.history_idle():  # the reader is closed next
            time.sleep(0.01)
        ours.close()
        lookup.close()

        # The ceiling: pyqtgraph given every raw sample, clip-to-view and peak downsampling.
        start = time.perf_counter()
        plain = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        plain.resize(1280, 800)
        with HistorianReader(db) as reader:
            for name in names:
                series = reader.read(name, int((end - HISTORY_SECONDS) * 1e9), int((end + 1) * 1e9))
                curve = plain.plot(series.ts / 1e9, series.values, pen=pg.mkPen(width=1))
                curve.setClipToView(True)
                curve.setDownsampling(auto=True, method="peak")
        plain.setXRange(end - HISTORY_SECONDS, end, padding=0)
        plain.show()
        app.processEvents()
        open_plain = time.perf_counter() - start

        def pan_plain(k: int) -> None:
            x0, x1 = plain.getPlotItem().vb.viewRange()[0]
            plain.setXRange(x0 - step, x1 - step, padding=0)

        fps_plain = _pan_fps(app, pan_plain, FRAMES)
        plain.close()
    rows = [
        ("TrendView from the historian", f"{open_ours * 1000:.0f}", *(f"{v:.1f}" for v in fps_ours)),
        ("pyqtgraph, every raw sample", f"{open_plain * 1000:.0f}", *(f"{v:.1f}" for v in fps_plain)),
    ]
    print_table(
        f"Trend history, {HISTORY_PENS} pens x {HISTORY_SECONDS // 3600} h at {HISTORY_HZ} Hz from SQLite"
        f" ({HISTORY_PENS * HISTORY_SECONDS * HISTORY_HZ:,} rows, written in {written_s:.1f} s), 1280x800;"
        " targets: open < 1000 ms, pan >= 30 fps"
        # Other work on the machine moves these figures a lot: say how busy it was.
        f"; load average {os.getloadavg()[0]:.1f}",
        rows,
        ("path", "open ms", "pan fps", "median ms", "p95 ms"),
    )
    return {"history open s": open_ours, "history pan fps": fps_ours[0], "raw open s": open_plain,
            "raw pan fps": fps_plain[0]}  # fmt: skip


if __name__ == "__main__":
    main()
