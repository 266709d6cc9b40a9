"""The runtime records every sample and event of a real OPC UA plant into the historian."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hmi.config.loader import load_project
from hmi.historian import HistorianReader
from hmi.runtime import Runtime
from tests.helpers import run_async, write_demo_project


def test_runtime_records_samples_events_and_the_calendar(plant_server, tmp_path: Path, private_data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """After a run against the demo plant, the file under {data} holds every configured tag
    with its unit, all samples received, the connection event, the shifts and the status tags."""
    project = load_project(write_demo_project(tmp_path, plant_server.port))
    runtime = Runtime(project)

    async def main() -> None:
        await runtime.run(asyncio.Event(), duration_s=3.0)

    run_async(main())
    received = runtime.counter.counts()
    path = private_data_dir / "demo.sqlite"
    assert path.is_file(), "the [historian] url's {data} is the data folder"
    with HistorianReader(path) as reader:
        tags = {t.name: t for t in reader.tags()}
        assert tags["cnc01.spindle_speed"].unit == "rpm"
        for tag_id, spec in enumerate(runtime.bus.registry):
            if tag_id < received.shape[0] and received[tag_id]:
                stored = reader.count(spec.name, 0, 2**62)
                # Recorded: everything received, plus the COMM_LOST marks when the source stopped.
                assert stored >= received[tag_id], spec.name
        assert reader.count("historian.queue_depth", 0, 2**62) >= 2
        messages = [e.message for e in reader.events(0, 2**62, categories=["system"])]
        assert any("established" in m for m in messages)
        calendar = reader.calendar()
        assert calendar is not None and calendar.names() == ["A", "B", "C"]
        assert reader.timezone() == "Europe/Berlin"
    assert runtime.historian.stats.not_kept == 0
