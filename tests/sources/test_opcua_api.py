"""OPC UA source against a real asyncua server: data types, arrays, groups, browse, writes, calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from hmi.config.connections import OpcUaAddress, OpcUaConnection
from hmi.config.tags import Deadband
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.tags import DataType, TagSpec
from hmi.sources.opcua import (
    MethodArgument,
    MethodSignature,
    NotConnected,
    OpcUaSource,
    coerce_value,
    parse_node_id,
)
from hmi.sources.writes import WriteRejected
from tests.helpers import async_wait_until, free_port, run_async
from tests.sources.common import Collector, running
from tests.sources.opcua_peer import OpcUaPeer

NS = "nsu=urn:hmi:test;s=Test/"


def tag(name: str, node: str | None = None, **kw: object) -> TagSpec:
    return TagSpec(f"test.{name}", address=NS + (node or name), connection="plc", **kw)  # type: ignore[arg-type]


@pytest.fixture
def peer(tmp_path: Path):
    server = OpcUaPeer(free_port(), tmp_path / "server-pki").start()
    yield server
    server.stop()


def source_for(peer: OpcUaPeer, tags: list[TagSpec], bus: TagBus, **kw: object) -> OpcUaSource:
    conn = OpcUaConnection.model_validate(
        {"kind": "opcua", "endpoint": peer.endpoint, "publishing_interval_ms": 50, "reconnect_max_delay_s": 0.5, **kw}
    )
    return OpcUaSource("plc", conn, tags, bus)


def test_data_types_map_to_values_and_quality(peer: OpcUaPeer) -> None:
    """Boolean, integers, Float/Double, String and DateTime arrive as GOOD samples with the server's values."""
    tags = [
        tag("double"),
        tag("float"),
        tag("int16", datatype=DataType.INT),
        tag("uint32", datatype=DataType.INT),
        tag("int64", datatype=DataType.INT),
        tag("bool", datatype=DataType.BOOL),
        tag("string", datatype=DataType.STRING),
        tag("time"),
    ]
    bus = TagBus()
    collector = Collector(bus)
    source = source_for(peer, tags, bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: all(collector.values(t.name) for t in tags), 10, source.last_error)

    run_async(scenario())
    got = {t.name: collector.values(t.name)[0] for t in tags}
    assert got == {
        "test.double": 1.5,
        "test.float": 2.5,
        "test.int16": -7.0,
        "test.uint32": 7.0,
        "test.int64": float(2**40),
        "test.bool": 1.0,
        "test.string": "hello",
        "test.time": 1704164645.0,
    }


def test_array_elements_by_index_and_whole_arrays_rejected(peer: OpcUaPeer) -> None:
    """A tag with `index` reads one array element; a tag on a whole array is BAD and counted, with a clear log."""
    tags = [tag("a2", "array", source_address=OpcUaAddress(NS + "array", index=2)), tag("whole", "array")]
    bus = TagBus()
    collector = Collector(bus)
    source = source_for(peer, tags, bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: collector.values("test.a2") and collector.of("test.whole"), 10)

    run_async(scenario())
    assert collector.values("test.a2") == [3.0]
    assert collector.of("test.whole")[-2][2] == Quality.BAD or collector.latest("test.whole")[1] == Quality.COMM_LOST
    assert Quality.BAD in [q for _, _, q in collector.of("test.whole")]
    assert source.health.rejected_by_reason().get("array without an index") == 1


def test_unknown_node_is_bad_with_an_event(peer: OpcUaPeer) -> None:
    """A tag whose node does not exist turns BAD and an event names the tag and the reason."""
    bus = TagBus()
    collector = Collector(bus)
    source = source_for(peer, [tag("missing", "nope"), tag("double")], bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: collector.values("test.double"), 10)

    run_async(scenario())
    assert [q for _, _, q in collector.of("test.missing")][1] == Quality.BAD
    assert any("test.missing" in m and "BadNodeIdUnknown" in m for m in collector.messages())


def test_groups_and_deadband_reach_the_server(peer: OpcUaPeer) -> None:
    """A group's publishing interval applies to its tags, and changes within a tag's absolute deadband are not sent."""
    bus = TagBus()
    collector = Collector(bus)
    tags = [
        tag("setpoint", source_address=OpcUaAddress(NS + "setpoint", "slow", Deadband(type="absolute", value=5.0))),
        tag("double"),
    ]
    source = source_for(peer, tags, bus, groups={"slow": {"publishing_interval_ms": 200, "queue_size": 10}})

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: collector.values("test.setpoint"), 15)
            intervals = sorted(s.parameters.RequestedPublishingInterval for s in source._subscriptions)
            assert intervals == [50, 200]
            for value in (52.0, 60.0, 61.0, 70.0):
                await asyncio.to_thread(peer.call, peer.nodes["setpoint"].write_value(value))
                await asyncio.sleep(0.5)
            await async_wait_until(lambda: collector.values("test.setpoint")[-1] == 70.0, 5)

    run_async(scenario())
    assert collector.values("test.setpoint") == [50.0, 60.0, 70.0]


def test_browse_lazily_with_attributes_and_find(peer: OpcUaPeer) -> None:
    """Browse gives children with class, name, type, access and value; find works by path and by NodeId."""
    bus = TagBus()
    source = source_for(peer, [tag("double")], bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10)
            top = await source.browse()
            test = next(e for e in top if e.display_name == "Test")
            assert test.node_class == "Object"
            children = {e.display_name: e for e in await source.browse(test.node_id)}
            setpoint = children["setpoint"]
            assert (setpoint.node_class, setpoint.data_type, setpoint.value) == ("Variable", "Double", 50.0)
            assert "write" in setpoint.access and "read" in setpoint.access
            assert "write" not in children["double"].access
            assert children["array"].value_rank == 1 and children["Add"].node_class == "Method"
            found = await source.find("Objects/Test/setpoint")
            assert found.node_id == setpoint.node_id
            by_id = await source.node(NS + "setpoint")
            assert by_id.browse_name.endswith(":setpoint") and by_id.value == 50.0
            with pytest.raises(ValueError, match="no node 'Test/nope'"):
                await source.find("Test/nope")
        with pytest.raises(NotConnected):
            await source.browse()

    run_async(scenario())


def test_writes_are_coerced_range_checked_and_return_status(peer: OpcUaPeer) -> None:
    """Writes go out in the node's type, stop at the tag's limits before sending, and return the server status."""
    tags = [
        tag("setpoint", writable=True, low=0, high=100, unit="%"),
        tag("int16", writable=True, datatype=DataType.INT),
        tag("bool", writable=True, datatype=DataType.BOOL),
        tag("a1", "array", writable=True, source_address=OpcUaAddress(NS + "array", index=1)),
        tag("whole", "array", writable=True),
        tag("double"),  # not writable in the project
        tag("uint32", writable=True),  # writable in the project, not on the server
    ]
    bus = TagBus()
    source = source_for(peer, tags, bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10)
            ok = await source.write("test.setpoint", "75")
            assert ok.ok and ok.status == "Good" and ok.value == 75.0
            assert await peer.nodes["setpoint"].read_value() == 75.0
            high = await source.write("test.setpoint", 150)
            assert not high.ok and "above the tag's high limit 100 %" in high.message
            assert await peer.nodes["setpoint"].read_value() == 75.0
            assert (await source.write("test.int16", 12.0)).ok
            frac = await source.write("test.int16", 1.5)
            assert not frac.ok and "whole number" in frac.message
            big = await source.write("test.int16", 40000)
            assert not big.ok and "Int16" in big.message
            assert (await source.write("test.bool", "off")).ok
            # An element write carries IndexRange "1" (asyncua's own server ignores it and stores [9.0],
            # so only the status is checked here).
            assert (await source.write("test.a1", 9)).ok
            whole = await source.write("test.whole", 1)
            assert not whole.ok and "holds an array" in whole.message
            assert not (await source.write("test.double", 1)).ok
            denied = await source.write("test.uint32", 3)
            assert (not denied.ok and denied.status == "BadUserAccessDenied") or denied.status.startswith(
                "BadNotWritable"
            )
            result = await source.call(NS[:-5] + "Test", NS + "add", "2", 3)
            assert result.ok and result.outputs == [5.0]
            wrong = await source.call(NS[:-5] + "Test", NS + "add", 1)
            assert not wrong.ok and "takes 2 argument" in wrong.message

    # NS[:-5] + "Test" is the folder node "nsu=urn:hmi:test;s=Test".
    run_async(scenario())
    assert peer.call(peer.nodes["int16"].read_value()) == 12
    assert peer.call(peer.nodes["bool"].read_value()) is False


def test_coerce_value_refuses_what_does_not_fit() -> None:
    """Coercion accepts lossless conversions only and says why it refuses."""
    assert coerce_value("1", ua.VariantType.Boolean) is True
    assert coerce_value(3.0, ua.VariantType.UInt16) == 3
    for value, vtype in [
        (-1, ua.VariantType.Byte),
        (float("nan"), ua.VariantType.Double),
        (1e39, ua.VariantType.Float),
        ("x", ua.VariantType.Int32),
        (2, ua.VariantType.Boolean),
        ("yesterday", ua.VariantType.DateTime),
    ]:
        with pytest.raises(ValueError):
            coerce_value(value, vtype)


def test_parse_node_id_resolves_namespace_uris() -> None:
    """nsu= NodeIds resolve against the namespace array; unknown URIs and bad strings say so."""
    assert parse_node_id("nsu=urn:b;s=X", ["urn:a", "urn:b"]).NamespaceIndex == 1
    with pytest.raises(ValueError, match="not on the server"):
        parse_node_id("nsu=urn:c;s=X", ["urn:a"])
    with pytest.raises(ValueError, match="not a NodeId"):
        parse_node_id("garbage", [])


def test_stop_marks_every_tag_comm_lost(peer: OpcUaPeer) -> None:
    """When the source stops, its tags keep their last value but turn COMM_LOST."""
    bus = TagBus()
    collector = Collector(bus)
    source = source_for(peer, [tag("double"), tag("string", datatype=DataType.STRING)], bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: collector.values("test.string"), 10)
        await asyncio.sleep(0)

    run_async(scenario())
    assert collector.latest("test.double") == (1.5, Quality.COMM_LOST)
    assert collector.latest("test.string") == ("hello", Quality.COMM_LOST)
    assert collector.latest("plc.connected") == (0.0, Quality.GOOD)


def test_a_static_tag_is_recorded_in_the_order_it_was_shown_across_a_start_and_a_server_restart(
    peer: OpcUaPeer, tmp_path: Path
) -> None:
    """A setpoint that last changed before the runtime started, and one whose PLC reports it
    unchanged since yesterday after a server restart: each arrives after the COMM_LOST mark
    with an older source time. The historian records the qualities in the order the bus
    delivered them, so replay ends GOOD where the live view did (docs/historian.md)."""
    from datetime import UTC, datetime, timedelta

    from hmi.historian import HistorianReader, HistorianWriter

    setpoint = tag("setpoint")
    bus = TagBus()
    bus.register([setpoint])
    collector = Collector(bus)
    db = tmp_path / "h.sqlite"
    writer = HistorianWriter(str(db), bus.registry, commit_interval_s=0.05)
    writer.attach(bus)
    writer.start()
    source = source_for(peer, [setpoint], bus)
    restarted: list[OpcUaPeer] = []

    def shown() -> list[int]:
        return [q for _, _, q in collector.of(setpoint.name)]

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: shown()[-1:] == [Quality.GOOD], 10, source.last_error)
            peer.stop()
            await async_wait_until(lambda: shown()[-1:] == [Quality.COMM_LOST], 10)
            again = OpcUaPeer(peer.port, tmp_path / "server-pki")
            restarted.append(again.start())
            yesterday = datetime.now(UTC) - timedelta(days=1)
            value = ua.DataValue(ua.Variant(42.0, ua.VariantType.Double), SourceTimestamp=yesterday)
            again.call(again.nodes["setpoint"].write_value(value))
            await async_wait_until(lambda: shown()[-1:] == [Quality.GOOD], 20, source.last_error)
            live.extend(shown())  # what the window shows before the source stops (a last mark)

    live: list[int] = []
    try:
        run_async(scenario(), 60)
        assert writer.flush()
    finally:
        writer.close()
        for server in restarted:
            server.stop()
    with HistorianReader(db) as reader:
        recorded = reader.read(setpoint.name, 0, 2**62)
    assert recorded.quality.tolist() == shown(), "the recording contradicts what the window showed"
    assert live.count(Quality.COMM_LOST) == 2 and live[0] == Quality.COMM_LOST and live[-1] == Quality.GOOD
    assert float(recorded.values[len(live) - 1]) == 42.0


def test_method_signature_and_calls_with_named_outputs_and_bad_status(peer: OpcUaPeer) -> None:
    """A method's declared arguments are read with name, type, rank and description; a call returns
    its outputs with their declared names, a Bad status as such, and arguments that do not fit are
    not sent; a variable is not a method."""
    source = source_for(peer, [], TagBus())
    adjust = NS + "adjust"

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 10, source.last_error)
            signature = await source.method_signature(adjust)
            assert signature.name == "Adjust"
            assert [a.to_json() for a in signature.inputs] == [
                {"name": "setpoint", "data_type": "Double", "value_rank": -1, "description": "new setpoint in %"},
                {"name": "reason", "data_type": "String", "value_rank": -1, "description": "why"},
            ]
            assert [(a.name, a.variant_type) for a in signature.outputs] == [("accepted", ua.VariantType.Boolean)]
            ok = await source.call(NS[:-5] + "Test", adjust, 120, "too high for the plant")
            assert ok.ok and ok.outputs == [False] and ok.output_names == ("accepted",)
            bad = await source.call(NS[:-5] + "Test", adjust, 5000, "out of range")
            assert not bad.ok and bad.status == "BadOutOfRange"
            typed = await source.call(NS[:-5] + "Test", adjust, [1.0], "a list")
            assert typed.status == "Rejected" and typed.message.startswith("argument 1 (setpoint, Double): ")
            with pytest.raises(ValueError, match="is not a method"):
                await source.method_signature(NS + "setpoint")
            with pytest.raises(ValueError, match="BadNodeIdUnknown"):
                await source.method_signature(NS + "nothing")

    run_async(scenario())
    assert peer.adjusted == [(120.0, "too high for the plant")]


@given(st.lists(st.one_of(st.floats(allow_nan=False), st.text(max_size=5)), max_size=5))
def test_a_wrong_argument_count_is_always_refused(args: list[object]) -> None:
    """Whatever the arguments, a count other than the declared one is refused, naming both counts."""
    signature = MethodSignature("Adjust", tuple(MethodArgument(f"a{i}", "Double", -1, "", ua.VariantType.Double)
                                                for i in range(2)))  # fmt: skip
    if len(args) == 2:
        return
    with pytest.raises(WriteRejected, match=rf"^Adjust takes 2 argument\(s\) \(a0, a1\), {len(args)} given$"):
        signature.coerce(args)
