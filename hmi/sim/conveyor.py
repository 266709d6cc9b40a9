"""Belt conveyor: a drive on a speed setpoint, items arriving from upstream, belt slip.

Items arrive at the infeed as a Poisson process (the upstream machine's rate does not
depend on this belt) and leave at the far end once the belt has carried them its length;
the drive's torque follows the number of items on the belt.
"""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

from hmi.core.tags import DataType
from hmi.sim.base import FaultSpec, MachineSim, SignalSpec, SimValue, common_faults, first_order, ou_step, ramp

AMBIENT_C = 24.0
BELT_LENGTH_M = 20.0
ARRIVAL_RATE = 1.2  # items per second from upstream
MAX_ITEMS = 60  # the infeed blocks when the belt is this full
RAMP_M_S2 = 0.5  # drive acceleration ramp
BASE_LOAD_PCT = 15.0  # belt and idler friction, % of rated torque
LOAD_PER_ITEM_PCT = 1.6  # each 15 kg item's rolling friction
BEARING_TAU_S = 2400.0
BEARING_K = 30.0  # K of bearing temperature rise per (load fraction × m/s)
SLIP_NORMAL = 0.005  # belt creep on the drive pulley
SLIP_FAULT = 0.10  # mean slip once the lagging has lost its grip
SLIP_ONSET_S = 20.0


class Conveyor(MachineSim):
    kind = "conveyor"
    label = "Conveyor"
    max_step_s = 0.1
    signals = (
        SignalSpec(
            "belt_speed",
            "m/s",
            0,
            2.5,
            "Belt speed",
            physics="drive speed × (1 − slip); slip 0.5 % + load creep + noise (10 % ± 5 % with belt_slip)",
        ),
        SignalSpec(
            "motor_load",
            "%",
            0,
            150,
            "Drive motor load (torque, % of rated)",
            physics="15 % belt friction + 1.6 % per item on the belt, +acceleration, ±1 % noise",
        ),
        SignalSpec(
            "bearing_temperature",
            "°C",
            0,
            120,
            "Head pulley bearing temperature",
            physics="first-order (τ 40 min) to 24 °C + 30 K × load fraction × belt speed",
        ),
        SignalSpec(
            "items_count",
            "",
            0,
            1e12,
            "Items delivered",
            datatype=DataType.INT,
            physics="items leaving the 20 m belt; they arrive upstream as a Poisson process at 1.2 /s",
        ),
        SignalSpec(
            "items_on_belt",
            "",
            0,
            MAX_ITEMS,
            "Items on the belt",
            datatype=DataType.INT,
            physics="arrived but not yet delivered: 1.2 /s × 20 m ÷ belt speed at steady state",
        ),
        SignalSpec(
            "speed_setpoint",
            "m/s",
            0,
            2.0,
            "Belt speed setpoint",
            writable=True,
            physics="setpoint: the drive ramps to it at 0.5 m/s²",
        ),
    )
    faults: ClassVar[dict[str, FaultSpec]] = {
        "belt_slip": FaultSpec(
            "the drive pulley's lagging loses grip over 20 s: belt speed drops ~10 % and jitters, motor load falls"
            " and fluctuates, deliveries slow down",
            ("belt_speed", "motor_load", "items_count", "items_on_belt"),
        ),
        **common_faults("bearing_temperature"),
    }
    stuck_signal = "bearing_temperature"

    def __init__(self, machine_id: str = "conveyor01", seed: int = 1) -> None:
        super().__init__(machine_id, seed)
        self.setpoint = 1.0
        self.drive_speed = self.setpoint  # the plant starts running
        self.belt_speed = self.setpoint * (1.0 - SLIP_NORMAL)
        self.travel = 0.0  # metres the belt has moved since start
        self.on_belt: deque[float] = deque()  # belt travel at each item's arrival
        self.delivered = 0
        self.next_arrival = self._interarrival()
        self.load = BASE_LOAD_PCT
        self.bearing_temp = AMBIENT_C
        self.slip_noise = 0.0
        # Start with the belt as steady running leaves it: items spread along its length.
        spacing = self.setpoint / ARRIVAL_RATE
        self.on_belt.extend(-BELT_LENGTH_M + spacing * (i + 0.5) for i in range(int(BELT_LENGTH_M / spacing)))

    def _interarrival(self) -> float:
        return -math.log(1.0 - self.uniform()) / ARRIVAL_RATE

    def _advance(self, dt: float) -> None:
        before = self.drive_speed
        self.drive_speed = ramp(self.drive_speed, self.setpoint, RAMP_M_S2, dt)
        accel = (self.drive_speed - before) / dt

        n_items = len(self.on_belt)
        torque = BASE_LOAD_PCT + LOAD_PER_ITEM_PCT * n_items + 25.0 * accel  # % of rated
        slip_age = self.fault_age("belt_slip")
        self.slip_noise = ou_step(self.slip_noise, 1.0, 0.4, dt, self.normal())
        if slip_age is None:
            slip = SLIP_NORMAL + 0.004 * torque / 100.0 + 0.002 * self.slip_noise
            transmitted = 1.0
        else:
            onset = min(slip_age / SLIP_ONSET_S, 1.0)
            # Stick-slip: the belt grabs and lets go, so slip and the torque that reaches the
            # belt both fluctuate.
            slip = SLIP_NORMAL + onset * (SLIP_FAULT + 0.05 * self.slip_noise)
            transmitted = 1.0 - onset * (0.3 + 0.1 * self.slip_noise)
        slip = min(max(slip, 0.0), 0.9)
        self.belt_speed = max(self.drive_speed * (1.0 - slip), 0.0)
        self.load = max(torque * transmitted + 1.0 * self.normal(), 0.0) if self.drive_speed > 0 else 0.0

        self.travel += self.belt_speed * dt
        while self.on_belt and self.travel - self.on_belt[0] >= BELT_LENGTH_M:
            self.on_belt.popleft()
            self.delivered += 1
        self.next_arrival -= dt
        while self.next_arrival <= 0.0 and len(self.on_belt) < MAX_ITEMS:  # a full infeed holds items back
            self.on_belt.append(self.travel)
            self.next_arrival += self._interarrival()

        target = AMBIENT_C + BEARING_K * (self.load / 100.0) * self.belt_speed
        self.bearing_temp = first_order(self.bearing_temp, target, BEARING_TAU_S, dt)

    def _values(self) -> dict[str, SimValue]:
        return {
            "belt_speed": self.belt_speed,
            "motor_load": self.load,
            "bearing_temperature": self.bearing_temp,
            "items_count": self.delivered,
            "items_on_belt": len(self.on_belt),
            "speed_setpoint": self.setpoint,
        }

    def _apply_write(self, signal: str, value: float) -> None:
        if signal == "speed_setpoint":
            self.setpoint = value
