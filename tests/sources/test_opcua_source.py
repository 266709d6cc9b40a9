"""The OPC UA source against a real asyncua server: timestamps, quality, loss and recovery."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from asyncua import Node, ua

from hmi.config.connections import OpcUaConnection
from hmi.core.bus import TagBus
from hmi.core.events import Event
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType, TagSpec
from hmi.sources.opcua import OpcUaSource, datetime_to_ns, parse_node_id
from tests.helpers import async_wait_until, free_port, run_async
from tests.sources.opcua_peer import BareServer

NS_URI = "urn:test:plc"


class PlcServer(BareServer):
    """A small real OPC UA server whose values, timestamps and status codes the test sets."""

    namespace = NS_URI

    async def add_nodes(self, objects: Node) -> None:
        await objects.add_variable(ua.NodeId("speed", self.ns), "speed", 0.0, ua.VariantType.Double)
        await objects.add_variable(ua.NodeId("running", self.ns), "running", False, ua.VariantType.Boolean)
        await objects.add_variable(ua.NodeId("program", self.ns), "program", "", ua.VariantType.String)
        await objects.add_variable(ua.NodeId("count", self.ns), "count", 0, ua.VariantType.Int32)

    async def write(self, name: str, value: object, variant: ua.VariantType, ts: datetime | None = None,
                    status: int = ua.StatusCodes.Good) -> None:  # fmt: skip
        ts = ts or datetime.now(UTC)
        dv = ua.DataValue(ua.Variant(value, variant), ua.StatusCode(status), SourceTimestamp=ts, ServerTimestamp=ts)
        await self.server.write_attribute_value(ua.NodeId(name, self.ns), dv)


TAGS = [
    TagSpec("m1.speed", "rpm", DataType.FLOAT, connection="plc", address=f"nsu={NS_URI};s=speed"),
    TagSpec("m1.running", "", DataType.BOOL, connection="plc", address=f"nsu={NS_URI};s=running"),
    TagSpec("m1.program", "", DataType.STRING, connection="plc", address=f"nsu={NS_URI};s=program"),
    TagSpec("m1.count", "", DataType.INT, connection="plc", address=f"nsu={NS_URI};s=count"),
]


def make_source(endpoint: str, bus: TagBus, tags: list[TagSpec] = TAGS) -> OpcUaSource:
    config = OpcUaConnection(kind="opcua", endpoint=endpoint, publishing_interval_ms=50, keepalive_s=0.5)
    return OpcUaSource("plc", config, tags, bus)


class Recorder:
    def __init__(self, bus: TagBus) -> None:
        self.batches: list[SampleBatch] = []
        self.events: list[Event] = []
        bus.subscribe(self.batches.append)
        bus.subscribe_events(self.events.extend)

    def rows(self, tag_id: int) -> list[tuple[int, int, float | str, int]]:
        return [row for b in self.batches for row in b.rows() if row[0] == tag_id]


def test_values_arrive_with_the_servers_source_timestamps() -> None:
    """A value written with a source timestamp an hour ago reaches the bus with that timestamp."""

    async def scenario() -> None:
        server = await PlcServer(free_port()).start()
        bus = TagBus()
        recorder = Recorder(bus)
        source = make_source(server.endpoint, bus)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        try:
            await async_wait_until(lambda: source.connected, 10, "source never connected")
            past = datetime.now(UTC) - timedelta(hours=1)
            await server.write("speed", 1234.5, ua.VariantType.Double, ts=past)
            speed_id = bus.registry.id_of("m1.speed")
            await async_wait_until(lambda: any(r[2] == 1234.5 for r in recorder.rows(speed_id)), 5)
            row = next(r for r in recorder.rows(speed_id) if r[2] == 1234.5)
            assert row[1] == datetime_to_ns(past)
            assert row[3] == Quality.GOOD
        finally:
            stop.set()
            await task
            await server.stop()

    run_async(scenario())


def test_types_and_status_codes_map_to_values_and_quality() -> None:
    """Bool, string and integer values arrive as such; Uncertain/Bad/comm status codes map to quality."""

    async def scenario() -> None:
        server = await PlcServer(free_port()).start()
        bus = TagBus()
        source = make_source(server.endpoint, bus)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        try:
            await async_wait_until(lambda: source.connected, 10)
            await server.write("running", True, ua.VariantType.Boolean)
            await server.write("program", "O1001 POCKET", ua.VariantType.String)
            await server.write("count", 41, ua.VariantType.Int32)
            await async_wait_until(lambda: bus.latest("m1.program").value == "O1001 POCKET", 5)
            await async_wait_until(lambda: bus.latest("m1.count").value == 41.0, 5)
            assert bus.latest("m1.running").value == 1.0

            await server.write("count", 42, ua.VariantType.Int32, status=ua.StatusCodes.UncertainLastUsableValue)
            await async_wait_until(lambda: bus.latest("m1.count").quality == Quality.UNCERTAIN, 5)
            assert bus.latest("m1.count").value == 42.0
            await server.write("speed", 0.0, ua.VariantType.Double, status=ua.StatusCodes.BadSensorFailure)
            await async_wait_until(lambda: bus.latest("m1.speed").quality == Quality.BAD, 5)
            await server.write("speed", 0.0, ua.VariantType.Double, status=ua.StatusCodes.BadNoCommunication)
            await async_wait_until(lambda: bus.latest("m1.speed").quality == Quality.COMM_LOST, 5)
        finally:
            stop.set()
            await task
            await server.stop()

    run_async(scenario())


def test_stopping_the_server_turns_every_tag_comm_lost_and_recovery_restores(caplog: pytest.LogCaptureFixture) -> None:
    """Server gone: all the connection's tags turn COMM_LOST at once with an event; back: GOOD again.
    A lost connection is not logged as a crash (asyncua's publish loop said ERROR with a traceback)."""

    async def scenario() -> None:
        port = free_port()
        server = await PlcServer(port).start()
        bus = TagBus()
        recorder = Recorder(bus)
        source = make_source(server.endpoint, bus)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        try:
            await async_wait_until(lambda: source.connected, 10)
            await server.write("speed", 500.0, ua.VariantType.Double)
            await async_wait_until(lambda: bus.latest("m1.speed").value == 500.0, 5)
            await server.stop()
            await async_wait_until(lambda: not source.connected, 5, "loss not noticed")
            for tag in TAGS:
                assert bus.latest(tag.name).quality == Quality.COMM_LOST, tag.name
            assert bus.latest("m1.speed").value == 500.0  # the last value is kept, marked stale
            assert bus.latest("plc.connected").value == 0.0
            assert any("Connection plc lost" in e.message for e in recorder.events)
            # One batch marks them all at the same instant.
            lost = [b for b in recorder.batches if (b.quality == Quality.COMM_LOST).all() and len(b) == len(TAGS)]
            assert lost and np.unique(lost[-1].ts_ns).shape[0] == 1

            server = await PlcServer(port).start()
            await async_wait_until(lambda: source.connected, 15, "no reconnect")
            await server.write("speed", 750.0, ua.VariantType.Double)
            await async_wait_until(lambda: bus.latest("m1.speed").value == 750.0, 5)
            assert bus.latest("m1.speed").quality == Quality.GOOD
            assert bus.latest("plc.connected").value == 1.0
            assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        finally:
            stop.set()
            await task
            await server.stop()

    run_async(scenario(), timeout=90)


def test_an_unknown_node_is_marked_bad_and_the_rest_still_flows() -> None:
    """A misconfigured address yields BAD quality and an error event; other tags are unaffected."""

    async def scenario() -> None:
        server = await PlcServer(free_port()).start()
        bus = TagBus()
        recorder = Recorder(bus)
        tags = [*TAGS, TagSpec("m1.ghost", connection="plc", address=f"nsu={NS_URI};s=ghost")]
        source = make_source(server.endpoint, bus, tags)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        try:
            await async_wait_until(lambda: source.connected, 10)
            await async_wait_until(lambda: bus.latest("m1.ghost") and bus.latest("m1.ghost").quality == Quality.BAD, 5)
            assert any("m1.ghost" in e.message and "BadNodeIdUnknown" in e.message for e in recorder.events)
            await server.write("speed", 42.0, ua.VariantType.Double)
            await async_wait_until(lambda: bus.latest("m1.speed").value == 42.0, 5)
        finally:
            stop.set()
            await task
            await server.stop()

    run_async(scenario())


def test_unreachable_endpoint_shows_comm_lost_from_the_start() -> None:
    """Before any connection, tags are COMM_LOST (never a blank that could pass for a value)."""

    async def scenario() -> None:
        bus = TagBus()
        source = make_source(f"opc.tcp://127.0.0.1:{free_port()}/none", bus)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await asyncio.sleep(0.5)
        try:
            assert all(bus.latest(t.name).quality == Quality.COMM_LOST for t in TAGS)
            assert not source.connected
        finally:
            stop.set()
            await task

    run_async(scenario())


def test_parse_node_id_resolves_namespace_uris() -> None:
    node = parse_node_id("nsu=urn:b;s=Plant/x", ["http://opcfoundation.org/UA/", "urn:a", "urn:b"])
    assert node == ua.NodeId("Plant/x", 2)
    assert parse_node_id("ns=3;i=42", []) == ua.NodeId(42, 3)
