"""Benchmark the demo plant (`hmi sim`): CPU at the demo load, and OPC UA updates/s at scale.

    python -m bench sim                # about a minute (or: python -m bench.sim)
    python -m bench.sim --seconds 30   # steadier

Three runs of a real `hmi sim` process, each measured over the same window with psutil
(CPU time of the simulator process, as % of one core), with real clients in this process:

1. the five demo machines at 10 Hz on OPC UA and MQTT (a local Mosquitto on a free port),
   an OPC UA client monitoring all 41 signals and an MQTT client taking all telemetry;
2. 2,000 synthetic tags at 10 Hz (20,000 updates/s) on OPC UA with the batched writer,
   one client monitoring all 2,000;
3. the same through asyncua's own one-by-one write path (`--unbatched`): the library's
   ceiling this machine, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import print_table, stop_process

REPO = Path(__file__).resolve().parent.parent
NAMESPACE_URI = "urn:hmi:demo-plant"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class _CountingSubscription(Subscription):
    """Counts notifications per publish response, the way the runtime's source takes them (no per-value
    callback, so the client side is not what limits the measurement)."""

    notifications = 0

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        data = publish_result.NotificationMessage.NotificationData
        for item in data or ():
            if isinstance(item, ua.DataChangeNotification):
                self.notifications += len(item.MonitoredItems)


@dataclass
class Result:
    case: str
    delivered: str
    rate: float  # updates/s delivered to the OPC UA client
    cpu: float  # % of one core
    written: float = 0.0  # updates/s the server wrote, from its own log lines
    client_cpu: float = 0.0  # % of one core this process spent as the client


def _written_rate(log_text: str) -> float:
    """Median of the server's own "OPC UA N updates/s" log lines after the first few."""
    rates = [float(m) for m in re.findall(r"OPC UA (\d+) updates/s", log_text)]
    rates = rates[4:-1] or rates
    return statistics.median(rates) if rates else 0.0


class SimProcess:
    def __init__(self, args: list[str], data_dir: Path) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="hmi-sim-bench-", suffix=".log", delete=False)  # noqa: SIM115
        env = dict(os.environ, HMI_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hmi", "sim", *args], cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.ps = psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def stop(self) -> str:
        stop_process(self.proc, 10)
        self.log.close()
        text = Path(self.log.name).read_text(errors="replace")
        os.unlink(self.log.name)
        return text


async def _measure_opcua(
    sim: SimProcess,
    port: int,
    node_ids: list[str],
    seconds: float,
    warmup: float,
    mqtt_counter: dict[str, int] | None = None,
) -> tuple[float, float, float, float]:
    """(OPC UA updates/s delivered, sim CPU %, MQTT messages/s, client CPU %) over `seconds` after a warm-up."""
    me = psutil.Process()
    client = Client(f"opc.tcp://127.0.0.1:{port}/hmi-demo", timeout=30)
    await client.connect()
    try:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=100,
            RequestedLifetimeCount=10_000,
            RequestedMaxKeepAliveCount=client.get_keepalive_count(100),
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        sub = _CountingSubscription(client.uaclient.session, params, handler=None)
        await sub.init()
        for start in range(0, len(node_ids), 500):
            requests = []
            for handle, ident in enumerate(node_ids[start : start + 500], start):
                read = ua.ReadValueId(NodeId=ua.NodeId(ident, ns), AttributeId=ua.AttributeIds.Value)
                mparams = ua.MonitoringParameters(
                    ClientHandle=handle, SamplingInterval=0, QueueSize=100, DiscardOldest=True
                )
                requests.append(ua.MonitoredItemCreateRequest(read, ua.MonitoringMode.Reporting, mparams))
            await sub.create_monitored_items(requests)
        await asyncio.sleep(warmup)  # initial values, the first full collections, caches
        n0, c0, t0, k0 = sub.notifications, sim.cpu_seconds(), time.monotonic(), sum(me.cpu_times()[:2])
        m0 = mqtt_counter["n"] if mqtt_counter else 0
        await asyncio.sleep(seconds)
        n1, c1, t1, k1 = sub.notifications, sim.cpu_seconds(), time.monotonic(), sum(me.cpu_times()[:2])
        m1 = mqtt_counter["n"] if mqtt_counter else 0
        elapsed = t1 - t0
        return (n1 - n0) / elapsed, 100.0 * (c1 - c0) / elapsed, (m1 - m0) / elapsed, 100.0 * (k1 - k0) / elapsed
    finally:
        await client.disconnect()


def _demo_node_ids() -> list[str]:
    from hmi.sim.plant import MACHINE_TYPES

    return [f"Plant/{mid}/{s.name}" for mid, cls in MACHINE_TYPES.items() for s in cls.signals]


def run_demo(seconds: float, warmup: float, data_dir: Path) -> Result:
    """The five machines at 10 Hz on both protocols."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = None
    counter = {"n": 0}
    args = ["--opcua-port", str(_free_port()), "--rate", "10"]
    collector = None
    if Path(mosquitto).exists():
        mport = _free_port()
        conf = data_dir / "mosquitto.conf"
        conf.write_text(f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(mport)
        args += ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(mport)]
        lock = threading.Lock()

        def on_message(*_: Any) -> None:
            with lock:
                counter["n"] += 1

        collector = mqtt.Client(CallbackAPIVersion.VERSION2)
        collector.on_message = on_message
        collector.on_connect = lambda c, *_: c.subscribe("factory/+/telemetry")
        collector.connect("127.0.0.1", mport)
        collector.loop_start()
    port = int(args[1])
    sim = SimProcess(args, data_dir)
    try:
        _wait_port(port)
        rate, cpu, mqtt_rate, client_cpu = asyncio.run(
            _measure_opcua(sim, port, _demo_node_ids(), seconds, warmup, counter)
        )
    finally:
        log_text = sim.stop()
        if collector is not None:
            collector.disconnect()
            collector.loop_stop()
        if broker is not None:
            broker.terminate()
            broker.wait()
    delivered = f"{rate:,.0f} OPC UA + {mqtt_rate:,.0f} MQTT msg" if broker else f"{rate:,.0f} OPC UA (no mosquitto)"
    return Result("5 machines, 10 Hz, OPC UA + MQTT", delivered, rate, cpu, _written_rate(log_text), client_cpu)


def run_scale(tags: int, seconds: float, warmup: float, data_dir: Path, batched: bool) -> Result:
    port = _free_port()
    args = [
        "--machines",
        "",
        "--scale-tags",
        str(tags),
        "--rate",
        "10",
        "--opcua-port",
        str(port),
        "--security",
        "none",
    ]
    if not batched:
        args.append("--unbatched")
    sim = SimProcess(args, data_dir)
    try:
        _wait_port(port, timeout=60)
        ids = [f"Plant/synthetic/tag_{i:05d}" for i in range(tags)]
        rate, cpu, _, client_cpu = asyncio.run(_measure_opcua(sim, port, ids, seconds, warmup))
    finally:
        log_text = sim.stop()
    how = "batched writer" if batched else "asyncua one-by-one"
    return Result(
        f"{tags:,} tags x 10 Hz, {how}", f"{rate:,.0f} of {tags * 10:,}", rate, cpu, _written_rate(log_text), client_cpu
    )


def main(argv: list[str] | None = None) -> list[Result]:
    """Run the three cases and print them; `python -m bench` calls this without arguments."""
    parser = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window (default 3)")
    parser.add_argument("--tags", type=int, default=2000, help="synthetic tags for the scale runs (default 2000)")
    args = parser.parse_args(argv if argv is not None else [])

    with tempfile.TemporaryDirectory(prefix="hmi-bench-sim-") as tmp:
        data_dir = Path(tmp)
        results = [
            run_demo(args.seconds, args.warmup, data_dir),
            run_scale(args.tags, args.seconds, args.warmup, data_dir, batched=True),
            run_scale(args.tags, args.seconds, args.warmup, data_dir, batched=False),
        ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print_table(
        f"demo plant (hmi sim): {args.seconds:g} s windows, {psutil.cpu_count()} CPUs, load average {load}",
        [(r.case, r.delivered, f"{r.written:,.0f}", f"{r.cpu:.1f}%", f"{r.client_cpu:.1f}%") for r in results],
        ("case", "updates/s delivered", "written/s", "sim CPU", "client CPU"),
    )
    print("  (CPU as % of one core; written/s: the server's own count of updates it wrote)")
    demo, batched, ceiling = results
    per_update = batched.cpu / max(batched.rate, 1.0)
    per_update_ceiling = ceiling.cpu / max(ceiling.rate, 1.0)
    print(
        f"  batched vs asyncua one-by-one (the library ceiling, same run): {batched.rate / max(ceiling.rate, 1):.2f}x"
        f" the updates/s at {per_update / max(per_update_ceiling, 1e-12):.2f}x the CPU per update"
        f" ({1e4 * per_update:.1f} vs {1e4 * per_update_ceiling:.1f} µs of CPU per update)"
    )
    verdict = "within" if demo.cpu < 25.0 else "OVER"
    print(f"  demo load: {demo.cpu:.1f}% of one core ({verdict} the 25% budget)")
    target = args.tags * 10
    verdict = "meets" if batched.rate >= 0.97 * target else "MISSES"
    print(f"  scale: {batched.rate:,.0f} updates/s at {batched.cpu:.0f}% of one core ({verdict} {target:,}/s)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
