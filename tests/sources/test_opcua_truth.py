"""OPC UA values tell the truth: the shared value rule (hmi/core/values.py), no silent BAD,
status names, and the EURange/EngineeringUnits browse fields.

A real asyncua server whose values, statuses and timestamps the test sets feeds the real
OpcUaSource; a real HistorianWriter records into SQLite in tmp_path, and each test reads
the file back."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Node, ua
from asyncua.ua.status_codes import code_to_name_doc
from hypothesis import given
from hypothesis import strategies as st

from hmi.config.connections import OpcUaConnection
from hmi.core.bus import TagBus
from hmi.core.quality import Quality, quality_from_opcua_status
from hmi.core.tags import DataType, TagSpec
from hmi.core.values import INEXACT_INTEGER, NON_FINITE, TIMESTAMP_OUT_OF_WINDOW
from hmi.historian import HistorianWriter
from hmi.sources.opcua import OpcUaSource
from tests.helpers import async_wait_until, free_port, run_async
from tests.sources.common import Collector, running
from tests.sources.opcua_peer import BareServer

NS_URI = "urn:test:truth"


class TruthServer(BareServer):
    """A real OPC UA server; the test writes whole DataValues (value, status, timestamps)."""

    namespace = NS_URI
    path = "truth"

    async def add_nodes(self, objects: Node) -> None:
        folder = await objects.add_folder(ua.NodeId("Truth", self.ns), "Truth")
        for name, value, vtype in (
            ("double", 1.0, ua.VariantType.Double),
            ("int64", 1, ua.VariantType.Int64),
            ("uint64", 1, ua.VariantType.UInt64),
            ("text", "", ua.VariantType.String),
        ):
            await folder.add_variable(ua.NodeId(name, self.ns), name, value, vtype)
        # Declared BaseDataType: a device may send any variant here (Null, structures, ByteString, Guid).
        await folder.add_variable(
            ua.NodeId("any", self.ns), "any", 1.0, ua.VariantType.Double, datatype=ua.NodeId(ua.ObjectIds.BaseDataType)
        )
        # A Part 8 AnalogItem: EURange and EngineeringUnits as properties.
        speed = await folder.add_variable(ua.NodeId("speed", self.ns), "speed", 10.0, ua.VariantType.Double)
        await speed.add_property(
            ua.NodeId("speed.EURange", self.ns), ua.QualifiedName("EURange", 0), ua.Range(Low=0.0, High=6000.0)
        )
        unit = ua.EUInformation(
            NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
            UnitId=5067858,
            DisplayName=ua.LocalizedText("rpm"),
            Description=ua.LocalizedText("revolutions"),
        )
        await speed.add_property(
            ua.NodeId("speed.EngineeringUnits", self.ns), ua.QualifiedName("EngineeringUnits", 0), unit
        )

    async def write(
        self,
        name: str,
        variant: ua.Variant,
        status: int = ua.StatusCodes.Good,
        source_ts: datetime | None = None,
        server_ts: datetime | None = None,
    ) -> None:
        now = datetime.now(UTC)
        dv = ua.DataValue(
            variant, ua.StatusCode(status), SourceTimestamp=source_ts or now, ServerTimestamp=server_ts or now
        )
        node = ua.NodeId(name, self.ns)
        # asyncua's server refuses a variant of another type than the value it holds (a real
        # device sends what it sends): forget the held value first, as a fresh node has none.
        self.server.iserver.aspace._nodes[node].attributes[ua.AttributeIds.Value].value = None
        await self.server.write_attribute_value(node, dv)


def tag(name: str, datatype: DataType = DataType.FLOAT) -> TagSpec:
    return TagSpec(f"m1.{name}", "", datatype, connection="plc", address=f"nsu={NS_URI};s={name}")


TAGS = [
    tag("double"),
    tag("int64", DataType.INT),
    tag("uint64", DataType.INT),
    tag("any"),
    tag("text", DataType.STRING),
]


class Rig:
    """Server, source, bus and historian file of one test."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "history.sqlite"
        self.bus = TagBus()
        self.server = TruthServer(free_port())
        config = OpcUaConnection(
            kind="opcua", endpoint=self.server.endpoint, publishing_interval_ms=50, keepalive_s=0.5
        )
        self.source = OpcUaSource("plc", config, TAGS, self.bus)
        self.seen = Collector(self.bus)
        self.writer = HistorianWriter(str(self.path), self.bus.registry, commit_interval_s=0.05)
        self.writer.attach(self.bus)
        self.writer.start()

    async def write_and_wait(self, name: str, variant: ua.Variant, **kwargs: Any) -> tuple[int, Any, int]:
        """Write, then wait for the notification that follows it; its (ts, value, quality)."""
        before = len(self.seen.of(f"m1.{name}"))
        await self.server.write(name, variant, **kwargs)
        await async_wait_until(lambda: len(self.seen.of(f"m1.{name}")) > before, 5, f"no notification for {variant}")
        return self.seen.of(f"m1.{name}")[-1]

    def recorded(self, name: str) -> list[tuple[int, float | None, int]]:
        self.writer.close()
        with sqlite3.connect(self.path) as db:
            return db.execute(
                "SELECT s.ts, s.value, s.quality FROM samples s JOIN tags t ON t.id = s.tag_id"
                " WHERE t.name = ? ORDER BY s.ts",
                (f"m1.{name}",),
            ).fetchall()

    def recorded_events(self) -> list[tuple[str, str, str]]:
        self.writer.close()
        with sqlite3.connect(self.path) as db:
            return db.execute("SELECT source, severity, message FROM events ORDER BY id").fetchall()


def scenario(tmp_path: Path, body: Any, timeout: float = 60) -> Rig:
    rig = Rig(tmp_path)

    async def main() -> None:
        await rig.server.start()
        try:
            async with running(rig.source):
                await async_wait_until(lambda: rig.source.connected, 10, "source never connected")
                await async_wait_until(lambda: rig.bus.latest("m1.double").quality == Quality.GOOD, 5)
                await body(rig)
        finally:
            await rig.server.stop()

    try:
        run_async(main(), timeout)
    finally:
        rig.writer.close()
    return rig


def log_lines(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if all(w in r.getMessage() for w in words)]


# -- item 4: one value rule --------------------------------------------------------------------


def test_nan_and_infinity_with_a_good_status_are_recorded_bad_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """NaN, +Inf and -Inf sent with status Good are BAD live and in the file (MQTT's rule),
    each counted under NON_FINITE, and the tag is logged once, not once per value."""
    caplog.set_level(logging.WARNING, "hmi.sources.opcua")

    async def body(rig: Rig) -> None:
        for value in (math.nan, math.inf, -math.inf):
            _, _, q = await rig.write_and_wait("double", ua.Variant(value, ua.VariantType.Double))
            assert q == Quality.BAD, value
        _, value, q = await rig.write_and_wait("double", ua.Variant(7.5, ua.VariantType.Double))
        assert (value, q) == (7.5, Quality.GOOD)

    rig = scenario(tmp_path, body)
    assert rig.source.health.rejected_by_reason().get(NON_FINITE) == 3
    assert len(log_lines(caplog, "m1.double", NON_FINITE)) == 1
    rows = rig.recorded("double")
    assert [q for _, v, q in rows if q == Quality.BAD] == [Quality.BAD] * 3  # NaN and ±Inf: BAD, not GOOD
    assert rows[-2][1:] == (7.5, Quality.GOOD)  # the last row is the COMM_LOST mark of the stop


def test_integers_beyond_2_53_are_recorded_approximate_uncertain_and_counted(tmp_path: Path) -> None:
    """Int64 max and UInt64 max arrive as the nearest float marked UNCERTAIN and counted; 2^53
    itself, which a float holds exactly, stays GOOD."""

    async def body(rig: Rig) -> None:
        _, value, q = await rig.write_and_wait("int64", ua.Variant(2**63 - 1, ua.VariantType.Int64))
        assert (value, q) == (float(2**63 - 1), Quality.UNCERTAIN)
        _, value, q = await rig.write_and_wait("uint64", ua.Variant(2**64 - 1, ua.VariantType.UInt64))
        assert (value, q) == (float(2**64 - 1), Quality.UNCERTAIN)
        _, value, q = await rig.write_and_wait("int64", ua.Variant(2**53, ua.VariantType.Int64))
        assert (value, q) == (float(2**53), Quality.GOOD)
        _, value, q = await rig.write_and_wait("int64", ua.Variant(-(2**53) - 1, ua.VariantType.Int64))
        assert q == Quality.UNCERTAIN

    rig = scenario(tmp_path, body)
    assert rig.source.health.rejected_by_reason().get(INEXACT_INTEGER) == 3
    rows = rig.recorded("int64")
    assert (float(2**63 - 1), Quality.UNCERTAIN) in [(v, q) for _, v, q in rows]
    assert (float(2**53), Quality.GOOD) in [(v, q) for _, v, q in rows]


def test_source_timestamps_outside_the_window_become_the_arrival_time(tmp_path: Path) -> None:
    """Year 9999 and 1900 source times are refused: stamped on arrival, UNCERTAIN, counted.
    OPC UA's zero DateTime (1601) means "no source time": the server's time is used, GOOD."""

    async def body(rig: Rig) -> None:
        before = time.time_ns()
        ts, value, q = await rig.write_and_wait(
            "double", ua.Variant(11.0, ua.VariantType.Double), source_ts=datetime(9999, 12, 31, tzinfo=UTC)
        )
        assert (value, q) == (11.0, Quality.UNCERTAIN)
        assert before <= ts <= time.time_ns()
        ts, value, q = await rig.write_and_wait(
            "double", ua.Variant(12.0, ua.VariantType.Double), source_ts=datetime(1900, 1, 1, tzinfo=UTC)
        )
        assert (value, q) == (12.0, Quality.UNCERTAIN)
        assert before <= ts <= time.time_ns()
        server_time = datetime.now(UTC) - timedelta(minutes=5)
        ts, value, q = await rig.write_and_wait(
            "double",
            ua.Variant(13.0, ua.VariantType.Double),
            source_ts=datetime(1601, 1, 1, tzinfo=UTC),
            server_ts=server_time,
        )
        assert (value, q) == (13.0, Quality.GOOD)
        assert abs(ts - int(server_time.timestamp() * 1e9)) < 1_000_000

    rig = scenario(tmp_path, body)
    assert rig.source.health.rejected_by_reason().get(TIMESTAMP_OUT_OF_WINDOW) == 2
    rows = rig.recorded("double")
    recorded = [(v, q) for _, v, q in rows]
    assert {(11.0, Quality.UNCERTAIN), (12.0, Quality.UNCERTAIN), (13.0, Quality.GOOD)} <= set(recorded)
    years = {datetime.fromtimestamp(ts / 1e9, UTC).year for ts, _, _ in rows}
    assert years <= {datetime.now(UTC).year}


# -- item 5: no silent BAD ---------------------------------------------------------------------


def test_bad_statuses_and_unusable_values_are_named_counted_logged_and_recorded_as_events(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """BadNotReadable, a Null variant with a Good status, an ExtensionObject, a ByteString and a
    Guid each turn the tag BAD with the reason kept: one event per change of reason (a tag
    stuck at Bad does not flood), one log line, a count per reason, and an event on recovery."""
    caplog.set_level(logging.WARNING, "hmi.sources.opcua")
    import uuid

    async def body(rig: Rig) -> None:
        for variant in (
            ua.Variant(),  # Null with status Good
            ua.Variant(ua.Range(Low=0.0, High=1.0)),  # an ExtensionObject
            ua.Variant(b"\x00\x01", ua.VariantType.ByteString),
            ua.Variant(uuid.uuid4(), ua.VariantType.Guid),
        ):
            _, _, q = await rig.write_and_wait("any", variant)
            assert q == Quality.BAD, variant
        _, _, q = await rig.write_and_wait("any", ua.Variant(), status=ua.StatusCodes.BadNotReadable)
        assert q == Quality.BAD
        # Stuck at Bad: one publish response with three more queued samples of it (asyncua's
        # server sends no second notification for an unchanged Bad status): still one event.
        tag_id = rig.bus.registry.id_of("m1.any")
        stuck = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadNotReadable))
        rig.source.on_data_change([ua.MonitoredItemNotification(ClientHandle=tag_id, Value=stuck)] * 3)
        _, value, q = await rig.write_and_wait("any", ua.Variant(5.0, ua.VariantType.Double))
        assert (value, q) == (5.0, Quality.GOOD)

    rig = scenario(tmp_path, body)
    reasons = rig.source.health.rejected_by_reason()
    assert reasons.get("BadNotReadable") == 4
    assert reasons.get("no value (Null variant)") == 1
    for kind in ("ExtensionObject", "ByteString", "Guid"):
        assert reasons.get(f"unsupported type {kind}") == 1, reasons
    assert len(log_lines(caplog, "m1.any", "BadNotReadable")) == 1
    events = [(severity, message) for source, severity, message in rig.recorded_events() if source == "m1.any"]
    expected = [
        "m1.any: no value (Null variant)",
        "m1.any: unsupported type ExtensionObject",
        "m1.any: unsupported type ByteString",
        "m1.any: unsupported type Guid",
        "m1.any: BadNotReadable",
        "m1.any: good again (was BadNotReadable)",
    ]
    assert len(events) == len(expected), events
    for (severity, message), start in zip(events, expected, strict=True):
        assert message.startswith(start), (message, start)
        assert severity == ("info" if "good again" in start else "warning")
    assert sum(q == Quality.BAD for _, _, q in rig.recorded("any")) >= 5


def test_statuses_are_logged_by_name(caplog: pytest.LogCaptureFixture) -> None:
    """A subscription status is logged as BadTimeout, never as StatusCode(value=...)."""
    caplog.set_level(logging.WARNING, "hmi.sources.opcua")
    config = OpcUaConnection(kind="opcua", endpoint="opc.tcp://127.0.0.1:1/none")
    source = OpcUaSource("plc", config, TAGS, TagBus())
    source.on_status_change(ua.StatusCode(ua.StatusCodes.BadTimeout))
    text = caplog.text
    assert "BadTimeout" in text and "StatusCode(" not in text


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_status_code_maps_to_a_quality_and_has_a_printable_name(code: int) -> None:
    """Severity bits decide: GOOD only for Good codes (00), UNCERTAIN for 01, BAD or COMM_LOST
    otherwise; every code, known or not, has a printable name."""
    from hmi.sources.opcua import status_name

    quality = quality_from_opcua_status(code)
    severity = code >> 30
    assert (quality == Quality.GOOD) == (severity == 0)
    assert (quality == Quality.UNCERTAIN) == (severity == 1)
    name = status_name(code)
    assert name and name.isprintable() and "StatusCode(" not in name
    if code in code_to_name_doc:
        assert name == code_to_name_doc[code][0]


def test_every_known_status_code_has_its_own_name() -> None:
    from hmi.sources.opcua import status_name

    for code, (name, _) in code_to_name_doc.items():
        assert status_name(code) == status_name(ua.StatusCode(code)) == name
    assert status_name(0x80FF0000) == "Bad 0x80FF0000"  # unknown: severity and hex
    assert status_name(ua.StatusCodes.BadNotReadable | 0x400) == "BadNotReadable (0x803A0400)"  # info bits


# -- item 12: EURange and EngineeringUnits ----------------------------------------------------


def test_browse_reports_eurange_and_engineering_units_and_watch_uses_them(tmp_path: Path) -> None:
    """An AnalogItem's EURange and EngineeringUnits come with the browse entry (in the same
    batched requests, not one per node); a node without them has none; a tag watched from
    the browser takes the unit and range."""

    async def body(rig: Rig) -> None:
        folder = (await rig.source.find("Truth")).node_id
        entries = {e.display_name: e for e in await rig.source.browse(folder)}
        assert entries["speed"].eu_range == (0.0, 6000.0)
        assert entries["speed"].eu_unit == "rpm"
        assert entries["double"].eu_range is None and entries["double"].eu_unit == ""
        name = await rig.source.watch(entries["speed"].node_id, "m1.speed")
        spec = rig.bus.registry.spec(rig.bus.registry.id_of(name))
        assert (spec.unit, spec.low, spec.high) == ("rpm", 0.0, 6000.0)

    scenario(tmp_path, body)


def test_a_watched_node_delivers_its_changes_like_a_configured_tag(tmp_path: Path) -> None:
    """A node watched from the browser at run time gets its current value and every change
    after it as GOOD samples, none refused as an unknown client handle."""

    async def body(rig: Rig) -> None:
        name = await rig.source.watch(f"nsu={NS_URI};s=speed", "m1.speed")
        await async_wait_until(lambda: 10.0 in rig.seen.values(name), 5, "no initial value of the watched node")
        await rig.server.write("speed", ua.Variant(1234.0, ua.VariantType.Double))
        await async_wait_until(lambda: 1234.0 in rig.seen.values(name), 5, "the change did not arrive")
        assert rig.source.rejected == 0

    scenario(tmp_path, body)


# -- item 12: the headless count report ---------------------------------------------------------

COUNT_PROJECT = """
[project]
name = "counts"
[historian]
url = "sqlite:///{db}"
[runtime]
stream_port = 0
request_port = 0
[connections.plc]
kind = "opcua"
endpoint = "{endpoint}"
publishing_interval_ms = 50
[machines.m1]
label = "M1"
[tags."m1.double"]
connection = "plc"
address = "nsu={ns};s=double"
[tags."m1.any"]
connection = "plc"
address = "nsu={ns};s=any"
"""


def test_count_report_counts_every_delivered_sample_by_quality(tmp_path: Path, private_data_dir: Path) -> None:
    """`hmi run --headless --duration` reports every sample the server delivered, a
    communication-error status included, split by quality; the COMM_LOST marks the runtime
    makes itself at start and stop are not samples and are not counted."""
    from hmi.config import load_project
    from hmi.runtime import Runtime

    server = TruthServer(free_port())
    project_file = tmp_path / "counts.toml"
    project_file.write_text(
        COUNT_PROJECT.format(db=(tmp_path / "h.sqlite").as_posix(), endpoint=server.endpoint, ns=NS_URI)
    )
    runtime = Runtime(load_project(project_file), stream_address=None, request_address=None)

    async def main() -> None:
        await server.start()
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            await async_wait_until(lambda: runtime.sources[0].connected, 10, "never connected")
            seen = Collector(runtime.bus)
            steps = [
                (ua.Variant(2.0, ua.VariantType.Double), ua.StatusCodes.UncertainLastUsableValue),
                (ua.Variant(), ua.StatusCodes.BadNoCommunication),
                (ua.Variant(), ua.StatusCodes.BadNotReadable),
                (ua.Variant(3.0, ua.VariantType.Double), ua.StatusCodes.Good),
            ]
            for i, (variant, status) in enumerate(steps, start=1):
                await server.write("any", variant, status=status)
                await async_wait_until(lambda i=i: len(seen.of("m1.any")) >= i, 5, f"step {i} not delivered")
        finally:
            stop.set()
            await task
            await server.stop()

    run_async(main())
    lines = {line.split()[0]: line for line in runtime.count_report().splitlines()}
    # The initial value (GOOD), then uncertain, comm-lost, bad, good.
    assert lines["m1.any"].split()[1:] == ["5", "2", "1", "1", "1"], runtime.count_report()
    assert lines["m1.double"].split()[1:] == ["1", "1", "0", "0", "0"], runtime.count_report()
    header = runtime.count_report().splitlines()[0].split()
    assert header[1:] == ["samples", "good", "uncertain", "bad", "comm-lost"]
