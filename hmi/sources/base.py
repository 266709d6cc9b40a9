"""The seam every source plugs into: what the runtime expects of a source, what it may
optionally offer, the reconnect policy they share, and how the runtime makes one.

A source turns one connection ([connections.NAME]) into samples on the tag bus. It owns its
connection life: connect, deliver, and on loss mark its tags COMM_LOST (health.comm_lost_batch),
publish `<connection>.connected = 0` first, then retry with `Reconnect`. docs/adding-a-source.md
walks through adding a kind.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hmi.config.connections import SourceConnection
from hmi.core.backoff import Backoff
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.tags import DataType, TagSpec
from hmi.sources.health import RateLimitedLog, SourceHealth
from hmi.sources.writes import WriteResult

FIRST_RETRY_S = 0.25  # a peer starting at the same moment answers within a few of these (backoff.py)


@runtime_checkable
class Source(Protocol):
    """What the runtime needs of every source."""

    name: str
    connected: bool
    connects: int  # successful connections so far
    notifications: int  # messages (MQTT) or notifications (OPC UA) received
    last_error: str
    health: SourceHealth

    @property
    def rejected(self) -> int: ...

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, deliver and reconnect until `stop` is set; on return the tags are COMM_LOST."""


@runtime_checkable
class WritableSource(Protocol):
    async def write(self, tag: str, value: Any) -> WriteResult: ...


@runtime_checkable
class BrowsableSource(Protocol):
    """A source whose peer has an address space the tag browser can walk and subscribe to."""

    async def browse(self, node_id: str | None = None) -> Sequence[Any]: ...

    def tag_for_node(self, node_id: str) -> str | None: ...

    async def watch(self, node_id: str, name: str, unit: str = "", datatype: DataType = DataType.FLOAT) -> str: ...


@runtime_checkable
class CallableSource(Protocol):
    """A source whose peer has methods an operator may call (the call dialog)."""

    async def call(self, object_id: str, method_id: str, *args: Any) -> Any: ...

    async def method_signature(self, method_id: str) -> Any: ...


class SourceFactory(Protocol):
    def __call__(
        self, name: str, config: Any, specs: list[TagSpec], bus: TagBus, project_dir: Path | None = None
    ) -> Source: ...


def source_factory(config: SourceConnection) -> SourceFactory:
    """The class named by the connection kind's `source_class` ("module:Class")."""
    module_name, _, class_name = type(config).source_class.partition(":")
    factory: SourceFactory = getattr(importlib.import_module(module_name), class_name)
    return factory


def make_source(
    name: str, config: SourceConnection, specs: list[TagSpec], bus: TagBus, project_dir: Path | None = None
) -> Source:
    return source_factory(config)(name, config, specs, bus, project_dir)


class Reconnect:
    """The retry policy of every source's connection loop: back off (backoff.py), tell the
    operator once about a problem a human must fix (a refused certificate or password) as a
    SYSTEM event, and log each retry at a limited rate. Thread-agnostic: the caller waits.

        reconnect = Reconnect(name, bus, max_delay_s, log)
        while not stopping:
            try: session(); reconnect.succeeded()
            except ...: reason, config_problem = ...
            wait = reconnect.failed(reason, config_problem, ever_connected=connects > 0)
    """

    def __init__(
        self,
        name: str,
        publish_events: Callable[[list[Event]], None],
        max_delay_s: float,
        logger: logging.Logger,
        first_s: float = FIRST_RETRY_S,
    ) -> None:
        self.name = name
        self._publish_events = publish_events
        self.backoff = Backoff(first_s, max_delay_s)
        self._log = RateLimitedLog(logger)
        self._reported: set[str] = set()

    def succeeded(self) -> None:
        """After a good connection: the next loss starts from the first delay again, and a
        problem that comes back is reported again."""
        self.backoff.reset()
        self._reported.clear()

    def report_once(self, reason: str) -> None:
        """A SYSTEM event for a problem a human must fix, once per reason until a connection succeeds."""
        if reason and reason not in self._reported:
            self._reported.add(reason)
            self._publish_events([Event(EventCategory.SYSTEM, self.name, f"{self.name}: {reason}", Severity.ERROR)])

    def failed(self, reason: str, config_problem: bool, ever_connected: bool, report: bool = True) -> float:
        """After a failed attempt or a lost session: the seconds to wait before the next one.
        `report=False` when the caller has just told the loss in its own event."""
        if config_problem and report:
            self.report_once(reason)
        wait = self.backoff.next(ever_connected=ever_connected, config_problem=config_problem)
        level = logging.ERROR if config_problem else logging.INFO
        self._log(level, f"retry:{reason}", "%s: %s; retrying in %.1f s", self.name, reason or "disconnected", wait)
        return wait
