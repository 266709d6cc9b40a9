"""The twin on the tag bus: routes each batch's input rows to the models, publishes what they derive.

Threads: `_on_batch` is a bus subscriber, so it runs on whichever thread published the batch
(the OPC UA source's asyncio loop, paho's network thread, the replay thread) with the bus
lock held. It publishes the derived batch from inside the callback (the bus lock is
re-entrant, and the alarm engine and the historian see derived tags like any others).
Per batch the service only collects the rows of model inputs (one gather); the models get
them every FLUSH_S of sample time. A batch without any model input costs one gather.
`findings` and `stats` may be read from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from hmi.config.models import Project
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry
from hmi.twin.model import Derived, Finding, InputFrame, TwinModel

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL_S = 10.0
FLUSH_S = 0.25  # sample time between hand-overs to the models
_BAD, _UNCERTAIN = int(Quality.BAD), int(Quality.UNCERTAIN)  # plain ints: enum lookups cost on the hot path


def build_models(project: Project, registry: TagRegistry) -> list[TwinModel]:
    """The enabled models of a project, their derived tags registered in `registry`."""
    from hmi.twin.cmm import ThermalCompensationModel
    from hmi.twin.cnc import ToolHealthModel
    from hmi.twin.pump import PumpModel

    kinds: dict[str, type[TwinModel]] = {
        "thermal_compensation": ThermalCompensationModel,
        "centrifugal_pump": PumpModel,
        "cnc_tool_health": ToolHealthModel,
    }
    return [kinds[twin.kind_name](machine, twin, registry) for machine, twin in project.twin.items() if twin.enabled]


class _Route:
    """Where one model's inputs sit in the registry: tag id -> role (-1: not an input)."""

    __slots__ = ("lookup", "lost", "model", "tag_ids")

    def __init__(self, model: TwinModel, registry: TagRegistry) -> None:
        self.model = model
        self.tag_ids = np.array([registry.id_of(tag) for tag in model.input_tags.values()], np.int64)
        self.lookup = np.full(0, -1, np.int32)
        self.lost = False
        self.grow(len(registry))

    def grow(self, size: int) -> None:
        if size <= self.lookup.shape[0]:
            return
        lookup = np.full(max(size, 64), -1, np.int32)
        lookup[self.tag_ids] = np.arange(self.tag_ids.shape[0], dtype=np.int32)
        self.lookup = lookup


class TwinService:
    """Runs `models` on `bus` until closed.

    The input rows of each batch are only collected (one gather, one append); the models
    get them every `flush_s` of sample time, and at once when an input turns bad. Derived
    values are therefore up to `flush_s` later than their inputs, and the per-batch cost on
    the publishing thread stays a few microseconds however many models there are."""

    def __init__(self, models: Iterable[TwinModel], bus: TagBus, flush_s: float = FLUSH_S) -> None:
        self.bus = bus
        self.models = list(models)
        self.flush_ns = int(flush_s * 1e9)
        self._routes = [_Route(m, bus.registry) for m in self.models]
        self._is_input = np.zeros(0, bool)
        self._grow(len(bus.registry))
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_since: int | None = None
        self._busy = False  # the derived batch comes back through the bus: skip it quickly
        self._lock = threading.Lock()  # guards the counters and findings read from other threads
        self.batches = 0
        self.cpu_ns = 0  # thread CPU time spent in the twin (for the benchmark and `status`)
        self.errors = 0
        self._last_error_log = 0.0
        self._subscription = bus.subscribe(self._on_batch, name="twin")

    def close(self) -> None:
        self._subscription.close()

    @classmethod
    def from_project(cls, project: Project, bus: TagBus) -> TwinService:
        return cls(build_models(project, bus.registry), bus)

    def _grow(self, size: int) -> None:
        is_input = np.zeros(max(size, 64), bool)
        for route in self._routes:
            route.grow(size)
            is_input[route.tag_ids] = True
        self._is_input = is_input

    # -- bus thread ------------------------------------------------------------------------

    def _on_batch(self, batch: SampleBatch) -> None:
        if self._busy or not self._routes:
            return
        ids = batch.tag_ids
        if int(ids.max()) >= self._is_input.shape[0]:
            self._grow(int(ids.max()) + 1)
        rows = self._is_input[ids]
        if not rows.any():
            return
        started = time.thread_time_ns()
        ts = batch.ts_ns[rows]
        quality = batch.quality[rows]
        self._pending.append((ids[rows], ts, batch.values[rows], quality))
        if self._pending_since is None:
            self._pending_since = int(ts.min())
        if int(ts.max()) - self._pending_since >= self.flush_ns or int(quality.max()) >= _BAD:
            self.flush()
        with self._lock:
            self.batches += 1
            self.cpu_ns += time.thread_time_ns() - started

    def flush(self) -> None:
        """Hand the collected input rows to the models and publish what they derive (bus thread)."""
        if not self._pending:
            return
        pending, self._pending, self._pending_since = self._pending, [], None
        ids = np.concatenate([p[0] for p in pending])
        ts = np.concatenate([p[1] for p in pending])
        values = np.concatenate([p[2] for p in pending])
        quality = np.concatenate([p[3] for p in pending])
        self._busy = True
        derived = Derived()
        try:
            for route in self._routes:
                roles = route.lookup[ids]
                rows = roles >= 0
                if rows.any():
                    self._run(route, InputFrame(roles[rows], ts[rows], values[rows], quality[rows]), derived)
            if derived:
                self.bus.publish(derived.batch())
        finally:
            self._busy = False

    def _run(self, route: _Route, frame: InputFrame, derived: Derived) -> None:
        model = route.model
        worst = int(frame.quality.max())
        try:
            if worst >= _BAD:
                # An input went bad (or its source is gone): the derived tags say so too, once.
                if not route.lost:
                    route.lost = True
                    model.inputs_lost(int(frame.ts_ns.max()), Quality(worst), derived)
                good = frame.quality <= _UNCERTAIN
                if not good.any():
                    return
                frame = InputFrame(frame.role[good], frame.ts_ns[good], frame.values[good], frame.quality[good])
            else:
                route.lost = False
            model.process(frame, derived)
        except Exception:
            # A model's bug must not stop the bus; it is counted and logged, rate-limited.
            model.errors += 1
            with self._lock:
                self.errors += 1
            now = time.monotonic()
            if now - self._last_error_log > ERROR_LOG_INTERVAL_S:
                self._last_error_log = now
                log.exception("twin model of %s failed (%d failures so far)", model.machine, model.errors)

    # -- any thread -----------------------------------------------------------------------------

    def finding(self, advisory: str) -> Finding | None:
        """The finding behind a raised advisory (by its tag), if a model holds one."""
        for model in self.models:
            found = model.findings.get(advisory)
            if found is not None:
                return found
        return None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "models": [f"{m.machine} ({m.KIND})" for m in self.models],
                "batches": self.batches,
                "cpu_s": self.cpu_ns / 1e9,
                "errors": self.errors,
                "advisories": sorted(a for m in self.models for a in m.findings),
            }
