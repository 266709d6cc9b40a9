"""Coordinate measuring machine: aluminium parts measured in a room whose temperature drifts.

Each part (Al 6061, nominal length 100.000 mm at 20 °C) arrives from the shop floor at the
shop's temperature, settles towards the room's temperature while it is on the table, and
is probed every few seconds. Its measured length is its true thermal length plus probe
noise: L = L0 · (1 + α · (T_part − 20 °C)) + noise, α = 23.6e-6 /K. That is what a
thermal-compensation twin has to undo.

Simulated time zero is the start of an 8-hour shift.
"""

from __future__ import annotations

import math
from typing import ClassVar

from hmi.core.tags import DataType
from hmi.sim.base import FaultSpec, MachineSim, SignalSpec, SimValue, common_faults, first_order, ou_step

NOMINAL_MM = 100.000
ALPHA_PER_K = 23.6e-6  # aluminium 6061
REFERENCE_C = 20.0  # ISO 1: lengths are stated at 20 °C
SHIFT_S = 8 * 3600.0
ROOM_C = 20.0
ROOM_SHIFT_K = 0.6  # the room warms and cools this much over a shift
HVAC_PERIOD_S = 1200.0
HVAC_K = 0.12
SHOP_C = 22.0
SHOP_SHIFT_K = 2.0
PART_SPREAD_K = 1.2  # part-to-part spread of arrival temperature
PART_TAU_S = 900.0  # a 100 mm aluminium block settling in still air
PART_CYCLE_S = 60.0  # load, settle, measure, unload
SETTLE_S = 8.0
MEASURE_EVERY_S = 4.0
PROBE_NOISE_MM = 0.0004
HVAC_FAILURE_TAU_S = 900.0


class CoordinateMeasuringMachine(MachineSim):
    kind = "cmm"
    label = "Coordinate measuring machine"
    max_step_s = 0.5
    signals = (
        SignalSpec(
            "room_temperature",
            "°C",
            15,
            30,
            "Measuring room temperature",
            physics="20 °C + 0.6 K over the shift + 0.12 K HVAC cycle (20 min) + slow drift; hvac_failure → shop",
        ),
        SignalSpec(
            "part_temperature",
            "°C",
            10,
            40,
            "Part temperature (contact sensor)",
            physics="arrives at shop temperature (22 °C ± 2 K over the shift, ±1.2 K per part), settles to the room"
            " with τ 15 min",
        ),
        SignalSpec(
            "measured_length",
            "mm",
            99.9,
            100.1,
            "Measured length",
            physics="100.000 mm × (1 + 23.6e-6/K × (T_part − 20 °C)) + 0.4 µm probe noise, every 4 s",
        ),
        SignalSpec(
            "length_deviation",
            "µm",
            -100,
            100,
            "Measured length − nominal",
            physics="(measured_length − 100.000 mm) in µm: +2.36 µm per K above 20 °C",
        ),
        SignalSpec(
            "part_id",
            "",
            0,
            1e9,
            "Serial number of the part on the table",
            datatype=DataType.INT,
            physics="a new part every 60 s",
        ),
        SignalSpec(
            "measurement_count",
            "",
            0,
            1e12,
            "Measurements taken",
            datatype=DataType.INT,
            physics="+1 per measurement: 13 per part, 4 s apart after 8 s of settling",
        ),
        SignalSpec(
            "probe_x",
            "mm",
            -300,
            300,
            "Probe position X (carriage on the bridge)",
            physics="touches the part's two end faces (x = ∓50 mm) once per measurement, parks between parts",
        ),
        SignalSpec(
            "probe_y",
            "mm",
            -400,
            400,
            "Probe position Y (bridge along the table)",
            physics="the bridge moves over the part for the measurements and back to its park position",
        ),
        SignalSpec(
            "probe_z",
            "mm",
            -50,
            300,
            "Probe position Z (quill)",
            physics="lowered to the part's mid-height to touch, raised to cross over it",
        ),
    )
    faults: ClassVar[dict[str, FaultSpec]] = {
        "hvac_failure": FaultSpec(
            "the room's air conditioning stops: the room drifts to shop temperature (τ 15 min), parts stay warmer"
            " and measure longer",
            ("room_temperature", "part_temperature", "measured_length", "length_deviation"),
        ),
        **common_faults("part_temperature"),
    }
    stuck_signal = "part_temperature"

    def __init__(self, machine_id: str = "cmm01", seed: int = 1) -> None:
        super().__init__(machine_id, seed)
        self.room_drift = 0.0
        self.hvac_offset = 0.0  # K the room has drifted while the HVAC is down
        self.hvac_cycling = 1.0  # the HVAC's own on/off ripple, which fades when it stops
        self.room_temp = self._room_setpoint()
        self.part_id = 1
        self.cycle_t = SETTLE_S
        self.part_temp = self._arrival_temperature()
        self.part_reading = self.part_temp
        self.room_reading = self.room_temp
        self.measurements = 0
        self.measured = NOMINAL_MM
        self.next_measure_t = SETTLE_S
        self._measure()

    def _shift_wave(self) -> float:
        return math.sin(2.0 * math.pi * self.t / SHIFT_S)

    def shop_temperature(self) -> float:
        return SHOP_C + SHOP_SHIFT_K * math.sin(2.0 * math.pi * self.t / SHIFT_S - 0.3)

    def _room_setpoint(self) -> float:
        hvac = self.hvac_cycling * HVAC_K * math.sin(2.0 * math.pi * self.t / HVAC_PERIOD_S)
        return ROOM_C + ROOM_SHIFT_K * self._shift_wave() + hvac + self.room_drift + self.hvac_offset

    def _arrival_temperature(self) -> float:
        return self.shop_temperature() + PART_SPREAD_K * self.normal()

    def thermal_length(self, part_temp: float) -> float:
        """The part's true length (mm) at a temperature."""
        return NOMINAL_MM * (1.0 + ALPHA_PER_K * (part_temp - REFERENCE_C))

    def _measure(self) -> None:
        self.measured = self.thermal_length(self.part_temp) + PROBE_NOISE_MM * self.normal()
        self.measurements += 1
        self.next_measure_t += MEASURE_EVERY_S

    def _advance(self, dt: float) -> None:
        self.room_drift = ou_step(self.room_drift, 0.05, 300.0, dt, self.normal())
        failed = "hvac_failure" in self.active_faults
        hvac_target = self.shop_temperature() - ROOM_C if failed else 0.0
        self.hvac_offset = first_order(self.hvac_offset, hvac_target, HVAC_FAILURE_TAU_S, dt)
        self.hvac_cycling = first_order(self.hvac_cycling, 0.0 if failed else 1.0, 120.0, dt)
        self.room_temp = self._room_setpoint()

        self.cycle_t += dt
        if self.cycle_t >= PART_CYCLE_S:
            self.cycle_t -= PART_CYCLE_S
            self.part_id += 1
            self.part_temp = self._arrival_temperature()
            self.next_measure_t = SETTLE_S
        self.part_temp = first_order(self.part_temp, self.room_temp, PART_TAU_S, dt)
        if self.cycle_t >= self.next_measure_t:
            self._measure()
        self.part_reading = self.part_temp + 0.02 * self.normal()
        self.room_reading = self.room_temp + 0.01 * self.normal()

    def probe_position(self) -> tuple[float, float, float]:
        """Where the probe is (mm, relative to the part's centre): a function of the cycle
        time alone, so it adds nothing random to the simulation."""
        park = (0.0, -250.0, 150.0)
        if self.cycle_t < SETTLE_S - 2.0:
            return park
        if self.cycle_t < SETTLE_S:  # the bridge comes over the part
            f = (self.cycle_t - (SETTLE_S - 2.0)) / 2.0
            return (-60.0 * f, park[1] * (1.0 - f), park[2] + (20.0 - park[2]) * f)
        u = (self.cycle_t - SETTLE_S) % MEASURE_EVERY_S
        if PART_CYCLE_S - self.cycle_t < 1.0:  # back to park for the next part
            f = 1.0 - (PART_CYCLE_S - self.cycle_t)
            return (-60.0 * (1.0 - f), park[1] * f, 20.0 + (park[2] - 20.0) * f)
        if u < 1.0:  # approach face A
            return (-60.0, 0.0, 20.0)
        if u < 1.5:  # touch face A
            return (-60.0 + 10.0 * (u - 1.0) / 0.5, 0.0, 20.0)
        if u < 2.5:  # over the part to face B
            f = (u - 1.5) / 1.0
            return (-50.0 + 110.0 * f, 0.0, 20.0 + 60.0 * math.sin(math.pi * f))
        if u < 3.0:  # touch face B
            return (60.0 - 10.0 * (u - 2.5) / 0.5, 0.0, 20.0)
        f = (u - 3.0) / 1.0  # back over the part to face A
        return (50.0 - 110.0 * f, 0.0, 20.0 + 60.0 * math.sin(math.pi * f))

    def _values(self) -> dict[str, SimValue]:
        x, y, z = self.probe_position()
        return {
            "probe_x": x,
            "probe_y": y,
            "probe_z": z,
            "room_temperature": self.room_reading,
            "part_temperature": self.part_reading,
            "measured_length": self.measured,
            "length_deviation": (self.measured - NOMINAL_MM) * 1000.0,
            "part_id": self.part_id,
            "measurement_count": self.measurements,
        }

    def _apply_write(self, signal: str, value: float) -> None:  # no setpoints
        raise ValueError(f"{self.machine_id}.{signal} is not writable")
