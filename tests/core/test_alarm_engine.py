"""The alarm engine walked like a shift: values rise and fall, the operator acknowledges,
shelves and resets, time passes; state and annunciation are checked after every step."""

from __future__ import annotations

import numpy as np
import pytest

from hmi.core.alarms import (
    AlarmCommandError,
    AlarmDefinition,
    AlarmEngine,
    AlarmSettings,
    AlarmTransition,
    Cause,
    Condition,
    FloodChange,
    Mode,
    Priority,
)
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec

S = 1_000_000_000
TAGS = [
    TagSpec("cnc01.tool_temperature", unit="°C"),
    TagSpec("cnc01.spindle_speed", unit="rpm"),
    TagSpec("cnc01.axis_x", unit="mm"),
    TagSpec("cnc01.axis_x_setpoint", unit="mm"),
    TagSpec("cnc01.door_open"),
    TagSpec("pump01.pressure", unit="bar"),
    TagSpec("pump01.mode"),
]


def temp_hi(**kw: object) -> AlarmDefinition:
    base = {
        "name": "cnc01.tool_temperature.hi",
        "tag": "cnc01.tool_temperature",
        "condition": Condition.HI,
        "priority": Priority.HIGH,
        "limit": 80.0,
        "deadband": 2.0,
        "unit": "°C",
        "message": "Tool temperature high: {value:.1f} {unit}",
    }
    base.update(kw)
    return AlarmDefinition(**base)  # type: ignore[arg-type]


def temp_hihi(**kw: object) -> AlarmDefinition:
    return temp_hi(name="cnc01.tool_temperature.hihi", condition=Condition.HIHI, priority=Priority.URGENT,
                   limit=90.0, message="", **kw)  # fmt: skip


class Shift:
    """An engine with a clock: `at(t)` moves time (seconds), `feed(tag, value)` sends a sample."""

    def __init__(self, definitions: list[AlarmDefinition], settings: AlarmSettings | None = None) -> None:
        self.registry = TagRegistry(TAGS)
        self.engine = AlarmEngine(definitions, self.registry, settings)
        self.t = 0.0
        self.records: list[AlarmTransition | FloodChange] = []

    def at(self, t: float) -> Shift:
        self.t = t
        self.records += self.engine.tick(int(t * S))
        return self

    def feed(self, tag: str, value: float, quality: Quality = Quality.GOOD) -> list[AlarmTransition | FloodChange]:
        batch = SampleBatch.from_arrays([self.registry.id_of(tag)], [int(self.t * S)], [value], quality)
        out = self.engine.evaluate(batch)
        self.records += out
        return out

    def state(self, name: str) -> str:
        return self.engine.status(name).state

    def ack(self, name: str, comment: str = "") -> list[AlarmTransition | FloodChange]:
        out = self.engine.acknowledge(name, "olga", int(self.t * S), comment)
        self.records += out
        return out


def test_high_higher_ack_lower_normal() -> None:
    """The classic shift: HI then HIHI annunciate, ack both, falling back clears HIHI then HI through the deadband."""
    shift = Shift([temp_hi(), temp_hihi()])
    hi, hihi = "cnc01.tool_temperature.hi", "cnc01.tool_temperature.hihi"
    assert shift.at(1).feed("cnc01.tool_temperature", 60) == []
    [t] = shift.at(2).feed("cnc01.tool_temperature", 85)
    assert (t.alarm, t.cause, t.to_state, t.annunciate) == (hi, Cause.ACTIVATED, "UNACK_ACTIVE", True)
    assert t.message == "Tool temperature high: 85.0 °C"
    assert t.to_event().details["value"] == 85.0
    [t] = shift.at(3).feed("cnc01.tool_temperature", 95)
    assert (t.alarm, t.to_state, t.priority) == (hihi, "UNACK_ACTIVE", Priority.URGENT)
    assert shift.state(hi) == "UNACK_ACTIVE"
    shift.at(4)
    [a1] = shift.ack(hi)
    [a2] = shift.ack(hihi, "checked coolant")
    assert (a1.cause, a1.to_state, a1.user, a1.annunciate) == (Cause.ACKNOWLEDGED, "ACK_ACTIVE", "olga", False)
    assert a2.comment == "checked coolant"
    assert shift.at(5).feed("cnc01.tool_temperature", 89) == []  # inside the HIHI deadband (88..90)
    [t] = shift.at(6).feed("cnc01.tool_temperature", 87.9)
    assert (t.alarm, t.from_state, t.to_state) == (hihi, "ACK_ACTIVE", "NORMAL")
    assert shift.at(7).feed("cnc01.tool_temperature", 78.5) == []  # inside the HI deadband
    [t] = shift.at(8).feed("cnc01.tool_temperature", 77)
    assert (t.alarm, t.to_state) == (hi, "NORMAL")
    assert shift.engine.unacknowledged() == 0


def test_return_to_normal_unacknowledged_needs_ack() -> None:
    """An alarm that clears before anyone acknowledged it waits in UNACK_RTN until acknowledged."""
    shift = Shift([temp_hi()])
    name = "cnc01.tool_temperature.hi"
    shift.at(1).feed("cnc01.tool_temperature", 85)
    [t] = shift.at(2).feed("cnc01.tool_temperature", 70)
    assert t.to_state == "UNACK_RTN" and not t.annunciate
    [t] = shift.at(3).feed("cnc01.tool_temperature", 86)
    assert t.to_state == "UNACK_ACTIVE"
    shift.at(4).feed("cnc01.tool_temperature", 70)
    [t] = shift.ack(name)
    assert (t.from_state, t.to_state) == ("UNACK_RTN", "NORMAL")
    with pytest.raises(AlarmCommandError, match="already acknowledged"):
        shift.ack(name)


def test_low_and_lolo_with_deadband() -> None:
    """LO alarms trip below the limit and clear only above limit + deadband."""
    lo = AlarmDefinition(
        "pump01.pressure.lo", "pump01.pressure", Condition.LO, Priority.MEDIUM, limit=2.0, deadband=0.5
    )
    shift = Shift([lo])
    assert shift.at(1).feed("pump01.pressure", 2.0) == []
    [t] = shift.at(2).feed("pump01.pressure", 1.9)
    assert t.to_state == "UNACK_ACTIVE"
    assert shift.at(3).feed("pump01.pressure", 2.4) == []
    [t] = shift.at(4).feed("pump01.pressure", 2.5)
    assert t.to_state == "UNACK_RTN"


def test_on_delay_fires_with_time_alone_and_a_short_excursion_never_alarms() -> None:
    """With a 2 s on-delay a 1 s excursion is ignored; a held one alarms at onset + 2 s, found by tick."""
    shift = Shift([temp_hi(on_delay_s=2.0, off_delay_s=1.0)])
    shift.at(10).feed("cnc01.tool_temperature", 85)
    shift.at(11).feed("cnc01.tool_temperature", 70)
    assert shift.at(20).records == []
    shift.at(30).feed("cnc01.tool_temperature", 85)
    assert shift.at(31.9).records == []
    shift.at(32.5)
    [t] = shift.records
    assert t.ts_ns == 32 * S and t.to_state == "UNACK_ACTIVE"
    shift.at(40).feed("cnc01.tool_temperature", 70)  # off-delay 1 s
    assert len(shift.records) == 1
    shift.at(41)
    assert shift.records[-1].to_state == "UNACK_RTN" and shift.records[-1].ts_ns == 41 * S


def test_bad_quality_holds_value_alarms_and_raises_the_quality_alarm() -> None:
    """A COMM_LOST sample neither raises nor clears a limit alarm; the comm-loss alarm catches it."""
    comm = AlarmDefinition("cnc01.tool_temperature.comm_loss", "cnc01.tool_temperature", Condition.COMM_LOSS)
    shift = Shift([temp_hi(), comm])
    shift.at(1).feed("cnc01.tool_temperature", 85)
    [t] = shift.at(2).feed("cnc01.tool_temperature", 20, Quality.COMM_LOST)
    assert t.alarm == comm.name and t.to_state == "UNACK_ACTIVE"
    assert shift.state("cnc01.tool_temperature.hi") == "UNACK_ACTIVE"
    out = shift.at(3).feed("cnc01.tool_temperature", 20)
    assert sorted(t.alarm for t in out) == [comm.name, "cnc01.tool_temperature.hi"]
    assert shift.state("cnc01.tool_temperature.hi") == "UNACK_RTN"
    assert shift.state(comm.name) == "UNACK_RTN"


def test_deviation_from_setpoint_tag() -> None:
    """The axis deviates when |position - setpoint| exceeds the limit; a moved setpoint counts too."""
    dev = AlarmDefinition("cnc01.axis_x.deviation", "cnc01.axis_x", Condition.DEVIATION, Priority.HIGH, limit=0.5,
                          deadband=0.1, setpoint_tag="cnc01.axis_x_setpoint")  # fmt: skip
    shift = Shift([dev])
    shift.at(1).feed("cnc01.axis_x_setpoint", 100.0)
    assert shift.at(2).feed("cnc01.axis_x", 100.3) == []
    [t] = shift.at(3).feed("cnc01.axis_x", 100.7)
    assert t.to_state == "UNACK_ACTIVE" and t.value == pytest.approx(100.7)
    [t] = shift.at(4).feed("cnc01.axis_x_setpoint", 100.6)  # the setpoint followed: back within limits
    assert t.to_state == "UNACK_RTN"


def test_rate_of_change_over_a_period() -> None:
    """A rise of more than 5 °C/s measured over 1 s alarms; a slow rise does not. The value is
    the temperature; the message gives the rate."""
    rate = AlarmDefinition("cnc01.tool_temperature.rate", "cnc01.tool_temperature", Condition.RATE, limit=5.0,
                           rate_period_s=1.0, direction="rise", unit="°C")  # fmt: skip
    shift = Shift([rate])
    for i in range(10):
        assert shift.at(i * 0.5).feed("cnc01.tool_temperature", 20 + i) == []  # 2 °C/s
    out = shift.at(5.0).feed("cnc01.tool_temperature", 40)  # +11 °C in 0.5 s, 13 over the last second
    assert [t.to_state for t in out] == ["UNACK_ACTIVE"]
    assert out[0].value == pytest.approx(40.0)
    assert out[0].message == "cnc01.tool_temperature changing too fast: +12 °C/s (limit 5 °C/s)"  # (40 - 28) / 1 s


def test_discrete_state_alarm() -> None:
    """A discrete alarm is active while the value is one of its states (enumerated modes here)."""
    fault = AlarmDefinition("pump01.mode.discrete", "pump01.mode", Condition.DISCRETE, states=(3.0, 4.0))
    shift = Shift([fault])
    assert shift.at(1).feed("pump01.mode", 1) == []
    assert [t.to_state for t in shift.at(2).feed("pump01.mode", 3)] == ["UNACK_ACTIVE"]
    assert shift.at(3).feed("pump01.mode", 4) == []
    assert [t.to_state for t in shift.at(4).feed("pump01.mode", 0)] == ["UNACK_RTN"]


def test_shelved_alarm_is_evaluated_not_annunciated_and_returns_unacknowledged() -> None:
    """While shelved the alarm records its changes silently; still active at expiry it comes back unacknowledged."""
    shift = Shift([temp_hi()], AlarmSettings(max_shelve_s=3600))
    name = "cnc01.tool_temperature.hi"
    shift.at(1).feed("cnc01.tool_temperature", 85)
    shift.ack(name)
    with pytest.raises(AlarmCommandError, match="up to 1 h"):
        shift.engine.shelve(name, "olga", 2 * S, 7200, "sensor being replaced")
    with pytest.raises(AlarmCommandError, match="reason"):
        shift.engine.shelve(name, "olga", 2 * S, 600, " ")
    [t] = shift.engine.shelve(name, "olga", 2 * S, 600, "sensor being replaced")
    assert (t.to_state, t.mode, t.reason, t.shelved_until_ns) == (
        "SHELVED",
        Mode.SHELVED,
        "sensor being replaced",
        602 * S,
    )
    [t] = shift.at(100).feed("cnc01.tool_temperature", 70)
    assert (t.cause, t.to_state, t.annunciate) == (Cause.CLEARED, "SHELVED", False)
    [t] = shift.at(200).feed("cnc01.tool_temperature", 88)
    assert (t.cause, t.to_state, t.annunciate) == (Cause.ACTIVATED, "SHELVED", False)
    with pytest.raises(AlarmCommandError, match="shelved"):
        shift.ack(name)
    shift.at(601)
    assert shift.state(name) == "SHELVED"
    shift.at(602)
    t = shift.records[-1]
    assert (t.cause, t.to_state, t.annunciate, t.ts_ns) == (Cause.SHELF_EXPIRED, "UNACK_ACTIVE", True, 602 * S)


def test_suppressed_by_design_when_the_machine_stops() -> None:
    """A stopped spindle suppresses the temperature alarm; running again with the condition active re-annunciates."""
    shift = Shift([temp_hi(suppress_when="cnc01.spindle_speed < 10")])
    name = "cnc01.tool_temperature.hi"
    shift.at(1).feed("cnc01.spindle_speed", 0)
    assert shift.state(name) == "SUPPRESSED"
    [t] = shift.at(2).feed("cnc01.tool_temperature", 90)
    assert (t.to_state, t.annunciate) == ("SUPPRESSED", False)
    [t] = shift.at(3).feed("cnc01.spindle_speed", 12000)
    assert (t.cause, t.to_state, t.annunciate) == (Cause.UNSUPPRESSED, "UNACK_ACTIVE", True)


def test_out_of_service_and_back() -> None:
    """Out of service needs a reason, silences the alarm, and returning while active brings it back unacknowledged."""
    shift = Shift([temp_hi()])
    name = "cnc01.tool_temperature.hi"
    with pytest.raises(AlarmCommandError, match="reason"):
        shift.engine.set_out_of_service(name, "eng", S, True, "")
    [t] = shift.engine.set_out_of_service(name, "eng", S, True, "transmitter removed for calibration")
    assert t.to_state == "OUT_OF_SERVICE" and t.user == "eng"
    [t] = shift.at(2).feed("cnc01.tool_temperature", 95)
    assert not t.annunciate
    [t] = shift.engine.set_out_of_service(name, "eng", 3 * S, False)
    assert (t.to_state, t.annunciate) == ("UNACK_ACTIVE", True)


def test_latched_alarm_holds_until_reset() -> None:
    """A latching alarm stays active after its condition clears until acknowledged and reset."""
    shift = Shift([temp_hi(latching=True)])
    name = "cnc01.tool_temperature.hi"
    shift.at(1).feed("cnc01.tool_temperature", 85)
    [t] = shift.at(2).feed("cnc01.tool_temperature", 60)
    assert (t.to_state, t.latched) == ("UNACK_ACTIVE", True)
    with pytest.raises(AlarmCommandError, match="acknowledged before"):
        shift.engine.reset(name, "olga", 3 * S)
    [t] = shift.ack(name)
    assert t.to_state == "ACK_ACTIVE"
    [t] = shift.engine.reset(name, "olga", 4 * S)
    assert (t.cause, t.to_state) == (Cause.RESET, "NORMAL")


def test_comment_required_on_acknowledge() -> None:
    """An alarm configured so needs a comment to be acknowledged."""
    shift = Shift([temp_hi(comment_required=True)])
    shift.at(1).feed("cnc01.tool_temperature", 85)
    with pytest.raises(AlarmCommandError, match="comment"):
        shift.ack("cnc01.tool_temperature.hi", "  ")
    assert shift.ack("cnc01.tool_temperature.hi", "coolant nozzle blocked")[0].comment == "coolant nozzle blocked"


def test_chatter_guard_holds_a_chattering_alarm() -> None:
    """After 3 activations in 60 s the alarm is marked chattering and clears only after a quiet minute."""
    shift = Shift([temp_hi(chatter_count=3, chatter_window_s=60.0)])
    for i in range(3):
        shift.at(10 * i + 1).feed("cnc01.tool_temperature", 85)
        shift.at(10 * i + 2).feed("cnc01.tool_temperature", 70)
    activations = [r for r in shift.records if isinstance(r, AlarmTransition) and r.cause == Cause.ACTIVATED]
    assert len(activations) == 3 and activations[-1].chattering
    # The third clear is held back (off-delay = chatter window) ...
    assert shift.engine.status("cnc01.tool_temperature.hi").active
    shift.at(50).feed("cnc01.tool_temperature", 86)  # ... so this is no new activation
    shift.at(51).feed("cnc01.tool_temperature", 70)
    assert len([r for r in shift.records if isinstance(r, AlarmTransition) and r.cause == Cause.ACTIVATED]) == 3
    shift.at(112)
    assert not shift.engine.status("cnc01.tool_temperature.hi").active


def test_flood_indicator_and_first_out() -> None:
    """More than 10 alarms in 10 minutes at a position is a flood; the first alarm of a machine is first-out."""
    defs = [temp_hi(), temp_hihi()] + [
        AlarmDefinition(f"pump01.pressure.d{i}", "pump01.pressure", Condition.DISCRETE, states=(float(i),))
        for i in range(12)
    ]
    shift = Shift(defs, AlarmSettings(flood_threshold=10, flood_window_s=600, positions={"line": ("cnc01", "pump01")}))
    [t] = shift.at(1).feed("cnc01.tool_temperature", 85)
    assert t.first_out
    [t] = shift.at(2).feed("cnc01.tool_temperature", 95)
    assert not t.first_out
    floods = []
    for i in range(12):
        floods += [r for r in shift.at(3 + i).feed("pump01.pressure", float(i)) if isinstance(r, FloodChange)]
    [flood] = floods
    assert (flood.flood, flood.position, flood.count) == (True, "line", 11)
    assert flood.to_event().source == "flood.line"
    assert shift.engine.flood() == {"line": True}
    shift.at(700)
    assert shift.engine.flood() == {"line": False}
    assert isinstance(shift.records[-1], FloodChange) and not shift.records[-1].flood


def test_restore_keeps_acknowledgements_across_a_restart() -> None:
    """A new engine restored from the recorded events keeps ack state, shelves and latches, and continues from there."""
    shift = Shift([temp_hi(), temp_hihi()])
    shift.at(1).feed("cnc01.tool_temperature", 95)
    shift.ack("cnc01.tool_temperature.hi")
    shift.records += shift.engine.shelve("cnc01.tool_temperature.hihi", "olga", 2 * S, 60, "test")
    events = [r.to_event() for r in shift.records]
    restarted = AlarmEngine([temp_hi(), temp_hihi()], TagRegistry(TAGS))
    assert restarted.restore(events) == 2
    assert restarted.status("cnc01.tool_temperature.hi").state == "ACK_ACTIVE"
    assert restarted.status("cnc01.tool_temperature.hihi").state == "SHELVED"
    # The condition still holds: no new transition for HI (still acknowledged).
    batch = SampleBatch.from_arrays([0], [3 * S], [92.0])
    assert restarted.evaluate(batch) == []
    out = restarted.tick(62 * S)
    assert [(t.alarm, t.cause, t.to_state) for t in out] == [
        ("cnc01.tool_temperature.hihi", Cause.SHELF_EXPIRED, "UNACK_ACTIVE")
    ]
    out = restarted.evaluate(SampleBatch.from_arrays([0], [70 * S], [60.0]))
    assert {(t.alarm, t.to_state) for t in out} == {
        ("cnc01.tool_temperature.hi", "NORMAL"),
        ("cnc01.tool_temperature.hihi", "UNACK_RTN"),
    }


def test_vectorised_batch_matches_sample_by_sample() -> None:
    """One big batch of many tags and samples gives the same transitions as feeding the samples one at a time."""
    rng = np.random.default_rng(7)
    registry = TagRegistry(TagSpec(f"m{i // 10}.t{i}") for i in range(40))
    defs = []
    for i in range(40):
        defs.append(AlarmDefinition(f"m{i // 10}.t{i}.hi", f"m{i // 10}.t{i}", Condition.HI, limit=1.0, deadband=0.3))
        defs.append(AlarmDefinition(f"m{i // 10}.t{i}.lo", f"m{i // 10}.t{i}", Condition.LO, limit=-1.0, deadband=0.3))
    n = 4000
    ids = rng.integers(0, 40, n)
    ts = np.arange(n, dtype=np.int64) * 1000 + 1
    values = rng.standard_normal(n) * 1.2
    quality = np.where(rng.random(n) < 0.05, Quality.BAD, Quality.GOOD)
    batch = SampleBatch.from_arrays(ids, ts, values, quality)
    whole = AlarmEngine(defs, registry, epoch=1)
    one_by_one = AlarmEngine(defs, registry, epoch=1)
    got = whole.evaluate(batch)
    expected = []
    for i in range(n):
        expected += one_by_one.evaluate(batch.take(np.array([i])))

    def keys(records: list) -> list[tuple]:
        return sorted(
            (r.alarm, r.revision, r.ts_ns, r.to_state, r.value, r.first_out)
            for r in records
            if isinstance(r, AlarmTransition)
        )

    assert len(got) > 100
    assert keys(got) == keys(expected)
    floods = [(r.ts_ns, r.flood) for r in got if isinstance(r, FloodChange)]
    assert floods == [(r.ts_ns, r.flood) for r in expected if isinstance(r, FloodChange)]
