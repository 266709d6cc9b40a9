"""Min/max decimation: at most two points per pixel column, so a trend of any length draws
in time proportional to its width. Used by live trends and by historian reads alike."""

from __future__ import annotations

import numpy as np


def minmax_decimate(
    ts: np.ndarray, values: np.ndarray, t0: float, t1: float, buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reduce time-ordered (ts, values) inside [t0, t1] to the min and max of each of `buckets`
    equal time buckets, in time order (x duplicated per bucket). NaN (gaps) is ignored inside
    a bucket and kept where a whole bucket is NaN, so gaps longer than a pixel still show.
    Inputs shorter than 2*buckets are returned as they are (sliced to the range, plus one
    point either side so lines reach the edges)."""
    if ts.shape[0] == 0 or buckets <= 0 or t1 <= t0:
        return ts[:0].astype(np.float64), values[:0].astype(np.float64)
    lo = max(int(np.searchsorted(ts, t0, side="left")) - 1, 0)
    hi = min(int(np.searchsorted(ts, t1, side="right")) + 1, ts.shape[0])
    ts, values = ts[lo:hi], values[lo:hi]
    if ts.shape[0] <= 2 * buckets:
        return ts.astype(np.float64), values.astype(np.float64)
    edges = np.linspace(t0, t1, buckets + 1)
    starts = np.searchsorted(ts, edges[:-1], side="left")
    ends = np.searchsorted(ts, edges[1:], side="left")
    ends[-1] = ts.shape[0]
    starts[0] = 0
    nonempty = ends > starts
    starts, ends = starts[nonempty], ends[nonempty]
    with np.errstate(invalid="ignore"):
        mins = np.fmin.reduceat(values, starts)
        maxs = np.fmax.reduceat(values, starts)
    # reduceat takes each segment to the next start; the last start runs to the end, which
    # is what we want because empty buckets were removed.
    first_ts = ts[starts].astype(np.float64)
    last_ts = ts[ends - 1].astype(np.float64)
    x = np.empty(2 * starts.shape[0])
    y = np.empty(2 * starts.shape[0])
    # Keep time order inside a bucket: whichever extreme came first is drawn first.
    min_first = _argext_first(values, starts, ends, mins)
    x[0::2] = first_ts
    x[1::2] = last_ts
    y[0::2] = np.where(min_first, mins, maxs)
    y[1::2] = np.where(min_first, maxs, mins)
    return x, y


def _argext_first(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """Per bucket, whether the minimum occurs before the maximum (approximated by comparing
    the bucket's first value to its min: a falling bucket starts high)."""
    first = values[starts]
    with np.errstate(invalid="ignore"):
        return ~(first > mins)
