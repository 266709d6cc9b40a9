"""Stale values: a value older than its tag's `stale_after_s` turns UNCERTAIN, live and in the record.

A device can go silent while its connection stays up (an MQTT device behind a healthy
broker, a PLC whose program stopped updating a value). Nothing then says the last value is
old, so it would be shown and recorded GOOD for ever. The watcher looks, a few times a
second, at the latest value of every tag that has a limit (`tags.*.stale_after_s`, or
`machines.*.stale_after_s` for every data tag of a machine, including tags a subscription
creates at run time). A GOOD value whose *source time* is older than the limit is published
again, unchanged, with quality UNCERTAIN and stamped now, so the window shows it and the
historian records it from that moment; the next value from the device makes it GOOD again.

The age is measured from the value's source time, not its arrival: a retained MQTT message
or a replayed OPC UA value that says it is a week old is stale as soon as it arrives. (A
device clock that lags by more than the limit therefore makes its values stale: the source
time is what the record keeps, so it must be right.) One SYSTEM event per machine says which
tags went stale, so the record also says why.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.quality import Quality
from hmi.core.samples import RuntimeMarks, SampleBatch, now_ns
from hmi.core.tags import TagSpec

CHECK_INTERVAL_S = 0.25  # how late a stale value may turn UNCERTAIN at most, beyond its limit


class StaleWatcher:
    """Marks values stale on `tick()`; limits by tag name and by machine (seconds).

    A machine's limit covers the tags named `<machine>.*` that come from one of
    `source_connections` (not the health or twin-derived tags) unless the tag has its own.
    """

    def __init__(
        self,
        bus: TagBus,
        tag_limits_s: Mapping[str, float],
        machine_limits_s: Mapping[str, float],
        source_connections: set[str] | frozenset[str],
    ) -> None:
        self.bus = bus
        self._tag_limits = dict(tag_limits_s)
        self._machine_limits = dict(machine_limits_s)
        self._sources = frozenset(source_connections)
        self._lock = threading.Lock()
        self._limit_ns: dict[int, int] = {}
        self._ids = np.zeros(0, np.int32)
        self._limits = np.zeros(0, np.int64)
        self._next_check = 0
        self.marked_total = 0
        registry = bus.registry
        self._add([(tag_id, registry.spec(tag_id)) for tag_id in range(len(registry))])
        # Tags a subscription creates while running (templates) are covered by their machine's limit.
        registry.on_added(self._add)

    @property
    def watching(self) -> int:
        return len(self._limit_ns)

    def limit_s(self, name: str) -> float | None:
        tag_id = self.bus.registry.get_id(name)
        limit = self._limit_ns.get(tag_id) if tag_id is not None else None
        return None if limit is None else limit / 1e9

    def _limit_for(self, spec: TagSpec) -> float | None:
        own = self._tag_limits.get(spec.name)
        if own is not None:
            return own
        machine = spec.name.split(".", 1)[0]
        if spec.connection not in self._sources or machine == spec.connection or spec.name.endswith(".online"):
            return None  # twin, connection health and status tags say something else than the device's data
        return self._machine_limits.get(machine)

    def _add(self, added: list[tuple[int, TagSpec]]) -> None:
        with self._lock:
            for tag_id, spec in added:
                limit = self._limit_for(spec)
                if limit is not None:
                    self._limit_ns[tag_id] = int(limit * 1e9)
            self._ids = np.fromiter(self._limit_ns, np.int32, len(self._limit_ns))
            self._limits = np.fromiter(self._limit_ns.values(), np.int64, len(self._limit_ns))

    def tick(self, now: int | None = None) -> SampleBatch | None:
        """Publish a stale mark for every GOOD value past its limit; returns what was published."""
        now = now_ns() if now is None else now
        if now < self._next_check:
            return None
        self._next_check = now + int(CHECK_INTERVAL_S * 1e9)
        with self._lock:
            ids, limits = self._ids, self._limits
        if ids.shape[0] == 0:
            return None
        limit_of = dict(zip(ids.tolist(), limits.tolist(), strict=True))

        def stale_marks(latest: SampleBatch) -> SampleBatch | None:
            own_limits = np.fromiter((limit_of[t] for t in latest.tag_ids.tolist()), np.int64, len(latest))
            stale = np.flatnonzero((latest.quality == Quality.GOOD) & (now - latest.ts_ns > own_limits))
            if stale.shape[0] == 0:
                return None
            texts = latest.texts or {}
            return RuntimeMarks.from_arrays(
                latest.tag_ids[stale],
                now,
                latest.values[stale],
                Quality.UNCERTAIN,
                {row: texts[old] for row, old in enumerate(stale.tolist()) if old in texts} or None,
            )

        marked = self.bus.publish_from_latest(ids, stale_marks)
        if marked is None:
            return None
        self.marked_total += len(marked)
        self.bus.publish_events(self._events(marked, now))
        return marked

    def _events(self, marked: SampleBatch, now: int) -> list[Event]:
        registry = self.bus.registry
        by_machine: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for tag_id in marked.tag_ids.tolist():
            spec = registry.spec(tag_id)
            by_machine[spec.machine].append((spec.name, self._limit_ns[tag_id] / 1e9))
        events = []
        for machine, tags in sorted(by_machine.items()):
            names = [name for name, _ in tags]
            limits = sorted({limit for _, limit in tags})
            limit_text = f"{limits[0]:g} s" if len(limits) == 1 else f"{limits[0]:g}–{limits[-1]:g} s"
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            events.append(
                Event(
                    EventCategory.SYSTEM,
                    machine,
                    f"{machine}: no new value for over {limit_text}; shown as stale (UNCERTAIN): {shown}",
                    Severity.WARNING,
                    ts_ns=now,
                    details={"version": 1, "reason": "stale", "tags": names, "stale_after_s": limits},
                )
            )
        return events
