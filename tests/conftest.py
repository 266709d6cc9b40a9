"""Fixtures shared by every test: a private data folder, real servers on free ports."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import free_port, stop_process, wait_for_port

if TYPE_CHECKING:
    from hmi.sim.plant import Plant


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep historians, certificates and logs out of the user's folders."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("HMI_DATA_DIR", str(data))
    return data


class PlantServerThread:
    """The demo plant's OPC UA server on its own asyncio loop in a thread."""

    def __init__(
        self,
        machines: list[str] | None = None,
        rate_hz: float = 20.0,
        speed: float = 1.0,
        port: int | None = None,
        plant: Plant | None = None,
        **server_kwargs: object,
    ) -> None:
        from hmi.sim.plant import Plant

        self.port = port or free_port()
        self.plant = plant or Plant(machines)
        self.rate_hz = rate_hz
        self.speed = speed
        self.server_kwargs = server_kwargs
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.server = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/hmi-demo"

    def start(self) -> PlantServerThread:
        from hmi.sim.opcua_server import serve_plant

        async def main() -> None:
            self._stop = asyncio.Event()
            self.server = await serve_plant(
                self.plant, self.port, self.rate_hz, self.speed, stop=self._stop, **self.server_kwargs
            )

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(main(),), daemon=True)
        self._thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


@pytest.fixture
def plant_server() -> Iterator[PlantServerThread]:
    """The demo plant (CNC mill) served over OPC UA on a free port, 20 Hz."""
    server = PlantServerThread(["cnc01"]).start()
    yield server
    server.stop()


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed: run `make test`, which installs it")
    return binary


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real Mosquitto broker on a free port (anonymous, loopback only)."""
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_port(port)
        yield "127.0.0.1", port
    finally:
        stop_process(proc)
