"""The window's copy of the runtime's alarms, and a bounded log of recent events.

`AlarmList` starts from the runtime's snapshot (the `alarms` command) and follows the
alarm events on the stream. Each alarm's transitions carry a revision number and the
engine's epoch, so an event older than what the list holds is ignored, a snapshot that
arrives after newer events does not undo them, and a restarted runtime (a new epoch) is
taken over wholesale. Thread-safe: events are applied on the IPC thread, read on the UI
thread; `version` grows with every change so a timer can tell when to repaint.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hmi.core.alarms.model import FLOOD_SOURCE_PREFIX, AlarmStatus, AlarmTransition, Mode, Priority
from hmi.core.events import Event, EventCategory

HISTORY_PER_ALARM = 200


@dataclass(frozen=True, slots=True)
class Annunciation:
    """A new unacknowledged activation the horn should hear of."""

    alarm: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class Counts:
    unacknowledged: int
    active: int
    shelved: int
    highest_unack: Priority | None
    latest_unack: AlarmStatus | None


class AlarmList:
    def __init__(
        self, history_per_alarm: int = HISTORY_PER_ALARM, category: EventCategory = EventCategory.ALARM
    ) -> None:
        """`category`: the events to follow; the twin's advisories are alarm transitions
        published as ADVISORY events (hmi.twin.advisories)."""
        self.category = category
        self._lock = threading.Lock()
        self._alarms: dict[str, AlarmStatus] = {}
        self._history: dict[str, deque[AlarmTransition]] = {}
        self._history_len = history_per_alarm
        self._annunciations: list[Annunciation] = []
        self.epoch: int | None = None
        self.version = 0
        self.flood: dict[str, bool] = {}
        # Chattering/fleeting counts of the runtime's engine (AlarmEngine.nuisance_counts), as of the snapshot.
        self.nuisance: dict[str, int] = {}
        self.max_shelve_s = 8 * 3600.0
        self.needs_snapshot = True
        self.events_applied = 0
        self._counts: dict[frozenset[str] | None, tuple[int, Counts]] = {}  # machines -> (version, counts)

    # -- input (IPC thread) -----------------------------------------------------------------

    def apply_snapshot(self, reply: dict[str, Any]) -> None:
        statuses = [AlarmStatus.from_json(item) for item in reply.get("alarms", [])]
        epoch = int(reply.get("epoch", 0))
        with self._lock:
            merged: dict[str, AlarmStatus] = {}
            repair = self.epoch == epoch  # not the first picture, nor a restarted runtime's
            for status in statuses:
                known = self._alarms.get(status.name)
                if known is not None and known.epoch == epoch and known.revision > status.revision:
                    # Events newer than the snapshot arrived first: keep them, with the static facts.
                    static = {"guidance": status.guidance, "comment_required": status.comment_required}
                    status = AlarmStatus(**{**_fields(known), **static, "unit": status.unit})
                elif repair and _newly_raised(known, status):
                    # Its activation was lost on the way (the snapshot repairs a gap): sound it.
                    self._annunciations.append(Annunciation(status.name, status.priority))
                merged[status.name] = status
            self._alarms = merged
            self.epoch = epoch
            self.flood = {str(k): bool(v) for k, v in dict(reply.get("flood", {})).items()}
            self.max_shelve_s = float(reply.get("max_shelve_s", self.max_shelve_s))
            self.nuisance = {str(k): int(v) for k, v in dict(reply.get("nuisance", {})).items()}
            self.needs_snapshot = False
            self.version += 1

    def apply_events(self, events: Iterable[Event]) -> int:
        """Apply the alarm events among `events`; returns how many changed the list."""
        changed = 0
        with self._lock:
            for event in events:
                if event.category != self.category:
                    continue
                if self.category != EventCategory.ALARM:
                    event = dataclasses.replace(event, category=EventCategory.ALARM)
                if event.source.startswith(FLOOD_SOURCE_PREFIX):
                    self.flood[str(event.details.get("position", ""))] = bool(event.details.get("flood"))
                    changed += 1
                    continue
                t = AlarmTransition.from_event(event)
                if t is None:
                    continue
                known = self._alarms.get(t.alarm)
                if known is not None and known.epoch == t.epoch and known.revision >= t.revision:
                    continue  # already have this or newer
                if self.epoch is not None and t.epoch != self.epoch:
                    self.needs_snapshot = True  # the runtime restarted: fetch the whole picture
                self._alarms[t.alarm] = known.updated(t) if known is not None else AlarmStatus.from_transition(t)
                history = self._history.get(t.alarm)
                if history is None:
                    history = self._history[t.alarm] = deque(maxlen=self._history_len)
                history.append(t)
                if t.annunciate:
                    self._annunciations.append(Annunciation(t.alarm, t.priority))
                changed += 1
            if changed:
                self.events_applied += changed
                self.version += 1
        return changed

    # -- reading (any thread) ---------------------------------------------------------------------

    def statuses(self) -> list[AlarmStatus]:
        with self._lock:
            return list(self._alarms.values())

    def get(self, name: str) -> AlarmStatus | None:
        with self._lock:
            return self._alarms.get(name)

    def history(self, name: str) -> list[AlarmTransition]:
        with self._lock:
            return list(self._history.get(name, ()))

    def take_annunciations(self) -> list[Annunciation]:
        with self._lock:
            out, self._annunciations = self._annunciations, []
            return out

    def counts(self, machines: frozenset[str] | None = None) -> Counts:
        """Counts for the banner and the panel, of every alarm or of `machines`' alarms (an
        operator position's); computed once per version of the list and set of machines."""
        with self._lock:
            version = self.version
            cached = self._counts.get(machines)
            if cached is not None and cached[0] == version:
                return cached[1]
            statuses = list(self._alarms.values())
        if machines is not None:
            statuses = [s for s in statuses if s.machine in machines]
        counts = self._count(statuses)
        with self._lock:
            if len(self._counts) > 8:  # positions chosen over time: keep a few
                self._counts.clear()
            self._counts[machines] = (version, counts)
        return counts

    @staticmethod
    def _count(statuses: list[AlarmStatus]) -> Counts:
        unack = [s for s in statuses if s.unacknowledged]
        latest = max(unack, key=lambda s: (s.since_ns, s.changed_ns), default=None)
        return Counts(
            unacknowledged=len(unack),
            active=sum(1 for s in statuses if s.active and s.mode == "IN_SERVICE"),
            shelved=sum(1 for s in statuses if s.mode == "SHELVED"),
            highest_unack=max((s.priority for s in unack), default=None),
            latest_unack=latest,
        )

    def in_flood(self) -> list[str]:
        with self._lock:
            return sorted(p for p, on in self.flood.items() if on)


def _fields(status: AlarmStatus) -> dict[str, Any]:
    return {name: getattr(status, name) for name in AlarmStatus.__dataclass_fields__}


class EventLog:
    """The most recent events seen (a bounded ring), for the journal until it reads the historian."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=capacity)
        self.total = 0

    def extend(self, events: Iterable[Event]) -> None:
        events = list(events)
        with self._lock:
            self._events.extend(events)
            self.total += len(events)

    def between(self, start_ns: int, end_ns: int) -> list[Event]:
        with self._lock:
            events = list(self._events)
        return sorted((e for e in events if start_ns <= e.ts_ns < end_ns), key=lambda e: e.ts_ns)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


def _newly_raised(known: AlarmStatus | None, status: AlarmStatus) -> bool:
    """`status` shows an unacknowledged active alarm in service that `known` (the window's
    picture before) did not have as such: the same activation is never annunciated twice."""
    if not (status.unacknowledged and status.active and status.mode == Mode.IN_SERVICE):
        return False
    return known is None or not known.unacknowledged or known.since_ns != status.since_ns
