"""Min/max decimation keeps every peak and every gap a trend must show."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.core.decimate import minmax_decimate


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=3000),
    st.integers(1, 200),
)
def test_extremes_of_the_visible_range_survive(values: list[float], buckets: int) -> None:
    """The decimated curve's overall min and max equal the data's, and it never invents values."""
    y = np.asarray(values)
    ts = np.arange(y.shape[0], dtype=np.float64)
    x, out = minmax_decimate(ts, y, 0.0, float(y.shape[0]), buckets)
    assert out.shape[0] <= max(2 * buckets, y.shape[0] + 1)
    assert np.nanmin(out) == y.min() and np.nanmax(out) == y.max()
    assert set(out.tolist()) <= set(y.tolist())
    assert np.all(np.diff(x) >= 0), "points out of time order"


def test_large_input_is_reduced_to_two_points_per_bucket() -> None:
    ts = np.arange(36_000, dtype=np.float64)
    y = np.sin(ts / 100)
    y[12_345] = 5.0  # one spike must survive
    _x, out = minmax_decimate(ts, y, 0, 36_000, 1000)
    assert out.shape[0] == 2000
    assert out.max() == 5.0


def test_a_gap_longer_than_a_bucket_stays_a_gap() -> None:
    ts = np.arange(10_000, dtype=np.float64)
    y = np.ones(10_000)
    y[4000:6000] = np.nan  # 20 % of the range lost
    _, out = minmax_decimate(ts, y, 0, 10_000, 100)
    assert np.isnan(out).sum() >= 2 * 15


def test_only_the_visible_range_plus_neighbours_is_kept() -> None:
    ts = np.arange(100, dtype=np.float64)
    x, _ = minmax_decimate(ts, ts.copy(), 40.5, 50.5, 100)
    assert x[0] == 40 and x[-1] == 51  # one point beyond each edge so the line reaches it


def test_empty_input() -> None:
    x, y = minmax_decimate(np.zeros(0), np.zeros(0), 0, 1, 10)
    assert x.shape == y.shape == (0,)
