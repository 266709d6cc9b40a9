"""End to end: a real OPC UA plant with a scheduled pump fault -> the real runtime (source, bus,
twin, advisory engine, historian) -> an advisory event on the bus and in the historian file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hmi.config.loader import load_project
from hmi.core.events import Event, EventCategory
from hmi.historian import HistorianReader
from hmi.runtime import Runtime
from hmi.sim.plant import Plant, ScheduledFault
from tests.conftest import PlantServerThread
from tests.helpers import demo_project_text, run_async

FAULT_AT_S = 150.0  # simulated; the plant runs 10x real time
SPEED = 10.0


def test_pump_fault_reaches_the_historian_as_an_advisory(tmp_path: Path, private_data_dir: Path) -> None:
    """Cavitation injected in the served plant comes out of the runtime as a cavitation advisory
    (bus event and historian record) within a minute of wall time, and nothing else is advised."""
    plant = Plant(["pump01"], seed=3, faults=[ScheduledFault(FAULT_AT_S, "pump01", "cavitation")])
    server = PlantServerThread(plant=plant, rate_hz=20, speed=SPEED).start()
    try:
        # The twin learns on wall-clock sample times: a short baseline for a short test.
        text = demo_project_text(server.port) + "\n[twin.pump01.detection]\nlearn_s = 10\nsettle_s = 2\n"
        path = tmp_path / "project.toml"
        path.write_text(text, encoding="utf-8")
        runtime = Runtime(load_project(path))
        advisories: list[Event] = []
        stop = asyncio.Event()
        loop_box: list[asyncio.AbstractEventLoop] = []

        def on_events(events: list[Event]) -> None:
            mine = [e for e in events if e.category == EventCategory.ADVISORY]
            advisories.extend(mine)
            if any(e.details.get("cause") == "activated" for e in mine) and loop_box:
                loop_box[0].call_soon_threadsafe(stop.set)

        runtime.bus.subscribe_events(on_events, name="test")

        async def main() -> None:
            loop_box.append(asyncio.get_running_loop())
            await runtime.run(stop, duration_s=90.0)

        started = time.monotonic()
        run_async(main(), timeout=120)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    raised = [e for e in advisories if e.details.get("cause") == "activated"]
    assert [e.source for e in raised] == ["pump01.advisory.cavitation"], [e.message for e in advisories]
    assert raised[0].details["advisory"]["cause"] == "cavitation"
    assert elapsed < 60, f"no advisory within a minute ({elapsed:.0f} s)"
    with HistorianReader(private_data_dir / "demo.sqlite") as reader:
        recorded = reader.events(0, 2**62, categories=["advisory"])
        assert any(e.source == "pump01.advisory.cavitation" and e.details["advisory"]["title"] for e in recorded)
        assert reader.count("pump01.residual_flow", 0, 2**62) > 10
