"""A local tag bus that mirrors the runtime's, fed by the IPC client.

The window's trends, table and 3D view subscribe to this bus exactly as the runtime's
parts subscribe to the real one (and playback feeds the same kind of bus). Local tag ids
stay stable across runtime restarts: remote ids are translated through one array.
When the link to the runtime is lost, every tag turns COMM_LOST here, so nothing stale
ever looks current. After a gap or a stall the client hands over a repair snapshot: only the
values that differ from what this bus holds are republished (a trend gets no duplicate
point), then the resync listeners re-fetch what they keep from events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagSpec

log = logging.getLogger(__name__)


class BusMirror:
    """An IPC ClientListener that republishes everything on a local TagBus."""

    def __init__(self, bus: TagBus | None = None) -> None:
        self.bus = bus if bus is not None else TagBus()
        self._lock = threading.Lock()
        self._remote_to_local = np.full(0, -1, np.int32)
        self.link_up = False
        self.unknown_ids = 0
        self._link_listeners: list[Callable[[bool], None]] = []
        self._resync_listeners: list[Callable[[], None]] = []

    def on_link_change(self, listener: Callable[[bool], None]) -> None:
        self._link_listeners.append(listener)

    def on_resynced(self, listener: Callable[[], None]) -> None:
        """`listener()` runs (IPC client thread) once a repair snapshot is applied: the stream
        had a gap or a stall, so whatever is kept from events may have missed some."""
        self._resync_listeners.append(listener)

    def _map(self, tags: list[tuple[int, TagSpec]]) -> None:
        with self._lock:
            top = max((remote for remote, _ in tags), default=-1)
            if top >= self._remote_to_local.shape[0]:
                grown = np.full(max(top + 1, 2 * self._remote_to_local.shape[0]), -1, np.int32)
                grown[: self._remote_to_local.shape[0]] = self._remote_to_local
                self._remote_to_local = grown
            local_ids = self.bus.register([spec for _, spec in tags])
            for (remote, _), local in zip(tags, local_ids, strict=True):
                self._remote_to_local[remote] = local

    def _translate(self, batch: SampleBatch) -> SampleBatch:
        table = self._remote_to_local
        remote = batch.tag_ids
        known = remote < table.shape[0]
        local = np.full(remote.shape[0], -1, np.int32)
        local[known] = table[remote[known]]
        valid = local >= 0
        if not valid.all():
            self.unknown_ids += int((~valid).sum())
            batch = batch.take(valid)
            local = local[valid]
        return SampleBatch(local, batch.ts_ns, batch.values, batch.quality, batch.texts)

    # -- ClientListener (IPC client thread) -------------------------------------------------

    def on_snapshot(self, tags: list[tuple[int, TagSpec]], batch: SampleBatch) -> None:
        with self._lock:
            self._remote_to_local = np.full(0, -1, np.int32)  # a new session may number anew
        self._map(tags)
        self.bus.publish(self._translate(batch))

    def on_resync(self, tags: list[tuple[int, TagSpec]], batch: SampleBatch) -> None:
        self._map(tags)  # tags announced in a lost message; known ones keep their ids
        batch = self._translate(batch)
        changed = self._differs(batch)
        if changed.any():
            self.bus.publish(batch.take(changed))
        for listener in list(self._resync_listeners):
            listener()

    def on_tags(self, tags: list[tuple[int, TagSpec]]) -> None:
        self._map(tags)

    def on_batch(self, batch: SampleBatch) -> None:
        self.bus.publish(self._translate(batch))

    def on_events(self, events: list[Event]) -> None:
        self.bus.publish_events(events)

    def on_link(self, up: bool) -> None:
        if not up:
            # Values first: whoever sees the link down must find them COMM_LOST already.
            self._mark_all_comm_lost()
        self.link_up = up
        if not up:
            self.bus.publish_events(
                [Event(EventCategory.SYSTEM, "runtime", "Runtime not responding: values are stale", Severity.ERROR)]
            )
        else:
            self.bus.publish_events([Event(EventCategory.SYSTEM, "runtime", "Runtime connected")])
        for listener in list(self._link_listeners):
            listener(up)

    def _differs(self, batch: SampleBatch) -> np.ndarray:
        """Per row of `batch` (local ids): whether it differs from the bus's latest value of its tag."""
        current = self.bus.snapshot()[0].batch
        size = int(max(batch.tag_ids.max(initial=-1), current.tag_ids.max(initial=-1))) + 1
        ts = np.zeros(size, np.int64)
        values = np.full(size, np.nan)
        quality = np.zeros(size, np.int64)
        ts[current.tag_ids] = current.ts_ns
        values[current.tag_ids] = current.values
        quality[current.tag_ids] = current.quality
        ids = batch.tag_ids
        same_value = (values[ids] == batch.values) | (np.isnan(values[ids]) & np.isnan(batch.values))
        differs = (ts[ids] != batch.ts_ns) | (quality[ids] != batch.quality) | ~same_value
        if batch.texts or current.texts:
            texts = {int(current.tag_ids[row]): text for row, text in (current.texts or {}).items()}
            for row, text in (batch.texts or {}).items():
                differs[row] |= texts.get(int(ids[row])) != text
        return differs

    def _mark_all_comm_lost(self) -> None:
        snapshot, _ = self.bus.snapshot()
        batch = snapshot.batch
        if len(batch):
            self.bus.publish(
                SampleBatch.from_arrays(batch.tag_ids, now_ns(), batch.values, Quality.COMM_LOST, batch.texts)
            )
