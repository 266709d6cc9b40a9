"""Trend redraw rate: 20 pens x 1 hour at 10 Hz (36,000 points each), live-scrolling at
1280x800, with our per-pixel min/max decimation, beside the same plot drawn with
pyqtgraph's own peak downsampling and clip-to-view only. Needs a display (Xvfb)."""

from __future__ import annotations

import os
import time

import numpy as np

from bench.common import print_table

PENS = 20
SECONDS = 3600
HZ = 10
FRAMES = 60


def main() -> dict[str, float]:
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        print("\nTrend redraw: skipped, no display (run under xvfb-run, as `make bench` does)")
        return {}
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

    def frame_ours(k: int) -> None:
        clock[0] = now + k * 0.1  # the window scrolls every frame, as live
        ours.refresh()  # the paint itself happens in processEvents, as in the app

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
        x1 = now + k * 0.1
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
    ratio = results["TrendView (min/max per pixel)"] / results["pyqtgraph peak downsampling only"]
    rows[0] = (*rows[0], f"{ratio:.1f}x")
    rows[1] = (*rows[1], "1.0x")
    print_table(
        f"Trend redraw, {PENS} pens x {SECONDS // 3600} h at {HZ} Hz ({t.shape[0]} points each), 1280x800, live scroll",
        rows,
        ("path", "fps", "median ms", "p95 ms", "vs pyqtgraph"),
    )
    ours.close()
    plain.close()
    return results


if __name__ == "__main__":
    main()
