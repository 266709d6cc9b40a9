"""A connection kind from another package, as docs/adding-a-source.md builds it: a "counter"
peer that counts up once per period. The test installs it through the `hmi.connections`
entry point (a dist-info folder on the path), never by editing hmi."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from hmi.config.connections.base import SourceConnection, TagProblem
from hmi.config.tags import TagConfig
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import SourceAddress, TagSpec
from hmi.sources.base import Reconnect
from hmi.sources.health import SourceHealth, comm_lost_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CounterAddress(SourceAddress):
    step: float


class CounterConnection(SourceConnection):
    label: ClassVar[str] = "counter"
    source_class: ClassVar[str] = "hmi_counter_kind:CounterSource"

    kind: Literal["counter"]
    period_s: float = Field(default=0.1, gt=0)
    fail_first: int = Field(default=0, ge=0)  # refuse this many connection attempts

    def address_of(self, tag: TagConfig) -> CounterAddress:
        return CounterAddress(float(tag.address or 1))

    def tag_problems(self, tag: TagConfig) -> list[TagProblem]:
        try:
            float(tag.address or 1)
        except ValueError:
            return [(["address"], "a counter tag's address is its step, a number")]
        return []


class CounterSource:
    def __init__(
        self, name: str, config: CounterConnection, specs: list[TagSpec], bus: TagBus, project_dir: Path | None = None
    ) -> None:
        self.name, self.config, self.bus = name, config, bus
        self.health = SourceHealth(name, bus)
        self.ids = bus.register(specs)
        self.steps = [s.source_address.step if isinstance(s.source_address, CounterAddress) else 1.0 for s in specs]
        self.connected = False
        self.connects = 0
        self.notifications = 0
        self.last_error = ""
        self.attempts = 0

    @property
    def rejected(self) -> int:
        return self.health.rejected_total

    async def run(self, stop: asyncio.Event) -> None:
        reconnect = Reconnect(self.name, self.bus.publish_events, 1.0, log, first_s=0.05)
        count = 0
        while not stop.is_set():
            self.attempts += 1
            if self.attempts <= self.config.fail_first:
                wait = reconnect.failed("peer refused", config_problem=False, ever_connected=self.connects > 0)
            else:
                self.connects += 1
                self.connected = True
                self.health.set_connected(True)
                reconnect.succeeded()
                while not stop.is_set():
                    count += 1
                    values = [count * step for step in self.steps]
                    self.bus.publish(SampleBatch.from_arrays(self.ids, now_ns(), values, Quality.GOOD))
                    self.notifications += 1
                    self.health.received(1, len(values))
                    try:
                        await asyncio.wait_for(stop.wait(), self.config.period_s)
                    except TimeoutError:
                        pass
                break
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass
        self.health.set_connected(False)
        self.connected = False
        lost = comm_lost_batch(self.bus, list(self.ids))
        if lost is not None:
            self.bus.publish(lost)
