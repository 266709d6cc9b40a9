"""The demo machines' physics, setpoints and faults, driven directly (no servers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.core.tags import DataType
from hmi.sim.base import MachineSim, UnknownFault
from hmi.sim.cmm import ALPHA_PER_K, NOMINAL_MM, CoordinateMeasuringMachine
from hmi.sim.cnc import PROGRAM, CncMill
from hmi.sim.conveyor import Conveyor
from hmi.sim.plant import MACHINE_TYPES, Plant, parse_fault
from hmi.sim.pump import CentrifugalPump
from hmi.sim.robot import RobotArm


def run(machine: MachineSim, seconds: float, dt: float = 0.1) -> dict[str, np.ndarray]:
    """Step `machine` for `seconds` at `dt`, reading after each step: signal -> array of readings."""
    rows = []
    for _ in range(round(seconds / dt)):
        machine.step(dt)
        rows.append(machine.values())
    return {name: np.array([row[name] for row in rows]) for name in rows[0]}


def before_and_after(
    machine: MachineSim, fault: str, before_s: float, settle_s: float, after_s: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Readings for `before_s`, then (fault injected, `settle_s` skipped) for `after_s`."""
    before = run(machine, before_s)
    machine.inject_fault(fault)
    run(machine, settle_s)
    return before, run(machine, after_s)


def make(machine_id: str, seed: int = 1) -> MachineSim:
    return MACHINE_TYPES[machine_id](machine_id, seed)


# -- every machine ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine_id", "fault"),
    [(mid, fault) for mid, cls in MACHINE_TYPES.items() for fault in (None, *cls.faults)],
)
def test_readings_stay_typed_and_in_range(machine_id: str, fault: str | None) -> None:
    """Over 20 simulated minutes, with or without each fault, every reading has its declared type and
    lies inside its EURange, so clients can trust the range the server advertises."""
    machine = make(machine_id)
    if fault:
        machine.inject_fault(fault)
    data = run(machine, 1200, dt=0.5)
    for spec in machine.signals:
        values = data[spec.name]
        if spec.datatype == DataType.FLOAT:
            assert values.dtype == np.float64 and np.isfinite(values).all(), spec.name
        elif spec.datatype == DataType.INT:
            assert values.dtype.kind == "i", spec.name
        elif spec.datatype == DataType.BOOL:
            assert values.dtype == np.bool_, spec.name
        else:
            assert values.dtype.kind == "U", spec.name
        if spec.datatype in (DataType.FLOAT, DataType.INT):
            assert values.min() >= spec.low and values.max() <= spec.high, (spec.name, values.min(), values.max())


@pytest.mark.parametrize("machine_id", list(MACHINE_TYPES))
def test_same_seed_same_values_and_reset_restarts(machine_id: str) -> None:
    """Two machines with one seed produce identical readings; another seed differs; reset() starts over."""
    a, b, c = make(machine_id, 7), make(machine_id, 7), make(machine_id, 8)
    ra, rb, rc = run(a, 120), run(b, 120), run(c, 120)
    for name in ra:
        np.testing.assert_array_equal(ra[name], rb[name], err_msg=name)
    assert any(not np.array_equal(ra[n], rc[n]) for n in ra if ra[n].dtype == np.float64)
    a.inject_fault(next(iter(a.faults)))
    a.reset()
    assert a.t == 0 and not a.active_faults
    again = run(a, 120)
    for name in ra:
        np.testing.assert_array_equal(ra[name], again[name], err_msg=name)


def test_plant_values_do_not_depend_on_how_often_they_are_read() -> None:
    """Reading the plant (one protocol or two, any number of times) draws no random numbers."""
    quiet, busy = Plant(seed=3), Plant(seed=3)
    for _ in range(200):
        quiet.step(0.1)
        busy.step(0.1)
        for _ in range(3):
            busy.machines["cnc01"].values()
            busy.values()
    assert quiet.values() == busy.values()


@pytest.mark.parametrize("machine_id", list(MACHINE_TYPES))
def test_stuck_sensor_freezes_one_signal_until_cleared(machine_id: str) -> None:
    """stuck_sensor holds the machine's named sensor at its last reading while the physics goes on."""
    machine = make(machine_id)
    run(machine, 60)
    machine.inject_fault("stuck_sensor")
    stuck = run(machine, 120)
    name = machine.stuck_signal
    assert (stuck[name] == stuck[name][0]).all()
    assert machine.faults["stuck_sensor"].signals == (name,)
    machine.clear_fault("stuck_sensor")
    free = run(machine, 120)
    assert len(set(free[name].tolist())) > 10


@pytest.mark.parametrize("machine_id", list(MACHINE_TYPES))
def test_offline_fault_takes_the_machine_offline(machine_id: str) -> None:
    """The offline fault flips `online`, which the servers turn into bad quality and an offline status."""
    machine = make(machine_id)
    assert machine.online
    machine.inject_fault("offline")
    assert not machine.online
    machine.clear_fault("offline")
    assert machine.online


def test_faults_and_writes_say_what_is_wrong() -> None:
    """Unknown faults, unknown or read-only signals and out-of-range setpoints are refused with a reason."""
    pump = CentrifugalPump()
    with pytest.raises(UnknownFault, match="bearing_wear"):
        pump.inject_fault("tool_wear")
    with pytest.raises(KeyError, match="no signal"):
        pump.write("nonsense", 1)
    with pytest.raises(ValueError, match="not writable"):
        pump.write("flow", 10)
    with pytest.raises(ValueError, match="outside"):
        pump.write("speed_setpoint", 5000)
    with pytest.raises(ValueError, match="not a number"):
        pump.write("speed_setpoint", "fast")
    with pytest.raises(ValueError, match="not a number"):
        pump.write("speed_setpoint", True)
    with pytest.raises(ValueError, match="outside"):
        pump.write("speed_setpoint", math.nan)
    assert pump.write("speed_setpoint", "1500") == 1500.0


def test_every_fault_names_signals_the_machine_has() -> None:
    """Each fault's list of moved signals refers to real signals (docs and tests rely on it)."""
    for cls in MACHINE_TYPES.values():
        names = {s.name for s in cls.signals}
        assert {"stuck_sensor", "offline"} <= set(cls.faults)
        for fault in cls.faults.values():
            assert set(fault.signals) <= names
        for spec in cls.signals:
            assert spec.physics, f"{cls.kind}.{spec.name} has no physics line"


# -- fault schedule --------------------------------------------------------------------------


def test_fault_schedule_parses_times_ranges_and_clears() -> None:
    """Times take s, m or h; a range also clears; a leading '-' only clears; bad text is refused."""
    assert [(f.at_s, f.clear) for f in parse_fault("pump01.bearing_wear@300s")] == [(300.0, False)]
    assert [(f.at_s, f.clear) for f in parse_fault("pump01.cavitation@1m..1.5m")] == [(60.0, False), (90.0, True)]
    assert [(f.at_s, f.clear) for f in parse_fault("-cnc01.tool_wear@2h")] == [(7200.0, True)]
    assert parse_fault("cnc01.tool_wear@10")[0].at_s == 10.0
    for bad in ("pump01@300s", "pump01.bearing_wear", "pump01.cavitation@2m..1m", "-a.b@1s..2s", "X.y@1s"):
        with pytest.raises(ValueError):
            parse_fault(bad)


@given(start=st.integers(0, 10_000), length=st.integers(1, 10_000), unit=st.sampled_from(["s", "m", "h"]))
@settings(max_examples=50, deadline=None)
def test_fault_range_round_trip(start: int, length: int, unit: str) -> None:
    """Any START..END range parses to an injection at START and a clear at END, in seconds."""
    scale = {"s": 1, "m": 60, "h": 3600}[unit]
    inject, clear = parse_fault(f"robot01.gearbox_wear@{start}{unit}..{start + length}{unit}")
    assert (inject.at_s, inject.clear, clear.at_s, clear.clear) == (
        start * scale,
        False,
        (start + length) * scale,
        True,
    )


def test_plant_applies_the_schedule_in_simulated_time() -> None:
    """Scheduled faults start and stop at their simulated times and are announced as events."""
    events = []
    plant = Plant(["pump01"], faults=parse_fault("pump01.cavitation@2s..4s"))
    plant.add_listener(events.append)
    active = []
    for _ in range(60):
        plant.step(0.1)
        active.append("cavitation" in plant.machines["pump01"].active_faults)
    assert active.index(True) == 19 and active.index(False, 20) == 39
    assert [(e.kind, e.fault, e.origin) for e in events] == [
        ("fault_injected", "cavitation", "schedule"),
        ("fault_cleared", "cavitation", "schedule"),
    ]
    with pytest.raises(ValueError, match="unknown"):
        Plant(["pump01"], faults=parse_fault("pump01.tool_wear@1s"))
    with pytest.raises(ValueError, match="not simulated"):
        Plant(["pump01"], faults=parse_fault("cnc01.tool_wear@1s"))


# -- CNC mill --------------------------------------------------------------------------------


def test_cnc_tool_temperature_warms_up_monotonically() -> None:
    """From a cold start the tool temperature rises cycle after cycle, each rise smaller than the last
    (an exponential warm-up), towards an equilibrium well above ambient."""
    cycle_s = sum(d for _, d in PROGRAM)
    data = run(CncMill(), 20 * cycle_s)
    per_cycle = round(cycle_s / 0.1)
    means = data["tool_temperature"].reshape(-1, per_cycle).mean(axis=1)
    rises = np.diff(means)
    assert (rises > 0).all()
    assert (np.diff(rises[:8]) < 0).all()
    assert means[-1] > 50.0 and rises[-1] < 0.2


def test_cnc_feed_override_sets_the_feed_rate() -> None:
    """Halving feed_override halves how fast the tool moves along the raster while cutting."""

    def path_rate(override: float) -> float:
        mill = CncMill()
        mill.write("feed_override", override)
        while mill.phase != "cutting":
            mill.step(0.1)
        start = mill.path_mm
        mill.step(10.0)
        return (mill.path_mm - start) / 10.0

    full, half = path_rate(100.0), path_rate(50.0)
    assert full == pytest.approx(40.0, rel=0.02)  # 2400 mm/min
    assert half == pytest.approx(full / 2, rel=0.02)


def test_cnc_tool_wear_raises_vibration_with_time_in_cut() -> None:
    """With tool_wear, spindle vibration over a whole cycle roughly doubles after 15 minutes."""
    cycle_s = sum(d for _, d in PROGRAM)
    mill = CncMill()
    run(mill, cycle_s)
    before = run(mill, cycle_s)["vibration_spindle"].mean()
    mill.inject_fault("tool_wear")
    run(mill, 900, dt=0.5)
    after = run(mill, cycle_s)["vibration_spindle"].mean()
    assert after > 1.7 * before


# -- robot -----------------------------------------------------------------------------------


def test_robot_joint_1_oscillates_and_power_follows_movement() -> None:
    """Joint 1 swings ±60° once per 10 s cycle; power rises and falls with the joints' movement;
    vibration spikes twice a cycle (gripper actions)."""
    robot = RobotArm()
    data = run(robot, 60, dt=0.05)
    j1 = data["joint_1"]
    assert j1.max() == pytest.approx(60, abs=0.1) and j1.min() == pytest.approx(-60, abs=0.1)
    crossings = np.count_nonzero(np.diff(np.sign(j1)) != 0)
    assert 11 <= crossings <= 13  # two zero crossings per 10 s cycle
    movement = sum(np.abs(np.gradient(data[f"joint_{i}"], 0.05)) for i in range(1, 7))
    assert np.corrcoef(movement, data["power_consumption"])[0, 1] > 0.7
    spikes = data["vibration_level"] > 1.5
    rising = np.count_nonzero(spikes[1:] & ~spikes[:-1])
    assert 11 <= rising <= 13
    assert data["cycle_count"][-1] == 6


def test_robot_speed_override_slows_the_cycle_and_core_heats() -> None:
    """At 50 % speed override the arm completes half the cycles; the motor core warms over an hour."""
    robot = RobotArm()
    robot.write("speed_override", 50)
    data = run(robot, 3600, dt=0.5)
    assert data["cycle_count"][-1] == 180
    temp = data["temperature_core"]
    assert temp[-600:].mean() > temp[:60].mean() + 5


# -- conveyor --------------------------------------------------------------------------------


def test_conveyor_speed_setpoint_and_items() -> None:
    """The belt follows its setpoint; items are delivered at the upstream rate; halving the speed
    doubles the items on the belt and so raises the motor load."""
    conveyor = Conveyor()
    fast = run(conveyor, 600)
    conveyor.write("speed_setpoint", 0.5)
    run(conveyor, 120)
    slow = run(conveyor, 600)
    assert fast["belt_speed"].mean() == pytest.approx(1.0, rel=0.02)
    assert slow["belt_speed"].mean() == pytest.approx(0.5, rel=0.02)
    delivered = (fast["items_count"][-1] - fast["items_count"][0]) / 600
    assert delivered == pytest.approx(1.2, rel=0.15)
    assert slow["items_on_belt"].mean() == pytest.approx(2 * fast["items_on_belt"].mean(), rel=0.2)
    assert slow["motor_load"].mean() > fast["motor_load"].mean() + 20


def test_conveyor_belt_slip_slows_and_shakes_the_belt() -> None:
    """belt_slip drops the belt speed about 10 % below the drive and makes it jitter."""
    before, after = before_and_after(Conveyor(), "belt_slip", 60, 30, 60)
    assert after["belt_speed"].mean() < 0.92 * before["belt_speed"].mean()
    assert after["belt_speed"].std() > 5 * before["belt_speed"].std()
    assert after["motor_load"].mean() < before["motor_load"].mean()


# -- CMM -------------------------------------------------------------------------------------


def measurements(cmm: CoordinateMeasuringMachine, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(part temperature, measured length, part id) at each new measurement."""
    temps, lengths, parts = [], [], []
    last = cmm.values()["measurement_count"]
    for _ in range(round(seconds / 0.5)):
        cmm.step(0.5)
        v = cmm.values()
        if v["measurement_count"] != last:
            last = v["measurement_count"]
            temps.append(v["part_temperature"])
            lengths.append(v["measured_length"])
            parts.append(v["part_id"])
    return np.array(temps), np.array(lengths), np.array(parts)


def test_cmm_length_follows_part_temperature_with_slope_alpha_l() -> None:
    """Over half a shift, measured length against part temperature has slope α·L (2.36 µm/K) within the
    probe noise, and lengths corrected to 20 °C scatter only by that noise (0.4 µm)."""
    temps, lengths, parts = measurements(CoordinateMeasuringMachine(), 4 * 3600)
    assert np.ptp(temps) > 4.0  # parts arrive warm and cool on the table: a real spread
    slope, _ = np.polyfit(temps, lengths, 1)
    assert slope == pytest.approx(ALPHA_PER_K * NOMINAL_MM, rel=0.02)
    corrected = lengths / (1 + ALPHA_PER_K * (temps - 20.0))
    assert abs(corrected.mean() - NOMINAL_MM) < 0.0001
    assert corrected.std() < 0.0006
    # A measurement every 4 s; 13 per part, a part a minute.
    assert len(temps) == pytest.approx(4 * 3600 / 60 * 13, rel=0.01)
    assert np.bincount(parts)[2:-1].max() == 13


def test_cmm_room_drifts_over_the_shift_and_hvac_failure_warms_it() -> None:
    """The room follows the shift (within 20 ± 1 °C) until hvac_failure lets it drift to shop temperature."""
    cmm = CoordinateMeasuringMachine()
    shift = run(cmm, 8 * 3600, dt=5.0)["room_temperature"]
    assert 19.0 < shift.min() < 19.8 and 20.2 < shift.max() < 21.0
    cmm.inject_fault("hvac_failure")
    failed = run(cmm, 2 * 3600, dt=5.0)
    assert failed["room_temperature"][-1] > shift.max() + 0.5
    assert failed["length_deviation"][-100:].mean() > 2.0


# -- pump ------------------------------------------------------------------------------------


def steady(pump: CentrifugalPump, seconds: float = 10.0) -> dict[str, float]:
    data = run(pump, seconds)
    return {name: float(values.mean()) for name, values in data.items()}


def test_pump_follows_the_affinity_laws() -> None:
    """After a speed change flow scales with n and the pressure rise with n² (closed loop, no static head)."""
    pump = CentrifugalPump()
    a = steady(pump)
    pump.write("speed_setpoint", 1950)
    run(pump, 10)
    b = steady(pump)
    ratio = b["speed"] / a["speed"]
    assert ratio == pytest.approx(1950 / 2950, rel=0.005)
    assert b["flow"] / a["flow"] == pytest.approx(ratio, rel=0.01)
    dp_a = a["discharge_pressure"] - a["suction_pressure"]
    dp_b = b["discharge_pressure"] - b["suction_pressure"]
    assert dp_b / dp_a == pytest.approx(ratio**2, rel=0.01)
    assert b["motor_current"] < a["motor_current"]


def test_pump_bearing_wear_triples_vibration_within_ten_minutes() -> None:
    """bearing_wear raises vibration_rms above 3× its healthy level within 600 simulated seconds and
    warms the bearing."""
    pump = CentrifugalPump()
    healthy = steady(pump, 30)
    pump.inject_fault("bearing_wear")
    worn = run(pump, 600)
    assert worn["vibration_rms"][-100:].mean() > 3 * healthy["vibration_rms"]
    assert worn["vibration_rms"][:100].mean() < 1.3 * healthy["vibration_rms"]  # it develops slowly
    assert worn["bearing_temperature"][-1] > healthy["bearing_temperature"] + 5


def test_pump_cavitation_makes_pressure_noisy_and_flow_drop() -> None:
    """cavitation: discharge pressure noise grows tenfold, flow drops ~10 %, suction pressure falls."""
    healthy, sick = before_and_after(CentrifugalPump(), "cavitation", 20, 40, 20)
    assert sick["discharge_pressure"].std() > 10 * healthy["discharge_pressure"].std()
    assert sick["flow"].mean() < 0.93 * healthy["flow"].mean()
    assert sick["suction_pressure"].mean() < healthy["suction_pressure"].mean() - 1.0
    assert sick["vibration_rms"].mean() > 2 * healthy["vibration_rms"].mean()


def test_pump_undervoltage_raises_current() -> None:
    """undervoltage: the supply sags to about 340 V and the motor draws more current for the same duty."""
    pump = CentrifugalPump()
    healthy = steady(pump, 20)
    pump.inject_fault("undervoltage")
    run(pump, 20)
    sagged = steady(pump, 20)
    assert sagged["supply_voltage"] == pytest.approx(340, abs=8)
    assert sagged["motor_current"] > 1.05 * healthy["motor_current"]
    assert sagged["speed"] < healthy["speed"]
