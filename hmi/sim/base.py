"""What every simulated machine has: its signals, a seeded random generator, setpoints, faults."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hmi.core.tags import DataType

SimValue = float | int | bool | str


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str
    unit: str
    low: float
    high: float
    description: str
    datatype: DataType = DataType.FLOAT
    writable: bool = False


class UnknownFault(ValueError):
    pass


class MachineSim:
    """One simulated machine. `step(dt)` advances its physics by dt simulated seconds.

    Deterministic: the same seed and the same sequence of steps, writes and faults give
    the same values, whatever the wall clock does.
    """

    kind = "machine"
    signals: tuple[SignalSpec, ...] = ()
    faults: ClassVar[Mapping[str, str]] = {}  # fault name -> what it does

    def __init__(self, machine_id: str, seed: int = 1) -> None:
        self.machine_id = machine_id
        self.seed = seed
        # A stable per-machine stream: zlib.crc32, not hash(), which is salted per process.
        self.rng = np.random.default_rng([seed, zlib.crc32(machine_id.encode())])
        self.t = 0.0
        self.active_faults: dict[str, float] = {}  # name -> simulated time it was injected

    @property
    def online(self) -> bool:
        """False while the `offline` fault is active: the servers then report the machine gone."""
        return "offline" not in self.active_faults

    def signal(self, name: str) -> SignalSpec:
        for spec in self.signals:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.machine_id} has no signal {name!r}")

    def step(self, dt: float) -> None:
        self.t += dt
        self._advance(dt)

    def _advance(self, dt: float) -> None:
        raise NotImplementedError

    def values(self) -> dict[str, SimValue]:
        raise NotImplementedError

    def write(self, signal: str, value: SimValue) -> None:
        """Change a writable setpoint; raises KeyError/ValueError for a bad signal or value."""
        spec = self.signal(signal)
        if not spec.writable:
            raise ValueError(f"{self.machine_id}.{signal} is not writable")
        number = float(value)
        if not spec.low <= number <= spec.high:
            raise ValueError(f"{self.machine_id}.{signal}: {number} is outside [{spec.low}, {spec.high}]")
        self._apply_write(signal, number)

    def _apply_write(self, signal: str, value: float) -> None:
        raise NotImplementedError

    def inject_fault(self, name: str) -> None:
        if name not in self.faults:
            known = ", ".join(sorted(self.faults)) or "none"
            raise UnknownFault(f"{self.machine_id} has no fault {name!r} (known: {known})")
        self.active_faults.setdefault(name, self.t)

    def clear_fault(self, name: str) -> None:
        if name not in self.faults:
            raise UnknownFault(f"{self.machine_id} has no fault {name!r}")
        self.active_faults.pop(name, None)

    def fault_age(self, name: str) -> float | None:
        """Simulated seconds since `name` was injected, or None when it is not active."""
        since = self.active_faults.get(name)
        return None if since is None else self.t - since

    def reset(self) -> None:
        """Back to the state right after construction (same seed, time zero, no faults)."""
        self.__init__(self.machine_id, self.seed)  # type: ignore[misc]


def first_order(current: float, target: float, tau: float, dt: float) -> float:
    """One exact step of a first-order lag with time constant tau (s)."""
    return target + (current - target) * float(np.exp(-dt / tau))
