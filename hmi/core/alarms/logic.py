"""One alarm's ISA-18.2 state machine, pure Python: conditions and operator actions in,
transitions out (the shape of Phoebus's AlarmLogic, so tests can walk it step by step).

`AlarmLogic` holds what the alarm is now: the condition as the samples say (`raw`) and after
its on/off delays (`cond`), acknowledged or not, latched, its mode (in service, shelved,
suppressed by design, out of service), the chatter and fleeting flags. Each method takes the
time it happens at and returns the `AlarmTransition`s to publish, one per change of state.

What is not one alarm's business goes through an `AlarmLogicListener` (the engine's, or the
default one of a stand-alone alarm): when to call back (`schedule`: delays and shelves that
run out; without an engine, `tick` does it), whether an alarm that became active is its
machine's first out, and flood counting for an annunciation. Which alarms' conditions
changed in a batch (the numpy part) is the engine's (hmi/core/alarms/engine.py).
"""

from __future__ import annotations

from collections import deque

from hmi.core.alarms.model import (
    MODE_CAUSES,
    AlarmDefinition,
    AlarmSettings,
    AlarmState,
    AlarmStatus,
    AlarmTransition,
    Cause,
    Condition,
    FloodChange,
    Mode,
    alarm_state,
    shown_state,
)

NS = 1_000_000_000
DELAY = "delay"  # kinds of deadline a listener is asked to call back at
SHELF = "shelf"

Record = AlarmTransition | FloodChange


class AlarmCommandError(ValueError):
    """An operator action the alarm refuses; the message is for the operator."""


class AlarmLogicListener:
    """What an alarm asks of whoever drives it. This default is an alarm on its own: nothing
    is scheduled (call `AlarmLogic.tick`), it is always its machine's first out, no flood."""

    def schedule(self, at_ns: int, kind: str) -> None:
        """Call `AlarmLogic.delay_due(at_ns)` (kind DELAY) or `shelf_due(at_ns)` (SHELF) then."""

    def counted(self, counted: bool) -> bool:
        """The alarm became (True) or stopped being active and in service; when it became,
        whether it is the first of its machine (first out)."""
        return True

    def annunciated(self, ts_ns: int, out: list[Record]) -> None:
        """The alarm sounds at `ts_ns`; a flood that starts with it goes in `out`."""


_ALONE = AlarmLogicListener()


class AlarmLogic:
    """The state of one alarm and every change it can go through. Methods that change it take
    `out`, the list the transitions are appended to (a new one if None), and return it."""

    __slots__ = (
        "acked",
        "chatter",
        "chatter_count",
        "chatter_hold",
        "chatter_window_ns",
        "chattering",
        "chattering_total",
        "cond",
        "counted",
        "d",
        "epoch",
        "first_out",
        "fleeting",
        "fleeting_ns",
        "fleeting_total",
        "last",
        "latched",
        "listener",
        "max_shelve_s",
        "message",
        "oos",
        "pending_at",
        "pending_aux",
        "pending_value",
        "raw",
        "reason",
        "revision",
        "shelved_until",
        "since_ns",
        "suppressed",
        "value",
    )

    def __init__(
        self,
        definition: AlarmDefinition,
        settings: AlarmSettings | None = None,
        epoch: int = 1,
        listener: AlarmLogicListener | None = None,
    ) -> None:
        settings = settings or AlarmSettings()
        d = self.d = definition
        self.epoch = epoch
        self.listener = listener or _ALONE
        self.max_shelve_s = settings.max_shelve_s
        self.raw = False  # the condition as the samples say, before delays
        self.cond = False  # the condition after on/off delays
        self.acked = True
        self.latched = False
        self.oos = False
        self.suppressed = False
        self.shelved_until: int | None = None
        self.reason = ""
        self.pending_at: int | None = None
        self.pending_value: float | None = None
        self.pending_aux: float | None = None
        self.chatter: deque[int] = deque()
        self.chattering = False
        self.fleeting = False
        self.chattering_total = 0  # times it became chattering (since this object was made)
        self.fleeting_total = 0
        self.chatter_count = d.chatter_count if d.chatter_count is not None else settings.chatter_count
        # The project-wide setting only flags and counts; an alarm that sets its own chatter_count
        # is a known chatterer and is also held active through a quiet window (the chatter guard).
        self.chatter_hold = bool(d.chatter_count)
        window_s = d.chatter_window_s if d.chatter_window_s is not None else settings.chatter_window_s
        self.chatter_window_ns = int(window_s * NS)
        fleeting_s = d.fleeting_s if d.fleeting_s is not None else settings.fleeting_s
        self.fleeting_ns = int(fleeting_s * NS)
        self.revision = 0
        self.first_out = False
        self.since_ns = 0
        self.value: float | None = None
        self.message = ""
        self.counted = False  # active and in service (the listener counts it for its machine)
        self.last: AlarmTransition | None = None

    # -- reading ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.d.name

    @property
    def mode(self) -> Mode:
        if self.oos:
            return Mode.OUT_OF_SERVICE
        if self.shelved_until is not None:
            return Mode.SHELVED
        if self.suppressed:
            return Mode.SUPPRESSED
        return Mode.IN_SERVICE

    @property
    def shown_active(self) -> bool:
        """Active as the operator sees it: the condition holds, or a latch holds it."""
        return self.cond or self.latched

    @property
    def state(self) -> AlarmState:
        return alarm_state(self.shown_active, self.acked)

    @property
    def shown(self) -> str:
        return shown_state(self.state, self.mode)

    @property
    def unacknowledged(self) -> bool:
        return not self.acked and self.mode == Mode.IN_SERVICE

    def status(self) -> AlarmStatus:
        d, last = self.d, self.last
        return AlarmStatus(
            name=d.name,
            tag=d.tag,
            condition=str(d.condition),
            priority=d.priority,
            state=self.shown,
            alarm_state=self.state,
            mode=self.mode,
            active=self.shown_active,
            acked=self.acked,
            message=self.message or d.text(self.value),
            value=self.value,
            since_ns=self.since_ns,
            changed_ns=last.ts_ns if last is not None else 0,
            revision=self.revision,
            epoch=self.epoch,
            first_out=self.first_out,
            latched=self.latched,
            chattering=self.chattering,
            fleeting=self.fleeting,
            shelved_until_ns=self.shelved_until,
            reason=self.reason,
            user=last.user if last is not None else "",
            comment=last.comment if last is not None else "",
            guidance=d.guidance,
            comment_required=d.comment_required,
            unit=d.unit,
        )

    # -- the condition ---------------------------------------------------------------------

    def condition(
        self,
        ts_ns: int,
        active: bool,
        value: float | None = None,
        aux: float | None = None,
        out: list[Record] | None = None,
    ) -> list[Record]:
        """The condition as the samples say at `ts_ns` (before delays): `value` is the reading,
        `aux` the setpoint (deviation) or rate (rate) for the message. A report that agrees
        with a delay already running restarts it."""
        if out is None:
            out = []
        if self.pending_at is not None and self.pending_at <= ts_ns:
            self._fire_pending(out)
        self.raw = active
        if active == self.cond:
            self.pending_at = None  # back where it was before the delay ran out: nothing happened
            return out
        if active:
            delay_ns = int(self.d.on_delay_s * NS)
        else:
            # A guarded chattering alarm clears only after a quiet window, so it stops re-sounding.
            off_ns = int(self.d.off_delay_s * NS)
            delay_ns = max(off_ns, self.chatter_window_ns) if self.chattering and self.chatter_hold else off_ns
        if delay_ns <= 0:
            self.pending_at = None
            self._set_condition(ts_ns, active, value, aux, out)
        else:
            self.pending_at = ts_ns + delay_ns
            self.pending_value = value
            self.pending_aux = aux
            self.listener.schedule(self.pending_at, DELAY)
        return out

    def _fire_pending(self, out: list[Record]) -> None:
        at = self.pending_at
        self.pending_at = None
        if at is not None:
            self._set_condition(at, self.raw, self.pending_value, self.pending_aux, out)

    def _set_condition(self, ts: int, cond: bool, value: float | None, aux: float | None, out: list[Record]) -> None:
        if cond == self.cond:
            return
        before = self.shown
        self.cond = cond
        self.value = value
        annunciate = False
        d = self.d
        if cond:
            self.since_ns = ts
            self.fleeting = False
            condition = d.condition
            self.message = d.text(
                value,
                setpoint=aux if condition == Condition.DEVIATION else None,
                rate=aux if condition == Condition.RATE else None,
            )
            if self.chatter_count:
                chatter = self.chatter
                chatter.append(ts)
                horizon = ts - self.chatter_window_ns
                while chatter[0] < horizon:
                    chatter.popleft()
                was, self.chattering = self.chattering, len(chatter) >= self.chatter_count
                if self.chattering and not was:
                    self.chattering_total += 1
            if self.mode == Mode.IN_SERVICE:
                self.acked = False
                self.latched = False
                annunciate = True
            cause = Cause.ACTIVATED
        else:
            if d.latching and self.mode == Mode.IN_SERVICE:
                self.latched = True  # held until the operator resets it
            if self.chattering:
                self._update_chattering(ts)
            # ISA-18.2's fleeting alarm: back to normal before anyone could have acted on it.
            self.fleeting = ts - self.since_ns < self.fleeting_ns
            if self.fleeting:
                self.fleeting_total += 1
            cause = Cause.CLEARED
        self._emit(ts, cause, before, out, annunciate=annunciate)

    def _update_chattering(self, ts: int) -> None:
        while self.chatter and self.chatter[0] < ts - self.chatter_window_ns:
            self.chatter.popleft()
        self.chattering = len(self.chatter) >= self.chatter_count

    # -- time ------------------------------------------------------------------------------

    def tick(self, now_ns: int, out: list[Record] | None = None) -> list[Record]:
        """A delay that ran out and a shelf that expired up to `now_ns`, in time order (an
        engine calls `delay_due` and `shelf_due` from its own timers instead)."""
        if out is None:
            out = []
        due = [(at, kind) for at, kind in ((self.pending_at, DELAY), (self.shelved_until, SHELF)) if at is not None]
        for at, kind in sorted(due):
            if at <= now_ns:
                if kind == DELAY:
                    self.delay_due(at, out)
                else:
                    self.shelf_due(at, out)
        return out

    def delay_due(self, at_ns: int, out: list[Record] | None = None) -> list[Record]:
        """The delay scheduled for `at_ns` runs out (nothing if it was called off or replaced)."""
        if out is None:
            out = []
        if self.pending_at == at_ns:
            self._fire_pending(out)
        return out

    def shelf_due(self, at_ns: int, out: list[Record] | None = None) -> list[Record]:
        """The shelf scheduled to end at `at_ns` expires (nothing if it was lifted or replaced)."""
        if out is None:
            out = []
        if self.shelved_until == at_ns:
            before_mode, before = self.mode, self.shown
            self._unshelve()
            self._mode_changed(at_ns, Cause.SHELF_EXPIRED, before_mode, before, out)
        return out

    # -- operator actions and modes ----------------------------------------------------------

    def acknowledge(self, user: str, ts_ns: int, comment: str = "", out: list[Record] | None = None) -> list[Record]:
        name = self.d.name
        if self.mode != Mode.IN_SERVICE:
            raise AlarmCommandError(f"{name} is {self.mode.lower().replace('_', ' ')}: nothing to acknowledge")
        if self.acked:
            raise AlarmCommandError(f"{name} is already acknowledged")
        if self.d.comment_required and not comment.strip():
            raise AlarmCommandError(f"{name} needs a comment to be acknowledged")
        if out is None:
            out = []
        before = self.shown
        self.acked = True
        self._emit(ts_ns, Cause.ACKNOWLEDGED, before, out, user=user, comment=comment)
        return out

    def reset(self, user: str, ts_ns: int, comment: str = "", out: list[Record] | None = None) -> list[Record]:
        """Release a latched alarm whose condition has cleared (after it was acknowledged)."""
        name = self.d.name
        if not self.latched:
            raise AlarmCommandError(f"{name} is not latched")
        if not self.acked:
            raise AlarmCommandError(f"{name} must be acknowledged before it is reset")
        if self.cond:
            raise AlarmCommandError(f"{name} is still active: it can be reset once its condition clears")
        if out is None:
            out = []
        before = self.shown
        self.latched = False
        self._emit(ts_ns, Cause.RESET, before, out, user=user, comment=comment)
        return out

    def shelve(
        self, user: str, ts_ns: int, duration_s: float, reason: str, out: list[Record] | None = None
    ) -> list[Record]:
        if not reason.strip():
            raise AlarmCommandError("shelving needs a reason")
        limit = self.max_shelve_s
        if not 0 < duration_s <= limit:
            raise AlarmCommandError(f"an alarm can be shelved for up to {limit / 3600:g} h (asked {duration_s:g} s)")
        if self.oos:
            raise AlarmCommandError(f"{self.d.name} is out of service")
        if out is None:
            out = []
        until = ts_ns + int(duration_s * NS)
        before_mode, before = self.mode, self.shown
        self.shelved_until = until
        self.reason = reason
        self._mode_changed(ts_ns, Cause.SHELVED, before_mode, before, out, user=user, comment=reason)
        self.listener.schedule(until, SHELF)
        return out

    def unshelve(self, user: str, ts_ns: int, comment: str = "", out: list[Record] | None = None) -> list[Record]:
        if self.shelved_until is None:
            raise AlarmCommandError(f"{self.d.name} is not shelved")
        if out is None:
            out = []
        before_mode, before = self.mode, self.shown
        self._unshelve()
        self._mode_changed(ts_ns, Cause.UNSHELVED, before_mode, before, out, user=user, comment=comment)
        return out

    def _unshelve(self) -> None:
        self.shelved_until = None
        self.reason = ""

    def set_out_of_service(
        self, user: str, ts_ns: int, out_of_service: bool, reason: str = "", out: list[Record] | None = None
    ) -> list[Record]:
        if self.oos == out_of_service:
            raise AlarmCommandError(f"{self.d.name} is already {'out of' if out_of_service else 'in'} service")
        if out_of_service and not reason.strip():
            raise AlarmCommandError("taking an alarm out of service needs a reason")
        if out is None:
            out = []
        before_mode, before = self.mode, self.shown
        self.oos = out_of_service
        self.reason = reason if out_of_service else ""
        if out_of_service:
            self.shelved_until = None  # out of service replaces a shelf
        cause = Cause.REMOVED_FROM_SERVICE if out_of_service else Cause.RETURNED_TO_SERVICE
        self._mode_changed(ts_ns, cause, before_mode, before, out, user=user, comment=reason)
        return out

    def suppress(self, ts_ns: int, suppressed: bool, out: list[Record] | None = None) -> list[Record]:
        """Suppressed by design (its `suppress_when` became true) or no longer; nothing if unchanged."""
        if out is None:
            out = []
        if suppressed != self.suppressed:
            before_mode, before = self.mode, self.shown
            self.suppressed = suppressed
            cause = Cause.SUPPRESSED if suppressed else Cause.UNSUPPRESSED
            self._mode_changed(ts_ns, cause, before_mode, before, out)
        return out

    def _mode_changed(
        self,
        ts: int,
        cause: Cause,
        before_mode: Mode,
        before: str,
        out: list[Record],
        user: str = "",
        comment: str = "",
    ) -> None:
        annunciate = False
        if before_mode != Mode.IN_SERVICE and self.mode == Mode.IN_SERVICE and self.cond:
            # Back in service while the condition holds: it comes back unacknowledged.
            self.acked = False
            annunciate = True
        self._emit(ts, cause, before, out, annunciate=annunciate, user=user, comment=comment)

    # -- transitions -----------------------------------------------------------------------

    def _emit(
        self,
        ts: int,
        cause: Cause,
        before: str,
        out: list[Record],
        *,
        annunciate: bool = False,
        user: str = "",
        comment: str = "",
    ) -> None:
        d = self.d
        shown_active = self.cond or self.latched
        mode = self.mode
        counted = shown_active and mode == Mode.IN_SERVICE
        if cause in MODE_CAUSES and not shown_active:
            # No value to tell: the event says what happened (the journal reads it as such).
            message = d.mode_text(cause, self.reason)
        else:
            message = self.message or d.text(self.value)
        if counted != self.counted:
            self.counted = counted
            first_out = self.listener.counted(counted)
            if counted:
                self.first_out = first_out
        if annunciate:
            self.listener.annunciated(ts, out)
        self.revision += 1
        record = AlarmTransition(
            ts_ns=ts,
            alarm=d.name,
            tag=d.tag,
            cause=cause,
            from_state=before,
            to_state=shown_state(alarm_state(shown_active, self.acked), mode),
            active=self.cond,
            acked=self.acked,
            mode=mode,
            priority=d.priority,
            value=self.value,
            message=message,
            revision=self.revision,
            epoch=self.epoch,
            user=user,
            comment=comment,
            annunciate=annunciate,
            first_out=self.first_out,
            latched=self.latched,
            chattering=self.chattering,
            fleeting=self.fleeting,
            shelved_until_ns=self.shelved_until,
            reason=self.reason,
            since_ns=self.since_ns,
        )
        self.last = record
        out.append(record)

    # -- restart ---------------------------------------------------------------------------

    def restore(self, t: AlarmTransition) -> None:
        """Take up the state transition `t` recorded (this alarm's latest). Nothing is emitted:
        the next report of the condition continues from it; a shelf that ran out meanwhile
        expires when it is next due (the listener is asked to schedule it)."""
        self.cond = self.raw = t.active
        self.acked = t.acked
        self.latched = t.latched
        self.oos = t.mode == Mode.OUT_OF_SERVICE
        self.suppressed = t.mode == Mode.SUPPRESSED
        self.shelved_until = t.shelved_until_ns if t.mode == Mode.SHELVED else None
        self.reason = t.reason
        self.revision = t.revision
        self.since_ns = t.since_ns
        self.value = t.value
        # A mode change of an inactive alarm tells no value: its text is no alarm message.
        self.message = "" if t.cause in MODE_CAUSES and not (t.active or t.latched) else t.message
        self.first_out = t.first_out
        self.chattering = t.chattering
        self.fleeting = t.fleeting
        self.last = t
        # The listener recounts every alarm after a restore (it holds no count for this one yet).
        self.counted = self.shown_active and self.mode == Mode.IN_SERVICE
        if self.shelved_until is not None:
            self.listener.schedule(self.shelved_until, SHELF)
