"""Ring buffers for trends: capacity, wrap-around, per-tag grouping."""

from __future__ import annotations

import collections

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hmi.core.quality import Quality
from hmi.core.ringbuffer import RingBuffer, TrendBuffers, values_for_plot
from hmi.core.samples import SampleBatch


def append(buf: RingBuffer, values: list[float]) -> None:
    arr = np.asarray(values, dtype=np.float64)
    buf.append(arr.astype(np.int64), arr, np.zeros(arr.shape[0], np.uint8))


def test_wraps_around_keeping_the_newest() -> None:
    buf = RingBuffer(5)
    append(buf, [1, 2, 3])
    append(buf, [4, 5, 6, 7])
    ts, values, _ = buf.arrays()
    assert values.tolist() == [3, 4, 5, 6, 7]
    assert ts.tolist() == [3, 4, 5, 6, 7]
    assert len(buf) == 5 and buf.total_appended == 7


def test_a_batch_larger_than_capacity_keeps_its_tail() -> None:
    buf = RingBuffer(3)
    append(buf, [1])
    append(buf, [10, 11, 12, 13, 14])
    assert buf.arrays()[1].tolist() == [12, 13, 14]
    append(buf, [15])
    assert buf.arrays()[1].tolist() == [13, 14, 15]


@given(st.integers(1, 20), st.lists(st.lists(st.floats(-1e12, 1e12), max_size=30), max_size=20))
def test_matches_a_bounded_deque(capacity: int, chunks: list[list[float]]) -> None:
    """Whatever the chunking, the buffer holds exactly what a deque(maxlen=capacity) holds."""
    buf = RingBuffer(capacity)
    model: collections.deque[float] = collections.deque(maxlen=capacity)
    for chunk in chunks:
        append(buf, chunk)
        model.extend(chunk)
        assert buf.arrays()[1].tolist() == list(model)


def test_trend_buffers_split_a_batch_per_tag_in_time_order() -> None:
    buffers = TrendBuffers(100)
    buffers.append_batch(SampleBatch.from_arrays([1, 2, 1, 2, 1], [1, 2, 3, 4, 5], [10, 20, 11, 21, 12]))
    assert buffers.get(1)[1].tolist() == [10, 11, 12]
    assert buffers.get(2)[0].tolist() == [2, 4]
    assert buffers.get(3)[0].shape == (0,)


def test_trend_buffers_only_keep_watched_tags() -> None:
    buffers = TrendBuffers(100, tag_ids=[2])
    buffers.append_batch(SampleBatch.from_arrays([1, 2], [1, 2], [10, 20]))
    assert buffers.count(1) == 0 and buffers.count(2) == 1
    buffers.watch(1)
    buffers.append_batch(SampleBatch.from_arrays([1], [3], [11]))
    assert buffers.count(1) == 1


def test_bad_and_lost_samples_become_gaps_uncertain_stays() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0])
    quality = np.array([Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.COMM_LOST], np.uint8)
    plotted = values_for_plot(values, quality)
    assert plotted[:2].tolist() == [1.0, 2.0]
    assert np.isnan(plotted[2:]).all()
