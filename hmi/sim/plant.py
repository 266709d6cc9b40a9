"""The demo plant: a set of simulated machines on one simulated clock, with a fault schedule.

Everything that changes the plant (steps, setpoint writes, faults, resets) goes through
this class on the serving loop's thread, and every change but a step becomes a
`PlantEvent` that listeners (the MQTT publisher, the log) receive on that same thread.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hmi.core.samples import now_ns
from hmi.sim.base import FaultSpec, MachineSim, SignalSpec, SimValue
from hmi.sim.cmm import CoordinateMeasuringMachine
from hmi.sim.cnc import CncMill
from hmi.sim.conveyor import Conveyor
from hmi.sim.pump import CentrifugalPump
from hmi.sim.robot import RobotArm

log = logging.getLogger(__name__)

# Machine id -> simulator class. The demo plant's machines, in display order.
MACHINE_TYPES: dict[str, type[MachineSim]] = {
    "cnc01": CncMill,
    "robot01": RobotArm,
    "conveyor01": Conveyor,
    "cmm01": CoordinateMeasuringMachine,
    "pump01": CentrifugalPump,
}

SYNTHETIC_ID = "synthetic"

_FAULT_RE = re.compile(
    r"^(?P<machine>[a-z][a-z0-9_]*)\.(?P<fault>[a-z_]+)"
    r"@(?P<start>\d+(?:\.\d+)?)(?P<start_unit>[smh])?"
    r"(?:\.\.(?P<end>\d+(?:\.\d+)?)(?P<end_unit>[smh])?)?$"
)
_UNIT_S = {"s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    at_s: float  # simulated seconds from the start
    machine: str
    fault: str
    clear: bool = False


def parse_fault(text: str) -> list[ScheduledFault]:
    """`pump01.bearing_wear@300s` injects at 300 s; `pump01.cavitation@60s..2m` also clears at
    120 s; a leading '-' (`--fault=-pump01.cavitation@2m`) clears only. Units s (default), m, h.
    """
    clear = text.startswith("-")
    match = _FAULT_RE.match(text.removeprefix("-"))
    if not match:
        raise ValueError(
            f"bad fault {text!r}: expected MACHINE.FAULT@TIME or MACHINE.FAULT@START..END,"
            " such as pump01.bearing_wear@300s or pump01.cavitation@1m..2m"
        )
    start = float(match["start"]) * _UNIT_S[match["start_unit"]]
    first = ScheduledFault(start, match["machine"], match["fault"], clear)
    if match["end"] is None:
        return [first]
    if clear:
        raise ValueError(f"bad fault {text!r}: a clear ('-') takes one time, not a range")
    end = float(match["end"]) * _UNIT_S[match["end_unit"]]
    if end <= start:
        raise ValueError(f"bad fault {text!r}: the end ({end:g} s) must come after the start ({start:g} s)")
    return [first, ScheduledFault(end, match["machine"], match["fault"], True)]


def unknown_machines(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in MACHINE_TYPES]


@dataclass(frozen=True, slots=True)
class PlantEvent:
    """Something that happened to a machine other than time passing."""

    machine: str
    kind: str  # fault_injected, fault_cleared, reset, setpoint_changed
    sim_time_s: float
    origin: str  # schedule, opcua, mqtt, api
    fault: str = ""
    signal: str = ""
    value: float | None = None
    request_id: str | None = None  # echoed from an MQTT command's "id"
    ts_ns: int = field(default_factory=now_ns)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ts": self.ts_ns // 1_000_000,
            "machine": self.machine,
            "event": self.kind,
            "origin": self.origin,
            "sim_time_s": round(self.sim_time_s, 3),
        }
        if self.fault:
            data["fault"] = self.fault
        if self.signal:
            data["signal"] = self.signal
            data["value"] = self.value
        if self.request_id is not None:
            data["id"] = self.request_id
        return data

    def describe(self) -> str:
        what = {
            "fault_injected": f"fault {self.fault} injected",
            "fault_cleared": f"fault {self.fault} cleared",
            "reset": "reset",
            "setpoint_changed": f"{self.signal} set to {self.value:g}" if self.value is not None else self.signal,
        }.get(self.kind, self.kind)
        return f"{self.machine}: {what} ({self.origin}, t={self.sim_time_s:.0f} s)"


class SyntheticTags(MachineSim):
    """`count` float tags for load tests: sines of assorted periods plus noise, one numpy vector."""

    kind = "synthetic"
    label = "Synthetic load tags"
    max_step_s = math.inf  # stateless in time: one evaluation per tick whatever the speed
    faults = {  # noqa: RUF012 (read-only)
        "offline": FaultSpec("every synthetic tag reports BadNoCommunication", ()),
    }

    def __init__(self, machine_id: str = SYNTHETIC_ID, seed: int = 1, count: int = 0) -> None:
        super().__init__(machine_id, seed)
        self.count = count
        self.signals = tuple(
            SignalSpec(f"tag_{i:05d}", "", -100, 100, f"Synthetic load tag {i}", physics="sine + noise")
            for i in range(count)
        )
        self._names = [s.name for s in self.signals]
        self._omega = 2.0 * np.pi / self.rng.uniform(5.0, 120.0, count)
        self._phase = self.rng.uniform(0.0, 2.0 * np.pi, count)
        self._amplitude = self.rng.uniform(10.0, 80.0, count)
        self.vector = np.zeros(count)

    def _advance(self, dt: float) -> None:
        self.vector = self._amplitude * np.sin(self._omega * self.t + self._phase) + self.rng.normal(0, 0.5, self.count)

    def _values(self) -> dict[str, SimValue]:
        return dict(zip(self._names, self.vector.tolist()))

    def reset(self) -> None:
        self.__init__(self.machine_id, self.seed, self.count)  # type: ignore[misc]


PlantListener = Callable[[PlantEvent], None]


class Plant:
    """The machines, their clock and fault schedule. Runs on one thread (the serving loop)."""

    def __init__(
        self,
        machine_ids: Sequence[str] | None = None,
        seed: int = 1,
        faults: Sequence[ScheduledFault] = (),
        scale_tags: int = 0,
    ) -> None:
        ids = list(machine_ids) if machine_ids is not None else list(MACHINE_TYPES)
        unknown = unknown_machines(ids)
        if unknown:
            raise ValueError(f"unknown demo machine(s): {', '.join(unknown)} (known: {', '.join(MACHINE_TYPES)})")
        if len(set(ids)) != len(ids):
            raise ValueError(f"a machine is listed twice: {', '.join(ids)}")
        if scale_tags < 0:
            raise ValueError("the number of synthetic tags cannot be negative")
        self.seed = seed
        self.machines: dict[str, MachineSim] = {mid: MACHINE_TYPES[mid](mid, seed) for mid in ids}
        if scale_tags:
            self.machines[SYNTHETIC_ID] = SyntheticTags(SYNTHETIC_ID, seed, scale_tags)
        self.t = 0.0
        self._schedule = sorted(faults, key=lambda f: f.at_s)
        for item in self._schedule:
            machine = self.machines.get(item.machine)
            if machine is None:
                raise ValueError(f"fault {item.machine}.{item.fault}: machine {item.machine!r} is not simulated")
            if item.fault not in machine.faults:
                raise ValueError(
                    f"fault {item.machine}.{item.fault}: unknown (known: {', '.join(sorted(machine.faults))})"
                )
        self._listeners: list[PlantListener] = []
        self._snapshot: dict[str, dict[str, SimValue]] | None = None

    # -- reading ------------------------------------------------------------------------

    def machine(self, machine_id: str) -> MachineSim:
        try:
            return self.machines[machine_id]
        except KeyError:
            raise KeyError(f"no machine {machine_id!r} (simulated: {', '.join(self.machines)})") from None

    def values(self) -> dict[str, dict[str, SimValue]]:
        """Every machine's readings now; computed once per step and shared by every server."""
        if self._snapshot is None:
            self._snapshot = {mid: m.values() for mid, m in self.machines.items()}
        return self._snapshot

    def signal_count(self) -> int:
        return sum(len(m.signals) for m in self.machines.values())

    def active_faults(self) -> list[str]:
        return [f"{mid}.{name}" for mid, m in self.machines.items() for name in m.active_faults]

    # -- changing -----------------------------------------------------------------------

    def add_listener(self, listener: PlantListener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: PlantEvent) -> PlantEvent:
        self._snapshot = None
        log.info("%s", event.describe())
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # one broken listener must not stop the plant or the others
                log.exception("plant event listener %r failed", listener)
        return event

    def step(self, dt: float) -> list[PlantEvent]:
        """Advance every machine by dt simulated seconds; returns the scheduled faults applied."""
        self.t += dt
        applied = []
        while self._schedule and self._schedule[0].at_s <= self.t:
            item = self._schedule.pop(0)
            if item.clear:
                applied.append(self.clear_fault(item.machine, item.fault, "schedule"))
            else:
                applied.append(self.inject_fault(item.machine, item.fault, "schedule"))
        for machine in self.machines.values():
            machine.step(dt)
        self._snapshot = None
        return applied

    def inject_fault(
        self, machine_id: str, fault: str, origin: str = "api", request_id: str | None = None
    ) -> PlantEvent:
        """Raises KeyError for an unknown machine, UnknownFault for an unknown fault."""
        self.machine(machine_id).inject_fault(fault)
        return self._emit(PlantEvent(machine_id, "fault_injected", self.t, origin, fault=fault, request_id=request_id))

    def clear_fault(
        self, machine_id: str, fault: str, origin: str = "api", request_id: str | None = None
    ) -> PlantEvent:
        self.machine(machine_id).clear_fault(fault)
        return self._emit(PlantEvent(machine_id, "fault_cleared", self.t, origin, fault=fault, request_id=request_id))

    def reset(self, machine_id: str, origin: str = "api", request_id: str | None = None) -> PlantEvent:
        """The machine back to its start state (same seed; clears its faults)."""
        self.machine(machine_id).reset()
        return self._emit(PlantEvent(machine_id, "reset", self.t, origin, request_id=request_id))

    def write(
        self, machine_id: str, signal: str, value: object, origin: str = "api", request_id: str | None = None
    ) -> PlantEvent:
        """Change a setpoint; raises KeyError or ValueError saying why a write is refused."""
        number = self.machine(machine_id).write(signal, value)
        return self._emit(
            PlantEvent(
                machine_id, "setpoint_changed", self.t, origin, signal=signal, value=number, request_id=request_id
            )
        )


def catalogue(machine_ids: Sequence[str] | None = None) -> str:
    """Markdown tables of every machine's signals and faults (`hmi sim --list`)."""
    lines = []
    for mid in machine_ids or MACHINE_TYPES:
        cls = MACHINE_TYPES[mid]
        lines += [f"### {mid}: {cls.label}", "", "| signal | unit | range | physics |", "|---|---|---|---|"]
        for spec in cls.signals:
            if spec.datatype == "int" and spec.high >= 1e6:
                rng = "counter"
            elif spec.datatype in ("float", "int"):
                rng = f"{spec.low:g} … {spec.high:g}"
            else:
                rng = str(spec.datatype)
            name = f"`{spec.name}` (writable)" if spec.writable else f"`{spec.name}`"
            lines.append(f"| {name} | {spec.unit or '–'} | {rng} | {spec.physics} |")
        lines += ["", "| fault | signals it moves | what happens |", "|---|---|---|"]
        for name, fault in cls.faults.items():
            moved = ", ".join(f"`{s}`" for s in fault.signals) or "all (quality)"
            lines.append(f"| `{name}` | {moved} | {fault.description} |")
        lines.append("")
    return "\n".join(lines)
