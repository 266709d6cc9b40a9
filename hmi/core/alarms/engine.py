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
  go on to per-alarm Python: each alarm's `AlarmLogic` (hmi/core/alarms/logic.py: delays,
  chatter, latching, modes, acknowledgement) and, through its listener, the engine's
  timers, first-out and flood.
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
from collections.abc import Iterable, Sequence

import numpy as np

from hmi.core.alarms.logic import (
    DELAY,
    NS,
    AlarmCommandError,
    AlarmLogic,
    AlarmLogicListener,
    Record,
)
from hmi.core.alarms.model import (
    AlarmDefinition,
    AlarmSettings,
    AlarmStatus,
    AlarmTransition,
    Condition,
    FloodChange,
)
from hmi.core.events import Event
from hmi.core.expressions import Expression, parse_expression
from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry

ALL_POSITION = "all"
FEW_CHANGES = 16  # alarms changing in one batch up to which each is found by a scan, not a sort

# AlarmCommandError, AlarmSettings and Record are imported from here too (hmi.config, hmi.commands).
__all__ = ["ALL_POSITION", "AlarmCommandError", "AlarmEngine", "AlarmSettings", "Record", "records_to_events"]


class _Alarm(AlarmLogicListener):
    """One alarm as the engine drives it: its logic, plus what detection needs (its tag, slot,
    hysteresis thresholds, rate history) and what the engine counts for it (machine, positions).
    It is its logic's listener: schedules go to the engine's timers, first-out to the machine's
    count, annunciations to the flood count of its positions."""

    __slots__ = (
        "_armed",
        "_tripped",
        "clear_thr",
        "d",
        "engine",
        "hist_t",
        "hist_v",
        "index",
        "logic",
        "positions",
        "set_thr",
        "sign",
        "slot",
        "tag_id",
    )

    def __init__(self, index: int, d: AlarmDefinition, tag_id: int, engine: AlarmEngine) -> None:
        self.index = index
        self.d = d
        self.tag_id = tag_id
        self.engine = engine
        self.logic = AlarmLogic(d, engine.settings, engine.epoch, self)
        self.slot: tuple[int, int] | None = None
        self.positions: tuple[str, ...] = ()
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

    def slot_params(self) -> tuple[float, float]:
        """(multiplier, threshold) such that multiplier * x > threshold changes the raw state."""
        return self._tripped if self.logic.raw else self._armed

    # -- the logic's listener -------------------------------------------------------------

    def schedule(self, at_ns: int, kind: str) -> None:
        self.engine._schedule(at_ns, self.index, kind)

    def counted(self, counted: bool) -> bool:
        machine_active = self.engine._machine_active
        machine = self.d.machine
        count = machine_active.get(machine, 0)
        machine_active[machine] = count + 1 if counted else count - 1
        return count == 0

    def annunciated(self, ts_ns: int, out: list[Record]) -> None:
        self.engine._count_flood(ts_ns, self, out)


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
        for definition in definitions:
            if definition.name in self._by_name:
                raise ValueError(f"two alarms are named {definition.name!r}")
            tag_id = registry.get_id(definition.tag)
            if tag_id is None:
                raise ValueError(f"alarm {definition.name}: unknown tag {definition.tag!r}")
            alarm = _Alarm(len(self.alarms), definition, tag_id, self)
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
        return self._alarm(name).logic.status()

    def statuses(self) -> list[AlarmStatus]:
        return [a.logic.status() for a in self.alarms]

    def flood(self) -> dict[str, bool]:
        return dict(self._flood)

    def flood_counts(self) -> dict[str, int]:
        return {p: len(times) for p, times in self._flood_times.items()}

    def nuisance_counts(self) -> dict[str, int]:
        """Chattering and fleeting alarms: flagged now, and how often flagged since this engine started."""
        logics = [a.logic for a in self.alarms]
        return {
            "chattering": sum(1 for a in logics if a.chattering),
            "fleeting": sum(1 for a in logics if a.fleeting),
            "chattering_total": sum(a.chattering_total for a in logics),
            "fleeting_total": sum(a.fleeting_total for a in logics),
        }

    def unacknowledged(self) -> int:
        return sum(1 for a in self.alarms if a.logic.unacknowledged)

    def _alarm(self, name: str) -> _Alarm:
        alarm = self._by_name.get(name)
        if alarm is None:
            raise AlarmCommandError(f"no alarm named {name!r}")
        return alarm

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
        self.transitions += len(out)
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
        raw = a.logic.raw
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
                hit = (y <= a.clear_thr) if a.logic.raw else (y > a.set_thr)
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
                a.logic.suppress(when, suppressed, out)

    def _lookup(self, tag: str) -> float:
        tag_id = self.registry.get_id(tag)
        return float(self._latest[tag_id]) if tag_id is not None and tag_id < self._size else math.nan

    # -- driving the logic ---------------------------------------------------------------------

    def _on_raw(self, a: _Alarm, ts: int, raw: bool, value: float | None, aux: float | None, out: list[Record]) -> None:
        a.logic.condition(ts, raw, value, aux, out)
        if a.slot is not None:
            self._mul[a.slot], self._thr[a.slot] = a.slot_params()

    def _schedule(self, at: int, index: int, kind: str) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (at, self._timer_seq, index, kind))

    def _count_flood(self, ts: int, a: _Alarm, out: list[Record]) -> None:
        s = self.settings
        for position in a.positions:
            times = self._flood_times[position]
            times.append(ts)
            self._prune_flood(position, ts)
            if not self._flood[position] and len(times) > s.flood_threshold:
                self._flood[position] = True
                out.append(FloodChange(ts, position, True, len(times), s.flood_threshold, s.flood_window_s))

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
        self.transitions += len(out)
        return out

    def _fire_timers(self, now_ns: int, out: list[Record]) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now_ns:
            at, _, index, kind = heapq.heappop(timers)
            logic = self.alarms[index].logic
            if kind == DELAY:
                logic.delay_due(at, out)
            else:
                logic.shelf_due(at, out)

    def next_deadline(self) -> int | None:
        """The earliest time `tick` has something to do (None: nothing scheduled)."""
        return self._timers[0][0] if self._timers else None

    # -- operator actions ---------------------------------------------------------------------------

    def acknowledge(self, name: str, user: str, ts_ns: int, comment: str = "") -> list[Record]:
        return self._counted(self._alarm(name).logic.acknowledge(user, ts_ns, comment))

    def reset(self, name: str, user: str, ts_ns: int, comment: str = "") -> list[Record]:
        """Release a latched alarm whose condition has cleared (after it was acknowledged)."""
        return self._counted(self._alarm(name).logic.reset(user, ts_ns, comment))

    def shelve(self, name: str, user: str, ts_ns: int, duration_s: float, reason: str) -> list[Record]:
        return self._counted(self._alarm(name).logic.shelve(user, ts_ns, duration_s, reason))

    def unshelve(self, name: str, user: str, ts_ns: int, comment: str = "") -> list[Record]:
        return self._counted(self._alarm(name).logic.unshelve(user, ts_ns, comment))

    def set_out_of_service(
        self, name: str, user: str, ts_ns: int, out_of_service: bool, reason: str = ""
    ) -> list[Record]:
        return self._counted(self._alarm(name).logic.set_out_of_service(user, ts_ns, out_of_service, reason))

    def _counted(self, out: list[Record]) -> list[Record]:
        self.transitions += len(out)
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
            a.logic.restore(t)
            if a.slot is not None:
                self._mul[a.slot], self._thr[a.slot] = a.slot_params()
        self._machine_active.clear()
        for a in self.alarms:
            if a.logic.counted:
                self._machine_active[a.d.machine] = self._machine_active.get(a.d.machine, 0) + 1
        return len(latest)

    def last_transitions(self) -> list[AlarmTransition]:
        """The latest transition of every alarm that has one (to carry state into a new engine)."""
        return [a.logic.last for a in self.alarms if a.logic.last is not None]


def records_to_events(records: Sequence[Record]) -> list[Event]:
    return [r.to_event() for r in records]
