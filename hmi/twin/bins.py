"""Per-input statistics over fixed time bins, accumulated with numpy batch by batch.

Models judge a machine once per bin (1 s by default), not once per sample: the residuals
of a 10 Hz signal averaged over a second have a third of its noise, and the per-bin
Python work then costs the same whatever the sample rate. A bin closes when a sample of
a later bin arrives; how the samples were split into batches does not change the result.

An input without samples in a bin (a server that sends changes only) keeps its last value
there: mean, min, max and last are that value, the count is 0 and the spread unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmi.twin.model import NS


@dataclass(frozen=True, slots=True, eq=False)
class Bin:
    """Statistics of every input over one bin; arrays indexed by input role."""

    start_ns: int
    end_ns: int
    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray  # NaN with fewer than 3 samples
    min: np.ndarray
    max: np.ndarray
    last: np.ndarray

    @property
    def mid_ns(self) -> int:
        return (self.start_ns + self.end_ns) // 2


class Binner:
    """Collects the rows of the open bin as they come (a list append per batch) and computes
    the bin's statistics with numpy once, when it closes: the per-batch cost stays a few
    microseconds however many inputs a model has."""

    def __init__(self, roles: int, width_s: float) -> None:
        self.roles = roles
        self.width_ns = max(int(width_s * NS), 1)
        self.open: int | None = None  # index of the bin being filled
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._last = np.full(roles, np.nan)  # carried across bins
        self._last_ts = np.full(roles, -1, np.int64)

    def add(self, role: np.ndarray, ts_ns: np.ndarray, values: np.ndarray) -> list[Bin]:
        """Take good rows (finite values, role >= 0); returns the bins this batch closed."""
        keep = np.isfinite(values) & (role >= 0)
        if not keep.all():
            role, ts_ns, values = role[keep], ts_ns[keep], values[keep]
        if role.shape[0] == 0:
            return []
        index = ts_ns // self.width_ns
        low, top = int(index.min()), int(index.max())
        if self.open is None:
            self.open = low
        if top <= self.open:
            self._pending.append((role, ts_ns, values))  # a late sample counts in the open bin
            return []
        closed: list[Bin] = []
        index = np.maximum(index, self.open)
        for b in np.unique(index).tolist():
            rows = index == b
            if b != self.open:
                closed.append(self._close())
                self.open = b
            self._pending.append((role[rows], ts_ns[rows], values[rows]))
        return closed

    def _close(self) -> Bin:
        assert self.open is not None
        r = self.roles
        if self._pending:
            role = np.concatenate([p[0] for p in self._pending])
            ts = np.concatenate([p[1] for p in self._pending])
            values = np.concatenate([p[2] for p in self._pending])
        else:
            role, ts, values = np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0)
        self._pending = []
        n = np.bincount(role, minlength=r)[:r].astype(float)
        total = np.bincount(role, values, minlength=r)[:r]
        has = n > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_of_samples = total / np.maximum(n, 1)
            # Deviations from the bin's mean, not sum-of-squares arithmetic: exact for a CMM's
            # 100.000 mm ± 0.4 µm as for a pump's 5 bar ± 10 mbar.
            dev = values - mean_of_samples[role]
            var = np.bincount(role, dev * dev, minlength=r)[:r] / np.maximum(n - 1, 1)
        lo = np.full(r, np.inf)
        hi = np.full(r, -np.inf)
        np.minimum.at(lo, role, values)
        np.maximum.at(hi, role, values)
        if role.shape[0]:
            # Last value per role: the latest timestamp wins.
            order = np.lexsort((ts, role))
            role_sorted = role[order]
            ends = np.empty(role_sorted.shape[0], bool)
            ends[:-1] = role_sorted[1:] != role_sorted[:-1]
            ends[-1] = True
            rows = order[ends]
            present = role_sorted[ends]
            newer = ts[rows] >= self._last_ts[present]
            self._last[present[newer]] = values[rows[newer]]
            self._last_ts[present[newer]] = ts[rows[newer]]
        mean = np.where(has, mean_of_samples, self._last)
        start = self.open * self.width_ns
        return Bin(
            start_ns=start,
            end_ns=start + self.width_ns,
            count=n,
            mean=mean,
            std=np.where(n >= 3, np.sqrt(np.maximum(var, 0.0)), np.nan),
            min=np.where(has, lo, self._last),
            max=np.where(has, hi, self._last),
            last=self._last.copy(),
        )
