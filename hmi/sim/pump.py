"""Centrifugal pump with its induction motor and drive, circulating water in a closed loop.

The pump curve at rated speed is H(Q) = H0 − k·Q²; at speed ratio s = n/n_rated the
affinity laws give H(Q, s) = H0·s² − k·Q². A closed loop has no static head, so the
system curve is pure friction, H = R·Q², and the operating point obeys the affinity laws
exactly: Q ∝ n, Δp ∝ n², hydraulic power ∝ n³. Shaft power is hydraulic power over the
pump's efficiency; the motor current follows from electrical power, the motor voltage the
drive can deliver from its supply (V/f, capped by the supply) and the magnetising current.
"""

from __future__ import annotations

import math
from typing import ClassVar

from hmi.sim.base import FaultSpec, MachineSim, SignalSpec, SimValue, common_faults, first_order, ou_step, ramp

RATED_RPM = 2950.0
SHUTOFF_HEAD_M = 52.0  # H0 at rated speed
CURVE_K = 12.0 / 3600.0  # m per (m³/h)²: 40 m at 60 m³/h
SYSTEM_R = 0.01386  # loop friction, m per (m³/h)²: 55 m³/h at rated speed
BEP_FLOW = 60.0  # m³/h at rated speed
BEP_EFFICIENCY = 0.78
RHO = 998.0  # kg/m³
G = 9.81
TANK_BAR = 2.0  # expansion vessel pre-pressure at the suction side
SUCTION_K = 5.0e-5  # suction line loss, bar per (m³/h)²
FLOW_TAU_S = 0.5  # water column inertia
RAMP_RPM_S = 300.0
MOTOR_RATED_KW = 11.0
MOTOR_EFFICIENCY = 0.92
RATED_VOLT = 400.0
MAGNETISING_A = 7.0
FRICTION_KW = 0.15
AMBIENT_C = 25.0
BEARING_RISE_K = 20.0
BEARING_TAU_S = 600.0
BEARING_WEAR_S = 600.0  # bearing wear develops fully in 10 simulated minutes
CAVITATION_ONSET_S = 30.0
SAG_V = 60.0  # undervoltage: 400 V -> 340 V
SAG_TAU_S = 3.0
BLOCKAGE_ONSET_S = 60.0  # a suction valve or strainer closes off over a minute
BLOCKED_SUCTION_K = 2.2e-4  # its extra loss when fully developed, bar per (m³/h)²: -0.6 bar at 52 m³/h
MISALIGNMENT_VIBRATION = 1.5  # a misaligned coupling: vibration ×2.5, at once (after maintenance)
MISALIGNMENT_TAU_S = 2.0


def operating_flow(speed_ratio: float, head_factor: float = 1.0, extra_resistance: float = 0.0) -> float:
    """Flow (m³/h) where the pump curve meets the loop's system curve (plus any throttling,
    m per (m³/h)²)."""
    if speed_ratio <= 0:
        return 0.0
    return math.sqrt(SHUTOFF_HEAD_M * head_factor * speed_ratio * speed_ratio / (CURVE_K + SYSTEM_R + extra_resistance))


def pump_head(flow: float, speed_ratio: float, head_factor: float = 1.0) -> float:
    """Head (m) the pump develops at a flow and speed ratio (affinity-scaled curve)."""
    return max(SHUTOFF_HEAD_M * head_factor * speed_ratio * speed_ratio - CURVE_K * flow * flow, 0.0)


def pump_efficiency(flow: float, speed_ratio: float) -> float:
    """Hydraulic efficiency; depends on Q/s only, so similar operating points share it."""
    if speed_ratio <= 0:
        return BEP_EFFICIENCY
    q = flow / speed_ratio
    return max(BEP_EFFICIENCY * (1.0 - ((q - BEP_FLOW) / BEP_FLOW) ** 2), 0.05)


class CentrifugalPump(MachineSim):
    kind = "centrifugal_pump"
    label = "Centrifugal pump"
    signals = (
        SignalSpec(
            "speed",
            "rpm",
            0,
            3300,
            "Pump speed",
            physics="ramps to the setpoint at 300 rpm/s; slips 1 % more when the drive is short of voltage",
        ),
        SignalSpec(
            "speed_setpoint",
            "rpm",
            0,
            3000,
            "Speed setpoint",
            writable=True,
            physics="setpoint of the drive (rated 2950 rpm)",
        ),
        SignalSpec(
            "flow",
            "m³/h",
            0,
            100,
            "Flow",
            physics="pump curve H = 52 m·s² − k·Q² meets loop curve H = R·Q²: 55 m³/h at 2950 rpm, Q ∝ n",
        ),
        SignalSpec(
            "suction_pressure",
            "bar",
            -1,
            4,
            "Suction pressure (gauge)",
            physics="2.0 bar expansion vessel − suction line loss ∝ Q² (×13 and noisy with cavitation,"
            " + a calm throttling loss with a blocked suction)",
        ),
        SignalSpec(
            "discharge_pressure",
            "bar",
            0,
            10,
            "Discharge pressure (gauge)",
            physics="suction pressure + ρ·g·H: Δp ∝ n²",
        ),
        SignalSpec(
            "vibration_rms",
            "mm/s",
            0,
            20,
            "Bearing housing vibration (RMS velocity)",
            physics="(0.2 + 1.0 × n/n_rated) mm/s, ×(1 + 4·w^1.5) with bearing wear w, ×2.5 misaligned,"
            " + broadband with cavitation",
        ),
        SignalSpec(
            "bearing_temperature",
            "°C",
            0,
            120,
            "Drive-end bearing temperature",
            physics="first-order (τ 10 min) to 25 °C + 20 K·s^1.5·(1 + 1.2·w)",
        ),
        SignalSpec(
            "motor_current",
            "A",
            0,
            40,
            "Motor current",
            physics="√(I_active² + I_mag²), I_active = P_el/(√3·U_motor), P_el = ρgQH/η_pump/η_motor + friction",
        ),
        SignalSpec(
            "supply_voltage",
            "V",
            0,
            480,
            "Supply voltage (line to line)",
            physics="400 V ± slow mains drift and noise; sags to 340 V with undervoltage",
        ),
    )
    faults: ClassVar[dict[str, FaultSpec]] = {
        "bearing_wear": FaultSpec(
            "the drive-end bearing wears over 10 min: vibration ×5 (×3 after ~6 min), bearing temperature +24 K,"
            " a little more friction current",
            ("vibration_rms", "bearing_temperature", "motor_current"),
        ),
        "cavitation": FaultSpec(
            "the suction strainer clogs over 30 s: suction pressure falls near vapour pressure, pressures and flow"
            " turn noisy, head breaks down 18 % so flow drops ~10 %, vibration rises",
            ("suction_pressure", "discharge_pressure", "flow", "vibration_rms", "motor_current"),
        ),
        "blocked_suction": FaultSpec(
            "a suction valve is closed off (or the strainer blocks) over 60 s, without cavitating: suction"
            " pressure falls 0.6 bar, flow ~6 %, pressures stay calm and vibration normal",
            ("suction_pressure", "discharge_pressure", "flow", "motor_current"),
        ),
        "misalignment": FaultSpec(
            "the coupling runs misaligned (as after maintenance): vibration steps up ×2.5 at once and stays,"
            " bearing temperature and flow unchanged",
            ("vibration_rms",),
        ),
        "undervoltage": FaultSpec(
            "the supply sags from 400 V to 340 V (τ 3 s): the motor runs short of flux, its current rises ~8 % and"
            " the speed droops 1 %",
            ("supply_voltage", "motor_current", "speed", "flow"),
        ),
        **common_faults("bearing_temperature"),
    }
    stuck_signal = "bearing_temperature"

    def __init__(self, machine_id: str = "pump01", seed: int = 1) -> None:
        super().__init__(machine_id, seed)
        self.setpoint = RATED_RPM
        self.speed = RATED_RPM  # the plant starts running, settled
        self.flow = operating_flow(1.0)
        self.bearing_temp = AMBIENT_C + BEARING_RISE_K
        self.mains_drift = 0.0
        self.sag = 0.0
        self.supply = RATED_VOLT
        self.cavitation = 0.0
        self.misalignment = 0.0
        self.head = pump_head(self.flow, 1.0)
        self.current = 0.0
        self.vibration = 0.0
        self.p_suction = TANK_BAR
        self.p_discharge = TANK_BAR
        self.speed_reading = self.speed
        self.flow_reading = self.flow
        self.bearing_reading = self.bearing_temp
        self._advance(1e-3)  # settle the readings

    def _advance(self, dt: float) -> None:
        # Supply: slow mains drift plus noise; an undervoltage sag comes and goes with τ 3 s.
        self.mains_drift = ou_step(self.mains_drift, 2.5, 30.0, dt, self.normal())
        self.sag = first_order(self.sag, SAG_V if "undervoltage" in self.active_faults else 0.0, SAG_TAU_S, dt)
        self.supply = RATED_VOLT + self.mains_drift - self.sag + 0.8 * self.normal()

        # Drive: V/f control; when the supply cannot give the voltage the speed needs, the
        # drive runs short of flux: the motor slips a little more (1 % at a 15 % sag) and needs
        # more current for the same torque.
        shortfall = max(RATED_VOLT * self.setpoint / RATED_RPM - self.supply, 0.0) / RATED_VOLT
        target = self.setpoint * (1.0 - 0.067 * shortfall)
        self.speed = ramp(self.speed, target, RAMP_RPM_S, dt)
        s = self.speed / RATED_RPM

        cav_age = self.fault_age("cavitation")
        self.cavitation = 0.0 if cav_age is None else min(cav_age / CAVITATION_ONSET_S, 1.0)
        c = self.cavitation
        head_factor = 1.0 - 0.18 * c
        blocked_age = self.fault_age("blocked_suction")
        blocked = 0.0 if blocked_age is None else min(blocked_age / BLOCKAGE_ONSET_S, 1.0)
        throttle_bar = BLOCKED_SUCTION_K * blocked  # per (m³/h)², on the suction side
        throttle_head = throttle_bar * 1e5 / (RHO * G)
        self.flow = first_order(self.flow, operating_flow(s, head_factor, throttle_head), FLOW_TAU_S, dt)
        self.head = pump_head(self.flow, s, head_factor)

        wear_age = self.fault_age("bearing_wear")
        wear = 0.0 if wear_age is None else min(wear_age / BEARING_WEAR_S, 1.0)

        # Pressures: suction side set by the expansion vessel, discharge = suction + ρgH.
        suction_loss = (SUCTION_K * (1.0 + 12.0 * c) + throttle_bar) * self.flow * self.flow
        self.p_suction = TANK_BAR - suction_loss + (0.005 + 0.06 * c) * self.normal()
        dp = RHO * G * self.head / 1e5
        self.p_discharge = self.p_suction + dp + (0.01 + 0.25 * c) * self.normal()
        self.flow_reading = max(self.flow + (0.15 + 2.0 * c) * self.normal(), 0.0)
        self.speed_reading = max(self.speed + 2.0 * self.normal(), 0.0) if self.speed > 0 else 0.0

        # Power chain: hydraulic -> shaft -> electrical -> current.
        hydraulic_kw = RHO * G * (self.flow / 3600.0) * self.head / 1000.0
        shaft_kw = hydraulic_kw / pump_efficiency(self.flow, s) + FRICTION_KW * s * (1.0 + 2.0 * wear)
        load = min(shaft_kw / MOTOR_RATED_KW, 1.2)
        electrical_kw = shaft_kw / (MOTOR_EFFICIENCY - 0.1 * (1.0 - min(load, 1.0)) ** 2)
        if s > 1e-3:
            u_motor = min(RATED_VOLT * s, self.supply)
            active = electrical_kw * 1000.0 / (math.sqrt(3.0) * u_motor)
            magnetising = MAGNETISING_A * u_motor / (RATED_VOLT * s)
            self.current = math.hypot(active, magnetising) * (1.0 + 0.005 * self.normal())
        else:
            self.current = 0.0

        misaligned = 1.0 if "misalignment" in self.active_faults else 0.0
        self.misalignment = first_order(self.misalignment, misaligned, MISALIGNMENT_TAU_S, dt)
        wear_factor = (1.0 + 4.0 * wear**1.5) * (1.0 + MISALIGNMENT_VIBRATION * self.misalignment)
        cav_vibration = 2.5 * c * (1.0 + 0.4 * abs(self.normal()))
        self.vibration = (0.2 + 1.0 * s) * wear_factor * (1.0 + 0.04 * self.normal()) + cav_vibration
        if s <= 1e-3:
            self.vibration = 0.02 * abs(self.normal())

        target_temp = AMBIENT_C + BEARING_RISE_K * s**1.5 * (1.0 + 1.2 * wear)
        self.bearing_temp = first_order(self.bearing_temp, target_temp, BEARING_TAU_S, dt)
        self.bearing_reading = self.bearing_temp + 0.03 * self.normal()

    def _values(self) -> dict[str, SimValue]:
        return {
            "speed": self.speed_reading,
            "speed_setpoint": self.setpoint,
            "flow": self.flow_reading,
            "suction_pressure": self.p_suction,
            "discharge_pressure": self.p_discharge,
            "vibration_rms": max(self.vibration, 0.0),
            "bearing_temperature": self.bearing_reading,
            "motor_current": self.current,
            "supply_voltage": self.supply,
        }

    def _apply_write(self, signal: str, value: float) -> None:
        if signal == "speed_setpoint":
            self.setpoint = value
