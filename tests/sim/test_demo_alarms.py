"""The demo plant and the demo project's alarms fit each other: a healthy shift raises no
alarm (no nuisance alarms, ISA-18.2), and each fault raises the alarm an operator needs."""

from __future__ import annotations

import pytest

from hmi.config import load_project
from hmi.config.alarms import alarm_definitions, alarm_settings
from hmi.core.alarms import AlarmEngine
from hmi.core.alarms.model import Cause
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry
from hmi.sim.plant import Plant, parse_fault
from tests.helpers import DEMO_PROJECT

T0_NS = 1_800_000_000_000_000_000
STEP_S = 1.0


def run(seconds: float, faults: list[str] = (), seed: int = 1) -> dict[str, float]:
    """Drive the simulated plant through the demo's alarm engine; first activation time per alarm."""
    project = load_project(DEMO_PROJECT)
    registry = TagRegistry(project.tag_specs())
    engine = AlarmEngine(alarm_definitions(project), registry, alarm_settings(project))
    plant = Plant(seed=seed, faults=[f for text in faults for f in parse_fault(text)])
    signals = [
        (machine_id, spec.name, registry.id_of(f"{machine_id}.{spec.name}"))
        for machine_id, machine in plant.machines.items()
        for spec in machine.signals
        if f"{machine_id}.{spec.name}" in registry
    ]
    activated: dict[str, float] = {}
    for _ in range(int(seconds / STEP_S)):
        plant.step(STEP_S)
        values = plant.values()
        ids, numbers = [], []
        for machine_id, signal, tag_id in signals:
            value = values[machine_id][signal]
            if isinstance(value, int | float):
                ids.append(tag_id)
                numbers.append(float(value))
        ts = T0_NS + int(plant.t * 1e9)
        for record in engine.evaluate(SampleBatch.from_arrays(ids, ts, numbers)) + engine.tick(ts):
            if getattr(record, "cause", None) == Cause.ACTIVATED:
                activated.setdefault(record.alarm, plant.t)
    return activated


def test_a_healthy_eight_hour_shift_raises_no_alarm() -> None:
    """Eight simulated hours of all five machines: not one alarm (every alarm must need an action)."""
    assert run(8 * 3600) == {}


@pytest.mark.parametrize(
    ("fault", "alarm", "within_s"),
    [
        ("pump01.cavitation", "pump01.suction_pressure.lo", 60),
        ("pump01.bearing_wear", "pump01.vibration_rms.hi", 600),
        ("pump01.undervoltage", "pump01.supply_voltage.lo", 30),
        ("conveyor01.belt_slip", "conveyor01.belt_speed.deviation", 60),
        ("cmm01.hvac_failure", "cmm01.room_temperature.hi", 1800),
        ("cnc01.tool_wear", "cnc01.vibration_spindle.hi", 1800),
    ],
)
def test_each_fault_raises_its_alarm(fault: str, alarm: str, within_s: float) -> None:
    """The fault, injected after a minute, raises the alarm that points the operator at it, in time."""
    activated = run(60 + within_s + 60, [f"{fault}@60s"])
    assert alarm in activated, f"{alarm} not raised by {fault}: {activated}"
    assert activated[alarm] - 60 <= within_s
