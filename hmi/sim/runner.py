"""The serving loop: one asyncio loop steps the plant and hands each tick to the servers.

Each tick: take the MQTT commands that arrived since the last one, advance the plant by
speed/rate simulated seconds (applying scheduled faults), then publish the new values over
OPC UA and MQTT. Simulated time advances by the same amount every tick whatever the wall
clock does, so a seed gives the same values. Late ticks are made up at once (up to a second
of backlog); beyond that they are skipped and simulated time runs slower rather than
jumping. Once a second it logs one line on what it serves.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import TYPE_CHECKING

import psutil

from hmi.sim.plant import Plant

if TYPE_CHECKING:
    from hmi.sim.mqtt_publisher import PlantMqttPublisher
    from hmi.sim.opcua_server import PlantOpcUaServer

log = logging.getLogger(__name__)

# A tick that comes late (another process had the CPU, a collection ran) is made up at once,
# up to this much backlog, so the rate holds on a busy machine.
MAX_CATCH_UP_S = 1.0


class PlantRunner:
    """Owns the plant's clock. Everything it calls runs on its asyncio loop's thread."""

    def __init__(
        self,
        plant: Plant,
        rate_hz: float = 10.0,
        speed: float = 1.0,
        opcua: PlantOpcUaServer | None = None,
        mqtt: PlantMqttPublisher | None = None,
        freeze_gc: bool = False,
    ) -> None:
        if rate_hz <= 0 or speed <= 0:
            raise ValueError("rate and speed must be positive")
        self.plant = plant
        self.rate_hz = rate_hz
        self.speed = speed
        self.opcua = opcua
        self.mqtt = mqtt
        self.freeze_gc = freeze_gc
        self.ticks = 0
        self.skipped_ticks = 0
        self._process = psutil.Process()

    async def run(self, stop: asyncio.Event | None = None, duration_s: float | None = None) -> None:
        """Serve until `stop` is set or `duration_s` wall seconds have passed.

        With `freeze_gc` (for a process of its own: `hmi sim`), everything alive once the servers
        are up is moved out of the garbage collector's reach (gc.freeze)."""
        stop = stop or asyncio.Event()
        if self.opcua is not None:
            await self.opcua.start()
        if self.freeze_gc:
            # asyncua's address space is close to a million long-lived objects; each full
            # collection walked them all, stalling the loop for up to 0.6 s and losing ticks
            # at 20,000 updates/s. Frozen without the collection freeze_startup_objects()
            # makes first: the server listens by now, and that collection (0.1 s idle, 0.3 s
            # under load) held up the runtime's connection and the first values; it found
            # nothing to free here (the build leaves no garbage cycles).
            gc.freeze()
        try:
            if self.mqtt is not None:
                self.mqtt.start()
            await self._loop(stop, duration_s)
        finally:
            if self.mqtt is not None:
                await asyncio.to_thread(self.mqtt.stop)
            if self.opcua is not None:
                await self.opcua.stop()

    async def _loop(self, stop: asyncio.Event, duration_s: float | None) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_hz
        dt = period * self.speed
        start = loop.time()
        next_tick = start
        next_log = start + 1.0
        self._process.cpu_percent()  # starts the CPU meter
        counts = self._counts()
        while not stop.is_set():
            await self.tick(dt)
            now = loop.time()
            if now >= next_log:
                next_log = next_log + 1.0 if next_log + 1.0 > now else now + 1.0
                counts = self._log_line(counts)
            if duration_s is not None and now - start >= duration_s:
                break
            next_tick += period
            delay = next_tick - loop.time()
            if delay < -MAX_CATCH_UP_S:
                # Far behind (a stalled machine, a debugger): skip rather than burst through
                # the backlog; simulated time then runs slow by what was skipped.
                skipped = int(-delay / period)
                self.skipped_ticks += skipped
                log.warning("fell %.1f s behind; skipping %d tick(s)", -delay, skipped)
                next_tick = loop.time()
            try:
                await asyncio.wait_for(stop.wait(), max(delay, 0.0))
            except TimeoutError:
                pass

    async def tick(self, dt: float) -> None:
        if self.mqtt is not None:
            self.mqtt.apply_commands()
        self.plant.step(dt)
        if self.opcua is not None:
            await self.opcua.publish()
        if self.mqtt is not None:
            self.mqtt.publish()
        self.ticks += 1

    def _counts(self) -> tuple[float, int, int]:
        return (
            time.monotonic(),
            self.opcua.updates_sent if self.opcua else 0,
            self.mqtt.messages_sent if self.mqtt else 0,
        )

    def _log_line(self, before: tuple[float, int, int]) -> tuple[float, int, int]:
        after = self._counts()
        elapsed = max(after[0] - before[0], 1e-6)
        parts = [
            f"t={self.plant.t:.0f} s (x{self.speed:g})",
            f"{len(self.plant.machines)} machines, {self.plant.signal_count()} signals at {self.rate_hz:g} Hz",
        ]
        if self.opcua is not None:
            rate = (after[1] - before[1]) / elapsed
            parts.append(f"OPC UA {rate:.0f} updates/s, {self.opcua.subscription_count()} subscription(s)")
        if self.mqtt is not None:
            parts.append(
                f"MQTT {(after[2] - before[2]) / elapsed:.0f} msg/s, {self.mqtt.connected_count()}/"
                f"{len(self.mqtt.clients)} connected, {self.mqtt.commands_rejected} command(s) rejected"
            )
        faults = self.plant.active_faults()
        parts.append(f"faults: {', '.join(faults) if faults else 'none'}")
        parts.append(f"cpu {self._process.cpu_percent():.0f}%")
        log.info("%s", "; ".join(parts))
        return after
