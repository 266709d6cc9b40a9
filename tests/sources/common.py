"""Helpers for the source tests: run a source on a loop, collect what reaches the bus."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from hmi.core.bus import TagBus
from hmi.core.events import Event
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch


class Collector:
    """Every batch and event the bus delivers, thread-safe, with per-tag views."""

    def __init__(self, bus: TagBus) -> None:
        self.bus = bus
        self.lock = threading.Lock()
        self.rows: list[tuple[int, int, Any, int]] = []
        self.events: list[Event] = []
        bus.subscribe(self._on_batch, name="test-collector")
        bus.subscribe_events(self._on_events, name="test-collector")

    def _on_batch(self, batch: SampleBatch) -> None:
        rows = list(batch.rows())
        with self.lock:
            self.rows.extend(rows)

    def _on_events(self, events: Any) -> None:
        with self.lock:
            self.events.extend(events)

    def of(self, tag: str) -> list[tuple[int, Any, int]]:
        """(ts, value, quality) rows of one tag, in arrival order."""
        tag_id = self.bus.registry.get_id(tag)
        if tag_id is None:
            return []
        with self.lock:
            return [(ts, v, q) for t, ts, v, q in self.rows if t == tag_id]

    def values(self, tag: str, quality: Quality | None = Quality.GOOD) -> list[Any]:
        return [v for _, v, q in self.of(tag) if quality is None or q == quality]

    def latest(self, tag: str) -> tuple[Any, Quality] | None:
        value = self.bus.latest(tag) if tag in self.bus.registry else None
        return None if value is None else (value.value, value.quality)

    def messages(self) -> list[str]:
        with self.lock:
            return [e.message for e in self.events]


@asynccontextmanager
async def running(source: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run `source.run(stop)` for the duration of the block, then stop it cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
