"""A runtime's operator side in this process, built from the real parts: tag bus, alarm
engine and service, users file, sessions, audit trail in a real SQLite file, operator
commands and a real IPC publisher on free ports. Only the plant write is a fake (no PLC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmi.commands import AlarmService, OperatorCommands, WriteOutcome
from hmi.core.alarms import AlarmDefinition, AlarmEngine, AlarmSettings, Condition, Priority
from hmi.core.bus import TagBus
from hmi.core.events import Event
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagRegistry, TagSpec
from hmi.ipc.publisher import IpcPublisher
from hmi.security.audit import AuditTrail
from hmi.security.roles import Role
from hmi.security.sessions import LoginThrottle, Sessions
from hmi.security.users import UserStore
from tests.helpers import free_port

PASSWORD = "correct horse"
USERS = {"olga": Role.OPERATOR, "vic": Role.VIEWER, "sam": Role.SUPERVISOR, "erik": Role.ENGINEER, "ada": Role.ADMIN}
TAGS = [
    TagSpec("cnc01.tool_temperature", unit="°C", low=0, high=200),
    TagSpec("cnc01.spindle_speed", unit="rpm", low=0, high=24000),
    TagSpec("cnc01.feed_override", unit="%", low=0, high=150, writable=True, connection="plant"),
    TagSpec("pump01.pressure", unit="bar", low=0, high=10),
]


def demo_definitions() -> list[AlarmDefinition]:
    return [
        AlarmDefinition(
            "cnc01.tool_temperature.hi",
            "cnc01.tool_temperature",
            Condition.HI,
            Priority.HIGH,
            limit=80,
            deadband=2,
            unit="°C",
            guidance="Check coolant flow and tool wear.",
            message="Tool temperature high: {value:.1f} {unit}",
        ),
        AlarmDefinition(
            "cnc01.tool_temperature.hihi",
            "cnc01.tool_temperature",
            Condition.HIHI,
            Priority.URGENT,
            limit=95,
            unit="°C",
        ),
        AlarmDefinition("pump01.pressure.lo", "pump01.pressure", Condition.LO, Priority.LOW, limit=2, unit="bar"),
    ]


@dataclass
class FakePlantWriter:
    """Stands in for the PLC: answers like an OPC UA server would."""

    status: str = "Good"
    writes: list[tuple[str, Any]] = field(default_factory=list)

    def __call__(self, spec: TagSpec, value: Any) -> WriteOutcome:
        self.writes.append((spec.name, value))
        ok = self.status == "Good"
        return WriteOutcome(ok, self.status, "" if ok else "the server refused the value")


class InProcessRuntime:
    def __init__(
        self,
        directory: Path,
        definitions: list[AlarmDefinition] | None = None,
        tags: list[TagSpec] | None = None,
        settings: AlarmSettings | None = None,
        idle_logout_s: float = 900.0,
        with_ipc: bool = True,
    ) -> None:
        self.directory = directory
        self.bus = TagBus(TagRegistry(tags or TAGS))
        self.engine = AlarmEngine(definitions or demo_definitions(), self.bus.registry, settings)
        self.alarms = AlarmService(self.engine, self.bus)
        self.db = directory / "historian.sqlite"
        self.audit = AuditTrail(self.db)
        self.users = UserStore(directory / "users.json")
        for name, role in USERS.items():
            if self.users.get(name) is None:
                self.users.add(name, role, PASSWORD)
        self.sessions = Sessions(self.users, idle_logout_s, LoginThrottle(3, 30.0))
        self.writer = FakePlantWriter()
        self.commands = OperatorCommands(self.sessions, self.audit, self.bus, self.alarms, self.writer)
        self.events: list[Event] = []
        self.bus.subscribe_events(self.events.extend, name="test-events")
        self.publisher: IpcPublisher | None = None
        if with_ipc:
            self.stream = f"tcp://127.0.0.1:{free_port()}"
            self.requests = f"tcp://127.0.0.1:{free_port()}"
            self.publisher = IpcPublisher(self.bus, self.stream, self.requests, self.handle)

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        reply = self.commands.handle(command)
        return reply if reply is not None else {"ok": False, "error": "unknown command"}

    def start(self) -> InProcessRuntime:
        if self.publisher is not None:
            self.publisher.start()
        return self

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
        self.alarms.close()
        self.audit.close()

    def publish(self, tag: str, value: float, ts_ns: int | None = None) -> None:
        tag_id = self.bus.registry.id_of(tag)
        self.bus.publish(SampleBatch.from_arrays([tag_id], [ts_ns or now_ns()], [value]))

    def login(self, user: str, password: str = PASSWORD) -> str:
        reply = self.handle({"command": "login", "user": user, "password": password})
        assert reply["ok"], reply
        return str(reply["session"])
