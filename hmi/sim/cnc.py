"""CNC mill: a pocket-milling program in a loop, with spindle, axes, tool heat and vibration."""

from __future__ import annotations

import math
from typing import ClassVar

from hmi.core.tags import DataType
from hmi.sim.base import FaultSpec, MachineSim, SignalSpec, SimValue, common_faults, first_order

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
    label = "CNC mill"
    signals = (
        SignalSpec(
            "spindle_speed",
            "rpm",
            0,
            24000,
            "Spindle speed",
            physics="12,000 rpm commanded, 0.4 s spin-up lag, drooping up to 4 % with cutting load, ±12 rpm noise",
        ),
        SignalSpec(
            "tool_temperature",
            "°C",
            0,
            200,
            "Tool temperature",
            physics="first-order warm-up (τ 240 s heating, 420 s cooling) towards 22 °C + 62 K × cutting power",
        ),
        SignalSpec("axis_x", "mm", -10, 210, "X axis position", physics="zig-zag raster over a 200 × 120 mm pocket"),
        SignalSpec("axis_y", "mm", -10, 130, "Y axis position", physics="10 mm step-over per raster pass"),
        SignalSpec(
            "axis_z", "mm", -10, 60, "Z axis position", physics="50 mm safe height, ramps to −5 mm depth of cut"
        ),
        SignalSpec(
            "vibration_spindle",
            "mm/s",
            0,
            50,
            "Spindle vibration (RMS velocity)",
            physics="0.35 mm/s × rotation + 2.2 mm/s × load, with high-frequency noise growing with load",
        ),
        SignalSpec(
            "feed_override",
            "%",
            0,
            150,
            "Feed override",
            writable=True,
            physics="setpoint: scales the feed (2400 mm/min at 100 %), hence cycle time, load, heat and vibration",
        ),
        SignalSpec(
            "program_name",
            "",
            0,
            0,
            "Active NC program",
            datatype=DataType.STRING,
            physics="the NC program in the control (O1001 POCKET)",
        ),
        SignalSpec(
            "door_open",
            "",
            0,
            1,
            "Guard door open",
            datatype=DataType.BOOL,
            physics="open while the finished part is unloaded (8 s of each cycle)",
        ),
    )
    faults: ClassVar[dict[str, FaultSpec]] = {
        "tool_wear": FaultSpec(
            "the cutting edge wears: vibration grows with the time in cut since the fault (+2.5 mm/s per unit load"
            " every 10 min in cut, up to 3 units)",
            ("vibration_spindle",),
        ),
        **common_faults("tool_temperature"),
    }
    stuck_signal = "tool_temperature"

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
        self.wear_start_cut = 0.0
        self.tool_temp_reading = AMBIENT_C

    @property
    def phase(self) -> str:
        return PROGRAM[self.phase_index][0]

    def _advance(self, dt: float) -> None:
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
            engagement = 0.65 + 0.2 * math.sin(self.path_mm / 37.0) + 0.05 * self.normal()
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
            self.spindle_rpm += 12.0 * self.normal()

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
        noise = abs(self.normal()) * (0.08 + 0.6 * self.load * (1.0 + wear))
        self.vibration = base + noise
        # A thermocouple in the tool holder: small noise on the true temperature.
        self.tool_temp_reading = self.tool_temp + 0.02 * self.normal()

    def _on_fault_injected(self, name: str) -> None:
        if name == "tool_wear":
            self.wear_start_cut = self.time_in_cut

    def _values(self) -> dict[str, SimValue]:
        return {
            "spindle_speed": max(self.spindle_rpm, 0.0),
            "tool_temperature": self.tool_temp_reading,
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
