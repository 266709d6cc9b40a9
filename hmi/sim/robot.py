"""Robot arm: a six-axis pick-and-place cycle with joint angles, power, heat and vibration.

The cycle is a smooth closed path in joint space driven by one phase angle: joint 1
swings between the pick (-60°) and place (+60°) stations while shoulder, elbow and wrist
dip at each station. Joint velocities are the analytic derivatives of that path, so
power follows movement exactly.
"""

from __future__ import annotations

import math
from typing import ClassVar

from hmi.core.tags import DataType
from hmi.sim.base import FaultSpec, MachineSim, SignalSpec, SimValue, common_faults, first_order, ou_step

AMBIENT_C = 23.0
CYCLE_S = 10.0  # one pick-and-place cycle at 100 % speed override
IDLE_W = 450.0  # controller, cooling fans and servo holding current
# Motor power per joint speed (W per deg/s), from base to flange.
POWER_PER_DEG_S = (3.5, 8.0, 5.0, 0.8, 1.0, 0.5)
PAYLOAD_FACTOR = 1.25  # the 10 kg part raises shoulder, elbow and wrist effort
PAYLOAD_W = 60.0
HEAT_K_PER_W = 0.03  # core temperature rise per W of average electrical power
HEAT_TAU_S = 1500.0
SPIKE_MM_S = 2.5  # gripper closing/opening at each station
SPIKE_TAU_S = 0.25
GEARBOX_WEAR_S = 1200.0  # time for gearbox wear to develop fully

PICK = 1.5 * math.pi  # phase where joint 1 is at -60°
PLACE = 0.5 * math.pi  # phase where joint 1 is at +60°
TWO_PI = 2.0 * math.pi


def joint_angles(phase: float) -> tuple[float, float, float, float, float, float]:
    """The six joint angles (deg) at a cycle phase (rad)."""
    s, c2 = math.sin(phase), math.cos(2.0 * phase)
    j1 = 60.0 * s
    j2 = -30.0 + 15.0 * c2
    j3 = 60.0 - 20.0 * c2
    j4 = 8.0 * math.sin(phase + 0.6)
    j5 = 90.0 - (j2 + j3)  # keeps the tool vertical
    j6 = -j1  # keeps the part's orientation
    return j1, j2, j3, j4, j5, j6


def joint_rates(phase: float) -> tuple[float, float, float, float, float, float]:
    """d(angle)/d(phase) for each joint (deg/rad): the path's analytic derivative."""
    c, s2 = math.cos(phase), math.sin(2.0 * phase)
    return 60.0 * c, -30.0 * s2, 40.0 * s2, 8.0 * math.cos(phase + 0.6), -10.0 * s2, -60.0 * c


class RobotArm(MachineSim):
    kind = "robot_arm"
    label = "Robot arm"
    signals = (
        SignalSpec("joint_1", "deg", -170, 170, "Joint 1 (base)", physics="oscillates ±60° between pick and place"),
        SignalSpec("joint_2", "deg", -90, 90, "Joint 2 (shoulder)", physics="−30° ± 15°, dips at each station"),
        SignalSpec("joint_3", "deg", -30, 150, "Joint 3 (elbow)", physics="60° ± 20°, reaches at each station"),
        SignalSpec("joint_4", "deg", -180, 180, "Joint 4 (wrist roll)", physics="±8° wrist roll"),
        SignalSpec("joint_5", "deg", -120, 120, "Joint 5 (wrist pitch)", physics="90° − (joint 2 + joint 3)"),
        SignalSpec("joint_6", "deg", -180, 180, "Joint 6 (flange)", physics="−joint 1: keeps the part's orientation"),
        SignalSpec(
            "temperature_core",
            "°C",
            0,
            100,
            "Motor core temperature",
            physics="first-order heating (τ 25 min) to 23 °C + 0.03 K/W × power, ±0.15 K fluctuation",
        ),
        SignalSpec(
            "vibration_level",
            "mm/s",
            0,
            20,
            "Arm vibration (RMS velocity)",
            physics="0.4 mm/s baseline + motion term, 2.5 mm/s spikes at each gripper action (twice a cycle)",
        ),
        SignalSpec(
            "power_consumption",
            "W",
            0,
            5000,
            "Electrical power",
            physics="450 W idle + per-joint W per deg/s of movement, +25 % and +60 W while carrying the part",
        ),
        SignalSpec(
            "speed_override",
            "%",
            10,
            100,
            "Speed override",
            writable=True,
            physics="setpoint: scales the cycle rate (one cycle per 10 s at 100 %)",
        ),
        SignalSpec(
            "cycle_count",
            "",
            0,
            1e9,
            "Parts picked",
            datatype=DataType.INT,
            physics="counts each pick",
        ),
    )
    faults: ClassVar[dict[str, FaultSpec]] = {
        "gearbox_wear": FaultSpec(
            "joint 2's gearbox wears over 20 min: vibration baseline ×3, spikes ×2, joint 2 friction +60 %",
            ("vibration_level", "power_consumption", "temperature_core"),
        ),
        **common_faults("temperature_core"),
    }
    stuck_signal = "temperature_core"

    def __init__(self, machine_id: str = "robot01", seed: int = 1) -> None:
        super().__init__(machine_id, seed)
        self.speed_override = 100.0
        self.phase = 0.0
        self.angles = joint_angles(0.0)
        self.power = IDLE_W
        self.core_temp = AMBIENT_C
        self.temp_fluctuation = 0.0
        self.spike = 0.0
        self.vibration = 0.4
        self.cycles = 0
        self.joint_noise = [0.0] * 6

    def _advance(self, dt: float) -> None:
        omega = TWO_PI / CYCLE_S * self.speed_override / 100.0  # phase rate, rad/s
        before = self.phase
        self.phase = (self.phase + omega * dt) % TWO_PI
        wrapped = self.phase < before
        if _crossed(before, self.phase, wrapped, PICK):
            self.cycles += 1
            self.spike += SPIKE_MM_S * (1.0 + 0.1 * self.normal())
        if _crossed(before, self.phase, wrapped, PLACE):
            self.spike += SPIKE_MM_S * (1.0 + 0.1 * self.normal())

        wear = 0.0
        age = self.fault_age("gearbox_wear")
        if age is not None:
            wear = min(age / GEARBOX_WEAR_S, 1.0)

        self.angles = joint_angles(self.phase)
        rates = joint_rates(self.phase)
        carrying = math.cos(self.phase) > 0.0  # from the pick station round to the place station
        load = PAYLOAD_FACTOR if carrying else 1.0
        power = IDLE_W + (PAYLOAD_W if carrying else 0.0)
        for joint, (rate, per) in enumerate(zip(rates, POWER_PER_DEG_S)):
            effort = per * abs(rate * omega)
            if joint in (1, 2, 4):
                effort *= load
            if joint == 1:
                effort *= 1.0 + 0.6 * wear
            power += effort
        self.power = power + 8.0 * self.normal()

        target = AMBIENT_C + HEAT_K_PER_W * self.power
        self.core_temp = first_order(self.core_temp, target, HEAT_TAU_S, dt)
        self.temp_fluctuation = ou_step(self.temp_fluctuation, 0.15, 60.0, dt, self.normal())

        self.spike *= math.exp(-dt / SPIKE_TAU_S)
        motion = 0.012 * abs(rates[0] * omega)
        baseline = (0.4 + motion) * (1.0 + 2.0 * wear)
        self.vibration = baseline + self.spike * (1.0 + wear) + 0.03 * abs(self.normal())
        self.joint_noise = [0.002 * self.normal() for _ in range(6)]

    def _values(self) -> dict[str, SimValue]:
        a, n = self.angles, self.joint_noise
        return {
            "joint_1": a[0] + n[0],
            "joint_2": a[1] + n[1],
            "joint_3": a[2] + n[2],
            "joint_4": a[3] + n[3],
            "joint_5": a[4] + n[4],
            "joint_6": a[5] + n[5],
            "temperature_core": self.core_temp + self.temp_fluctuation,
            "vibration_level": self.vibration,
            "power_consumption": max(self.power, 0.0),
            "speed_override": self.speed_override,
            "cycle_count": self.cycles,
        }

    def _apply_write(self, signal: str, value: float) -> None:
        if signal == "speed_override":
            self.speed_override = value


def _crossed(before: float, after: float, wrapped: bool, mark: float) -> bool:
    """Did the phase pass `mark` going from `before` to `after` (mod 2π)?"""
    if wrapped:
        return mark > before or mark <= after
    return before < mark <= after
