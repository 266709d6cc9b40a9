"""Messages an operator can read and nuisance alarms flagged as ISA-18.2 describes: the
deviation where a deviation is meant, no "nan", mode changes that say what happened, and
chattering and fleeting alarms marked, counted and carried to the window."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from hmi.commands import AlarmService
from hmi.core.alarms import AlarmDefinition, AlarmEngine, AlarmSettings, AlarmTransition, Condition
from hmi.core.alarms.alarm_list import AlarmList
from hmi.core.bus import TagBus
from hmi.core.samples import SampleBatch
from tests.core.test_alarm_engine import S, Shift, temp_hi

HI = "cnc01.tool_temperature.hi"
DEV = "cnc01.axis_x.deviation"


def axis_deviation(**kw: object) -> AlarmDefinition:
    base = {"name": DEV, "tag": "cnc01.axis_x", "condition": Condition.DEVIATION, "limit": 0.05,
            "deadband": 0.01, "setpoint_tag": "cnc01.axis_x_setpoint", "unit": "mm"}  # fmt: skip
    base.update(kw)
    return AlarmDefinition(**base)  # type: ignore[arg-type]


def transitions(records: list) -> list[AlarmTransition]:
    return [r for r in records if isinstance(r, AlarmTransition)]


# -- messages ------------------------------------------------------------------------------------


def test_deviation_message_gives_the_deviation_not_the_value() -> None:
    """At 0.92 against a setpoint of 1.0 the message says -0.08 (and the setpoint), as the operator expects."""
    shift = Shift([axis_deviation(message="Axis off its setpoint: {deviation:+.2f} {unit} (setpoint {setpoint:.2f})")])
    shift.at(1).feed("cnc01.axis_x_setpoint", 1.0)
    [t] = shift.at(2).feed("cnc01.axis_x", 0.92)
    assert t.message == "Axis off its setpoint: -0.08 mm (setpoint 1.00)"
    assert t.value == pytest.approx(0.92)  # the value column still shows the measured value


def test_deviation_caused_by_a_setpoint_move_uses_that_setpoint() -> None:
    """A setpoint moved away from the value raises the alarm with the new setpoint in the default message."""
    shift = Shift([axis_deviation()])
    shift.at(1).feed("cnc01.axis_x", 1.0)
    shift.at(2).feed("cnc01.axis_x_setpoint", 1.0)
    [t] = shift.at(3).feed("cnc01.axis_x_setpoint", 1.2)
    assert t.message == "cnc01.axis_x off its setpoint 1.2 by -0.2 mm (allowed ±0.05)"


@pytest.mark.parametrize("missing", [None, math.nan])
def test_a_missing_value_reads_as_a_dash_without_unit(missing: float | None) -> None:
    """No reading never prints "nan", nor a unit after the dash, whatever the format spec."""
    assert temp_hi().text(missing) == "Tool temperature high: —"
    assert temp_hi(message="").text(missing) == "cnc01.tool_temperature high: — (limit 80)"
    rate = AlarmDefinition("x.rate", "cnc01.tool_temperature", Condition.RATE, limit=5.0, unit="°C")
    assert rate.text(40.0, rate=missing) == "cnc01.tool_temperature changing too fast: — (limit 5 °C/s)"
    deviation = axis_deviation(message="").text(0.9, setpoint=missing)
    assert deviation == "cnc01.axis_x off its setpoint — by — (allowed ±0.05)"


def test_suppression_of_an_inactive_alarm_says_what_happened() -> None:
    """Every tool change: "suppressed by design (why)" and back, not "Tool temperature high: nan °C";
    the details the journal filters on stay as they were."""
    shift = Shift([temp_hi(suppress_when="cnc01.spindle_speed < 100")])
    shift.at(1).feed("cnc01.spindle_speed", 12000)
    shift.at(2).feed("cnc01.tool_temperature", 50)
    [off] = transitions(shift.at(3).feed("cnc01.spindle_speed", 0))
    [on] = transitions(shift.at(9).feed("cnc01.spindle_speed", 12000))
    assert off.message == "Tool temperature high: suppressed by design (cnc01.spindle_speed < 100)"
    assert on.message == "Tool temperature high: no longer suppressed by design (cnc01.spindle_speed < 100)"
    details = off.to_event().details
    assert (details["cause"], details["active"]) == ("suppressed", False)
    # After an alarm that came and went, the next tool change tells no stale value either.
    shift.at(20).feed("cnc01.tool_temperature", 85)
    shift.at(30).feed("cnc01.tool_temperature", 50)
    [off] = transitions(shift.at(40).feed("cnc01.spindle_speed", 0))
    assert off.message == "Tool temperature high: suppressed by design (cnc01.spindle_speed < 100)"


def test_shelving_reads_as_shelving_while_inactive_and_as_the_alarm_while_active() -> None:
    """Shelving a quiet alarm says so with the reason; shelving an active one keeps the alarm's message."""
    shift = Shift([temp_hi()])
    [t] = shift.engine.shelve(HI, "olga", 1 * S, 600, "sensor being replaced")
    assert t.message == "Tool temperature high: shelved (sensor being replaced)"
    [t] = shift.engine.unshelve(HI, "olga", 2 * S)
    assert t.message == "Tool temperature high: unshelved"
    shift.at(3).feed("cnc01.tool_temperature", 85)
    [t] = shift.engine.shelve(HI, "olga", 4 * S, 600, "known")
    assert t.message == "Tool temperature high: 85.0 °C"


def test_a_restart_after_a_suppression_does_not_show_it_as_the_alarm_message() -> None:
    """Restored from a suppression event, the alarm's summary text is the alarm's, not the mode change."""
    shift = Shift([temp_hi(suppress_when="cnc01.spindle_speed < 100")])
    shift.at(1).feed("cnc01.spindle_speed", 12000)
    shift.at(2).feed("cnc01.tool_temperature", 50)
    shift.at(3).feed("cnc01.spindle_speed", 0)
    restored = AlarmEngine([temp_hi(suppress_when="cnc01.spindle_speed < 100")], shift.registry, epoch=9)
    restored.restore([r.to_event() for r in transitions(shift.records)])
    assert restored.status(HI).mode == "SUPPRESSED"
    assert "suppressed" not in restored.status(HI).message


# -- chattering and fleeting -----------------------------------------------------------------------


def test_every_alarm_is_checked_for_chattering_by_default() -> None:
    """With nothing configured, 3 activations within 60 s mark an alarm chattering (ISA-18.2), and it
    is counted; the flag changes nothing else (the alarm clears with its condition)."""
    shift = Shift([temp_hi(), temp_hi(name="quiet", chatter_count=0)])
    for i in range(3):
        shift.at(10 * i + 1).feed("cnc01.tool_temperature", 85)
        shift.at(10 * i + 8).feed("cnc01.tool_temperature", 70)
    flagged = {t.alarm for t in transitions(shift.records) if t.chattering}
    assert flagged == {HI}  # chatter_count = 0 turns detection off for one alarm
    status = shift.engine.status(HI)
    assert status.chattering and not status.active
    counts = shift.engine.nuisance_counts()
    assert (counts["chattering"], counts["chattering_total"]) == (1, 1)
    assert not Shift([temp_hi()], AlarmSettings(chatter_count=0)).engine.status(HI).chattering


def test_a_fleeting_alarm_is_flagged_when_it_returns_to_normal() -> None:
    """An activation back to normal within fleeting_s (5 s by default) is flagged fleeting on its
    clear, in the status and in the recorded event; the next activation starts unflagged."""
    shift = Shift([temp_hi()])
    [up] = shift.at(1).feed("cnc01.tool_temperature", 85)
    [down] = shift.at(3).feed("cnc01.tool_temperature", 70)
    assert not up.fleeting and down.fleeting
    assert shift.engine.status(HI).fleeting
    assert down.to_event().details["fleeting"] is True
    assert AlarmTransition.from_event(down.to_event()) == down
    assert shift.engine.nuisance_counts() == {"chattering": 0, "fleeting": 1, "chattering_total": 0,
                                              "fleeting_total": 1}  # fmt: skip
    [up] = shift.at(100).feed("cnc01.tool_temperature", 85)
    [down] = shift.at(110).feed("cnc01.tool_temperature", 70)  # 10 s: a real excursion
    assert not up.fleeting and not down.fleeting
    assert shift.engine.nuisance_counts()["fleeting"] == 0
    assert shift.engine.nuisance_counts()["fleeting_total"] == 1


def test_an_off_delay_is_the_cure_for_fleeting() -> None:
    """With an off-delay at least fleeting_s, a short excursion is held and not fleeting; fleeting_s = 0 is off."""
    for definition in (temp_hi(off_delay_s=5), temp_hi(fleeting_s=0)):
        shift = Shift([definition])
        shift.at(1).feed("cnc01.tool_temperature", 85)
        shift.at(2).feed("cnc01.tool_temperature", 70)
        shift.at(20)
        assert not any(t.fleeting for t in transitions(shift.records))
        assert not shift.engine.status(HI).active


def test_events_recorded_before_fleeting_existed_still_restore() -> None:
    """A version-1 event without "fleeting" reads as not fleeting and restores the alarm."""
    shift = Shift([temp_hi()])
    [t] = shift.at(1).feed("cnc01.tool_temperature", 85)
    event = t.to_event()
    old = replace(event, details={k: v for k, v in event.details.items() if k != "fleeting"})
    read = AlarmTransition.from_event(old)
    assert read is not None and not read.fleeting
    restored = AlarmEngine([temp_hi()], shift.registry, epoch=9)
    assert restored.restore([old]) == 1 and restored.status(HI).state == "UNACK_ACTIVE"


def test_the_window_gets_the_flags_and_counts_from_events_and_snapshot() -> None:
    """The runtime's snapshot carries the nuisance counts and each alarm's flags; events carry
    them afterwards: the window's AlarmList has both."""
    shift = Shift([temp_hi()])
    service = AlarmService(shift.engine, TagBus(shift.registry))
    tag = shift.registry.id_of("cnc01.tool_temperature")
    alarms = AlarmList()
    service.bus.publish(SampleBatch.from_arrays([tag], [1 * S], [85.0]))
    service.bus.publish(SampleBatch.from_arrays([tag], [2 * S], [70.0]))
    snapshot = service.snapshot()
    assert snapshot["nuisance"] == {"chattering": 0, "fleeting": 1, "chattering_total": 0, "fleeting_total": 1}
    alarms.apply_snapshot(snapshot)
    assert alarms.get(HI).fleeting and alarms.nuisance["fleeting_total"] == 1
    up = shift.engine.evaluate(SampleBatch.from_arrays([tag], [100 * S], [85.0]))
    alarms.apply_events([r.to_event() for r in up])
    assert not alarms.get(HI).fleeting  # a new activation: not (yet) fleeting
    down = shift.engine.evaluate(SampleBatch.from_arrays([tag], [101 * S], [70.0]))
    alarms.apply_events([r.to_event() for r in down])
    assert alarms.get(HI).fleeting


def test_an_activation_learnt_only_from_a_repair_snapshot_still_sounds() -> None:
    """The window lost the event that raised an alarm (a gap on the channel); the repair
    snapshot shows it unacknowledged: the horn must hear of it, exactly once. A window's
    first snapshot, or a restarted runtime's, does not re-sound standing alarms."""
    shift = Shift([temp_hi()])
    service = AlarmService(shift.engine, TagBus(shift.registry))
    tag = shift.registry.id_of("cnc01.tool_temperature")
    alarms = AlarmList()
    service.bus.publish(SampleBatch.from_arrays([tag], [1 * S], [20.0]))
    alarms.apply_snapshot(service.snapshot())  # the window's first picture: nothing active
    service.bus.publish(SampleBatch.from_arrays([tag], [2 * S], [85.0]))  # its event is lost
    alarms.apply_snapshot(service.snapshot())  # the repair
    assert [t.alarm for t in alarms.take_annunciations()] == [HI]
    alarms.apply_snapshot(service.snapshot())  # a second repair: nothing new
    assert alarms.take_annunciations() == []
    fresh = AlarmList()
    fresh.apply_snapshot(service.snapshot())
    assert fresh.take_annunciations() == []
