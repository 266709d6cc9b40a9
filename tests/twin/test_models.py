"""The twin's models against the simulated machines, stepped in-process many times faster than
real time: faults flagged with the right probable cause in the stated time, healthy running
left alone, the CMM's length held at nominal, and the building blocks on their own."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.core.bus import TagBus
from hmi.core.materials import MATERIALS
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.twin.baseline import RegimeBaselines
from hmi.twin.bins import Binner
from hmi.twin.cmm import compensate
from hmi.twin.rules import Diagnoser, rule
from hmi.twin.service import TwinService
from tests.twin.campaign import FAULTS, healthy_shift, inject
from tests.twin.feed import START_NS, PlantFeed, demo_project

# -- the simulated faults ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("seed", [0, 7])
def test_fault_is_flagged_with_its_cause_in_time(fault: str, seed: int) -> None:
    """An injected fault raises the advisory of its own cause within the stated time, and no other."""
    result = inject(fault, seed)
    limit = FAULTS[fault][2]
    assert result.detected_after_s is not None, f"{fault} not flagged within {limit:g} s"
    assert result.detected_after_s <= limit
    assert result.wrong == ()


@pytest.mark.soak
@pytest.mark.parametrize("fault", list(FAULTS))
def test_recall_over_twenty_seeded_injections(fault: str) -> None:
    """Done means: at least 19 of 20 seeded injections flagged with the right cause in time."""
    results = [inject(fault, seed) for seed in range(20)]
    assert sum(r.hit for r in results) >= 19, [(r.seed, r.detected_after_s, r.wrong) for r in results]


def test_healthy_pump_with_speed_changes_raises_nothing() -> None:
    """Forty healthy minutes with the operator changing the speed twice (new regimes learned) raise no advisory."""
    assert healthy_shift("pump01", seed=5, seconds=2400) == []


def test_healthy_cnc_half_hour_raises_nothing() -> None:
    """Half an hour of healthy milling raises no tool or spindle advisory."""
    assert healthy_shift("cnc01", seed=5, seconds=1800) == []


@pytest.mark.soak
@pytest.mark.parametrize("machine", ["pump01", "cnc01", "cmm01"])
def test_healthy_eight_hour_shift(machine: str) -> None:
    """Done means: at most one false advisory per machine in a simulated 8-hour healthy shift."""
    assert len(healthy_shift(machine, seed=11)) <= 1


def test_misalignment_step_is_told_from_bearing_wear() -> None:
    """A vibration step that neither grows nor heats the bearing (faked: the sim has no such fault)
    is diagnosed as misalignment after its longer persistence, not as bearing wear."""

    def step(machine: str, t: float, values: dict) -> None:
        if t > 400:
            values["vibration_rms"] *= 1.4

    feed = PlantFeed.demo("pump01", seed=3, tamper=step)
    feed.run(800)
    found = feed.first("pump01.advisory.misalignment")
    assert found is not None and 400 + 300 <= found <= 400 + 420
    assert [r.advisory for r in feed.raised] == ["pump01.advisory.misalignment"]


def test_blocked_suction_without_cavitation_signs() -> None:
    """Suction pressure and flow falling without noise or vibration (a clogging strainer before
    cavitation, faked) is diagnosed as blocked suction, not cavitation."""

    def clog(machine: str, t: float, values: dict) -> None:
        c = min(max((t - 400) / 20, 0.0), 1.0)
        values["suction_pressure"] -= 0.4 * c
        values["discharge_pressure"] -= 0.4 * c
        values["flow"] *= 1 - 0.08 * c

    feed = PlantFeed.demo("pump01", seed=4, tamper=clog)
    feed.run(500)
    assert [r.advisory for r in feed.raised] == ["pump01.advisory.blocked_suction"]


def test_undervoltage_recommends_a_speed_the_sagging_supply_can_drive() -> None:
    """The undervoltage advisory recommends the speed at which the drive's V/f fits 340 V (never sent)."""
    feed = PlantFeed.demo("pump01", seed=2)
    feed.run(300)
    feed.machines["pump01"].inject_fault("undervoltage")
    feed.run(40)
    pump = next(m for m in feed.twin.models if m.machine == "pump01")
    finding = pump.findings["pump01.advisory.undervoltage"]
    assert finding.command is not None and finding.command.tag == "pump01.speed_setpoint"
    assert 2350 <= finding.command.value <= 2450  # 2950 rpm × 340/400 × 0.97, in 50 rpm steps
    assert any("supply" in line for line in finding.evidence)
    assert feed.machines["pump01"].setpoint == 2950  # the twin only recommends


def test_tool_wear_indicator_grows_with_time_in_cut_and_warns_before_the_limit() -> None:
    """With a wearing tool the indicator rises with time in cut, the warning comes before the limit,
    and it says how much cutting is left."""
    feed = PlantFeed.demo("cnc01", seed=1)
    feed.run(300)
    feed.machines["cnc01"].inject_fault("tool_wear")
    wear: list[float] = []
    for _ in range(8):
        feed.run(82)
        wear.append(feed.latest("cnc01.tool_wear"))
    assert wear[-1] > wear[0] + 0.2
    cnc = next(m for m in feed.twin.models if m.machine == "cnc01")
    finding = cnc.findings["cnc01.advisory.tool_wear"]
    assert finding.details["tool_wear"] < 0.6  # warned before the configured limit
    assert any("left at the present wear rate" in line for line in finding.evidence)
    assert finding.command is not None and finding.command.value == 80.0


# -- CMM thermal compensation -------------------------------------------------------------------


def test_cmm_compensated_length_stays_at_nominal_through_a_shift() -> None:
    """Over an 8-hour shift the raw length drifts by more than 10 µm while the compensated one stays
    within ±2 µm of nominal; parts failed raw are counted as false failures avoided."""
    feed = PlantFeed.demo("cmm01", seed=1, rate_hz=2.0)
    raw: list[float] = []
    comp: list[float] = []

    def sample(f: PlantFeed) -> None:
        raw.append(f.latest("cmm01.length_deviation"))
        comp.append(f.latest("cmm01.length_compensated_deviation"))

    feed.run(8 * 3600, sample)
    assert np.nanmax(np.abs(raw)) > 10.0
    assert np.nanmax(np.abs(comp)) <= 2.0
    assert feed.latest("cmm01.parts_judged") >= 470
    assert feed.latest("cmm01.false_failures_avoided") == feed.latest("cmm01.parts_failed_raw") > 0
    assert feed.latest("cmm01.parts_failed_compensated") == 0
    assert 0.5 < feed.latest("cmm01.length_compensated_uncertainty") < 2.0


@given(
    st.sampled_from(sorted(MATERIALS)),
    st.floats(10.0, 40.0),
    st.floats(1.0, 1000.0),
)
def test_compensation_undoes_thermal_expansion(material: str, temperature: float, length20: float) -> None:
    """L20 = L / (1 + α(T − 20)) recovers the 20 °C length of a part expanded by α at T."""
    alpha = MATERIALS[material].alpha_per_k
    measured = np.array([length20 * (1 + alpha * (temperature - 20.0))])
    l20, _ = compensate(measured, np.array([temperature]), alpha)
    assert l20[0] == pytest.approx(length20, rel=1e-12)


def test_uncertainty_matches_a_numerical_propagation() -> None:
    """The analytic uncertainty equals the root sum of squares of numerically differentiated contributions."""
    length, temperature, alpha = 100.012, 24.0, 23.6e-6
    u_t, u_a, u_l = 0.1, 0.5e-6, 0.0004
    _, u = compensate(np.array([length]), np.array([temperature]), alpha, u_a, u_t, u_l)

    def l20(L: float, T: float, a: float) -> float:
        return L / (1 + a * (T - 20.0))

    h = 1e-6
    parts = [
        (l20(length, temperature + h, alpha) - l20(length, temperature - h, alpha)) / (2 * h) * u_t,
        (l20(length, temperature, alpha + 1e-9) - l20(length, temperature, alpha - 1e-9)) / 2e-9 * u_a,
        (l20(length + h, temperature, alpha) - l20(length - h, temperature, alpha)) / (2 * h) * u_l,
    ]
    assert u[0] == pytest.approx(math.sqrt(sum(p * p for p in parts)), rel=1e-5)


# -- building blocks -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=12), st.integers(0, 2**32 - 1))
def test_bins_do_not_depend_on_how_samples_are_batched(cuts: list[int], seed: int) -> None:
    """Splitting the same samples into other batches gives the same closed bins, equal to numpy's statistics."""
    rng = np.random.default_rng(seed)
    n = 200
    ts = np.sort(rng.integers(0, 20 * 10**9, n))
    role = rng.integers(0, 3, n).astype(np.int32)
    values = rng.normal(5.0, 1.0, n)
    whole = Binner(3, 1.0).add(role, ts, values)
    split = Binner(3, 1.0)
    pieces = []
    start = 0
    for cut in cuts * 40:
        if start >= n:
            break
        pieces.extend(split.add(role[start : start + cut], ts[start : start + cut], values[start : start + cut]))
        start += cut
    if start < n:
        pieces.extend(split.add(role[start:], ts[start:], values[start:]))
    assert [b.start_ns for b in pieces] == [b.start_ns for b in whole]
    for a, b in zip(pieces, whole, strict=True):
        np.testing.assert_allclose(a.mean, b.mean)
        np.testing.assert_allclose(a.min, b.min)
        np.testing.assert_allclose(a.last, b.last)
        in_bin = (ts >= b.start_ns) & (ts < b.end_ns)
        for r in range(3):
            rows = in_bin & (role == r)
            if rows.sum() >= 3:
                assert b.std[r] == pytest.approx(values[rows].std(ddof=1), rel=1e-9)
            if rows.any():
                assert b.mean[r] == pytest.approx(values[rows].mean(), rel=1e-12)


def test_baseline_learns_median_and_mad_then_judges() -> None:
    """After learning, the centre is the median and the spread 1.4826 MAD; outliers in learning barely move them."""
    baselines = RegimeBaselines(1, 101, np.array([1e-9]), np.array([0.0]), adapt_tau_s=1e9)
    rng = np.random.default_rng(1)
    data = rng.normal(10.0, 0.5, 101)
    data[:5] = 1000.0  # a few wild values
    for x in data:
        assert baselines.observe(1, np.array([x]), 1.0, hold=False) is None or x == data[-1]
    b = baselines.get(1)
    assert b.center[0] == pytest.approx(np.median(data))
    assert b.spread[0] == pytest.approx(1.4826 * np.median(np.abs(data - np.median(data))))
    assert 0.4 < b.spread[0] < 0.6
    z = baselines.observe(1, np.array([13.0]), 1.0, hold=False)
    assert z is not None and 5 < z[0] < 7.5


def test_diagnoser_raises_after_on_delay_and_clears_after_off_delay() -> None:
    """A rule raises after its on-delay, is blocked by its counter-symptoms and clears after its off-delay."""
    r = rule("x", "X", all_of=("a",), none_of=("b",), on_delay_s=10, off_delay_s=20)
    d = Diagnoser((r,))
    s = 10**9
    assert d.update(0, {"a"}) == ([], [])
    assert d.update(9 * s, {"a"}) == ([], [])
    assert d.update(10 * s, {"a"}) == ([r], [])
    assert d.update(11 * s, {"a", "b"}) == ([], [])
    assert d.update(29 * s, set()) == ([], [])  # last matched at 10 s
    assert d.update(30 * s, set()) == ([], [r])


def test_lost_input_turns_derived_tags_comm_lost_and_a_failing_model_does_not_stop_the_bus() -> None:
    """When an input's source is gone the model's derived tags say so; a model that raises is counted, not fatal."""
    project = demo_project()
    bus = TagBus()
    bus.register(project.tag_specs())
    twin = TwinService.from_project(project, bus)
    feed = PlantFeed(project, {}, bus=bus, own_twin=False)
    del feed
    flow = bus.registry.id_of("pump01.flow")
    bus.publish(SampleBatch.from_arrays([flow], [START_NS], [float("nan")], Quality.COMM_LOST))
    latest = bus.latest("pump01.residual_flow")
    assert latest is not None and latest.quality == Quality.COMM_LOST
    pump = next(m for m in twin.models if m.machine == "pump01")

    def broken(*args: object) -> None:
        raise RuntimeError("model bug")

    pump.process = broken  # type: ignore[method-assign]
    bus.publish(SampleBatch.from_arrays([flow], [START_NS + 1], [55.0]))
    twin.flush()  # the service hands rows over every 0.25 s of sample time
    assert twin.errors == 1 and pump.errors == 1
    assert bus.latest("pump01.flow") is not None
