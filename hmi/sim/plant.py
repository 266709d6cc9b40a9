"""The demo plant: a set of simulated machines on one simulated clock, with a fault schedule."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hmi.sim.base import MachineSim, SimValue
from hmi.sim.cnc import CncMill

# Machine id -> simulator class. The demo plant's machines, in display order.
MACHINE_TYPES: dict[str, type[MachineSim]] = {
    "cnc01": CncMill,
}

_FAULT_RE = re.compile(r"^(?P<machine>[a-z][a-z0-9_]*)\.(?P<fault>[a-z_]+)@(?P<time>\d+(\.\d+)?)(?P<unit>s|m|h)?$")


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    at_s: float  # simulated seconds from the start
    machine: str
    fault: str
    clear: bool = False


def parse_fault(text: str) -> ScheduledFault:
    """'pump01.bearing_wear@300s' (or @5m, @1.5h); a leading '-' clears instead of injects."""
    clear = text.startswith("-")
    match = _FAULT_RE.match(text.removeprefix("-"))
    if not match:
        raise ValueError(f"bad fault {text!r}: expected machine.fault@TIME such as pump01.bearing_wear@300s")
    scale = {"s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[match["unit"]]
    return ScheduledFault(float(match["time"]) * scale, match["machine"], match["fault"], clear)


def unknown_machines(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in MACHINE_TYPES]


class Plant:
    def __init__(
        self,
        machine_ids: Sequence[str] | None = None,
        seed: int = 1,
        faults: Sequence[ScheduledFault] = (),
    ) -> None:
        ids = list(machine_ids) if machine_ids else list(MACHINE_TYPES)
        unknown = unknown_machines(ids)
        if unknown:
            raise ValueError(f"unknown demo machine(s): {', '.join(unknown)} (known: {', '.join(MACHINE_TYPES)})")
        self.machines: dict[str, MachineSim] = {mid: MACHINE_TYPES[mid](mid, seed) for mid in ids}
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

    def step(self, dt: float) -> list[ScheduledFault]:
        """Advance every machine by dt simulated seconds; returns the faults applied now."""
        self.t += dt
        applied = []
        while self._schedule and self._schedule[0].at_s <= self.t:
            item = self._schedule.pop(0)
            machine = self.machines[item.machine]
            if item.clear:
                machine.clear_fault(item.fault)
            else:
                machine.inject_fault(item.fault)
            applied.append(item)
        for machine in self.machines.values():
            machine.step(dt)
        return applied

    def values(self) -> dict[str, dict[str, SimValue]]:
        return {mid: m.values() for mid, m in self.machines.items()}

    def signal_count(self) -> int:
        return sum(len(m.signals) for m in self.machines.values())
