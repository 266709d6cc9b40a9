"""The trend widget: axes per unit, decimation, pause on pan, cursor, limits, backfill, export."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

from hmi.core.quality import Quality
from hmi.core.ringbuffer import TrendBuffers
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagSpec
from hmi.ui.trend import TrendView

NOW = 1_800_000_000.0  # a fixed "now" (epoch s) so the tests do not depend on the clock


def fill(buffers: TrendBuffers, tag_id: int, seconds: float, hz: float, start: float, fn=np.sin) -> None:
    t = np.arange(start, start + seconds, 1 / hz)
    buffers.append_batch(SampleBatch.from_arrays(np.full(t.shape, tag_id), (t * 1e9).astype(np.int64), fn(t)))


@pytest.fixture
def view(qtbot):
    buffers = TrendBuffers(100_000)
    pens = [(0, TagSpec("m.speed", "rpm", low=-2, high=2)), (1, TagSpec("m.temp", "°C")), (2, TagSpec("m.temp2", "°C"))]
    widget = TrendView(buffers, pens, span_s=300, clock=lambda: NOW)
    widget.resize(1000, 500)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def test_pens_with_the_same_unit_share_an_axis(view) -> None:
    """Two °C pens share one axis; rpm has its own: two axes for three pens."""
    views = {id(p.view) for p in view.pens}
    assert len(views) == 2
    assert view.pens[1].view is view.pens[2].view


def test_an_hour_of_10hz_draws_as_min_max_per_pixel(view) -> None:
    """36,000 samples in view reach pyqtgraph as at most two points per pixel, peaks kept."""
    fill(view.buffers, 0, 3600, 10, NOW - 3600)
    view.buffers.append_batch(SampleBatch.from_arrays([0], [int((NOW - 1800) * 1e9)], [1.9]))
    view.set_span(3600)
    assert view.refresh()
    x, y = view.curve_data(0)
    assert 0 < x.shape[0] <= 2 * max(int(view.plot.vb.width()), 100)
    assert np.nanmax(y) == pytest.approx(1.9)


def test_redraws_only_when_something_changed(view) -> None:
    fill(view.buffers, 0, 10, 10, NOW - 10)
    assert view.refresh()
    assert not view.refresh(), "nothing changed, nothing must be redrawn"
    fill(view.buffers, 0, 1, 10, NOW)
    assert view.refresh()


def test_bad_quality_draws_as_a_gap(view) -> None:
    t = (np.arange(NOW - 10, NOW, 0.1) * 1e9).astype(np.int64)
    q = np.full(t.shape, Quality.GOOD, np.uint8)
    q[40:60] = Quality.COMM_LOST
    view.buffers.append_batch(SampleBatch.from_arrays(np.zeros(t.shape), t, np.ones(t.shape), q))
    view.refresh()
    _, y = view.curve_data(0)
    assert np.isnan(y).sum() == 20


def test_panning_pauses_and_live_resumes(qtbot, view) -> None:
    """A manual pan stops the scroll; pressing Live follows 'now' again."""
    fill(view.buffers, 0, 600, 1, NOW - 600)
    view.refresh()
    view.plot.vb.translateBy(x=-100)
    view.plot.vb.sigRangeChangedManually.emit([True, False])
    assert not view.live and view.live_button.text() == "Live"
    view.refresh()
    assert view.visible_range()[1] < NOW - 50
    view.live_button.click()
    view.refresh()
    assert view.live and view.visible_range()[1] == pytest.approx(NOW)


def test_cursor_reads_every_pen_at_a_time(view) -> None:
    t = int((NOW - 5) * 1e9)
    view.buffers.append_batch(SampleBatch.from_arrays([0, 1, 2], [t, t, t], [1.25, 55.5, 60.0], [0, 0, 3]))
    text = view.show_cursor(NOW - 1)
    assert "m.speed: 1.250 rpm" in text  # range -2..2: a thousandth of it needs three decimals
    assert "m.temp: 55.50 °C" in text
    assert "m.temp2: 60.00 (COMM LOST) °C" in text


def test_limit_lines_are_drawn_on_the_pen_axis(view) -> None:
    view.set_limits(1, [(80.0, "HI 80", "#f08c1e"), (95.0, "HIHI 95", "#d7191c")])
    lines = view.pens[1].limit_lines
    assert [line.value() for line in lines] == [80.0, 95.0]
    view.set_limits(1, [(85.0, "HI 85", "#f08c1e")])
    assert [line.value() for line in view.pens[1].limit_lines] == [85.0]


def test_history_backfills_what_the_buffer_does_not_hold(qtbot, view) -> None:
    """With 8 h in view and only minutes buffered, the provider is asked for the rest and drawn."""
    calls = []

    def provider(name: str, t0: int, t1: int, points: int):
        calls.append((name, t0, t1, points))
        ts = np.linspace(t0, t1 - 1e9, 500).astype(np.int64)
        return ts, np.full(500, -1.5), np.zeros(500, np.uint8)

    view.history = provider
    fill(view.buffers, 0, 300, 1, NOW - 300)
    view.set_span(8 * 3600)
    view.refresh()
    qtbot.waitUntil(lambda: view.pens[0].history is not None and view.history_idle(), timeout=5000)
    view.refresh()
    x, y = view.curve_data(0)
    assert calls and calls[0][0] == "m.speed"
    assert calls[0][1] <= (NOW - 8 * 3600) * 1e9  # the whole window (and a margin to pan back into)
    assert x.min() < NOW - 7 * 3600 and np.nanmin(y) == -1.5


def test_export_csv_writes_the_visible_samples(tmp_path, view) -> None:
    fill(view.buffers, 0, 60, 1, NOW - 60, fn=lambda t: t * 0 + 1.5)
    fill(view.buffers, 0, 60, 1, NOW - 1000)  # outside the 5-minute window
    view.refresh()
    rows = view.export_csv(tmp_path / "t.csv")
    with open(tmp_path / "t.csv", encoding="utf-8") as fh:
        data = list(csv.DictReader(fh))
    assert rows == len(data) == 60
    assert data[0]["tag"] == "m.speed" and float(data[0]["value"]) == 1.5 and data[0]["quality"] == "GOOD"
    assert data[0]["time_utc"].endswith("+00:00")
    assert view.export_png(tmp_path / "t.png") and (tmp_path / "t.png").stat().st_size > 1000


def test_live_scroll_follows_the_clock(qtbot) -> None:
    """Without a fixed clock the window ends at the current time."""
    widget = TrendView(TrendBuffers(100), [(0, TagSpec("m.a"))], span_s=60)
    qtbot.addWidget(widget)
    widget.refresh()
    assert widget.visible_range()[1] == pytest.approx(time.time(), abs=2)
