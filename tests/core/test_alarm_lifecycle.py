"""ISA-18.2 invariants over random shifts: values, bad quality, delays, acks, shelves,
suppression, out of service, latches and time, checked after every step."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hmi.core.alarms import (
    AlarmCommandError,
    AlarmDefinition,
    AlarmEngine,
    AlarmTransition,
    Cause,
    Condition,
    Mode,
    Priority,
)
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec

S = 1_000_000_000
TAGS = [TagSpec("m1.temp", unit="°C"), TagSpec("m1.run")]
DEFS = [
    AlarmDefinition("m1.temp.hi", "m1.temp", Condition.HI, Priority.HIGH, limit=80, deadband=2, on_delay_s=1.0),
    AlarmDefinition(
        "m1.temp.hihi", "m1.temp", Condition.HIHI, Priority.URGENT, limit=90, latching=True, off_delay_s=2.0
    ),
    AlarmDefinition(
        "m1.temp.lo",
        "m1.temp",
        Condition.LO,
        Priority.LOW,
        limit=10,
        deadband=1,
        suppress_when="m1.run < 1",
        comment_required=True,
    ),
    AlarmDefinition(
        "m1.temp.bad_quality", "m1.temp", Condition.BAD_QUALITY, Priority.MEDIUM, chatter_count=3, chatter_window_s=20
    ),
]
NAMES = [d.name for d in DEFS]
UNACK = {"UNACK_ACTIVE", "UNACK_RTN"}


class AlarmLifecycle(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.registry = TagRegistry(TAGS)
        self.engine = AlarmEngine(DEFS, self.registry, epoch=7)
        self.t = 0
        self.records: list[AlarmTransition] = []
        self.checked = 0

    def _take(self, records: list) -> None:
        self.records += [r for r in records if isinstance(r, AlarmTransition)]

    def _sample(self, tag: str, value: float, quality: Quality) -> None:
        batch = SampleBatch.from_arrays([self.registry.id_of(tag)], [self.t], [value], quality)
        self._take(self.engine.evaluate(batch))

    @rule(
        dt=st.integers(0, 3 * S),
        value=st.floats(-20, 120, allow_nan=False),
        bad=st.sampled_from([Quality.GOOD] * 6 + [Quality.BAD, Quality.COMM_LOST]),
    )
    def temperature(self, dt: int, value: float, bad: Quality) -> None:
        self.t += dt
        self._take(self.engine.tick(self.t))
        self._sample("m1.temp", value, bad)

    @rule(dt=st.integers(0, 3 * S), value=st.sampled_from([0.0, 1.0]))
    def run_flag(self, dt: int, value: float) -> None:
        self.t += dt
        self._take(self.engine.tick(self.t))
        self._sample("m1.run", value, Quality.GOOD)

    @rule(several=st.lists(st.floats(-20, 120, allow_nan=False), min_size=2, max_size=30))
    def burst(self, several: list[float]) -> None:
        """Many samples of one tag in one batch, 0.1 s apart (the vectorised path)."""
        n = len(several)
        ts = [self.t + i * S // 10 for i in range(n)]
        self._take(self.engine.tick(self.t))
        self._take(self.engine.evaluate(SampleBatch.from_arrays([0] * n, ts, several, Quality.GOOD)))
        self.t = ts[-1]
        self._take(self.engine.tick(self.t))

    @rule(dt=st.integers(0, 200 * S))
    def time_passes(self, dt: int) -> None:
        self.t += dt
        self._take(self.engine.tick(self.t))

    def _command(self, run: object) -> None:
        try:
            self._take(run())  # type: ignore[operator]
        except AlarmCommandError:
            pass  # refused: must have emitted nothing (checked by the revision chain)

    @rule(name=st.sampled_from(NAMES), comment=st.sampled_from(["", "checked"]))
    def acknowledge(self, name: str, comment: str) -> None:
        self._command(lambda: self.engine.acknowledge(name, "op", self.t, comment))

    @rule(name=st.sampled_from(NAMES))
    def reset(self, name: str) -> None:
        self._command(lambda: self.engine.reset(name, "op", self.t))

    @rule(name=st.sampled_from(NAMES), duration=st.integers(1, 300))
    def shelve(self, name: str, duration: int) -> None:
        self._command(lambda: self.engine.shelve(name, "op", self.t, duration, "maintenance"))

    @rule(name=st.sampled_from(NAMES))
    def unshelve(self, name: str) -> None:
        self._command(lambda: self.engine.unshelve(name, "op", self.t))

    @rule(name=st.sampled_from(NAMES), out=st.booleans())
    def out_of_service(self, name: str, out: bool) -> None:
        self._command(lambda: self.engine.set_out_of_service(name, "eng", self.t, out, "calibration"))

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def transitions_chain_and_acks_are_needed(self) -> None:
        """Each alarm's transitions chain (from == previous to, revisions +1: each recorded once);
        acknowledged only by an acknowledgement; only in-service activations annunciate."""
        new = self.records[self.checked :]
        last: dict[str, AlarmTransition] = {}
        for r in self.records[: self.checked]:
            last[r.alarm] = r
        for r in new:
            prev = last.get(r.alarm)
            if prev is None:
                assert r.revision == 1 and r.from_state == "NORMAL"
            else:
                assert r.revision == prev.revision + 1, (prev, r)
                assert r.from_state == prev.to_state, (prev, r)
                if not prev.acked and r.acked:
                    assert r.cause == Cause.ACKNOWLEDGED, (prev, r)
                if prev.to_state in UNACK and r.to_state in ("ACK_ACTIVE", "NORMAL"):
                    assert r.cause in (Cause.ACKNOWLEDGED, Cause.RESET), (prev, r)
            if r.annunciate:
                assert r.mode == Mode.IN_SERVICE and r.to_state == "UNACK_ACTIVE", r
            if r.mode != Mode.IN_SERVICE:
                assert not r.annunciate and r.to_state == str(r.mode)
            assert AlarmTransition.from_event(r.to_event()) == r
            last[r.alarm] = r
        self.checked = len(self.records)

    @invariant()
    def engine_agrees_with_its_records(self) -> None:
        """The engine's status of every alarm is what its last transition says."""
        last = {r.alarm: r for r in self.records}
        for name in NAMES:
            status = self.engine.status(name)
            r = last.get(name)
            if r is None:
                assert status.revision == 0 and status.mode != Mode.SHELVED
                continue
            assert (status.state, status.revision, status.acked, status.mode) == (
                r.to_state,
                r.revision,
                r.acked,
                r.mode,
            )

    @invariant()
    def no_shelf_outlives_its_expiry(self) -> None:
        for name in NAMES:
            status = self.engine.status(name)
            if status.mode == Mode.SHELVED:
                assert status.shelved_until_ns is not None and status.shelved_until_ns > self.t

    @invariant()
    def a_restart_restores_every_state(self) -> None:
        """An engine restored from the recorded events shows the same state, ack and mode for every alarm."""
        restored = AlarmEngine(DEFS, self.registry, epoch=8)
        restored.restore([r.to_event() for r in self.records])
        for name in NAMES:
            a, b = self.engine.status(name), restored.status(name)
            assert (a.state, a.acked, a.mode, a.active, a.latched) == (b.state, b.acked, b.mode, b.active, b.latched)


AlarmLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_alarm_lifecycle = AlarmLifecycle.TestCase
