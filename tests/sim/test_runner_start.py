"""The plant's start: once its OPC UA server listens, nothing stalls the loop before the first
tick (a connecting runtime is answered at once), and the start-up objects are still frozen
out of the collector's reach."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from hmi.sim.opcua_server import OpcUaSecurity, PlantOpcUaServer
from hmi.sim.plant import Plant
from hmi.sim.runner import PlantRunner
from tests.helpers import free_port


def test_no_full_collection_between_serving_and_the_first_tick() -> None:
    plant = Plant(["pump01"])
    opcua = PlantOpcUaServer(plant, port=free_port(), security=OpcUaSecurity(policies="none"))
    runner = PlantRunner(plant, 10.0, 1.0, opcua=opcua, freeze_gc=True)
    stalls: list[int] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        serving = opcua.server.bserver is not None
        if phase == "start" and info["generation"] == 2 and serving and runner.ticks == 0:
            stalls.append(info["generation"])

    gc.callbacks.append(on_gc)
    try:
        asyncio.run(runner.run(duration_s=0.3))
        frozen = gc.get_freeze_count()
    finally:
        gc.callbacks.remove(on_gc)
        gc.unfreeze()  # this is the test process, not a plant of its own
    assert runner.ticks >= 1
    assert stalls == [], "a full collection delayed the first answer after the server listened"
    assert frozen > 0, "the start-up objects are frozen"
