"""The tag bus: fans sample batches and events out to subscribers, keeps the latest values.

Threads: `publish` may be called from any thread (the asyncio loop of the OPC UA source,
paho's network thread, the replay thread). Fan-out is synchronous, on the publishing
thread, under one re-entrant lock, so every subscriber sees batches in one global order
and a subscriber may publish derived tags from inside its callback. Subscribers must
therefore be quick: anything slow (disk, sockets, painting) hands the batch to its own
thread or timer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from hmi.core.events import Event
from hmi.core.quality import QUALITY_DTYPE, Quality
from hmi.core.samples import TAG_ID_DTYPE, TS_DTYPE, VALUE_DTYPE, SampleBatch
from hmi.core.tags import TagRegistry, TagSpec

log = logging.getLogger(__name__)

BatchCallback = Callable[[SampleBatch], None]
EventCallback = Callable[[Sequence[Event]], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LatestValue:
    value: float | str
    ts_ns: int
    quality: Quality


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """The latest value of every tag that has one, as arrays in tag-id order."""

    batch: SampleBatch


class Subscription:
    def __init__(self, unsubscribe: Callable[[], None]) -> None:
        self._unsubscribe = unsubscribe

    def close(self) -> None:
        self._unsubscribe()


class _Subscriber:
    __slots__ = ("callback", "errors", "last_error_log", "name")

    def __init__(self, name: str, callback: Callable[[Any], None]) -> None:
        self.name = name
        self.callback = callback
        self.errors = 0
        self.last_error_log = 0.0


class TagBus:
    def __init__(self, registry: TagRegistry | None = None) -> None:
        self.registry = registry if registry is not None else TagRegistry()
        self._lock = threading.RLock()
        self._batch_subs: list[_Subscriber] = []
        self._event_subs: list[_Subscriber] = []
        self._values = np.full(0, np.nan, VALUE_DTYPE)
        self._ts = np.zeros(0, TS_DTYPE)
        self._quality = np.full(0, Quality.BAD, QUALITY_DTYPE)
        self._texts: dict[int, str] = {}
        self._last_row = np.full(0, -1, np.intp)  # scratch for _update_latest, all -1 between calls
        self.samples_published = 0
        self.batches_published = 0
        self._grow(len(self.registry))
        self.registry.on_added(lambda added: self._grow(len(self.registry)))

    # -- tags ---------------------------------------------------------------------------

    def register(self, specs: Iterable[TagSpec]) -> list[int]:
        return self.registry.register_many(specs)

    def _grow(self, size: int) -> None:
        with self._lock:
            old = self._values.shape[0]
            if size <= old:
                return
            capacity = max(size, old * 2, 64)
            self._values = np.concatenate([self._values, np.full(capacity - old, np.nan, VALUE_DTYPE)])
            self._ts = np.concatenate([self._ts, np.zeros(capacity - old, TS_DTYPE)])
            self._quality = np.concatenate([self._quality, np.full(capacity - old, Quality.BAD, QUALITY_DTYPE)])
            self._last_row = np.full(capacity, -1, np.intp)

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(self, callback: BatchCallback, name: str = "") -> Subscription:
        """Call `callback(batch)` for every published batch, on the publishing thread."""
        return self._add(self._batch_subs, _Subscriber(name or repr(callback), callback))

    def subscribe_events(self, callback: EventCallback, name: str = "") -> Subscription:
        return self._add(self._event_subs, _Subscriber(name or repr(callback), callback))

    def _add(self, subs: list[_Subscriber], sub: _Subscriber) -> Subscription:
        with self._lock:
            subs.append(sub)

        def unsubscribe() -> None:
            with self._lock:
                if sub in subs:
                    subs.remove(sub)

        return Subscription(unsubscribe)

    # -- publishing -------------------------------------------------------------------------

    def publish(self, batch: SampleBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        with self._lock:
            self._update_latest(batch)
            self.samples_published += n
            self.batches_published += 1
            for sub in self._batch_subs:
                self._deliver(sub, batch)

    def publish_events(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._lock:
            for sub in self._event_subs:
                self._deliver(sub, events)

    def _deliver(self, sub: _Subscriber, payload: Any) -> None:
        try:
            sub.callback(payload)
        except Exception:
            # A broken subscriber must not take the source (or other subscribers) down.
            sub.errors += 1
            now = time.monotonic()
            if now - sub.last_error_log > 10.0:
                sub.last_error_log = now
                log.exception("bus subscriber %s failed (%d failures so far)", sub.name, sub.errors)

    def _update_latest(self, batch: SampleBatch) -> None:
        ids = batch.tag_ids
        top = int(ids.max())
        if top >= self._values.shape[0]:
            self._grow(top + 1)
        if ids.shape[0] == 1:
            last = np.zeros(1, dtype=np.intp)
            unique_ids = ids
        else:
            # Arrival order decides "latest": the last row of each tag in the batch. ufunc.at
            # applies every row in order (a fancy assignment with repeated ids does not promise
            # which one wins) and costs a quarter of np.unique's sort.
            # Only the batch's own ids are read and reset, never the whole registry.
            last_row = self._last_row
            rows = np.arange(ids.shape[0])
            np.maximum.at(last_row, ids, rows)
            last = np.flatnonzero(last_row[ids] == rows)
            unique_ids = ids[last]
            last_row[unique_ids] = -1
        self._values[unique_ids] = batch.values[last]
        self._ts[unique_ids] = batch.ts_ns[last]
        self._quality[unique_ids] = batch.quality[last]
        if batch.texts:
            last_rows = dict(zip(unique_ids.tolist(), last.tolist(), strict=True))
            for tag_id, row in last_rows.items():
                text = batch.texts.get(row)
                if text is not None:
                    self._texts[tag_id] = text

    # -- reading ------------------------------------------------------------------------

    def latest(self, tag: str | int) -> LatestValue | None:
        """The latest value of a tag (by name or id), or None if it has none or is unknown."""
        tag_id = self.registry.get_id(tag) if isinstance(tag, str) else tag
        if tag_id is None:
            return None
        with self._lock:
            if tag_id >= self._ts.shape[0] or self._ts[tag_id] == 0:
                return None
            text = self._texts.get(tag_id)
            value: float | str = text if text is not None else float(self._values[tag_id])
            return LatestValue(value, int(self._ts[tag_id]), Quality(int(self._quality[tag_id])))

    def snapshot(self, consistent_with: Callable[[], T] | None = None) -> tuple[Snapshot, T | None]:
        """Latest values of all tags that have one, plus `consistent_with()` read under the
        same lock, so a subscriber's own counters (e.g. a stream sequence) match the snapshot."""
        with self._lock:
            size = len(self.registry)
            has_value = np.flatnonzero(self._ts[:size] != 0).astype(TAG_ID_DTYPE)
            texts = {row: self._texts[int(t)] for row, t in enumerate(has_value) if int(t) in self._texts}
            batch = SampleBatch(
                has_value,
                self._ts[has_value].copy(),
                self._values[has_value].copy(),
                self._quality[has_value].copy(),
                texts or None,
            )
            extra = consistent_with() if consistent_with is not None else None
        return Snapshot(batch), extra

    def publish_from_latest(
        self, ids: np.ndarray, derive: Callable[[SampleBatch], SampleBatch | None]
    ) -> SampleBatch | None:
        """Publish what `derive` makes of the latest values of `ids`, with no sample published
        in between: a value derived from the latest one (a stale mark) must not overwrite a
        fresher value that arrived while it was being made. `derive` gets the latest rows of
        the ids that have a value (texts by row) and returns the batch to publish, or None."""
        with self._lock:
            ids = ids[ids < self._ts.shape[0]]
            ids = ids[self._ts[ids] != 0]
            texts = {row: self._texts[int(t)] for row, t in enumerate(ids) if int(t) in self._texts}
            latest = SampleBatch(
                ids.astype(TAG_ID_DTYPE), self._ts[ids], self._values[ids], self._quality[ids], texts or None
            )
            batch = derive(latest)
            if batch is not None:
                self.publish(batch)
            return batch

    def subscriber_errors(self) -> dict[str, int]:
        with self._lock:
            return {s.name: s.errors for s in self._batch_subs + self._event_subs if s.errors}
