"""OPC UA connection life: a killed server, and a network cut that the server's session survives."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from hmi.config.connections import OpcUaConnection
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.tags import TagSpec
from hmi.sources.opcua import OpcUaSource
from tests.helpers import REPO, async_wait_until, free_port, run_async, wait_for_port
from tests.sources.common import Collector, running

COUNTER = TagSpec("test.counter", address="nsu=urn:hmi:test;s=Test/counter", connection="plc")
KEEPALIVE_S = 1.0


def start_peer(port: int, pki: Path, start: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.sources.opcua_peer",
            "--port",
            str(port),
            "--pki",
            str(pki),
            "--start",
            str(start),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    wait_for_port(port)
    return proc


def runs(values: list[float]) -> list[list[float]]:
    """Split a value sequence into runs of consecutive integers."""
    out: list[list[float]] = []
    for v in values:
        if out and v == out[-1][-1] + 1:
            out[-1].append(v)
        else:
            out.append([v])
    return out


def counter_source(port: int, tags: list[TagSpec], **connection: float) -> tuple[OpcUaSource, Collector]:
    """The source under test on the peer at `port`, keep-alive KEEPALIVE_S, quick reconnects."""
    bus = TagBus()
    conn = OpcUaConnection(
        kind="opcua",
        endpoint=f"opc.tcp://127.0.0.1:{port}/test",
        keepalive_s=KEEPALIVE_S,
        reconnect_max_delay_s=1.0,
        **connection,
    )
    return OpcUaSource("plc", conn, tags, bus), Collector(bus)


def test_killed_server_comm_lost_then_recovers_without_loss(tmp_path: Path) -> None:
    """Killing the server turns tags COMM_LOST within two keep-alives; after a restart 5 s later they are GOOD,
    and every value the server published while we were connected arrived exactly once."""
    port = free_port()
    proc = start_peer(port, tmp_path, start=0)
    source, collector = counter_source(port, [COUNTER], publishing_interval_ms=50)

    async def scenario() -> None:
        nonlocal proc
        async with running(source):
            await async_wait_until(lambda: len(collector.values("test.counter")) >= 20, 15, source.last_error)
            proc.kill()
            proc.wait()
            killed = time.monotonic()
            await async_wait_until(lambda: collector.latest("test.counter")[1] == Quality.COMM_LOST, 2 * KEEPALIVE_S)
            assert time.monotonic() - killed <= 2 * KEEPALIVE_S
            assert any("Connection plc lost" in m for m in collector.messages())
            await asyncio.sleep(5)
            before = len(collector.values("test.counter"))
            proc = await asyncio.to_thread(start_peer, port, tmp_path, 10_000)
            await async_wait_until(lambda: collector.latest("test.counter")[1] == Quality.GOOD, 10)
            await async_wait_until(lambda: len(collector.values("test.counter")) >= before + 20, 10)
            assert source.connected and source.connects == 2

    try:
        run_async(scenario(), timeout=90)
    finally:
        proc.kill()
        proc.wait()
    good = collector.values("test.counter")
    first, second = runs(good)  # one unbroken run per connected period: nothing lost, nothing twice
    assert first[0] <= 2 and second[0] >= 10_000
    assert len(good) == len(set(good))


def test_frozen_server_is_noticed_by_the_keep_alive_then_recovers(tmp_path: Path) -> None:
    """A server that hangs without closing its socket (SIGSTOP: a PLC stuck in a loop) sends no
    keep-alive: its tags turn COMM_LOST within two keep-alive periods (plus the check's half-second
    margin), and come back GOOD once it runs again."""
    port = free_port()
    proc = start_peer(port, tmp_path, start=0)
    source, collector = counter_source(port, [COUNTER], publishing_interval_ms=50, timeout_s=2.0)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: len(collector.values("test.counter")) >= 20, 15, source.last_error)
            proc.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            await async_wait_until(lambda: collector.latest("test.counter")[1] == Quality.COMM_LOST, 5)
            assert time.monotonic() - frozen <= 2 * KEEPALIVE_S + 0.5 + 0.5
            before = len(collector.values("test.counter"))
            proc.send_signal(signal.SIGCONT)
            await async_wait_until(lambda: collector.latest("test.counter")[1] == Quality.GOOD, 15)
            await async_wait_until(lambda: len(collector.values("test.counter")) >= before + 20, 10)

    try:
        run_async(scenario(), timeout=60)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
    good = collector.values("test.counter")
    assert len(good) == len(set(good))  # nothing delivered twice across the freeze


def test_frozen_server_without_subscriptions_is_noticed_by_the_state_probe(tmp_path: Path) -> None:
    """A connection with no tags (kept for browsing and writes) has no keep-alive to watch: a
    state read every watchdog interval, failing after the request timeout, notices the hang."""
    port = free_port()
    proc = start_peer(port, tmp_path, start=0)
    source, _ = counter_source(port, [], timeout_s=1.0)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: source.connected, 15, source.last_error)
            await asyncio.sleep(2 * KEEPALIVE_S)
            assert source.connected  # an answering server is not probed into a loss
            proc.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            await async_wait_until(lambda: not source.connected, 5)
            assert time.monotonic() - frozen <= KEEPALIVE_S + source.config.timeout_s + 0.5
            proc.send_signal(signal.SIGCONT)
            await async_wait_until(lambda: source.connected, 15, source.last_error)

    try:
        run_async(scenario(), timeout=60)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()


class CuttableProxy:
    """A TCP proxy on the loop whose connections can be cut while the server stays up."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self, seconds: float) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()
        await asyncio.sleep(seconds)
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.transport.abort()


def test_network_cut_transfers_the_subscription_and_loses_nothing(tmp_path: Path) -> None:
    """After a 3 s network cut the session's subscription is transferred and republished: not one counter value lost."""
    from tests.sources.opcua_peer import OpcUaPeer

    peer = OpcUaPeer(free_port(), tmp_path).start()
    bus = TagBus()
    collector = Collector(bus)

    async def scenario() -> None:
        proxy = CuttableProxy(peer.port)
        await proxy.start()
        conn = OpcUaConnection(
            kind="opcua",
            endpoint=f"opc.tcp://127.0.0.1:{proxy.port}/test",
            publishing_interval_ms=50,
            reconnect_max_delay_s=0.5,
        )
        source = OpcUaSource("plc", conn, [COUNTER], bus)
        try:
            async with running(source):
                await async_wait_until(lambda: len(collector.values("test.counter")) >= 10, 15, source.last_error)
                await proxy.cut(3.0)
                await async_wait_until(lambda: source.connects == 2, 15, source.last_error)
                count = len(collector.values("test.counter"))
                await async_wait_until(lambda: len(collector.values("test.counter")) >= count + 10, 10)
        finally:
            await proxy.close()

    try:
        run_async(scenario(), timeout=60)
    finally:
        peer.stop()
    good = collector.values("test.counter")
    assert len(runs(good)) == 1, runs(good)  # the values produced during the cut were republished
    assert Quality.COMM_LOST in [q for _, _, q in collector.of("test.counter")]
