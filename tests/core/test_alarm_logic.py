"""One alarm's state machine (hmi/core/alarms/logic.py) on its own: shifts walked step by step
as Phoebus's AlarmLogic tests do, and random sequences of conditions and operator actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hmi.core.alarms.logic import SHELF, AlarmCommandError, AlarmLogic, AlarmLogicListener, Record
from hmi.core.alarms.model import (
    AlarmDefinition,
    AlarmSettings,
    AlarmTransition,
    Cause,
    Condition,
    FloodChange,
    Mode,
    Priority,
)

S = 1_000_000_000


def hi(**kw: Any) -> AlarmDefinition:
    return AlarmDefinition("m1.temp.hi", "m1.temp", Condition.HI, Priority.HIGH, limit=80.0, **kw)


def only(records: list[Record]) -> AlarmTransition:
    assert len(records) == 1, records
    (record,) = records
    assert isinstance(record, AlarmTransition)
    return record


def test_a_shift_high_ack_normal() -> None:
    """An alarm goes active (sounding, first out), is acknowledged, and clears back to normal."""
    alarm = AlarmLogic(hi(), epoch=5)
    t = only(alarm.condition(1 * S, True, 85.0))
    assert (t.cause, t.from_state, t.to_state, t.annunciate, t.first_out) == (
        Cause.ACTIVATED,
        "NORMAL",
        "UNACK_ACTIVE",
        True,
        True,
    )
    assert (t.value, t.since_ns, t.revision, t.epoch) == (85.0, 1 * S, 1, 5)
    assert "m1.temp high: 85" in t.message
    t = only(alarm.acknowledge("anna", 2 * S, "seen"))
    assert (t.cause, t.to_state, t.user, t.comment, t.annunciate) == (
        Cause.ACKNOWLEDGED,
        "ACK_ACTIVE",
        "anna",
        "seen",
        False,
    )
    t = only(alarm.condition(30 * S, False, 70.0))
    assert (t.cause, t.to_state, t.fleeting) == (Cause.CLEARED, "NORMAL", False)
    assert alarm.status().state == "NORMAL" and alarm.status().revision == 3


def test_returned_unacknowledged_then_acknowledged() -> None:
    """An alarm that clears before anyone acknowledges it waits as UNACK_RTN (and was fleeting)."""
    alarm = AlarmLogic(hi())
    alarm.condition(1 * S, True, 85.0)
    t = only(alarm.condition(2 * S, False, 70.0))
    assert (t.to_state, t.fleeting, t.acked) == ("UNACK_RTN", True, False)
    assert only(alarm.acknowledge("anna", 3 * S)).to_state == "NORMAL"
    with pytest.raises(AlarmCommandError, match="already acknowledged"):
        alarm.acknowledge("anna", 4 * S)


def test_latching_holds_until_reset() -> None:
    """A latching alarm stays active after its condition clears until acknowledged and reset."""
    alarm = AlarmLogic(hi(latching=True))
    alarm.condition(1 * S, True, 95.0)
    t = only(alarm.condition(2 * S, False, 70.0))
    assert (t.to_state, t.latched, t.active) == ("UNACK_ACTIVE", True, False)
    with pytest.raises(AlarmCommandError, match="acknowledged before"):
        alarm.reset("anna", 3 * S)
    assert only(alarm.acknowledge("anna", 3 * S)).to_state == "ACK_ACTIVE"
    t = only(alarm.reset("anna", 4 * S))
    assert (t.cause, t.to_state, t.latched) == (Cause.RESET, "NORMAL", False)


def test_on_delay_runs_out_in_tick_or_is_called_off() -> None:
    """An on-delay activates the alarm at its end unless the condition clears first."""
    alarm = AlarmLogic(hi(on_delay_s=5.0))
    assert alarm.condition(1 * S, True, 85.0) == []
    assert alarm.tick(5 * S) == []
    t = only(alarm.tick(6 * S))
    assert (t.ts_ns, t.to_state, t.value) == (6 * S, "UNACK_ACTIVE", 85.0)
    quiet = AlarmLogic(hi(on_delay_s=5.0))
    quiet.condition(1 * S, True, 85.0)
    assert quiet.condition(3 * S, False, 70.0) == []
    assert quiet.tick(60 * S) == [] and quiet.state == "NORMAL"


def test_a_shelved_alarm_stays_silent_and_sounds_when_the_shelf_expires() -> None:
    """Shelved: an activation is recorded but not annunciated; the expiry brings it back unacknowledged."""
    alarm = AlarmLogic(hi(), AlarmSettings(max_shelve_s=600))
    with pytest.raises(AlarmCommandError, match="up to"):
        alarm.shelve("anna", 0, 3600, "noisy")
    t = only(alarm.shelve("anna", 0, 60, "noisy"))
    assert (t.to_state, t.shelved_until_ns, t.reason) == ("SHELVED", 60 * S, "noisy")
    t = only(alarm.condition(10 * S, True, 85.0))
    assert (t.cause, t.annunciate, t.acked, t.to_state) == (Cause.ACTIVATED, False, True, "SHELVED")
    t = only(alarm.tick(60 * S))
    assert (t.cause, t.annunciate, t.to_state, t.reason) == (Cause.SHELF_EXPIRED, True, "UNACK_ACTIVE", "")


def test_out_of_service_replaces_a_shelf() -> None:
    """Taking a shelved alarm out of service ends its shelf; it cannot be shelved while out."""
    alarm = AlarmLogic(hi())
    alarm.shelve("anna", 0, 60, "noisy")
    t = only(alarm.set_out_of_service("eng", 1 * S, True, "calibration"))
    assert (t.mode, t.shelved_until_ns, t.reason) == (Mode.OUT_OF_SERVICE, None, "calibration")
    assert alarm.tick(120 * S) == []  # the old shelf's expiry no longer applies
    with pytest.raises(AlarmCommandError, match="out of service"):
        alarm.shelve("anna", 121 * S, 60, "noisy")
    alarm.condition(122 * S, True, 85.0)
    t = only(alarm.set_out_of_service("eng", 130 * S, False))
    assert (t.cause, t.to_state, t.annunciate) == (Cause.RETURNED_TO_SERVICE, "UNACK_ACTIVE", True)


class Recorder(AlarmLogicListener):
    """A listener that keeps what it was asked, as the engine's would act on it."""

    def __init__(self, first_out: bool) -> None:
        self.first_out = first_out
        self.asked: list[tuple[object, ...]] = []

    def schedule(self, at_ns: int, kind: str) -> None:
        self.asked.append(("schedule", at_ns, kind))

    def counted(self, counted: bool) -> bool:
        self.asked.append(("counted", counted))
        return self.first_out

    def annunciated(self, ts_ns: int, out: list[Record]) -> None:
        self.asked.append(("annunciated", ts_ns))
        out.append(FloodChange(ts_ns, "all", True, 11, 10, 600.0))


def test_the_listener_decides_first_out_and_flood_and_is_asked_for_deadlines() -> None:
    """First out comes from the listener; its flood record goes before the transition that caused it."""
    listener = Recorder(first_out=False)
    alarm = AlarmLogic(hi(), listener=listener)
    flood, t = alarm.condition(1 * S, True, 85.0)
    assert isinstance(flood, FloodChange) and isinstance(t, AlarmTransition) and not t.first_out
    alarm.shelve("anna", 2 * S, 10, "noisy")
    assert listener.asked == [
        ("counted", True),
        ("annunciated", 1 * S),
        ("counted", False),
        ("schedule", 12 * S, SHELF),
    ]


def test_restore_takes_up_the_recorded_state() -> None:
    """A new alarm restored from the last transition shows what the old one showed and continues from it."""
    old = AlarmLogic(hi(latching=True), epoch=1)
    old.condition(1 * S, True, 95.0)
    old.condition(2 * S, False, 70.0)
    old.shelve("anna", 3 * S, 60, "noisy")
    assert old.last is not None
    listener = Recorder(first_out=True)
    new = AlarmLogic(hi(latching=True), epoch=2, listener=listener)
    new.restore(AlarmTransition.from_event(old.last.to_event()))  # type: ignore[arg-type]
    a, b = old.status(), new.status()
    assert (a.state, a.acked, a.mode, a.active, a.latched, a.revision, a.shelved_until_ns) == (
        b.state,
        b.acked,
        b.mode,
        b.active,
        b.latched,
        b.revision,
        b.shelved_until_ns,
    )
    assert listener.asked == [("schedule", 63 * S, SHELF)] and not new.counted
    t = only(new.tick(63 * S))
    assert (t.cause, t.to_state, t.revision, t.epoch) == (Cause.SHELF_EXPIRED, "UNACK_ACTIVE", a.revision + 1, 2)


# -- random shifts ------------------------------------------------------------------------------

DEFS = [
    hi(),
    hi(latching=True, comment_required=True),
    hi(on_delay_s=1.0, off_delay_s=2.0),
    hi(chatter_count=3, chatter_window_s=20.0, latching=True),
]


def observed(alarm: AlarmLogic) -> tuple[object, ...]:
    """Everything a transition reports about the alarm's state."""
    return (alarm.shown, alarm.cond, alarm.acked, alarm.mode, alarm.latched, alarm.shelved_until, alarm.reason)


class OneAlarm(RuleBasedStateMachine):
    @initialize(definition=st.sampled_from(DEFS))
    def start(self, definition: AlarmDefinition) -> None:
        self.alarm = AlarmLogic(definition, AlarmSettings(max_shelve_s=300), epoch=3)
        self.t = 0
        self.last: AlarmTransition | None = None

    def _step(self, dt: int, action: Callable[[], list[Record]]) -> None:
        """Time passes (the alarm is ticked, as the engine's timers do), then `action` happens;
        every transition it returns must chain and match the state it leaves."""
        self.t += dt
        self._check(observed(self.alarm), lambda: self.alarm.tick(self.t))
        before = observed(self.alarm)
        try:
            self._check(before, action)
        except AlarmCommandError:
            assert observed(self.alarm) == before  # refused: nothing changed

    def _check(self, before: tuple[object, ...], action: Callable[[], list[Record]]) -> None:
        records = action()
        alarm = self.alarm
        for r in records:
            assert isinstance(r, AlarmTransition)  # a lone alarm has no flood
            prev = self.last
            assert r.revision == (prev.revision if prev else 0) + 1
            assert r.from_state == (prev.to_state if prev else "NORMAL")
            if r.annunciate:  # only an in-service alarm sounds, and it sounds unacknowledged
                assert r.mode == Mode.IN_SERVICE and r.to_state == "UNACK_ACTIVE" and not r.acked, r
            if r.cause == Cause.ACTIVATED and r.mode == Mode.IN_SERVICE:
                assert r.annunciate
            was_acked = prev.acked if prev else True
            if not was_acked and r.acked:
                assert r.cause == Cause.ACKNOWLEDGED, (prev, r)
            if was_acked and not r.acked:  # unacknowledged only by sounding: never silently, never shelved
                assert r.annunciate, (prev, r)
            if r.mode != Mode.IN_SERVICE:
                assert r.to_state == str(r.mode)
            self.last = r
        if records:
            last = self.last
            assert last is not None
            now = (last.to_state, last.active, last.acked, last.mode, last.latched, last.shelved_until_ns, last.reason)
            assert now == observed(alarm)
        else:
            assert observed(alarm) == before  # no change of state without a transition

    @rule(dt=st.integers(0, 3 * S), active=st.booleans(), value=st.floats(-50, 150, allow_nan=False))
    def condition(self, dt: int, active: bool, value: float) -> None:
        self._step(dt, lambda: self.alarm.condition(self.t, active, value))

    @rule(dt=st.integers(0, 100 * S))
    def time_passes(self, dt: int) -> None:
        self._step(dt, lambda: [])

    @rule(dt=st.integers(0, 3 * S), comment=st.sampled_from(["", "checked"]))
    def acknowledge(self, dt: int, comment: str) -> None:
        self._step(dt, lambda: self.alarm.acknowledge("op", self.t, comment))

    @rule(dt=st.integers(0, 3 * S))
    def reset(self, dt: int) -> None:
        self._step(dt, lambda: self.alarm.reset("op", self.t))

    @rule(dt=st.integers(0, 3 * S), duration=st.integers(-1, 400), reason=st.sampled_from(["", "maintenance"]))
    def shelve(self, dt: int, duration: int, reason: str) -> None:
        self._step(dt, lambda: self.alarm.shelve("op", self.t, duration, reason))

    @rule(dt=st.integers(0, 3 * S))
    def unshelve(self, dt: int) -> None:
        self._step(dt, lambda: self.alarm.unshelve("op", self.t))

    @rule(dt=st.integers(0, 3 * S), out=st.booleans(), reason=st.sampled_from(["", "calibration"]))
    def out_of_service(self, dt: int, out: bool, reason: str) -> None:
        self._step(dt, lambda: self.alarm.set_out_of_service("eng", self.t, out, reason))

    @rule(dt=st.integers(0, 3 * S), suppressed=st.booleans())
    def suppress(self, dt: int, suppressed: bool) -> None:
        self._step(dt, lambda: self.alarm.suppress(self.t, suppressed))

    @invariant()
    def no_impossible_state(self) -> None:
        """Out of service is never also shelved, a latch belongs to a latching alarm, no deadline
        has been left behind by a tick, and a condition that holds in service is never NORMAL."""
        alarm = self.alarm
        assert not (alarm.oos and alarm.shelved_until is not None)
        assert not alarm.latched or alarm.d.latching
        assert alarm.shelved_until is None or alarm.shelved_until > self.t
        assert alarm.pending_at is None or alarm.pending_at > self.t
        assert (alarm.pending_at is None) == (alarm.raw == alarm.cond)
        if alarm.mode == Mode.IN_SERVICE:
            assert alarm.shown in ("NORMAL", "UNACK_ACTIVE", "ACK_ACTIVE", "UNACK_RTN")
            if alarm.cond:
                assert alarm.shown in ("UNACK_ACTIVE", "ACK_ACTIVE")
        else:
            assert alarm.shown == str(alarm.mode)
        assert alarm.counted == (alarm.shown_active and alarm.mode == Mode.IN_SERVICE)

    @invariant()
    def status_and_a_restore_agree_with_the_last_transition(self) -> None:
        """What the alarm reports, and an alarm restored from its last transition, agree with that transition."""
        last = self.last
        status = self.alarm.status()
        if last is None:
            assert status.revision == 0 and status.state == "NORMAL"
            return
        assert (status.state, status.acked, status.mode, status.revision) == (
            last.to_state,
            last.acked,
            last.mode,
            last.revision,
        )
        restored = AlarmLogic(self.alarm.d, epoch=4)
        restored.restore(last)
        assert observed(restored) == observed(self.alarm)


OneAlarm.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_one_alarm = OneAlarm.TestCase
