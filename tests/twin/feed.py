"""Drive twin models from simulated machines in-process, much faster than real time.

`PlantFeed` steps demo machines (hmi.sim) on one simulated clock and publishes each tick's
values on a real TagBus as one batch, the way a source does; the real TwinService runs
on that bus. Advisory tags going to 1 are recorded with their simulated time, which is
what the recall and false-advisory figures are computed from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hmi.config import Project, load_project
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.sim.base import MachineSim
from hmi.sim.plant import MACHINE_TYPES
from hmi.twin.service import TwinService
from tests.helpers import DEMO_PROJECT

START_NS = 1_800_000_000 * 1_000_000_000  # an arbitrary epoch time for simulated zero


def demo_project() -> Project:
    return load_project(DEMO_PROJECT)


@dataclass
class Raised:
    advisory: str
    t_s: float


@dataclass
class PlantFeed:
    project: Project
    machines: dict[str, MachineSim]
    rate_hz: float = 10.0
    bus: TagBus = field(default_factory=TagBus)
    raised: list[Raised] = field(default_factory=list)
    cleared: list[Raised] = field(default_factory=list)
    t: float = 0.0
    # Applied to a machine's values before they are published (fakes a fault the sim lacks).
    tamper: Callable[[str, float, dict], None] | None = None
    start_ns: int = START_NS
    # False: the bus has its twin already (a Runtime's), the feed only publishes.
    own_twin: bool = True

    def __post_init__(self) -> None:
        self.bus.register(self.project.tag_specs())
        if self.own_twin:
            self.twin = TwinService.from_project(self.project, self.bus)
        registry = self.bus.registry
        self._signals: list[tuple[str, MachineSim, list[str], np.ndarray]] = []
        for machine_id, sim in self.machines.items():
            names = [
                s.name for s in sim.signals if f"{machine_id}.{s.name}" in registry and s.datatype.value != "string"
            ]
            ids = np.array([registry.id_of(f"{machine_id}.{n}") for n in names], np.int32)
            self._signals.append((machine_id, sim, names, ids))
        advisory = [s.name for s in registry if ".advisory." in s.name]
        self._is_advisory = np.zeros(len(registry) + 1, bool)
        self._is_advisory[[registry.id_of(n) for n in advisory]] = True
        self.bus.subscribe(self._on_batch, name="feed-recorder")

    @classmethod
    def demo(cls, *machine_ids: str, seed: int = 1, project: Project | None = None, **kw: object) -> PlantFeed:
        machines = {m: MACHINE_TYPES[m](m, seed=seed) for m in machine_ids}
        return cls(project or demo_project(), machines, **kw)  # type: ignore[arg-type]

    def _on_batch(self, batch: SampleBatch) -> None:
        ids = batch.tag_ids
        hit = self._is_advisory[np.minimum(ids, self._is_advisory.shape[0] - 1)]
        if not hit.any():
            return
        for tag_id, value in zip(batch.tag_ids[hit].tolist(), batch.values[hit].tolist(), strict=True):
            name = self.bus.registry.spec(tag_id).name
            (self.raised if value >= 0.5 else self.cleared).append(Raised(name, self.t))

    def run(self, seconds: float, every: Callable[[PlantFeed], None] | None = None) -> None:
        """Advance `seconds` of simulated time, publishing one batch per tick."""
        dt = 1.0 / self.rate_hz
        ticks = round(seconds * self.rate_hz)
        for _ in range(ticks):
            self.t += dt
            ts = self.start_ns + int(self.t * 1e9)
            ids, values = [], []
            for machine_id, sim, names, tag_ids in self._signals:
                sim.step(dt)
                if not sim.online:
                    continue
                v = sim.values()
                if self.tamper is not None:
                    self.tamper(machine_id, self.t, v)
                ids.append(tag_ids)
                values.append(np.array([float(v[n]) for n in names]))
            if ids:
                self.bus.publish(SampleBatch.from_arrays(np.concatenate(ids), ts, np.concatenate(values), Quality.GOOD))
            if every is not None:
                every(self)

    def first(self, advisory: str, after_s: float = 0.0) -> float | None:
        """Simulated time the advisory was first raised at or after `after_s`."""
        return next((r.t_s for r in self.raised if r.advisory == advisory and r.t_s >= after_s), None)

    def latest(self, tag: str) -> float:
        value = self.bus.latest(tag)
        return float("nan") if value is None else float(value.value)  # type: ignore[arg-type]
