"""What every source publishes about its own connection, and how it counts what it rejects.

Health tags per connection: `<connection>.connected` (bool), `.last_message_age_s`
(seconds since the last telemetry), `.messages_per_s` and `.rejected_total`. They are
published once a second by `SourceHealth.tick` on the runtime's asyncio loop; the counters
they read are bumped from the source's own thread (paho's, for MQTT) under one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import numpy as np

from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import RuntimeMarks, SampleBatch, now_ns
from hmi.core.tags import DataType, TagSpec

HEALTH_SIGNALS = ("connected", "last_message_age_s", "messages_per_s", "rejected_total")


class RateLimitedLog:
    """Log a message per key at most once per `interval_s`, saying how many were held back."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] += 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            msg += " (%d more like this since the last report)"
            args = (*args, held)
        self._logger.log(level, msg, *args)


class SourceHealth:
    def __init__(self, name: str, bus: TagBus) -> None:
        self.name = name
        self.bus = bus
        specs = [
            TagSpec(f"{name}.connected", "", DataType.BOOL, f"Connection {name} is up", connection=name),
            TagSpec(f"{name}.last_message_age_s", "s", DataType.FLOAT, "Seconds since last telemetry", connection=name),
            TagSpec(f"{name}.messages_per_s", "1/s", DataType.FLOAT, "Messages received per second", connection=name),
            TagSpec(f"{name}.rejected_total", "", DataType.INT, "Messages or values rejected", connection=name),
        ]
        self.tag_ids = np.asarray(bus.register(specs), dtype=np.int32)
        self.connected_tag = int(self.tag_ids[0])
        self._lock = threading.Lock()
        self.messages = 0
        self.values = 0
        self.rejected: Counter[tuple[str, str]] = Counter()  # (topic or item, reason) -> count
        self.rejected_total = 0
        self.last_message_at: float | None = None  # time.monotonic()
        self.connected = False
        self._last_tick: tuple[float, int] | None = None

    # -- from the source's thread ----------------------------------------------------------

    def received(self, messages: int, values: int) -> None:
        # Only the source's own thread calls this, and tick() reads three ints: no lock needed
        # (this runs once per message on the hot path).
        self.messages += messages
        self.values += values
        self.last_message_at = time.monotonic()

    def reject(self, where: str, reason: str, count: int = 1) -> None:
        with self._lock:
            self.rejected[(where, reason)] += count
            self.rejected_total += count

    def rejected_by_reason(self) -> dict[str, int]:
        with self._lock:
            out: Counter[str] = Counter()
            for (_, reason), n in self.rejected.items():
                out[reason] += n
            return dict(out)

    # -- from the runtime's loop ------------------------------------------------------------

    def set_connected(self, up: bool) -> None:
        self.bus.publish(self.connected_batch(up))

    def connected_batch(self, up: bool) -> SampleBatch:
        """Record the state and return the sample saying so (for a source that publishes it itself)."""
        self.connected = up
        return SampleBatch.from_arrays([self.connected_tag], now_ns(), [1.0 if up else 0.0], Quality.GOOD)

    def tick(self) -> None:
        """Publish the four health values; call about once a second."""
        now = time.monotonic()
        with self._lock:
            messages, total, last = self.messages, self.rejected_total, self.last_message_at
        rate = 0.0
        if self._last_tick is not None:
            then, count = self._last_tick
            rate = (messages - count) / max(now - then, 1e-6)
        self._last_tick = (now, messages)
        age = np.nan if last is None else now - last
        values = [1.0 if self.connected else 0.0, age, rate, float(total)]
        quality = [Quality.GOOD, Quality.GOOD if last is not None else Quality.BAD, Quality.GOOD, Quality.GOOD]
        self.bus.publish(SampleBatch.from_arrays(self.tag_ids, now_ns(), values, quality))


def comm_lost_batch(bus: TagBus, ids: list[int]) -> SampleBatch | None:
    """Every tag in `ids` with its last value (and text) but quality COMM_LOST, stamped now."""
    if not ids:
        return None
    last = np.full(len(ids), np.nan)
    texts: dict[int, str] = {}
    for row, tag_id in enumerate(ids):
        latest = bus.latest(tag_id)
        if latest is None:
            continue
        if isinstance(latest.value, str):
            texts[row] = latest.value
        elif latest.value is not None:
            last[row] = latest.value
    return RuntimeMarks.from_arrays(ids, now_ns(), last, Quality.COMM_LOST, texts or None)
