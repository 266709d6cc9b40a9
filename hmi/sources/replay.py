"""Playback: a recorded time range of the historian, fed onto a TagBus as if it were live.

The window (trends, tag table, 3D view, alarm panel) subscribes to the bus as usual and
shows the shift as it was. Control from any thread: play, pause, step, seek, speed
(0.5x to 100x, or unpaced for scripts), jump to the next/previous alarm.

Threads: one "replay" thread owns the reader and does all publishing (bus subscribers run
on it); the control methods only post commands to it; the UI polls the plain attributes
(`state`, `position_ns`, `progress`, `markers`) on its own timer.

Deterministic: samples are published in (time, tag) order, in fixed chunks of replay time
loaded the same way every run, so a range replayed twice yields the same sample
sequence, whatever the speed or timing (only where batches are cut may differ).

Position semantics: after `seek(t)` the bus holds every tag's last value at or before t
(plus, for `history_tags`, the samples of the last `history_s` seconds so trends draw
their window), and playing publishes the samples after t. The replay opens just before the
first recorded sample or event of the range (`first_ns`; a shift's data may begin hours
after its start), so a full play publishes exactly the samples with start <= ts < end.

Alarms replay as recorded: the events table's alarm transitions and acknowledgements go
out on the bus's event stream at their time; after a seek, the latest recorded event of
each alarm up to the new position is published again (details["restated"] = True) so an
alarm panel can rebuild the states. The hook for a what-if replay against today's alarm
configuration is `alarm_evaluator` (an AlarmEvaluator): with one, recorded alarm events
are withheld and the evaluator's events (marked details["what_if"] = True) go out instead.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hmi.config.models import Project, ProjectInfo, TrendConfig
from hmi.config.tags import TagConfig
from hmi.core.alarms.model import Priority
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import TAG_ID_DTYPE, SampleBatch
from hmi.core.tags import DataType
from hmi.historian.reader import HistorianReader, RecordedTag, model_file_state

log = logging.getLogger(__name__)

MIN_SPEED = 0.5
MAX_SPEED = 100.0
UNPACED = math.inf  # as fast as the disk allows (headless scripts, tests)
SPEEDS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
_NS = 1_000_000_000


class ReplayState(StrEnum):
    OPENING = "opening"
    PAUSED = "paused"
    PLAYING = "playing"
    ENDED = "ended"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Marker:
    """An event on the timeline."""

    ts_ns: int
    category: EventCategory
    severity: str
    source: str
    message: str
    # An alarm that became active: its priority (1 low .. 4 urgent), which the timeline shows
    # in that priority's colour. None for everything calm (returns, acknowledgements, events).
    priority: int | None = None

    @classmethod
    def of(cls, event: Event) -> Marker:
        return cls(event.ts_ns, event.category, str(event.severity), event.source, event.message, _priority_of(event))


def _priority_of(event: Event) -> int | None:
    if event.category != EventCategory.ALARM or event.severity == Severity.INFO:
        return None  # to_event gives an activation of an in-service alarm its priority's severity
    label = event.details.get("priority")
    if isinstance(label, str) and label.upper() in Priority.__members__:
        return int(Priority.parse(label))
    return int(Priority.HIGH if event.severity == Severity.ERROR else Priority.MEDIUM)  # details from before v1


class AlarmEvaluator(Protocol):
    """Re-evaluates replayed values against an alarm configuration (what-if playback).

    Called on the replay thread: `reset` with the state after every seek, `evaluate` with
    each batch as it is played, in order; returns the alarm events that batch raises."""

    def reset(self, state: SampleBatch) -> list[Event]: ...

    def evaluate(self, batch: SampleBatch) -> list[Event]: ...


def check_speed(speed: float) -> float:
    if speed == UNPACED or MIN_SPEED <= speed <= MAX_SPEED:
        return float(speed)
    raise ValueError(f"speed {speed:g} is outside {MIN_SPEED:g}x to {MAX_SPEED:g}x")


class ReplaySource:
    def __init__(
        self,
        db: str | Path,
        start_ns: int,
        end_ns: int,
        bus: TagBus,
        *,
        speed: float = 1.0,
        step_s: float = 1.0,
        chunk_s: float = 60.0,
        history_tags: Iterable[str] = (),
        history_s: float = 0.0,
        alarm_evaluator: AlarmEvaluator | None = None,
        tick_s: float = 0.05,
        autoplay: bool = False,
        name: str = "replay",
    ) -> None:
        if end_ns <= start_ns:
            raise ValueError("the replay range must end after it starts")
        self.db = str(db)
        self.start_ns = int(start_ns)
        self.end_ns = int(end_ns)
        self.bus = bus
        self.name = name
        self.speed = check_speed(speed)
        self.step_ns = int(step_s * _NS)
        self.chunk_ns = max(int(chunk_s * _NS), 1)
        self.history_names = set(history_tags)
        self.history_ns = int(history_s * _NS)
        self.alarm_evaluator = alarm_evaluator
        self.tick_s = tick_s
        self.autoplay = autoplay

        # Read by other threads; written by the replay thread only.
        self.state = ReplayState.OPENING
        self.progress = 0.0  # while opening
        self.position_ns = self.start_ns
        # The first and last recorded moment in the range (samples or events), known once
        # opened: playback opens at the first, not at a shift's start hours before any data.
        self.first_ns = self.start_ns
        self.last_ns = self.end_ns - 1
        self.error = ""
        self.markers: list[Marker] = []
        self.tags: list[RecordedTag] = []
        self.published_samples = 0
        self.published_events = 0
        self.seek_generation = 0
        self.last_seek_s = 0.0
        self.first_frame_s: float | None = None

        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._seek_listeners: list[Callable[[int], None]] = []
        self._ended = threading.Event()
        self._opened = threading.Event()
        self._created = time.monotonic()
        # Replay-thread state.
        self._reader: HistorianReader | None = None
        self._db_ids: list[int] = []
        self._db_to_bus = np.zeros(0, TAG_ID_DTYPE)
        self._history_ids: list[int] = []
        self._counts = np.zeros(0, np.int64)
        self._chunks: dict[int, SampleBatch] = {}  # the file's tag ids
        self._events: list[Event] = []
        self._event_ts = np.zeros(0, np.int64)
        self._alarm_ts = np.zeros(0, np.int64)
        self._alarms_before: list[Event] = []

    # -- control (any thread) --------------------------------------------------------------

    def on_seek(self, listener: Callable[[int], None]) -> None:
        """Call `listener(position_ns)` on the replay thread before the state at a new
        position is published (e.g. to clear trend buffers)."""
        self._seek_listeners.append(listener)

    def start(self) -> ReplaySource:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def play(self) -> None:
        self._commands.put(("play", None))

    def pause(self) -> None:
        self._commands.put(("pause", None))

    def toggle(self) -> None:
        self._commands.put(("toggle", None))

    def step(self, steps: int = 1) -> None:
        """Pause and advance by `steps` x step_s of replay time."""
        self._commands.put(("step", int(steps)))

    def seek(self, ts_ns: int) -> None:
        self._commands.put(("seek", int(ts_ns)))

    def set_speed(self, speed: float) -> None:
        self._commands.put(("speed", check_speed(speed)))

    def next_alarm(self) -> None:
        self._commands.put(("next_alarm", None))

    def previous_alarm(self) -> None:
        self._commands.put(("previous_alarm", None))

    def close(self, timeout: float = 10.0) -> None:
        self._commands.put(("close", None))
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_opened(self, timeout: float | None = None) -> bool:
        return self._opened.wait(timeout)

    def wait_ended(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    def counts(self) -> dict[str, int]:
        """Samples played per tag name (start <= ts < end when played through)."""
        counts = self._counts
        return {t.name: int(counts[t.id]) if t.id < counts.shape[0] else 0 for t in self.tags}

    # -- the replay thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._open()
        except Exception as exc:
            log.exception("replay of %s failed to open", self.db)
            self.error = str(exc)
            self.state = ReplayState.FAILED
            self._opened.set()
            self._ended.set()
            self._close_reader()
            return
        self.state = ReplayState.PLAYING if self.autoplay else ReplayState.PAUSED
        self._opened.set()
        last_wall = time.monotonic()
        try:
            while True:
                playing = self.state == ReplayState.PLAYING
                try:
                    if not playing:
                        command = self._commands.get()
                    elif self.speed == UNPACED:
                        command = self._commands.get(block=False)
                    else:
                        command = self._commands.get(timeout=self.tick_s)
                except queue.Empty:
                    command = None
                if command is not None:
                    if command[0] == "close":
                        break
                    was_playing = playing
                    self._handle(*command)
                    if self.state == ReplayState.PLAYING and not was_playing:
                        last_wall = time.monotonic()
                    continue
                if self.state == ReplayState.PLAYING:
                    now = time.monotonic()
                    if self.speed == UNPACED:
                        target = self.position_ns + self.chunk_ns
                    else:
                        target = self.position_ns + int((now - last_wall) * self.speed * _NS)
                    last_wall = now
                    self._advance(target)
        except Exception as exc:
            log.exception("replay of %s failed", self.db)
            self.error = str(exc)
            self.state = ReplayState.FAILED
        finally:
            self._ended.set()
            self._close_reader()
            if self.state != ReplayState.FAILED:
                self.state = ReplayState.CLOSED

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _open(self) -> None:
        self.progress = 0.05
        reader = self._reader = HistorianReader(self.db)
        self.progress = 0.2
        self.tags = reader.tags()
        self._db_ids = [t.id for t in self.tags]
        top = max(self._db_ids, default=0)
        bus_ids = self.bus.register([t.spec() for t in self.tags])
        self._db_to_bus = np.full(top + 1, -1, TAG_ID_DTYPE)
        self._db_to_bus[self._db_ids] = bus_ids
        self._counts = np.zeros(top + 1, np.int64)
        self._history_ids = [t.id for t in self.tags if t.name in self.history_names]
        self.progress = 0.35
        self._events = reader.events(self.start_ns, self.end_ns)
        self._event_ts = np.fromiter((e.ts_ns for e in self._events), np.int64, len(self._events))
        self._alarm_ts = np.fromiter((e.ts_ns for e in self._events if e.category == EventCategory.ALARM), np.int64)
        self.markers = [Marker.of(e) for e in self._events]
        self.progress = 0.45
        extent = reader.data_extent(self.start_ns, self.end_ns)
        moments = [*(extent or ()), *self._event_ts[[0, -1]].tolist()] if len(self._event_ts) else [*(extent or ())]
        if moments:
            self.first_ns, self.last_ns = min(moments), max(moments)
        self.progress = 0.5
        self._alarms_before = reader.last_events_per_source(EventCategory.ALARM, self.start_ns)
        self.progress = 0.7
        self._seek(self.first_ns - 1)
        self.first_frame_s = time.monotonic() - self._created
        self.progress = 0.85
        self._chunk(0)
        self.progress = 1.0

    def _handle(self, command: str, arg: Any) -> None:
        if command == "play":
            if self.state == ReplayState.ENDED:
                self._seek(self.first_ns - 1)
            self.state = ReplayState.PLAYING
        elif command == "pause":
            if self.state == ReplayState.PLAYING:
                self.state = ReplayState.PAUSED
        elif command == "toggle":
            self._handle("pause" if self.state == ReplayState.PLAYING else "play", None)
        elif command == "step":
            if self.state in (ReplayState.PLAYING, ReplayState.ENDED):
                self.state = ReplayState.PAUSED
            self._advance(self.position_ns + arg * self.step_ns)
        elif command == "seek":
            self._seek(arg)
            if self.state == ReplayState.ENDED:
                self.state = ReplayState.PAUSED
        elif command == "speed":
            self.speed = arg
        elif command in ("next_alarm", "previous_alarm"):
            target = self._alarm_after(self.position_ns) if command == "next_alarm" else self._alarm_before()
            if target is not None:
                self._handle("seek", target)

    def _alarm_after(self, ts: int) -> int | None:
        i = int(np.searchsorted(self._alarm_ts, ts, side="right"))
        return int(self._alarm_ts[i]) if i < self._alarm_ts.shape[0] else None

    def _alarm_before(self) -> int | None:
        i = int(np.searchsorted(self._alarm_ts, self.position_ns, side="left"))
        return int(self._alarm_ts[i - 1]) if i > 0 else None

    # -- publishing ------------------------------------------------------------------------

    def _seek(self, ts: int) -> None:
        started = time.perf_counter()
        reader = self._reader
        assert reader is not None
        ts = min(max(ts, self.start_ns - 1), self.end_ns - 1)
        for listener in list(self._seek_listeners):
            listener(ts)
        parts: list[SampleBatch] = []
        with_history: set[int] = set()
        if self._history_ids and self.history_ns > 0:
            history = reader.window(self._history_ids, ts - self.history_ns + 1, ts + 1)
            parts.append(history)
            with_history = set(np.unique(history.tag_ids).tolist())
        parts.append(reader.last_values([t for t in self._db_ids if t not in with_history], ts))
        state = _merge(parts)
        self.position_ns = ts
        self.seek_generation += 1
        batch = self._to_batch(state)
        if len(batch):
            self.bus.publish(batch)
        events = self._restated_alarms(ts)
        if self.alarm_evaluator is not None:
            events = [e for e in events if e.category != EventCategory.ALARM]
            events += _what_if(self.alarm_evaluator.reset(batch))
        if events:
            self.bus.publish_events(events)
        # The chunk holding the new position, so playing on starts without a stall.
        self._chunk(self._chunk_index(ts + 1))
        self.last_seek_s = time.perf_counter() - started

    def _restated_alarms(self, ts: int) -> list[Event]:
        latest: dict[str, Event] = {e.source: e for e in self._alarms_before}
        upto = int(np.searchsorted(self._event_ts, ts, side="right"))
        for event in self._events[:upto]:
            if event.category == EventCategory.ALARM:
                latest[event.source] = event
        restated = sorted(latest.values(), key=lambda e: e.ts_ns)
        return [
            Event(e.category, e.source, e.message, e.severity, e.ts_ns, e.user, {**e.details, "restated": True})
            for e in restated
        ]

    def _advance(self, target: int) -> None:
        """Publish everything after the position up to and including `target`."""
        end = self.end_ns - 1
        target = min(target, end)
        if target <= self.position_ns:
            if self.position_ns >= end:
                self._finish()
            return
        a = self.position_ns
        first, last = self._chunk_index(a + 1), self._chunk_index(target)
        parts = []
        for k in range(first, last + 1):
            window = self._chunk(k)
            lo = int(np.searchsorted(window.ts_ns, a, side="right"))
            hi = int(np.searchsorted(window.ts_ns, target, side="right"))
            if hi > lo:
                parts.append(window if hi - lo == len(window) else window.take(np.arange(lo, hi)))
        for k in [k for k in self._chunks if k < last]:
            del self._chunks[k]
        self.position_ns = target
        if parts:
            merged = _merge(parts, ordered=True)
            batch = self._to_batch(merged)
            self._counts += np.bincount(merged.tag_ids, minlength=self._counts.shape[0])
            self.published_samples += len(batch)
            self.bus.publish(batch)
        else:
            batch = None
        e_lo = int(np.searchsorted(self._event_ts, a, side="right"))
        e_hi = int(np.searchsorted(self._event_ts, target, side="right"))
        events = self._events[e_lo:e_hi]
        if self.alarm_evaluator is not None:
            events = [e for e in events if e.category != EventCategory.ALARM]
            if batch is not None:
                events = events + _what_if(self.alarm_evaluator.evaluate(batch))
        if events:
            self.published_events += len(events)
            self.bus.publish_events(events)
        if target >= end:
            self._finish()
        elif self.state == ReplayState.PLAYING:
            # Read the next chunk ahead once past the middle of this one.
            k = self._chunk_index(target)
            if target - (self.start_ns + k * self.chunk_ns) > self.chunk_ns // 2 and (k + 1) not in self._chunks:
                self._chunk(k + 1)

    def _finish(self) -> None:
        self.state = ReplayState.ENDED
        self._ended.set()

    def _chunk_index(self, ts: int) -> int:
        return max(0, (ts - self.start_ns) // self.chunk_ns)

    def _chunk(self, k: int) -> SampleBatch:
        window = self._chunks.get(k)
        if window is None:
            assert self._reader is not None
            a = self.start_ns + k * self.chunk_ns
            b = min(a + self.chunk_ns, self.end_ns)
            window = self._chunks[k] = self._reader.window(self._db_ids, a, b)
        return window

    def _to_batch(self, window: SampleBatch) -> SampleBatch:
        """The file's tag ids -> the bus's."""
        return SampleBatch(self._db_to_bus[window.tag_ids], window.ts_ns, window.values, window.quality, window.texts)


def _merge(parts: Sequence[SampleBatch], ordered: bool = False) -> SampleBatch:
    """Concatenate batches; re-sort by (ts, tag) unless they are consecutive already."""
    merged = SampleBatch.concat([p for p in parts if len(p)])
    if ordered or len(merged) < 2:
        return merged
    return merged.take(np.lexsort((merged.tag_ids, merged.ts_ns)))


def _what_if(events: Sequence[Event]) -> list[Event]:
    return [
        Event(e.category, e.source, e.message, e.severity, e.ts_ns, e.user, {**e.details, "what_if": True})
        for e in events
    ]


def format_counts(counts: dict[str, int], events: int | None = None) -> str:
    """Per-tag counts as an aligned table, with a total (and the number of events)."""
    width = max((len(n) for n in counts), default=10)
    lines = [f"{name:<{width}}  {n:>9}" for name, n in counts.items()]
    lines.append(f"{'total':<{width}}  {sum(counts.values()):>9}")
    if events is not None:
        lines.append(f"{'events':<{width}}  {events:>9}")
    return "\n".join(lines)


def project_for_recording(tags: Sequence[RecordedTag], timezone: str, title: str, pens: int = 4) -> Project:
    """A project to open a recording without its project file: every recorded tag as it
    was recorded, and one trend of the first few numeric tags."""
    configs = {
        t.name: TagConfig(
            connection="recording",
            address=t.name,
            unit=t.unit,
            description=t.description,
            datatype=t.datatype,
            range=(t.low, t.high) if t.low is not None and t.high is not None and t.low < t.high else None,
        )
        for t in tags
    }
    numeric = [
        t.name
        for t in tags
        if t.datatype in (DataType.FLOAT, DataType.INT) and not t.name.startswith(("historian.", "unknown."))
    ]
    trends = [TrendConfig(name="Recorded values", pens=numeric[:pens], span_s=300.0)] if numeric else []
    return Project(project=ProjectInfo(name=title, timezone=timezone), tags=configs, trends=trends)


@dataclass(frozen=True, slots=True)
class RecordingProject:
    """The project a playback shows, where it came from, and what the operator should know."""

    project: Project
    origin: str  # one line: "recorded with the runtime started ..." or why a generic view
    notes: tuple[str, ...] = ()  # problems: a model file missing or changed, an unreadable record


def project_of_recording(
    reader: HistorianReader, start_ns: int, end_ns: int, timezone: str, title: str
) -> RecordingProject:
    """The project the runtime ran when the range was recorded (the session running at the
    range's first data, else the first one started in the range), with its models checked
    against the recorded hashes; else the generic view of the recorded tags, saying why."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from hmi.config.loader import ConfigError, validate_project

    extent = reader.data_extent(start_ns, end_ns)
    session = reader.session_at(extent[0] if extent else start_ns, until_ns=end_ns)

    def generic(why: str, notes: tuple[str, ...] = ()) -> RecordingProject:
        return RecordingProject(project_for_recording(reader.tags(), timezone, title), why, notes)

    if session is None:
        return generic("no project is recorded with this range (a file from before hmi recorded sessions); "
                       "showing the recorded tags: give --project FILE to see the machines")  # fmt: skip
    record = session.project
    if record.text is None or record.path is None:
        return generic(
            "the runtime that recorded this ran a project built in code, not a file; showing the recorded tags"
        )
    when = datetime.fromtimestamp(session.started_ns / 1e9, UTC).astimezone(ZoneInfo(timezone))
    name = f"{record.path} (as recorded {when:%Y-%m-%d %H:%M})"
    try:
        project = validate_project(tomllib.loads(record.text), name, Path(record.path))
    except (ConfigError, tomllib.TOMLDecodeError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return generic("the recorded project cannot be read by this version of hmi; showing the recorded tags",
                       (f"{name}: {first}",))  # fmt: skip
    notes: list[str] = []
    machines = dict(project.machines)
    recorded = {m.machine: m for m in record.models}
    for machine, config in project.machines.items():
        model = recorded.get(machine)
        if model is None or not config.model:
            continue
        path = Path(model.path)
        if not path.exists():
            path = project.resolve_path(config.model)  # moved with its project, or the installation's
        label = config.label or machine
        state = model_file_state(model, path)
        digest = f"SHA-256 {model.sha256[:12]}…" if model.sha256 else "no hash: it was missing then too"
        if state == "missing":
            notes.append(f"{label}: 3D model {Path(model.path).name} not found (recorded at {model.path}, "
                         f"{digest}); shown without a model")  # fmt: skip
        elif state == "changed":
            notes.append(f"{label}: 3D model {path} has changed since the recording (recorded {digest}); "
                         "shown as it is now")  # fmt: skip
        machines[machine] = config.model_copy(update={"model": str(path)})
    origin = (
        f"project {Path(record.path).name} as the runtime ran it, started {when:%Y-%m-%d %H:%M:%S %Z} on {session.host}"
    )
    if record.redacted:
        notes.append(f"{record.redacted} password(s) written in URLs of the project were not recorded")
    return RecordingProject(project.model_copy(update={"machines": machines}), origin, tuple(notes))
