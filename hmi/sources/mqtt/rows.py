"""The row coalescer: decoded samples of many messages waiting to become one SampleBatch.

Rows are added on paho's thread only (decode.py, sparkplug_host.py) and taken by the source's
`_flush` (source.py) when the pump (client.py) says it is time: at once when the socket is
quiet, else after at most a few thousand rows or milliseconds.
"""

from __future__ import annotations

import math
import time
from array import array

import numpy as np

from hmi.core.samples import SampleBatch


class Rows:
    """Decoded samples waiting to cross to the bus (paho's thread only).

    Tag ids collect in a C int array (a whole JSON message's ids are one memcpy from its
    plan), time stamps and qualities as runs (a message's values share both), values in a
    list: a 50-value message costs a few C calls here, and `take` builds the arrays without
    converting a Python int per row.
    """

    __slots__ = ("count", "ids", "q_lens", "q_runs", "since", "texts", "ts_lens", "ts_runs", "values")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.ids = array("i")
        self.values: list[float] = []
        self.ts_runs: list[int] = []
        self.ts_lens: list[int] = []
        self.q_runs: list[int] = []
        self.q_lens: list[int] = []
        self.texts: dict[int, str] = {}
        self.since = 0.0
        self.count = 0

    def add(self, tag_id: int, ts: int, value: float, quality: int) -> None:
        self.ids.append(tag_id)
        self.values.append(value)
        self._runs(ts, quality, 1)

    def add_message(self, plan_ids: array[int], ts: int, values: list[float], quality: int = 0) -> None:
        """A whole message of values of one quality for the tags in `plan_ids`, in order."""
        self.ids.extend(plan_ids)
        self.values.extend(values)
        self._runs(ts, quality, len(values))

    def _runs(self, ts: int, quality: int, n: int) -> None:
        if not self.count:
            self.since = time.monotonic()  # the first row waiting: the flush deadline counts from here
        self.count += n
        if self.ts_runs and self.ts_runs[-1] == ts:
            self.ts_lens[-1] += n
        else:
            self.ts_runs.append(ts)
            self.ts_lens.append(n)
        if self.q_runs and self.q_runs[-1] == quality:
            self.q_lens[-1] += n
        else:
            self.q_runs.append(quality)
            self.q_lens.append(n)

    def add_text(self, tag_id: int, ts: int, text: str, quality: int) -> None:
        self.texts[self.count] = text
        self.add(tag_id, ts, math.nan, quality)

    def take(self) -> SampleBatch:
        batch = SampleBatch(
            np.frombuffer(self.ids, np.int32).copy(),
            np.repeat(np.asarray(self.ts_runs, np.int64), self.ts_lens),
            np.asarray(self.values, np.float64),
            np.repeat(np.asarray(self.q_runs, np.uint8), self.q_lens),
            self.texts or None,
        )
        self.clear()
        return batch
