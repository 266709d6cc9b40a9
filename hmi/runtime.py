"""The headless runtime: sources -> tag bus -> (alarms, twin, historian) -> IPC publisher.

Builds everything from a project file and runs it on one asyncio loop. No Qt: this is
what runs on an edge box, and what keeps recording when a window crashes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import numpy as np

from hmi.config.models import MqttConnection, Project
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.historian.writer import HistorianWriter
from hmi.ipc.publisher import IpcPublisher
from hmi.sources.mqtt import MqttSource
from hmi.sources.opcua import OpcUaSource

log = logging.getLogger(__name__)


class SampleCounter:
    """Counts samples received per tag id (for `--duration` reports and tests).

    The COMM_LOST marks a source publishes itself when a connection drops are not counted:
    they were not received from anywhere.
    """

    def __init__(self, bus: TagBus) -> None:
        self._lock = threading.Lock()
        self._counts = np.zeros(0, np.int64)
        self._subscription = bus.subscribe(self._on_batch, name="sample-counter")

    def _on_batch(self, batch: SampleBatch) -> None:
        ids = batch.tag_ids[batch.quality != Quality.COMM_LOST]
        counts = np.bincount(ids, minlength=self._counts.shape[0])
        with self._lock:
            if counts.shape[0] > self._counts.shape[0]:
                counts[: self._counts.shape[0]] += self._counts
                self._counts = counts
            else:
                self._counts += counts

    def counts(self) -> np.ndarray:
        with self._lock:
            return self._counts.copy()


class Runtime:
    def __init__(
        self,
        project: Project,
        stream_address: str | None = None,
        request_address: str | None = None,
    ) -> None:
        self.project = project
        self.bus = TagBus()
        # Configured tags take the first ids, in file order, so ids are stable per project.
        self.bus.register(project.tag_specs())
        self.counter = SampleCounter(self.bus)
        # Every sample and event on the bus is recorded ([historian], [[shifts]], tags.*.history).
        self.historian = HistorianWriter.from_project(project, self.bus.registry)
        self.historian.attach(self.bus)
        project_dir = project.source_path.parent if project.source_path is not None else None
        self.sources: list[OpcUaSource | MqttSource] = [
            MqttSource(name, conn, project.tags_of_connection(name), self.bus, project_dir)
            if isinstance(conn, MqttConnection)
            else OpcUaSource(name, conn, project.tags_of_connection(name), self.bus)
            for name, conn in project.connections.items()
        ]
        self.publisher: IpcPublisher | None = None
        if stream_address and request_address:
            self.publisher = IpcPublisher(self.bus, stream_address, request_address, self.handle_command)
        self.started_at = time.time()

    def handle_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Commands from windows (request thread). More arrive with alarms and writes."""
        name = command.get("command")
        if name == "ping":
            return {"ok": True, "pid": os.getpid(), "uptime_s": time.time() - self.started_at}
        if name == "status":
            return {
                "ok": True,
                "sources": [
                    {
                        "name": s.name,
                        "connected": s.connected,
                        "notifications": s.notifications,
                        "rejected": s.rejected,
                        "last_error": s.last_error,
                    }
                    for s in self.sources
                ],
                "samples": self.bus.samples_published,
                "historian": {
                    "queue_depth": self.historian.queue_depth,
                    "written": self.historian.stats.written,
                    "not_kept": self.historian.stats.not_kept,
                    "last_error": self.historian.stats.last_error,
                },
            }
        return {"ok": False, "error": f"unknown command {name!r}"}

    async def run(self, stop: asyncio.Event | None = None, duration_s: float | None = None) -> None:
        stop = stop or asyncio.Event()
        self.historian.start()
        if self.publisher is not None:
            self.publisher.start()
            log.info(
                "runtime serving windows on %s (requests %s)",
                self.publisher.stream_address,
                self.publisher.request_address,
            )
        tasks = [asyncio.create_task(source.run(stop), name=f"source-{source.name}") for source in self.sources]
        status_task = asyncio.create_task(self._log_status(stop))
        try:
            if duration_s is not None:
                try:
                    await asyncio.wait_for(stop.wait(), duration_s)
                except TimeoutError:
                    pass
            else:
                await stop.wait()
        finally:
            stop.set()
            await asyncio.gather(*tasks, status_task, return_exceptions=True)
            # Flush after the sources stopped (their last COMM_LOST marks are recorded too).
            await asyncio.to_thread(self.historian.close)
            if self.publisher is not None:
                self.publisher.stop()

    async def _log_status(self, stop: asyncio.Event) -> None:
        last = self.bus.samples_published
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 30.0)
            except TimeoutError:
                now = self.bus.samples_published
                up = sum(s.connected for s in self.sources)
                log.info("runtime: %d/%d connections up, %.0f samples/s", up, len(self.sources), (now - last) / 30)
                last = now

    def count_report(self) -> str:
        counts = self.counter.counts()
        lines = []
        registry = self.bus.registry
        width = max((len(n) for n in registry.names()), default=10)
        for tag_id in range(len(registry)):
            n = int(counts[tag_id]) if tag_id < counts.shape[0] else 0
            lines.append(f"{registry.spec(tag_id).name:<{width}}  {n:>8}")
        lines.append(f"{'total':<{width}}  {int(counts.sum()):>8}")
        return "\n".join(lines)
