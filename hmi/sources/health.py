"""What every source publishes about its own connection, and how it counts what it rejects.

Health tags per connection: `<connection>.connected` (bool), `.last_message_age_s`
(seconds since the last telemetry), `.messages_per_s` and `.rejected_total`. They are
published once a second by `SourceHealth.tick` on the runtime's asyncio loop; the counters
they read are bumped from the source's own thread (paho's, for MQTT) under one lock.

A connection that lists redundant servers (OPC UA `endpoints`, MQTT `brokers`) also has
`.active_server` (text: the endpoint or host:port in use, "" while none), `.failovers`
(switches from one server to another), `.comm_lost_total` (losses: periods its tags were
COMM_LOST after having been connected) and `.comm_lost_s` (their total length, the current
one included). They change with `connected_batch` as well as once a second.
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
FAILOVER_SIGNALS = ("active_server", "failovers", "comm_lost_total", "comm_lost_s")


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
    def __init__(self, name: str, bus: TagBus, servers: int = 1) -> None:
        self.name = name
        self.bus = bus
        specs = [
            TagSpec(f"{name}.connected", "", DataType.BOOL, f"Connection {name} is up", connection=name),
            TagSpec(f"{name}.last_message_age_s", "s", DataType.FLOAT, "Seconds since last telemetry", connection=name),
            TagSpec(f"{name}.messages_per_s", "1/s", DataType.FLOAT, "Messages received per second", connection=name),
            TagSpec(f"{name}.rejected_total", "", DataType.INT, "Messages or values rejected", connection=name),
        ]
        if servers > 1:
            specs += [
                TagSpec(f"{name}.active_server", "", DataType.STRING, "Server or broker in use", connection=name),
                TagSpec(f"{name}.failovers", "", DataType.INT, "Switches to another server", connection=name),
                TagSpec(f"{name}.comm_lost_total", "", DataType.INT, "Connection losses", connection=name),
                TagSpec(f"{name}.comm_lost_s", "s", DataType.FLOAT, "Seconds without connection", connection=name),
            ]
        self.tag_ids = np.asarray(bus.register(specs), dtype=np.int32)
        self.connected_tag = int(self.tag_ids[0])
        self._redundant = servers > 1
        self.active_server = ""
        self.failovers = 0
        self.comm_lost_total = 0
        self._comm_lost_s = 0.0  # of the losses that have ended
        self._lost_at: float | None = None  # time.monotonic() of the current loss
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

    def set_connected(self, up: bool, server: str = "") -> None:
        self.bus.publish(self.connected_batch(up, server))

    def connected_batch(self, up: bool, server: str = "") -> SampleBatch:
        """Record the state (and, going up, the server now in use) and return the samples saying
        so (for a source that publishes them itself). May be called from the source's thread."""
        now = time.monotonic()
        with self._lock:
            if up and self._lost_at is not None:
                self._comm_lost_s += now - self._lost_at
                self._lost_at = None
            elif not up and self.connected:
                self.comm_lost_total += 1
                self._lost_at = now
            if up:
                if self.active_server and server and server != self.active_server:
                    self.failovers += 1
                self.active_server = server or self.active_server
            self.connected = up
        if not self._redundant:
            return SampleBatch.from_arrays([self.connected_tag], now_ns(), [1.0 if up else 0.0], Quality.GOOD)
        values, texts = self._failover_values(now)
        return SampleBatch.from_arrays(
            [self.connected_tag, *self.tag_ids[4:]], now_ns(), [1.0 if up else 0.0, *values], Quality.GOOD,
            {row + 1: text for row, text in texts.items()},
        )  # fmt: skip

    @property
    def comm_lost_s(self) -> float:
        """Seconds COMM_LOST so far (after having been connected), the current loss included."""
        with self._lock:
            return self._comm_lost_s + (time.monotonic() - self._lost_at if self._lost_at is not None else 0.0)

    def _failover_values(self, now: float) -> tuple[list[float], dict[int, str]]:
        lost = self.comm_lost_s
        with self._lock:
            active = self.active_server if self.connected else ""
            return [np.nan, float(self.failovers), float(self.comm_lost_total), lost], {0: active}

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
        texts: dict[int, str] = {}
        if self._redundant:
            more, more_texts = self._failover_values(now)
            values += more
            quality += [Quality.GOOD] * len(more)
            texts = {row + 4: text for row, text in more_texts.items()}
        self.bus.publish(SampleBatch.from_arrays(self.tag_ids, now_ns(), values, quality, texts or None))


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
