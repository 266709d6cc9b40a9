"""Digital twin: what the models add to the runtime's ingest CPU at the demo plant's rate, and
how many samples a second they could take.

1. Ingest CPU: a real `hmi sim` (five machines, 10 Hz, OPC UA) in its own process, and the
   real runtime (OPC UA source, bus, alarms, historian, twin) in this one, alternately
   without and with the [twin.*] sections, in the same run. Process CPU time over a steady
   window after connecting; the twin's own thread CPU time (TwinService.cpu_ns) beside it.
2. Throughput: recorded demo-machine batches pushed through a bus with only the twin on it,
   against a bare numpy pass over the same batches (one bincount per batch: the least any
   per-input aggregation costs), the ceiling.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import fmt_rate, print_table
from hmi.config import Project, load_project
from hmi.core.bus import TagBus
from hmi.core.samples import SampleBatch
from hmi.runtime import Runtime
from hmi.sim.plant import MACHINE_TYPES
from hmi.twin.service import TwinService

REPO = Path(__file__).resolve().parent.parent
WARMUP_S = 8.0
WINDOW_S = 30.0
ROUNDS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def _measure(project: Project) -> tuple[float, float, float]:
    """(process CPU %, twin CPU %, samples/s) of a runtime over the steady window."""
    runtime = Runtime(project)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(runtime.run(stop),), daemon=True)
    thread.start()
    time.sleep(WARMUP_S)
    cpu0, twin0, n0, t0 = time.process_time(), runtime.twin.cpu_ns, runtime.bus.samples_published, time.monotonic()
    time.sleep(WINDOW_S)
    cpu1, twin1, n1, t1 = time.process_time(), runtime.twin.cpu_ns, runtime.bus.samples_published, time.monotonic()
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    wall = t1 - t0
    return 100 * (cpu1 - cpu0) / wall, 100 * (twin1 - twin0) / 1e9 / wall, (n1 - n0) / wall


def ingest_cpu() -> list[tuple[str, ...]]:
    port = _free_port()
    data = tempfile.mkdtemp(prefix="bench-twin-")
    env = {**os.environ, "HMI_DATA_DIR": data}
    os.environ["HMI_DATA_DIR"] = data
    sim = subprocess.Popen(
        [sys.executable, "-m", "hmi", "sim", "--opcua-port", str(port), "--rate", "10", "--security", "none"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        path = Path(data) / "project.toml"
        path.write_text((REPO / "config" / "demo.toml").read_text().replace("48400", str(port)), encoding="utf-8")
        with_twin = load_project(path)
        without = with_twin.model_copy(update={"twin": {}})
        results: dict[str, list[tuple[float, float, float]]] = {"without twin": [], "with twin": []}
        for _ in range(ROUNDS):
            for label, project in (("without twin", without), ("with twin", with_twin)):
                results[label].append(_measure(project))
    finally:
        sim.terminate()
        sim.wait(10)
    rows = []
    base = float(np.median([r[0] for r in results["without twin"]]))
    for label, runs in results.items():
        cpu = float(np.median([r[0] for r in runs]))
        twin = float(np.median([r[1] for r in runs]))
        rate = float(np.median([r[2] for r in runs]))
        rows.append((label, f"{cpu:.1f} %", f"{twin:.2f} %", fmt_rate(rate), f"{100 * (cpu - base) / base:+.1f} %"))
    return rows


def recorded_batches(seconds: float = 600.0, rate_hz: float = 10.0) -> tuple[TagBus, list[SampleBatch], Project]:
    """One batch per tick of cnc01, cmm01 and pump01, as a source would publish them."""
    project = load_project(REPO / "config" / "demo.toml")
    bus = TagBus()
    bus.register(project.tag_specs())
    machines = {m: MACHINE_TYPES[m](m, seed=1) for m in ("cnc01", "cmm01", "pump01")}
    plan = []
    for machine_id, sim in machines.items():
        names = [s.name for s in sim.signals if s.datatype.value != "string"]
        plan.append((sim, names, np.array([bus.registry.id_of(f"{machine_id}.{n}") for n in names], np.int32)))
    batches = []
    dt = 1.0 / rate_hz
    for tick in range(int(seconds * rate_hz)):
        ids, values = [], []
        for sim, names, tag_ids in plan:
            sim.step(dt)
            v = sim.values()
            ids.append(tag_ids)
            values.append([float(v[n]) for n in names])
        ts = 1_800_000_000 * 10**9 + int(tick * dt * 1e9)
        batches.append(SampleBatch.from_arrays(np.concatenate(ids), ts, np.concatenate(values)))
    return bus, batches, project


def throughput() -> list[tuple[str, ...]]:
    bus, batches, project = recorded_batches()
    samples = sum(len(b) for b in batches)
    size = len(bus.registry)

    start = time.perf_counter()
    for b in batches:
        np.bincount(b.tag_ids, b.values, minlength=size)
    bare = samples / (time.perf_counter() - start)

    twin = TwinService.from_project(project, bus)
    bus_only = TagBus(bus.registry)  # the same batches through a bus without the twin
    start = time.perf_counter()
    for b in batches:
        bus_only.publish(b)
    bus_rate = samples / (time.perf_counter() - start)
    start = time.perf_counter()
    for b in batches:
        bus.publish(b)
    twin_rate = samples / (time.perf_counter() - start)
    twin.close()
    per_batch = samples / len(batches)
    twin_us = 1e6 * per_batch * (1 / twin_rate - 1 / bus_rate)
    return [
        ("bare numpy bincount (ceiling)", fmt_rate(bare), "1.00"),
        ("bus, no subscribers", fmt_rate(bus_rate), f"{bus_rate / bare:.2f}"),
        ("bus + twin (3 models)", fmt_rate(twin_rate), f"{twin_rate / bare:.2f}"),
        (f"twin cost per batch of {per_batch:.0f} samples", f"{twin_us:.0f} µs", ""),
    ]


def main() -> None:
    rows = throughput()
    print_table("Twin throughput (recorded demo batches, one per 10 Hz tick)", rows, ("path", "samples/s", "ratio"))
    print_table(
        f"Runtime ingest CPU at the demo plant's rate (5 machines, 10 Hz; median of {ROUNDS} x {WINDOW_S:g} s)",
        ingest_cpu(),
        ("runtime", "process CPU", "twin CPU", "samples/s", "vs without"),
    )


if __name__ == "__main__":
    main()
