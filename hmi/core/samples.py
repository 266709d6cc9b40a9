"""Batches of samples: the unit that crosses every boundary (source, bus, IPC, historian).

A sample is (tag id, timestamp in ns since the Unix epoch UTC, value, quality). Numeric
and boolean values travel as float64; the few string tags carry their text beside the
numbers (the float is NaN there), so the hot path stays pure numpy.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hmi.core.quality import QUALITY_DTYPE, Quality

TAG_ID_DTYPE = np.int32
TS_DTYPE = np.int64
VALUE_DTYPE = np.float64


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True, slots=True, eq=False)
class SampleBatch:
    """Parallel arrays of equal length. Treat the arrays as read-only once published.

    `texts` maps a row index to the string value of that row (string tags only).
    """

    tag_ids: np.ndarray
    ts_ns: np.ndarray
    values: np.ndarray
    quality: np.ndarray
    texts: Mapping[int, str] | None = None

    def __len__(self) -> int:
        return int(self.tag_ids.shape[0])

    def __post_init__(self) -> None:
        n = self.tag_ids.shape[0]
        if not (self.ts_ns.shape[0] == self.values.shape[0] == self.quality.shape[0] == n):
            raise ValueError(
                f"batch arrays differ in length: ids {n}, ts {self.ts_ns.shape[0]}, "
                f"values {self.values.shape[0]}, quality {self.quality.shape[0]}"
            )

    @classmethod
    def from_arrays(
        cls,
        tag_ids: object,
        ts_ns: object,
        values: object,
        quality: object = Quality.GOOD,
        texts: Mapping[int, str] | None = None,
    ) -> SampleBatch:
        """Build a batch, converting dtypes and broadcasting a scalar timestamp or quality."""
        ids = np.ascontiguousarray(tag_ids, dtype=TAG_ID_DTYPE).reshape(-1)
        n = ids.shape[0]
        ts = np.ascontiguousarray(ts_ns, dtype=TS_DTYPE).reshape(-1)
        if ts.shape[0] == 1 and n != 1:
            ts = np.full(n, ts[0], dtype=TS_DTYPE)
        vals = np.ascontiguousarray(values, dtype=VALUE_DTYPE).reshape(-1)
        q = np.ascontiguousarray(quality, dtype=QUALITY_DTYPE).reshape(-1)
        if q.shape[0] == 1 and n != 1:
            q = np.full(n, q[0], dtype=QUALITY_DTYPE)
        return cls(ids, ts, vals, q, dict(texts) if texts else None)

    @classmethod
    def empty(cls) -> SampleBatch:
        return cls.from_arrays([], [], [], [])

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, int, object, int]]) -> SampleBatch:
        """Build from (tag id, ts ns, value, quality) rows; str values become texts."""
        n = len(rows)
        ids = np.empty(n, TAG_ID_DTYPE)
        ts = np.empty(n, TS_DTYPE)
        vals = np.empty(n, VALUE_DTYPE)
        q = np.empty(n, QUALITY_DTYPE)
        texts: dict[int, str] = {}
        for i, (tag_id, t, value, quality) in enumerate(rows):
            ids[i] = tag_id
            ts[i] = t
            q[i] = quality
            if isinstance(value, str):
                texts[i] = value
                vals[i] = np.nan
            elif value is None:
                vals[i] = np.nan
            else:
                vals[i] = value  # type: ignore[call-overload]
        return cls(ids, ts, vals, q, texts or None)

    def rows(self) -> Iterable[tuple[int, int, float | str, int]]:
        """Iterate (tag id, ts, value, quality), with text values as str. For tests and tools."""
        texts = self.texts or {}
        for i in range(len(self)):
            value: float | str = texts[i] if i in texts else float(self.values[i])
            yield int(self.tag_ids[i]), int(self.ts_ns[i]), value, int(self.quality[i])

    def take(self, index: np.ndarray) -> SampleBatch:
        """The rows at `index` (a boolean mask or integer positions), texts carried along."""
        positions = np.flatnonzero(index) if index.dtype == np.bool_ else np.asarray(index)
        texts = None
        if self.texts:
            texts = {new: self.texts[int(old)] for new, old in enumerate(positions) if int(old) in self.texts}
        return SampleBatch(
            self.tag_ids[positions],
            self.ts_ns[positions],
            self.values[positions],
            self.quality[positions],
            texts or None,
        )

    @staticmethod
    def concat(batches: Sequence[SampleBatch]) -> SampleBatch:
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return SampleBatch.empty()
        texts: dict[int, str] = {}
        offset = 0
        for b in batches:
            if b.texts:
                texts.update({offset + i: s for i, s in b.texts.items()})
            offset += len(b)
        return SampleBatch(
            np.concatenate([b.tag_ids for b in batches]),
            np.concatenate([b.ts_ns for b in batches]),
            np.concatenate([b.values for b in batches]),
            np.concatenate([b.quality for b in batches]),
            texts or None,
        )


class RuntimeMarks(SampleBatch):
    """Samples the runtime makes itself about values it already has (a COMM_LOST mark when a
    source drops, a stale mark): recorded and shown like any other, but not received from a
    source, so counts of received samples leave them out."""

    __slots__ = ()
