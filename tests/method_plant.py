"""The real runtime (hmi.runtime.Runtime, from a project file) on the test OPC UA server
(tests/sources/opcua_peer.py), for method calls end to end: real OpcUaSource, real
OperatorCommands, real audit trail and historian in one SQLite file. The runtime runs its
asyncio loop in a thread, so a test sends commands from its own thread the way the IPC
request thread does."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from hmi.config import load_project
from hmi.runtime import Runtime
from hmi.security.roles import Role
from hmi.security.users import UserStore
from tests.alarm_runtime import PASSWORD
from tests.helpers import free_port, wait_until
from tests.sources.opcua_peer import OpcUaPeer

OBJECT = "nsu=urn:hmi:test;s=Test"
ADJUST = "nsu=urn:hmi:test;s=Test/adjust"
STATION = "ws7:0"

PROJECT = """
[project]
name = "method calls"
[historian]
url = "sqlite:///{db}"
[connections.plc]
kind = "opcua"
endpoint = "{endpoint}"
reconnect_max_delay_s = 0.5
[machines.test]
label = "Test"
[tags."test.setpoint"]
connection = "plc"
address = "nsu=urn:hmi:test;s=Test/setpoint"
range = [0, 100]
"""


class MethodPlant:
    def __init__(
        self, directory: Path, with_ipc: bool = False, extra: str = "", users: dict[str, Role] | None = None
    ) -> None:
        """`extra`: project text appended (the tag's table is last, so its keys may come first);
        `users`: more users beside olga (operator) and vic (viewer)."""
        self.db = directory / "historian.sqlite"
        self.peer = OpcUaPeer(free_port(), directory / "server-pki").start()
        path = directory / "project.toml"
        text = PROJECT.format(db=self.db.as_posix(), endpoint=self.peer.endpoint) + extra
        path.write_text(text, encoding="utf-8")
        store = UserStore(directory / "users.json")
        for name, role in {"olga": Role.OPERATOR, "vic": Role.VIEWER, **(users or {})}.items():
            store.add(name, role, PASSWORD)
        addresses = (f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}") if with_ipc else (None, None)
        self.runtime = Runtime(load_project(path), *addresses, users=store)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="test-runtime", daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.runtime.run(self._stop)

        asyncio.run(run())

    def start(self) -> MethodPlant:
        self._thread.start()
        wait_until(lambda: self.runtime.sources[0].connected, 15, message="runtime did not connect to the test server")
        return self

    def stop(self) -> None:
        """Stop the runtime (its historian flushes and closes) and the server; once is enough."""
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
            self.peer.stop()

    def command(self, name: str, **fields: Any) -> dict[str, Any]:
        return self.runtime.handle_command({"command": name, "station": STATION, **fields})

    def login(self, user: str) -> str:
        reply = self.command("login", user=user, password=PASSWORD)
        assert reply["ok"], reply
        return str(reply["session"])

    def call(self, session: str, arguments: list[Any], comment: str = "", **fields: Any) -> dict[str, Any]:
        target = {"connection": "plc", "object": OBJECT, "method": ADJUST, **fields}
        return self.command("call", session=session, arguments=arguments, comment=comment, **target)
