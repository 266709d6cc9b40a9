"""CNC mill: a pocket-milling program in a loop, with spindle, axes, tool heat and vibration."""

from __future__ import annotations

import math
from typing import ClassVar

from hmi.core.tags import DataType
from hmi.sim.base import MachineSim, SignalSpec, SimValue, first_order

AMBIENT_C = 22.0
SPINDLE_RPM = 12000.0
FEED_MM_PER_MIN = 2400.0
POCKET_X_MM = 200.0
POCKET_Y_MM = 120.0
STEPOVER_MM = 10.0
CUT_DEPTH_MM = -5.0
SAFE_Z_MM = 50.0

# The program: (phase, duration in s). Cutting ends early or late with the feed override;
# its duration here is at 100 % feed.
PROGRAM = (
    ("tool_change", 6.0),
    ("approach", 4.0),
    ("cutting", 60.0),
    ("retract", 4.0),
    ("unload", 8.0),
)


class CncMill(MachineSim):
    kind = "cnc_mill"
    signals = (
        SignalSpec("spindle_speed", "rpm", 0, 24000, "Spindle speed"),
        SignalSpec("tool_temperature", "°C", 0, 200, "Tool temperature"),
        SignalSpec("axis_x", "mm", -10, 210, "X axis position"),
        SignalSpec("axis_y", "mm", -10, 130, "Y axis position"),
        SignalSpec("axis_z", "mm", -10, 60, "Z axis position"),
        SignalSpec("vibration_spindle", "mm/s", 0, 50, "Spindle vibration (RMS velocity)"),
        SignalSpec("feed_override", "%", 0, 150, "Feed override", writable=True),
        SignalSpec("program_name", "", 0, 0, "Active NC program", datatype=DataType.STRING),
        SignalSpec("door_open", "", 0, 1, "Guard door open", datatype=DataType.BOOL),
    )
    faults: ClassVar[dict[str, str]] = {
        "tool_wear": "vibration grows with the time the tool spends in cut",
        "stuck_sensor": "tool_temperature freezes at its current reading",
        "offline": "the controller stops answering (every signal goes bad)",
    }

    def __init__(self, machine_id: str = "cnc01", seed: int = 1) -> None:
        super().__init__(machine_id, seed)
        self.feed_override = 100.0
        self.phase_index = 0
        self.phase_time = 0.0
        self.path_mm = 0.0  # distance along the pocket's raster
        self.spindle_rpm = 0.0
        self.tool_temp = AMBIENT_C
        self.load = 0.0
        self.vibration = 0.0
        self.x, self.y, self.z = 0.0, 0.0, SAFE_Z_MM
        self.time_in_cut = 0.0
        self.stuck_temp: float | None = None
        self.wear_start_cut = 0.0

    @property
    def phase(self) -> str:
        return PROGRAM[self.phase_index][0]

    def _advance(self, dt: float) -> None:
        # Large dt (a fast-forwarded plant) is split so the phase logic sees every phase.
        while dt > 0:
            step = min(dt, 0.1)
            self._advance_small(step)
            dt -= step

    def _advance_small(self, dt: float) -> None:
        phase, duration = PROGRAM[self.phase_index]
        self.phase_time += dt
        feed = FEED_MM_PER_MIN / 60.0 * self.feed_override / 100.0
        spindle_on = phase in ("approach", "cutting", "retract")

        if phase == "cutting":
            self.path_mm += feed * dt
            self.x, self.y = _raster(self.path_mm)
            self.z = CUT_DEPTH_MM
            self.time_in_cut += dt
            # Engagement varies along the path (corners, remaining stock) plus chatter.
            engagement = 0.65 + 0.2 * math.sin(self.path_mm / 37.0) + 0.05 * self.rng.standard_normal()
            self.load = min(max(engagement * self.feed_override / 100.0, 0.05), 1.5)
            done = self.path_mm >= _raster_length()
        else:
            self.load = 0.04 if spindle_on else 0.0
            if phase == "approach":
                self.z = SAFE_Z_MM + (CUT_DEPTH_MM - SAFE_Z_MM) * min(self.phase_time / duration, 1.0)
            elif phase == "retract":
                self.z = CUT_DEPTH_MM + (SAFE_Z_MM - CUT_DEPTH_MM) * min(self.phase_time / duration, 1.0)
            elif phase in ("tool_change", "unload"):
                self.x, self.y, self.z = 0.0, 0.0, SAFE_Z_MM
            done = self.phase_time >= duration
        if done:
            self.phase_index = (self.phase_index + 1) % len(PROGRAM)
            self.phase_time = 0.0
            if self.phase == "cutting":
                self.path_mm = 0.0

        target_rpm = SPINDLE_RPM * (1.0 - 0.04 * self.load) if spindle_on else 0.0
        self.spindle_rpm = first_order(self.spindle_rpm, target_rpm, 0.4, dt)
        if spindle_on:
            self.spindle_rpm += 12.0 * self.rng.standard_normal()

        # Heat input grows with cutting power; the tool warms up exponentially to the
        # equilibrium for the current load and cools slower than it heats.
        heat = self.load * max(self.spindle_rpm, 0.0) / SPINDLE_RPM
        target_temp = AMBIENT_C + 62.0 * heat
        tau = 240.0 if target_temp > self.tool_temp else 420.0
        self.tool_temp = first_order(self.tool_temp, target_temp, tau, dt)

        wear = 0.0
        if "tool_wear" in self.active_faults:
            # Wear grows with time in cut since the fault began (a fresh tool has none).
            wear = min((self.time_in_cut - self.wear_start_cut) / 600.0, 3.0)
        rotating = max(self.spindle_rpm, 0.0) / SPINDLE_RPM
        base = 0.35 * rotating + (2.2 + 2.5 * wear) * self.load
        noise = abs(self.rng.standard_normal()) * (0.08 + 0.6 * self.load * (1.0 + wear))
        self.vibration = base + noise

    def inject_fault(self, name: str) -> None:
        if name == "tool_wear" and name not in self.active_faults:
            self.wear_start_cut = self.time_in_cut
        super().inject_fault(name)

    def values(self) -> dict[str, SimValue]:
        temp = self.tool_temp + 0.05 * float(self.rng.standard_normal())
        if "stuck_sensor" in self.active_faults:
            if self.stuck_temp is None:
                self.stuck_temp = temp
            temp = self.stuck_temp
        else:
            self.stuck_temp = None
        return {
            "spindle_speed": max(self.spindle_rpm, 0.0),
            "tool_temperature": temp,
            "axis_x": self.x,
            "axis_y": self.y,
            "axis_z": self.z,
            "vibration_spindle": self.vibration,
            "feed_override": self.feed_override,
            "program_name": "O1001 POCKET",
            "door_open": self.phase == "unload",
        }

    def _apply_write(self, signal: str, value: float) -> None:
        if signal == "feed_override":
            self.feed_override = value


def _raster_length() -> float:
    passes = int(POCKET_Y_MM // STEPOVER_MM) + 1
    return passes * POCKET_X_MM + (passes - 1) * STEPOVER_MM


def _raster(distance: float) -> tuple[float, float]:
    """Position after `distance` mm along a zig-zag raster over the pocket."""
    leg = POCKET_X_MM + STEPOVER_MM
    n = int(distance // leg)
    rest = distance - n * leg
    y = n * STEPOVER_MM
    if rest <= POCKET_X_MM:
        x = rest if n % 2 == 0 else POCKET_X_MM - rest
    else:
        x = POCKET_X_MM if n % 2 == 0 else 0.0
        y += rest - POCKET_X_MM
    return min(x, POCKET_X_MM), min(y, POCKET_Y_MM)
