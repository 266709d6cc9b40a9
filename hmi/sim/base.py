"""What every simulated machine has: its signals, a seeded random generator, setpoints, faults.

A machine's physics live in `_advance(dt)`, which is the only place that draws random
numbers; `values()` is a pure read of the state. So the values are the same for a seed
whichever protocols serve them and however often they are read.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hmi.core.tags import DataType

SimValue = float | int | bool | str

_BLOCK = 512


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str
    unit: str
    low: float
    high: float
    description: str
    datatype: DataType = DataType.FLOAT
    writable: bool = False
    physics: str = ""  # one line on how the value comes about (docs/demo-plant.md)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault a machine can suffer: what it does, and the signals it moves."""

    description: str
    signals: tuple[str, ...]


class UnknownFault(ValueError):
    pass


def common_faults(stuck_signal: str) -> dict[str, FaultSpec]:
    """The faults every machine has: one sensor stuck, and the machine going offline."""
    return {
        "stuck_sensor": FaultSpec(f"the {stuck_signal} sensor freezes at its last reading", (stuck_signal,)),
        "offline": FaultSpec(
            "the machine stops answering: OPC UA reports BadNoCommunication, MQTT status goes offline", ()
        ),
    }


class MachineSim:
    """One simulated machine. `step(dt)` advances its physics by dt simulated seconds.

    Deterministic: the same seed and the same sequence of steps, writes and faults give
    the same values, whatever the wall clock does. Not thread-safe: the plant's loop owns it.
    """

    kind = "machine"
    label = "Machine"
    signals: tuple[SignalSpec, ...] = ()
    faults: ClassVar[Mapping[str, FaultSpec]] = {}
    stuck_signal = ""  # the sensor the `stuck_sensor` fault freezes
    # Longest physics step (s): a fast-forwarded plant splits a tick into steps this long.
    max_step_s = 0.1

    def __init__(self, machine_id: str, seed: int = 1) -> None:
        self.machine_id = machine_id
        self.seed = seed
        # A stable per-machine stream: zlib.crc32, not hash(), which is salted per process.
        self.rng = np.random.default_rng([seed, zlib.crc32(machine_id.encode())])
        self.t = 0.0
        self.active_faults: dict[str, float] = {}  # name -> simulated time it was injected
        self._stuck_value: SimValue | None = None
        self._normals: list[float] = []
        self._uniforms: list[float] = []

    # Random draws in blocks: one numpy call per 512 values, handed out as Python floats
    # (a scalar numpy draw costs about a microsecond; the physics takes a few per step).
    def normal(self) -> float:
        """One standard normal draw from this machine's stream."""
        if not self._normals:
            self._normals = self.rng.standard_normal(_BLOCK).tolist()
        return self._normals.pop()

    def uniform(self) -> float:
        """One uniform draw in [0, 1) from this machine's stream."""
        if not self._uniforms:
            self._uniforms = self.rng.random(_BLOCK).tolist()
        return self._uniforms.pop()

    @property
    def online(self) -> bool:
        """False while the `offline` fault is active: the servers then report the machine gone."""
        return "offline" not in self.active_faults

    def signal(self, name: str) -> SignalSpec:
        for spec in self.signals:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.signals)
        raise KeyError(f"{self.machine_id} has no signal {name!r} (known: {known})")

    def step(self, dt: float) -> None:
        """Advance by dt simulated seconds, in physics steps of at most `max_step_s`."""
        if dt <= 0:
            return
        n = max(1, math.ceil(dt / self.max_step_s - 1e-9))
        small = dt / n
        for _ in range(n):
            self.t += small
            self._advance(small)

    def _advance(self, dt: float) -> None:
        raise NotImplementedError

    def values(self) -> dict[str, SimValue]:
        """Every signal's current reading (a pure read: no random draws)."""
        values = self._values()
        if "stuck_sensor" in self.active_faults and self.stuck_signal:
            if self._stuck_value is None:
                self._stuck_value = values[self.stuck_signal]
            values[self.stuck_signal] = self._stuck_value
        return values

    def _values(self) -> dict[str, SimValue]:
        raise NotImplementedError

    def check_write(self, signal: str, value: object) -> float:
        """The setpoint `value` as a number, or KeyError/ValueError saying why it is refused."""
        spec = self.signal(signal)
        if not spec.writable:
            raise ValueError(f"{self.machine_id}.{signal} is not writable")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{self.machine_id}.{signal}: {value!r} is not a number")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{self.machine_id}.{signal}: {value!r} is not a number") from None
        if not spec.low <= number <= spec.high:  # also refuses NaN
            raise ValueError(f"{self.machine_id}.{signal}: {number:g} is outside [{spec.low:g}, {spec.high:g}]")
        return number

    def write(self, signal: str, value: object) -> float:
        """Change a writable setpoint; raises KeyError/ValueError for a bad signal or value."""
        number = self.check_write(signal, value)
        self._apply_write(signal, number)
        return number

    def _apply_write(self, signal: str, value: float) -> None:
        raise NotImplementedError

    def inject_fault(self, name: str) -> None:
        if name not in self.faults:
            known = ", ".join(sorted(self.faults)) or "none"
            raise UnknownFault(f"{self.machine_id} has no fault {name!r} (known: {known})")
        if name not in self.active_faults:
            self.active_faults[name] = self.t
            self._on_fault_injected(name)

    def _on_fault_injected(self, name: str) -> None:
        """Hook for machines that remember something when a fault starts."""

    def clear_fault(self, name: str) -> None:
        if name not in self.faults:
            raise UnknownFault(f"{self.machine_id} has no fault {name!r}")
        self.active_faults.pop(name, None)
        if name == "stuck_sensor":
            self._stuck_value = None

    def fault_age(self, name: str) -> float | None:
        """Simulated seconds since `name` was injected, or None when it is not active."""
        since = self.active_faults.get(name)
        return None if since is None else self.t - since

    def reset(self) -> None:
        """Back to the state right after construction (same seed, time zero, no faults)."""
        self.__init__(self.machine_id, self.seed)  # type: ignore[misc]


def first_order(current: float, target: float, tau: float, dt: float) -> float:
    """One exact step of a first-order lag with time constant tau (s)."""
    return target + (current - target) * math.exp(-dt / tau)


def ramp(current: float, target: float, rate: float, dt: float) -> float:
    """Move towards target at most rate*dt (a drive's acceleration ramp)."""
    step = rate * dt
    if abs(target - current) <= step:
        return target
    return current + step if target > current else current - step


def ou_step(x: float, sigma: float, tau: float, dt: float, normal: float) -> float:
    """One exact step of an Ornstein-Uhlenbeck process (stationary std `sigma`, correlation
    time `tau`) driven by one standard normal draw: slow, bounded drift and fluctuation."""
    a = math.exp(-dt / tau)
    return x * a + sigma * math.sqrt(1.0 - a * a) * normal
