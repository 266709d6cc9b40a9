"""The alarm engine: sample batches in, alarm transitions out. Pure and deterministic.

No I/O, no clock, no threads: time comes in with the samples (`evaluate`) and with
`tick(now_ns)` (delays that elapse and shelves that expire while no sample arrives), and
operator actions carry their own time. The caller owns locking (the runtime calls every
method under one lock) and publishes the transitions it gets back.

How a batch is evaluated (the hot path is numpy, once per batch):

- Limit alarms (HI, HIHI, LO, LOLO) sit in dense tables of up to K slots per tag. Each
  slot holds a multiplier m and a threshold t chosen from the alarm's *current* raw state
  so that `m * value > t` is true exactly for a sample that changes that state: for an
  inactive HI alarm m = 1 and t = limit; for an active one m = -1 and t = -(limit -
  deadband) nudged down one ulp, i.e. value <= limit - deadband. A batch costs two gathers
  of (n, K) slots, one multiply and one compare; NaN (bad quality, missing value)
  compares false and so never changes a state. Only the few samples that do change one
  go on to per-alarm Python: that is where delays, chatter, latching, modes, first-out
  and flood live.
- Other conditions (deviation, rate, discrete, quality) compute their own x per sample of
  the tags they watch, with numpy per alarm, and share the same hysteresis.

Timestamps: delays and chatter windows use the samples' own timestamps (and `tick`'s
`now_ns`), so a replayed shift produces the same transitions as the live one.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hmi.core.alarms.model import (
    MODE_CAUSES,
    AlarmDefinition,
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
from hmi.core.events import Event
from hmi.core.expressions import Expression, parse_expression
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry

NS = 1_000_000_000
ALL_POSITION = "all"
FEW_CHANGES = 16  # alarms changing in one batch up to which each is found by a scan, not a sort

Record = AlarmTransition | FloodChange


class AlarmCommandError(ValueError):
    """An operator action the engine refuses; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """System-wide alarm settings ([alarm_system] in the project file)."""

    flood_threshold: int = 10  # more than this many new alarms ...
    flood_window_s: float = 600.0  # ... within this window is a flood (ISA-18.2: 10 in 10 min)
    max_shelve_s: float = 8 * 3600.0
    # Nuisance alarms (ISA-18.2, EEMUA 191), for alarms that do not set their own: this many
    # activations within the window mark an alarm chattering (0: off); an activation that
    # returns to normal sooner than fleeting_s marks it fleeting (0: off). Flags only: the
    # alarm's states are not changed by them.
    chatter_count: int = 3
    chatter_window_s: float = 60.0
    fleeting_s: float = 5.0
    # operator position -> the machines it watches; empty: one position "all" for every machine
    positions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class _Alarm:
    __slots__ = (
        "_armed",
        "_tripped",
        "acked",
        "chatter",
        "chatter_count",
        "chatter_hold",
        "chatter_window_ns",
        "chattering",
        "clear_thr",
        "cond",
        "counted",
        "d",
        "first_out",
        "fleeting",
        "fleeting_ns",
        "hist_t",
        "hist_v",
        "index",
        "last",
        "latched",
        "message",
        "oos",
        "pending_at",
        "pending_aux",
        "pending_value",
        "positions",
        "raw",
        "reason",
        "revision",
        "set_thr",
        "shelved_until",
        "sign",
        "since_ns",
        "slot",
        "suppressed",
        "tag_id",
        "value",
    )

    def __init__(self, index: int, d: AlarmDefinition, tag_id: int, settings: AlarmSettings) -> None:
        self.index = index
        self.d = d
        self.tag_id = tag_id
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
        self.counted = False  # counted as active and in service for its machine
        self.slot: tuple[int, int] | None = None
        self.positions: tuple[str, ...] = ()
        self.last: AlarmTransition | None = None
        self.hist_t = np.zeros(0, np.int64)
        self.hist_v = np.zeros(0, np.float64)
        # Hysteresis in "signed space": y = sign * x; set when y > set_thr, clear when y <= clear_thr.
        limit = d.limit if d.limit is not None else 0.5
        if d.condition in (Condition.LO, Condition.LOLO):
            self.sign = -1.0
        else:
            self.sign = 1.0
        if d.condition in (Condition.DISCRETE, Condition.BAD_QUALITY, Condition.COMM_LOSS):
            limit, deadband = 0.5, 0.0
        else:
            deadband = d.deadband
        self.set_thr = self.sign * limit
        self.clear_thr = self.set_thr - deadband
        self._armed = (self.sign, self.set_thr)
        self._tripped = (-self.sign, float(np.nextafter(-self.clear_thr, -np.inf)))

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
        return self.cond or self.latched

    @property
    def state(self) -> AlarmState:
        return alarm_state(self.shown_active, self.acked)

    @property
    def shown(self) -> str:
        return shown_state(self.state, self.mode)

    def slot_params(self) -> tuple[float, float]:
        """(multiplier, threshold) such that multiplier * x > threshold changes the raw state."""
        return self._tripped if self.raw else self._armed


class AlarmEngine:
    def __init__(
        self,
        definitions: Iterable[AlarmDefinition],
        registry: TagRegistry,
        settings: AlarmSettings | None = None,
        epoch: int | None = None,
    ) -> None:
        """Alarms for `definitions`; their tags must be in `registry` (names -> ids)."""
        self.registry = registry
        self.settings = settings or AlarmSettings()
        self.epoch = epoch if epoch is not None else random.getrandbits(53) or 1
        self.alarms: list[_Alarm] = []
        self._by_name: dict[str, _Alarm] = {}
        self._timers: list[tuple[int, int, int, str]] = []  # (at, seq, alarm index, kind)
        self._timer_seq = 0
        self._machine_active: dict[str, int] = {}
        self._positions = dict(self.settings.positions) or {}
        self._flood_times: dict[str, deque[int]] = {}
        self._flood: dict[str, bool] = {}
        self.transitions = 0  # emitted so far (all kinds)
        self._chattering_total = 0  # times an alarm became chattering since this engine started
        self._fleeting_total = 0
        for definition in definitions:
            if definition.name in self._by_name:
                raise ValueError(f"two alarms are named {definition.name!r}")
            tag_id = registry.get_id(definition.tag)
            if tag_id is None:
                raise ValueError(f"alarm {definition.name}: unknown tag {definition.tag!r}")
            alarm = _Alarm(len(self.alarms), definition, tag_id, self.settings)
            alarm.positions = self._positions_of(definition.machine)
            self.alarms.append(alarm)
            self._by_name[definition.name] = alarm
        for position in self._all_positions():
            self._flood_times[position] = deque()
            self._flood[position] = False
        self._size = 0
        self._build_tables()

    # -- set-up ---------------------------------------------------------------------------

    def _all_positions(self) -> list[str]:
        return list(self._positions) if self._positions else [ALL_POSITION]

    def _positions_of(self, machine: str) -> tuple[str, ...]:
        if not self._positions:
            return (ALL_POSITION,)
        return tuple(p for p, machines in self._positions.items() if machine in machines)

    def _build_tables(self) -> None:
        size = max(len(self.registry), 1)
        limit_alarms = [a for a in self.alarms if a.d.condition.is_limit]
        per_tag: dict[int, list[_Alarm]] = {}
        for a in limit_alarms:
            per_tag.setdefault(a.tag_id, []).append(a)
        self._k = max((len(v) for v in per_tag.values()), default=0)
        self._size = size
        # Slot [tag, k]: multiplier and threshold; 0 * x > +inf never fires (nor does NaN).
        self._mul = np.zeros((size, self._k), np.float64)
        self._thr = np.full((size, self._k), np.inf, np.float64)
        self._slot_alarm = np.full((size, self._k), -1, np.int32)
        for tag_id, alarms in per_tag.items():
            for k, a in enumerate(alarms):
                a.slot = (tag_id, k)
                self._slot_alarm[tag_id, k] = a.index
                self._mul[a.slot], self._thr[a.slot] = a.slot_params()
        # Other conditions: per tag, the alarms (and the role of the tag for them).
        self._generic: dict[int, list[tuple[_Alarm, str]]] = {}
        self._watched = np.zeros(size, np.bool_)
        self._latest = np.full(size, np.nan, np.float64)
        for a in self.alarms:
            if a.d.condition.is_limit:
                continue
            self._generic.setdefault(a.tag_id, []).append((a, "pv"))
            if a.d.condition == Condition.DEVIATION:
                sp_id = self._tag_id(a.d.setpoint_tag or "", a.d.name)
                self._generic.setdefault(sp_id, []).append((a, "sp"))
                self._watched[[a.tag_id, sp_id]] = True
        self._has_generic = np.zeros(size, np.bool_)
        self._has_generic[list(self._generic)] = True
        # Suppression by design: one parsed expression per distinct text.
        self._expressions: list[tuple[Expression, list[_Alarm]]] = []
        by_text: dict[str, list[_Alarm]] = {}
        for a in self.alarms:
            if a.d.suppress_when:
                by_text.setdefault(a.d.suppress_when, []).append(a)
        self._expr_by_tag: dict[int, list[int]] = {}
        for text, alarms in by_text.items():
            expression = parse_expression(text)
            index = len(self._expressions)
            self._expressions.append((expression, alarms))
            for tag in expression.tags:
                tag_id = self._tag_id(tag, alarms[0].d.name)
                self._watched[tag_id] = True
                self._expr_by_tag.setdefault(tag_id, []).append(index)
        self._any_watched = bool(self._watched.any())
        self._any_generic = bool(self._generic)

    def _tag_id(self, name: str, alarm: str) -> int:
        tag_id = self.registry.get_id(name)
        if tag_id is None:
            raise ValueError(f"alarm {alarm}: unknown tag {name!r}")
        return tag_id

    def _grow(self, size: int) -> None:
        old = self._size
        size = max(size, 2 * old)
        mul = np.zeros((size, self._k), np.float64)
        mul[:old] = self._mul
        self._mul = mul
        thr = np.full((size, self._k), np.inf, np.float64)
        thr[:old] = self._thr
        self._thr = thr
        slot_alarm = np.full((size, self._k), -1, np.int32)
        slot_alarm[:old] = self._slot_alarm
        self._slot_alarm = slot_alarm
        for name in ("_watched", "_has_generic"):
            grown = np.zeros(size, np.bool_)
            grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        latest = np.full(size, np.nan)
        latest[:old] = self._latest
        self._latest = latest
        self._size = size

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.alarms)

    def names(self) -> list[str]:
        return [a.d.name for a in self.alarms]

    def definition(self, name: str) -> AlarmDefinition:
        return self._alarm(name).d

    def status(self, name: str) -> AlarmStatus:
        return self._status(self._alarm(name))

    def statuses(self) -> list[AlarmStatus]:
        return [self._status(a) for a in self.alarms]

    def flood(self) -> dict[str, bool]:
        return dict(self._flood)

    def flood_counts(self) -> dict[str, int]:
        return {p: len(times) for p, times in self._flood_times.items()}

    def nuisance_counts(self) -> dict[str, int]:
        """Chattering and fleeting alarms: flagged now, and how often flagged since this engine started."""
        return {
            "chattering": sum(1 for a in self.alarms if a.chattering),
            "fleeting": sum(1 for a in self.alarms if a.fleeting),
            "chattering_total": self._chattering_total,
            "fleeting_total": self._fleeting_total,
        }

    def unacknowledged(self) -> int:
        return sum(1 for a in self.alarms if not a.acked and a.mode == Mode.IN_SERVICE)

    def _alarm(self, name: str) -> _Alarm:
        alarm = self._by_name.get(name)
        if alarm is None:
            raise AlarmCommandError(f"no alarm named {name!r}")
        return alarm

    def _status(self, a: _Alarm) -> AlarmStatus:
        return AlarmStatus(
            name=a.d.name,
            tag=a.d.tag,
            condition=str(a.d.condition),
            priority=a.d.priority,
            state=a.shown,
            alarm_state=a.state,
            mode=a.mode,
            active=a.shown_active,
            acked=a.acked,
            message=a.message or a.d.text(a.value),
            value=a.value,
            since_ns=a.since_ns,
            changed_ns=a.last.ts_ns if a.last is not None else 0,
            revision=a.revision,
            epoch=self.epoch,
            first_out=a.first_out,
            latched=a.latched,
            chattering=a.chattering,
            fleeting=a.fleeting,
            shelved_until_ns=a.shelved_until,
            reason=a.reason,
            user=a.last.user if a.last is not None else "",
            comment=a.last.comment if a.last is not None else "",
            guidance=a.d.guidance,
            comment_required=a.d.comment_required,
            unit=a.d.unit,
        )

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self, batch: SampleBatch) -> list[Record]:
        """Evaluate every alarm on the samples of `batch`; the transitions, in time order per alarm."""
        if len(batch) == 0 or not self.alarms:
            return []
        ids = batch.tag_ids
        top = int(ids.max())
        if top >= self._size:
            self._grow(top + 1)
        out: list[Record] = []
        if self._any_watched and np.take(self._watched, ids).any():
            self._update_latest(batch, out)
        bad = batch.quality >= Quality.BAD
        x = np.where(bad, np.nan, batch.values) if bad.any() else batch.values
        # (ts, alarm index, raw, value, aux): aux is the setpoint (deviation) or rate (rate), else None
        changes: list[tuple[int, int, bool, float, float | None]] = []
        if self._k:
            # np.take: a third of the time of fancy indexing for a gather of rows.
            hit = x[:, None] * np.take(self._mul, ids, axis=0) > np.take(self._thr, ids, axis=0)
            if hit.any():
                self._limit_changes(batch, x, hit, changes)
        if self._any_generic and np.take(self._has_generic, ids).any():
            self._generic_changes(batch, x, changes)
        if changes:
            # All alarms' changes in time order, so first-out and flood see the true sequence.
            changes.sort(key=lambda c: c[0])
            alarms = self.alarms
            timers = self._timers
            for t, index, raw, value, aux in changes:
                if timers and timers[0][0] <= t:
                    self._fire_timers(t, out)  # delays and shelves that ran out before this sample
                self._on_raw(alarms[index], t, raw, value, aux, out)
        return out

    def _limit_changes(self, batch: SampleBatch, x: np.ndarray, hit: np.ndarray, changes: list) -> None:
        ids = batch.tag_ids
        ts = batch.ts_ns
        rows, ks = np.nonzero(hit)
        indices = sorted(set(self._slot_alarm[ids[rows], ks].tolist()))
        if len(indices) <= FEW_CHANGES:
            # The usual case: one scan of the ids per changed alarm beats sorting the batch.
            for index in indices:
                a = self.alarms[index]
                r = np.flatnonzero(ids == a.tag_id)
                if r.shape[0] > 1 and np.any(np.diff(ts[r]) < 0):
                    r = r[np.argsort(ts[r], kind="stable")]
                self._hysteresis(a, ts[r], x[r] * a.sign, x[r], None, changes)
            return
        order = np.lexsort((ts, ids))  # by tag, then time
        sorted_ids = ids[order]
        for index in indices:
            a = self.alarms[index]
            lo = int(np.searchsorted(sorted_ids, a.tag_id, "left"))
            hi = int(np.searchsorted(sorted_ids, a.tag_id, "right"))
            r = order[lo:hi]
            self._hysteresis(a, ts[r], x[r] * a.sign, x[r], None, changes)

    @staticmethod
    def _hysteresis(
        a: _Alarm, ts: np.ndarray, y: np.ndarray, shown: np.ndarray, aux: np.ndarray | None, changes: list
    ) -> None:
        """The raw changes of one alarm over its samples in time order (y: the signed x; shown:
        the value; aux: the setpoint or rate at each sample, for the message)."""
        raw = a.raw
        set_thr, clear_thr = a.set_thr, a.clear_thr
        auxes = aux.tolist() if aux is not None else [None] * y.shape[0]
        for t, yi, vi, ai in zip(ts.tolist(), y.tolist(), shown.tolist(), auxes, strict=True):
            if not raw:
                if yi > set_thr:
                    raw = True
                    changes.append((t, a.index, True, vi, ai))
            elif yi <= clear_thr:
                raw = False
                changes.append((t, a.index, False, vi, ai))

    def _generic_changes(self, batch: SampleBatch, x: np.ndarray, changes: list) -> None:
        ids = batch.tag_ids
        ts = batch.ts_ns
        rows = np.flatnonzero(self._has_generic[ids])
        order = rows[np.lexsort((ts[rows], ids[rows]))]
        sorted_ids = ids[order]
        tags, starts = np.unique(sorted_ids, return_index=True)
        ends = np.r_[starts[1:], sorted_ids.shape[0]]
        for tag_id, lo, hi in zip(tags.tolist(), starts.tolist(), ends.tolist(), strict=True):
            r = order[lo:hi]
            for a, role in self._generic[tag_id]:
                xs, shown, aux = self._generic_x(a, role, batch, x, r)
                if xs is None:
                    continue
                y = xs * a.sign
                hit = (y <= a.clear_thr) if a.raw else (y > a.set_thr)
                if hit.any():
                    self._hysteresis(a, ts[r], y, shown, aux, changes)

    def _generic_x(
        self, a: _Alarm, role: str, batch: SampleBatch, x: np.ndarray, r: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """(x per sample, the value to show, the setpoint or rate to show) of alarm `a` over rows `r`."""
        cond = a.d.condition
        values = x[r]
        if cond == Condition.DISCRETE:
            hit = np.isin(values, np.asarray(a.d.states, np.float64)).astype(np.float64)
            hit[np.isnan(values)] = np.nan
            return hit, values, None
        if cond == Condition.BAD_QUALITY:
            return (batch.quality[r] >= Quality.BAD).astype(np.float64), batch.values[r], None
        if cond == Condition.COMM_LOSS:
            return (batch.quality[r] == Quality.COMM_LOST).astype(np.float64), batch.values[r], None
        if cond == Condition.DEVIATION:
            sp_id = self.registry.get_id(a.d.setpoint_tag or "")
            if role == "pv":
                sp = np.full(values.shape[0], self._latest[sp_id])
                return np.abs(values - sp), values, sp
            pv = np.full(values.shape[0], self._latest[a.tag_id])
            pv[np.isnan(values)] = np.nan
            return np.abs(pv - values), pv, values
        if cond == Condition.RATE:
            xs, rates = self._rates(a, batch.ts_ns[r], values)
            return xs, values, rates
        return None, values, None

    def _rates(self, a: _Alarm, ts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, rate) of each sample: its change per second against the latest sample at least
        rate_period_s older, and x that rate in the alarm's direction."""
        good = ~np.isnan(values)
        all_t = np.concatenate([a.hist_t, ts[good]])
        all_v = np.concatenate([a.hist_v, values[good]])
        period = int(a.d.rate_period_s * NS)
        rates = np.full(ts.shape[0], np.nan)
        ref = np.searchsorted(all_t, ts - period, "right") - 1
        ok = good & (ref >= 0)
        ref_ok = ref[ok]
        dt = (ts[ok] - all_t[ref_ok]) / NS
        with np.errstate(divide="ignore", invalid="ignore"):
            rates[ok] = (values[ok] - all_v[ref_ok]) / dt
        if all_t.shape[0]:
            keep_from = max(int(np.searchsorted(all_t, all_t[-1] - period, "right")) - 1, 0)
            a.hist_t, a.hist_v = all_t[keep_from:], all_v[keep_from:]
        direction = a.d.direction
        if direction == "rise":
            x = rates
        elif direction == "fall":
            x = -rates
        else:
            x = np.abs(rates)
        return x, rates

    def _update_latest(self, batch: SampleBatch, out: list[Record]) -> None:
        ids = batch.tag_ids
        rows = np.flatnonzero(self._watched[ids])
        watched_ids = ids[rows]
        # Arrival order decides "latest", as on the bus: the last row of each tag.
        rev = watched_ids[::-1]
        unique_ids, first_rev = np.unique(rev, return_index=True)
        last_rows = rows[rev.shape[0] - 1 - first_rev]
        self._latest[unique_ids] = batch.values[last_rows]
        if not self._expressions:
            return
        touched: set[int] = set()
        for tag_id in unique_ids.tolist():
            touched.update(self._expr_by_tag.get(tag_id, ()))
        if not touched:
            return
        when = int(batch.ts_ns[last_rows].max())
        lookup = self._lookup
        for index in sorted(touched):
            expression, alarms = self._expressions[index]
            suppressed = expression.evaluate(lookup)
            for a in alarms:
                if a.suppressed != suppressed:
                    cause = Cause.SUPPRESSED if suppressed else Cause.UNSUPPRESSED
                    self._change_mode(a, when, cause, out, lambda a=a, s=suppressed: setattr(a, "suppressed", s))

    def _lookup(self, tag: str) -> float:
        tag_id = self.registry.get_id(tag)
        return float(self._latest[tag_id]) if tag_id is not None and tag_id < self._size else math.nan

    # -- per-alarm logic ------------------------------------------------------------------------

    def _on_raw(self, a: _Alarm, ts: int, raw: bool, value: float | None, aux: float | None, out: list[Record]) -> None:
        if a.pending_at is not None and a.pending_at <= ts:
            self._fire_pending(a, out)
        a.raw = raw
        if a.slot is not None:
            self._mul[a.slot], self._thr[a.slot] = a.slot_params()
        if raw == a.cond:
            a.pending_at = None  # back where it was before the delay ran out: nothing happened
            return
        if raw:
            delay_ns = int(a.d.on_delay_s * NS)
        else:
            # A guarded chattering alarm clears only after a quiet window, so it stops re-sounding.
            off_ns = int(a.d.off_delay_s * NS)
            delay_ns = max(off_ns, a.chatter_window_ns) if a.chattering and a.chatter_hold else off_ns
        if delay_ns <= 0:
            a.pending_at = None
            self._set_condition(a, ts, raw, value, aux, out)
        else:
            a.pending_at = ts + delay_ns
            a.pending_value = value
            a.pending_aux = aux
            self._schedule(a.pending_at, a.index, "delay")

    def _fire_pending(self, a: _Alarm, out: list[Record]) -> None:
        at = a.pending_at
        a.pending_at = None
        if at is not None:
            self._set_condition(a, at, a.raw, a.pending_value, a.pending_aux, out)

    def _schedule(self, at: int, index: int, kind: str) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (at, self._timer_seq, index, kind))

    def _set_condition(
        self, a: _Alarm, ts: int, cond: bool, value: float | None, aux: float | None, out: list[Record]
    ) -> None:
        if cond == a.cond:
            return
        before = a.shown
        a.cond = cond
        a.value = value
        annunciate = False
        if cond:
            a.since_ns = ts
            a.fleeting = False
            condition = a.d.condition
            a.message = a.d.text(
                value,
                setpoint=aux if condition == Condition.DEVIATION else None,
                rate=aux if condition == Condition.RATE else None,
            )
            if a.chatter_count:
                chatter = a.chatter
                chatter.append(ts)
                horizon = ts - a.chatter_window_ns
                while chatter[0] < horizon:
                    chatter.popleft()
                was, a.chattering = a.chattering, len(chatter) >= a.chatter_count
                if a.chattering and not was:
                    self._chattering_total += 1
            if a.mode == Mode.IN_SERVICE:
                a.acked = False
                a.latched = False
                annunciate = True
            cause = Cause.ACTIVATED
        else:
            if a.d.latching and a.mode == Mode.IN_SERVICE:
                a.latched = True  # held until the operator resets it
            if a.chattering:
                self._update_chattering(a, ts)
            # ISA-18.2's fleeting alarm: back to normal before anyone could have acted on it.
            a.fleeting = ts - a.since_ns < a.fleeting_ns
            if a.fleeting:
                self._fleeting_total += 1
            cause = Cause.CLEARED
        self._emit(a, ts, cause, before, out, annunciate=annunciate)

    @staticmethod
    def _update_chattering(a: _Alarm, ts: int) -> None:
        while a.chatter and a.chatter[0] < ts - a.chatter_window_ns:
            a.chatter.popleft()
        a.chattering = len(a.chatter) >= a.chatter_count

    def _change_mode(self, a: _Alarm, ts: int, cause: Cause, out: list[Record], mutate: object, **extra: str) -> None:
        before_mode = a.mode
        before = a.shown
        mutate()  # type: ignore[operator]
        after_mode = a.mode
        annunciate = False
        if before_mode != Mode.IN_SERVICE and after_mode == Mode.IN_SERVICE and a.cond:
            # Back in service while the condition holds: it comes back unacknowledged.
            a.acked = False
            annunciate = True
        self._emit(a, ts, cause, before, out, annunciate=annunciate, **extra)

    def _emit(
        self,
        a: _Alarm,
        ts: int,
        cause: Cause,
        before: str,
        out: list[Record],
        *,
        annunciate: bool = False,
        user: str = "",
        comment: str = "",
    ) -> None:
        counted = a.shown_active and a.mode == Mode.IN_SERVICE
        if cause in MODE_CAUSES and not a.shown_active:
            # No value to tell: the event says what happened (the journal reads it as such).
            message = a.d.mode_text(cause, a.reason)
        else:
            message = a.message or a.d.text(a.value)
        machine = a.d.machine
        if counted != a.counted:
            count = self._machine_active.get(machine, 0)
            if counted:
                a.first_out = count == 0
                self._machine_active[machine] = count + 1
            else:
                self._machine_active[machine] = count - 1
            a.counted = counted
        if annunciate:
            self._count_flood(ts, a, out)
        a.revision += 1
        record = AlarmTransition(
            ts_ns=ts,
            alarm=a.d.name,
            tag=a.d.tag,
            cause=cause,
            from_state=before,
            to_state=a.shown,
            active=a.cond,
            acked=a.acked,
            mode=a.mode,
            priority=a.d.priority,
            value=a.value,
            message=message,
            revision=a.revision,
            epoch=self.epoch,
            user=user,
            comment=comment,
            annunciate=annunciate,
            first_out=a.first_out,
            latched=a.latched,
            chattering=a.chattering,
            fleeting=a.fleeting,
            shelved_until_ns=a.shelved_until,
            reason=a.reason,
            since_ns=a.since_ns,
        )
        a.last = record
        out.append(record)
        self.transitions += 1

    def _count_flood(self, ts: int, a: _Alarm, out: list[Record]) -> None:
        s = self.settings
        for position in a.positions:
            times = self._flood_times[position]
            times.append(ts)
            self._prune_flood(position, ts)
            if not self._flood[position] and len(times) > s.flood_threshold:
                self._flood[position] = True
                out.append(FloodChange(ts, position, True, len(times), s.flood_threshold, s.flood_window_s))
                self.transitions += 1

    def _prune_flood(self, position: str, now: int) -> None:
        times = self._flood_times[position]
        horizon = now - int(self.settings.flood_window_s * NS)
        while times and times[0] <= horizon:
            times.popleft()

    # -- time ------------------------------------------------------------------------------------

    def tick(self, now_ns: int) -> list[Record]:
        """Delays that ran out and shelves that expired up to `now_ns`; floods that ended."""
        out: list[Record] = []
        self._fire_timers(now_ns, out)
        for position, flooding in self._flood.items():
            self._prune_flood(position, now_ns)
            if flooding and len(self._flood_times[position]) <= self.settings.flood_threshold:
                self._flood[position] = False
                s = self.settings
                count = len(self._flood_times[position])
                out.append(FloodChange(now_ns, position, False, count, s.flood_threshold, s.flood_window_s))
                self.transitions += 1
        return out

    def _fire_timers(self, now_ns: int, out: list[Record]) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now_ns:
            at, _, index, kind = heapq.heappop(timers)
            a = self.alarms[index]
            if kind == "delay" and a.pending_at == at:
                self._fire_pending(a, out)
            elif kind == "shelf" and a.shelved_until == at:
                self._change_mode(a, at, Cause.SHELF_EXPIRED, out, lambda a=a: _unshelve(a))

    def next_deadline(self) -> int | None:
        """The earliest time `tick` has something to do (None: nothing scheduled)."""
        return self._timers[0][0] if self._timers else None

    # -- operator actions ---------------------------------------------------------------------------

    def acknowledge(self, name: str, user: str, ts_ns: int, comment: str = "") -> list[Record]:
        a = self._alarm(name)
        if a.mode != Mode.IN_SERVICE:
            raise AlarmCommandError(f"{name} is {a.mode.lower().replace('_', ' ')}: nothing to acknowledge")
        if a.acked:
            raise AlarmCommandError(f"{name} is already acknowledged")
        if a.d.comment_required and not comment.strip():
            raise AlarmCommandError(f"{name} needs a comment to be acknowledged")
        out: list[Record] = []
        before = a.shown
        a.acked = True
        self._emit(a, ts_ns, Cause.ACKNOWLEDGED, before, out, user=user, comment=comment)
        return out

    def reset(self, name: str, user: str, ts_ns: int, comment: str = "") -> list[Record]:
        """Release a latched alarm whose condition has cleared (after it was acknowledged)."""
        a = self._alarm(name)
        if not a.latched:
            raise AlarmCommandError(f"{name} is not latched")
        if not a.acked:
            raise AlarmCommandError(f"{name} must be acknowledged before it is reset")
        if a.cond:
            raise AlarmCommandError(f"{name} is still active: it can be reset once its condition clears")
        out: list[Record] = []
        before = a.shown
        a.latched = False
        self._emit(a, ts_ns, Cause.RESET, before, out, user=user, comment=comment)
        return out

    def shelve(self, name: str, user: str, ts_ns: int, duration_s: float, reason: str) -> list[Record]:
        a = self._alarm(name)
        if not reason.strip():
            raise AlarmCommandError("shelving needs a reason")
        limit = self.settings.max_shelve_s
        if not 0 < duration_s <= limit:
            raise AlarmCommandError(f"an alarm can be shelved for up to {limit / 3600:g} h (asked {duration_s:g} s)")
        if a.oos:
            raise AlarmCommandError(f"{name} is out of service")
        until = ts_ns + int(duration_s * NS)
        out: list[Record] = []

        def shelve() -> None:
            a.shelved_until = until
            a.reason = reason

        self._change_mode(a, ts_ns, Cause.SHELVED, out, shelve, user=user, comment=reason)
        self._schedule(until, a.index, "shelf")
        return out

    def unshelve(self, name: str, user: str, ts_ns: int, comment: str = "") -> list[Record]:
        a = self._alarm(name)
        if a.shelved_until is None:
            raise AlarmCommandError(f"{name} is not shelved")
        out: list[Record] = []
        self._change_mode(a, ts_ns, Cause.UNSHELVED, out, lambda: _unshelve(a), user=user, comment=comment)
        return out

    def set_out_of_service(
        self, name: str, user: str, ts_ns: int, out_of_service: bool, reason: str = ""
    ) -> list[Record]:
        a = self._alarm(name)
        if a.oos == out_of_service:
            raise AlarmCommandError(f"{name} is already {'out of' if out_of_service else 'in'} service")
        if out_of_service and not reason.strip():
            raise AlarmCommandError("taking an alarm out of service needs a reason")
        out: list[Record] = []

        def mutate() -> None:
            a.oos = out_of_service
            a.reason = reason if out_of_service else ""
            if out_of_service:
                a.shelved_until = None  # out of service replaces a shelf

        cause = Cause.REMOVED_FROM_SERVICE if out_of_service else Cause.RETURNED_TO_SERVICE
        self._change_mode(a, ts_ns, cause, out, mutate, user=user, comment=reason)
        return out

    # -- restart ---------------------------------------------------------------------------------------

    def restore(self, events: Iterable[Event | AlarmTransition], now_ns: int | None = None) -> int:
        """Take up the states recorded in `events` (the latest alarm event of each alarm wins).

        Acknowledgements, latches, shelves and out-of-service survive a restart this way.
        Nothing is emitted: the next samples continue from the restored raw state (an alarm
        recorded active whose condition has cleared meanwhile clears on its next sample).
        Shelves that ran out meanwhile expire on the next `tick`. Returns how many alarms
        were restored.
        """
        # Within one runtime session (epoch) the revision orders an alarm's transitions (a
        # late sample can carry an older time); across sessions the newest session wins.
        newest_epoch: dict[str, tuple[int, int]] = {}  # alarm -> (latest ts, epoch)
        transitions: list[AlarmTransition] = []
        for item in events:
            t = item if isinstance(item, AlarmTransition) else AlarmTransition.from_event(item)
            if t is None or t.alarm not in self._by_name:
                continue
            transitions.append(t)
            if (t.ts_ns, t.epoch) > newest_epoch.get(t.alarm, (-1, 0)):
                newest_epoch[t.alarm] = (t.ts_ns, t.epoch)
        latest: dict[str, AlarmTransition] = {}
        for t in transitions:
            if t.epoch != newest_epoch[t.alarm][1]:
                continue
            known = latest.get(t.alarm)
            if known is None or t.revision >= known.revision:
                latest[t.alarm] = t
        for name, t in latest.items():
            a = self._by_name[name]
            a.cond = a.raw = t.active
            a.acked = t.acked
            a.latched = t.latched
            a.oos = t.mode == Mode.OUT_OF_SERVICE
            a.suppressed = t.mode == Mode.SUPPRESSED
            a.shelved_until = t.shelved_until_ns if t.mode == Mode.SHELVED else None
            a.reason = t.reason
            a.revision = t.revision
            a.since_ns = t.since_ns
            a.value = t.value
            # A mode change of an inactive alarm tells no value: its text is no alarm message.
            a.message = "" if t.cause in MODE_CAUSES and not (t.active or t.latched) else t.message
            a.first_out = t.first_out
            a.chattering = t.chattering
            a.fleeting = t.fleeting
            a.last = t
            if a.shelved_until is not None:
                self._schedule(a.shelved_until, a.index, "shelf")
            if a.slot is not None:
                self._mul[a.slot], self._thr[a.slot] = a.slot_params()
        self._machine_active.clear()
        for a in self.alarms:
            a.counted = a.shown_active and a.mode == Mode.IN_SERVICE
            if a.counted:
                self._machine_active[a.d.machine] = self._machine_active.get(a.d.machine, 0) + 1
        return len(latest)

    def last_transitions(self) -> list[AlarmTransition]:
        """The latest transition of every alarm that has one (to carry state into a new engine)."""
        return [a.last for a in self.alarms if a.last is not None]


def _unshelve(a: _Alarm) -> None:
    a.shelved_until = None
    a.reason = ""


def records_to_events(records: Sequence[Record]) -> list[Event]:
    return [r.to_event() for r in records]
