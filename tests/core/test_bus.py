"""The tag bus: fan-out, latest values, thread safety, broken subscribers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType, TagRegistry, TagSpec


def make_bus(n: int = 4) -> TagBus:
    return TagBus(TagRegistry(TagSpec(f"m.t{i}") for i in range(n)))


def test_every_subscriber_gets_every_batch_in_order() -> None:
    """Three subscribers each see the same batches, in publish order."""
    bus = make_bus()
    seen: list[list[SampleBatch]] = [[], [], []]
    for i in range(3):
        bus.subscribe(seen[i].append)
    batches = [SampleBatch.from_arrays([0, 1], [i, i], [float(i), float(i)]) for i in range(1, 6)]
    for batch in batches:
        bus.publish(batch)
    for received in seen:
        assert received == batches


def test_latest_value_is_the_last_row_of_each_tag() -> None:
    """Within a batch the last row of a tag wins; tags not in the batch keep their value."""
    bus = make_bus()
    bus.publish(SampleBatch.from_arrays([2], [5], [7.0]))
    bus.publish(
        SampleBatch.from_arrays([0, 1, 0, 1, 0], [1, 2, 3, 4, 5], [10.0, 20.0, 11.0, 21.0, 12.0], [0, 0, 0, 1, 0])
    )
    assert bus.latest(0).value == 12.0 and bus.latest(0).ts_ns == 5
    assert bus.latest(1).value == 21.0 and bus.latest(1).quality == Quality.UNCERTAIN
    assert bus.latest(2).value == 7.0
    assert bus.latest(3) is None  # never received


def test_text_values_are_kept_as_latest() -> None:
    """A string tag's latest value is its text, also after a later COMM_LOST mark without text."""
    bus = TagBus(TagRegistry([TagSpec("m.name", datatype=DataType.STRING)]))
    bus.publish(SampleBatch.from_rows([(0, 1, "O1001", 0), (0, 2, "O1002", 0)]))
    assert bus.latest("m.name").value == "O1002"
    bus.publish(SampleBatch.from_arrays([0], [3], [np.nan], Quality.COMM_LOST))
    latest = bus.latest("m.name")
    assert latest.value == "O1002" and latest.quality == Quality.COMM_LOST


def test_snapshot_holds_latest_of_every_tag_with_a_value() -> None:
    bus = make_bus()
    bus.publish(SampleBatch.from_arrays([3, 1, 3], [1, 2, 3], [1.0, 2.0, 3.0]))
    snapshot, seq = bus.snapshot(consistent_with=lambda: 42)
    assert seq == 42
    assert dict(zip(snapshot.batch.tag_ids.tolist(), snapshot.batch.values.tolist(), strict=True)) == {1: 2.0, 3: 3.0}


def test_tags_registered_later_grow_the_bus() -> None:
    """Registering tags after start (e.g. MQTT wildcards) works and keeps earlier ids."""
    bus = make_bus(1)
    ids = bus.register([TagSpec(f"m.late{i}") for i in range(100)])
    assert ids == list(range(1, 101))
    bus.publish(SampleBatch.from_arrays([100], [1], [5.0]))
    assert bus.latest("m.late99").value == 5.0
    assert bus.register([TagSpec("m.t0")]) == [0]


def test_publish_from_many_threads_loses_nothing() -> None:
    """Four threads publishing at once: every sample arrives once, each thread's order kept."""
    bus = make_bus(4)
    received: list[SampleBatch] = []
    bus.subscribe(received.append)
    per_thread = 500

    def producer(tag: int) -> None:
        for i in range(per_thread):
            bus.publish(SampleBatch.from_arrays([tag] * 10, np.arange(i * 10, i * 10 + 10), np.full(10, i)))

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bus.samples_published == 4 * per_thread * 10
    for tag in range(4):
        ts = np.concatenate([b.ts_ns[b.tag_ids == tag] for b in received])
        assert ts.shape[0] == per_thread * 10
        assert np.all(np.diff(ts) > 0), "a thread's batches arrived out of order"
        assert bus.latest(tag).value == per_thread - 1


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = make_bus()
    good: list[SampleBatch] = []

    def broken(batch: SampleBatch) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken, name="broken")
    bus.subscribe(good.append)
    bus.publish(SampleBatch.from_arrays([0], [1], [1.0]))
    bus.publish(SampleBatch.from_arrays([0], [2], [2.0]))
    assert len(good) == 2
    assert bus.subscriber_errors() == {"broken": 2}


def test_a_subscriber_may_publish_derived_tags() -> None:
    """Re-entrant publish (a twin model publishing from its callback) works and is seen by all."""
    bus = make_bus(2)
    seen: list[int] = []

    def derive(batch: SampleBatch) -> None:
        if 0 in batch.tag_ids:
            bus.publish(SampleBatch.from_arrays([1], [1], [batch.values[0] * 2]))

    bus.subscribe(derive)
    bus.subscribe(lambda b: seen.extend(b.tag_ids.tolist()))
    bus.publish(SampleBatch.from_arrays([0], [1], [21.0]))
    assert bus.latest(1).value == 42.0
    assert sorted(seen) == [0, 1]


def test_events_reach_event_subscribers_only() -> None:
    bus = make_bus()
    events: list[Event] = []
    batches: list[SampleBatch] = []
    bus.subscribe_events(events.extend)
    bus.subscribe(batches.append)
    bus.publish_events([Event(EventCategory.SYSTEM, "plant", "Connection plant lost")])
    assert [e.message for e in events] == ["Connection plant lost"]
    assert batches == []


def test_unsubscribe_stops_delivery() -> None:
    bus = make_bus()
    seen: list[SampleBatch] = []
    sub = bus.subscribe(seen.append)
    bus.publish(SampleBatch.from_arrays([0], [1], [1.0]))
    sub.close()
    bus.publish(SampleBatch.from_arrays([0], [2], [2.0]))
    assert len(seen) == 1


def test_batch_arrays_must_have_equal_length() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        SampleBatch(np.zeros(2, np.int32), np.zeros(3, np.int64), np.zeros(2), np.zeros(2, np.uint8))


@given(st.lists(st.lists(st.integers(0, 7), min_size=1, max_size=40), min_size=1, max_size=5))
def test_latest_is_the_last_row_of_each_tag_for_any_batches(batches: list[list[int]]) -> None:
    """Whatever the order and repetition of ids in a batch, the latest value is the tag's last row."""
    bus = make_bus(8)
    expected: dict[int, float] = {}
    row = 0
    for ids in batches:
        values = [float(row + i) for i in range(len(ids))]
        row += len(ids)
        bus.publish(SampleBatch.from_arrays(ids, list(range(1, len(ids) + 1)), values))
        expected.update(zip(ids, values, strict=True))
    assert {i: bus.latest(i).value for i in range(8) if bus.latest(i) is not None} == expected
