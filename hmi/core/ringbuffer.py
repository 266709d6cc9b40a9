"""Bounded per-tag ring buffers for trends.

Each tag keeps the most recent `capacity` samples. Writers append whole batches (grouped
by tag with one stable sort); readers get copies in time order. One lock guards all
buffers because the window appends from its IPC thread while the UI thread reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

from hmi.core.quality import QUALITY_DTYPE, Quality
from hmi.core.samples import TS_DTYPE, VALUE_DTYPE, SampleBatch


class RingBuffer:
    """Fixed-capacity FIFO of (ts, value, quality); the oldest rows are overwritten."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._ts = np.zeros(capacity, TS_DTYPE)
        self._values = np.zeros(capacity, VALUE_DTYPE)
        self._quality = np.zeros(capacity, QUALITY_DTYPE)
        self._head = 0  # next write position
        self._count = 0
        self.total_appended = 0

    def __len__(self) -> int:
        return self._count

    def append(self, ts: np.ndarray, values: np.ndarray, quality: np.ndarray) -> None:
        n = ts.shape[0]
        if n == 0:
            return
        self.total_appended += n
        if n >= self.capacity:
            # Only the newest `capacity` rows survive.
            self._ts[:] = ts[-self.capacity :]
            self._values[:] = values[-self.capacity :]
            self._quality[:] = quality[-self.capacity :]
            self._head = 0
            self._count = self.capacity
            return
        first = min(n, self.capacity - self._head)
        self._ts[self._head : self._head + first] = ts[:first]
        self._values[self._head : self._head + first] = values[:first]
        self._quality[self._head : self._head + first] = quality[:first]
        rest = n - first
        if rest:
            self._ts[:rest] = ts[first:]
            self._values[:rest] = values[first:]
            self._quality[:rest] = quality[first:]
        self._head = (self._head + n) % self.capacity
        self._count = min(self._count + n, self.capacity)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of (ts, values, quality) in append order, oldest first."""
        if self._count < self.capacity:
            return (
                self._ts[: self._count].copy(),
                self._values[: self._count].copy(),
                self._quality[: self._count].copy(),
            )
        order = np.r_[self._head : self.capacity, 0 : self._head]
        return self._ts[order], self._values[order], self._quality[order]

    def clear(self) -> None:
        self._head = 0
        self._count = 0


class TrendBuffers:
    """A ring buffer per tag id, fed with whole batches; thread-safe."""

    def __init__(self, capacity: int, tag_ids: Iterable[int] | None = None) -> None:
        """Keep `capacity` samples per tag; only for `tag_ids` when given, else for every tag."""
        self.capacity = capacity
        self._lock = threading.Lock()
        self._buffers: dict[int, RingBuffer] = {}
        self._only: set[int] | None = set(tag_ids) if tag_ids is not None else None
        # Grows with every append that kept a sample (and on clear): a reader that saw the same
        # version has nothing new to draw, without asking tag by tag.
        self.version = 0

    def watch(self, tag_id: int) -> None:
        with self._lock:
            if self._only is not None:
                self._only.add(tag_id)

    def append_batch(self, batch: SampleBatch) -> None:
        if len(batch) == 0:
            return
        ids = batch.tag_ids
        order = np.argsort(ids, kind="stable")  # keeps time order within each tag
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        ends = np.r_[starts[1:], sorted_ids.shape[0]]
        with self._lock:
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                tag_id = int(sorted_ids[start])
                if self._only is not None and tag_id not in self._only:
                    continue
                buf = self._buffers.get(tag_id)
                if buf is None:
                    buf = self._buffers[tag_id] = RingBuffer(self.capacity)
                rows = order[start:end]
                buf.append(batch.ts_ns[rows], batch.values[rows], batch.quality[rows])
                self.version += 1

    def get(self, tag_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ts, values, quality) copies for one tag, oldest first; empty arrays if none."""
        with self._lock:
            buf = self._buffers.get(tag_id)
            if buf is None:
                return np.zeros(0, TS_DTYPE), np.zeros(0, VALUE_DTYPE), np.zeros(0, QUALITY_DTYPE)
            return buf.arrays()

    def total(self, tag_id: int) -> int:
        """Samples ever appended for this tag: changes whenever new data arrived."""
        with self._lock:
            buf = self._buffers.get(tag_id)
            return buf.total_appended if buf is not None else 0

    def count(self, tag_id: int) -> int:
        with self._lock:
            buf = self._buffers.get(tag_id)
            return len(buf) if buf is not None else 0

    def clear(self) -> None:
        with self._lock:
            for buf in self._buffers.values():
                buf.clear()
            self.version += 1


def values_for_plot(values: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Values with BAD and COMM_LOST samples replaced by NaN, so a trend shows a gap there."""
    out = values.astype(VALUE_DTYPE, copy=True)
    out[quality >= Quality.BAD] = np.nan
    return out
