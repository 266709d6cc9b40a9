"""Playback from the historian: deterministic, seeks land on the right values, steps,
speed, alarms replayed as recorded, and `hmi replay --headless`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from hmi.cli import main
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType, TagRegistry, TagSpec
from hmi.historian import HistorianReader, HistorianWriter, ShiftCalendar, ShiftDefinition
from hmi.sources.replay import UNPACED, ReplaySource, ReplayState, check_speed
from tests.helpers import wait_until

NS = 1_000_000_000
# 2026-11-20 06:00 Europe/Berlin (CET, UTC+1) is 05:00 UTC.
SHIFT_A = 1_795_237_200_000_000_000 - 86_400 * NS  # 2026-11-20T05:00Z
TAGS = 6
MINUTES = 12


def alarm(ts: int, source: str, message: str, state: str) -> Event:
    return Event(EventCategory.ALARM, source, message, Severity.WARNING, ts, details={"state": state})


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 minutes from the start of shift A: 6 tags at 2 Hz (one with jittered times), a
    string tag, samples before the shift, and two alarms with an acknowledgement."""
    path = tmp_path_factory.mktemp("replay") / "shift.sqlite"
    specs = [TagSpec(f"m.t{i}", unit="mm") for i in range(TAGS)] + [TagSpec("m.program", datatype=DataType.STRING)]
    calendar = ShiftCalendar(
        [ShiftDefinition.parse("A", "06:00", "14:00"), ShiftDefinition.parse("B", "14:00", "22:00")], "Europe/Berlin"
    )
    writer = HistorianWriter(str(path), TagRegistry(specs), calendar=calendar)
    writer.start()
    rng = np.random.default_rng(7)
    for minute in range(-1, MINUTES):
        ts = SHIFT_A + (minute * 60 + np.arange(120) / 2) * NS
        ts = ts.astype(np.int64)
        ids = np.repeat(np.arange(TAGS), 120)
        all_ts = np.tile(ts, TAGS)
        all_ts[ids == 5] += rng.integers(0, NS // 4, 120)  # one tag off the grid
        writer.submit(SampleBatch.from_arrays(ids, all_ts, ids * 1000 + (all_ts - SHIFT_A) / NS, 0))
    writer.submit(
        SampleBatch.from_arrays(
            [TAGS] * 3,
            [SHIFT_A - NS, SHIFT_A + 200 * NS, SHIFT_A + 500 * NS],
            [np.nan] * 3,
            0,
            {0: "P100", 1: "P200", 2: "P300"},
        )
    )
    writer.submit_events(
        [
            alarm(SHIFT_A - 30 * NS, "m.t0.hi", "t0 high", "UNACK_ACTIVE"),
            alarm(SHIFT_A + 100 * NS, "m.t1.hi", "t1 high", "UNACK_ACTIVE"),
            Event(EventCategory.OPERATOR, "m.t1.hi", "acknowledged", ts_ns=SHIFT_A + 130 * NS, user="anna"),
            alarm(SHIFT_A + 130 * NS, "m.t1.hi", "t1 high", "ACK_ACTIVE"),
            alarm(SHIFT_A + 400 * NS, "m.t2.hi", "t2 high", "UNACK_ACTIVE"),
        ]
    )
    writer.close()
    return path


class Recorder:
    def __init__(self, bus: TagBus) -> None:
        self.batches: list[SampleBatch] = []
        self.events: list[Event] = []
        bus.subscribe(self.batches.append)
        bus.subscribe_events(self.events.extend)

    def played(self, skip_first: int = 0) -> SampleBatch:
        return SampleBatch.concat(self.batches[skip_first:])


@pytest.fixture
def replay(recording: Path) -> Iterator[Callable[..., tuple[ReplaySource, TagBus, Recorder]]]:
    sources: list[ReplaySource] = []

    def make(minutes: int = MINUTES, **kwargs: object) -> tuple[ReplaySource, TagBus, Recorder]:
        bus = TagBus()
        recorder = Recorder(bus)
        kwargs.setdefault("chunk_s", 45.0)
        source = ReplaySource(recording, SHIFT_A, SHIFT_A + minutes * 60 * NS, bus, **kwargs)  # type: ignore[arg-type]
        sources.append(source)
        source.start()
        assert source.wait_opened(10)
        return source, bus, recorder

    yield make
    for source in sources:
        source.close()


def test_the_same_shift_replays_to_the_same_sequence(
    replay: Callable[..., tuple[ReplaySource, TagBus, Recorder]], recording: Path
) -> None:
    """Two replays of the same range, with different chunking, publish identical samples
    in (time, tag) order, exactly the recorded ones; a paced replay of its first 3 minutes
    publishes exactly the same prefix."""
    runs = []
    for chunk_s in (20.0, 45.0):
        source, _, recorder = replay(speed=UNPACED, autoplay=True, chunk_s=chunk_s)
        assert source.wait_ended(60)
        played = recorder.played(skip_first=1)  # the first batch is the state before the shift
        runs.append((played, [(e.ts_ns, e.message) for e in recorder.events if not e.details.get("restated")]))
        assert source.published_samples == len(played)
    (a, events_a), (b, events_b) = runs
    for field in ("tag_ids", "ts_ns", "values", "quality"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.texts == b.texts
    assert (
        events_a
        == events_b
        == [
            (SHIFT_A + 100 * NS, "t1 high"),
            (SHIFT_A + 130 * NS, "acknowledged"),
            (SHIFT_A + 130 * NS, "t1 high"),
            (SHIFT_A + 400 * NS, "t2 high"),
        ]
    )
    source, _bus, recorder = replay(minutes=3, speed=100.0, autoplay=True)
    assert source.wait_ended(30)
    paced = recorder.played(skip_first=1)
    assert len(recorder.batches) > 3, "paced playback publishes in many ticks"
    np.testing.assert_array_equal(paced.ts_ns, a.ts_ns[: len(paced)])
    np.testing.assert_array_equal(paced.values, a.values[: len(paced)])
    assert a.ts_ns[len(paced)] >= SHIFT_A + 180 * NS
    key = a.ts_ns * 16 + a.tag_ids
    assert np.all(key[1:] > key[:-1]), "strictly in (time, tag) order"
    with HistorianReader(recording) as reader:
        expected = sum(reader.count(t, SHIFT_A, SHIFT_A + MINUTES * 60 * NS) for t in reader.tags())
    assert len(a) == expected == TAGS * MINUTES * 120 + 2
    assert sorted(a.texts.values()) == ["P200", "P300"]


def test_seek_lands_on_the_values_at_that_moment(
    replay: Callable[..., tuple[ReplaySource, TagBus, Recorder]], recording: Path
) -> None:
    """After a seek (forwards or back) every tag on the bus holds its last recorded value at
    or before that time, text tags included; it takes well under 100 ms here."""
    source, bus, _ = replay()
    rng = np.random.default_rng(3)
    targets = [SHIFT_A + int(x) for x in rng.integers(0, MINUTES * 60 * NS, 8)] + [SHIFT_A + 300 * NS]
    with HistorianReader(recording) as reader:
        for target in targets:
            source.seek(target)
            wait_until(lambda t=target: source.position_ns == t, timeout=5)
            wait_until(lambda: source._commands.empty(), timeout=5)
            time.sleep(0.02)
            for tag in reader.tags():
                expected = reader.last_value(tag, target)
                latest = bus.latest(tag.name)
                assert expected is not None and latest is not None
                assert (latest.ts_ns, latest.value) == (expected[0], expected[1]), (tag.name, target)
            assert source.last_seek_s < 1.0


def test_step_advances_by_one_step_and_pauses(
    replay: Callable[..., tuple[ReplaySource, TagBus, Recorder]], recording: Path
) -> None:
    """step() publishes the next step_s of samples and stays paused."""
    source, bus, recorder = replay(step_s=2.0)
    source.seek(SHIFT_A + 60 * NS)
    source.step()
    source.step()
    wait_until(lambda: source.position_ns == SHIFT_A + 64 * NS, timeout=5)
    assert source.state == ReplayState.PAUSED
    stepped = SampleBatch.concat([b for b in recorder.batches if b.ts_ns.min() > SHIFT_A + 60 * NS])
    with HistorianReader(recording) as reader:
        ids = [t.id for t in reader.tags()]
        assert len(stepped) == len(reader.window(ids, SHIFT_A + 60 * NS + 1, SHIFT_A + 64 * NS + 1))
    assert bus.latest("m.t0").ts_ns == SHIFT_A + 64 * NS


def test_playing_at_a_speed_follows_the_clock(replay: Callable[..., tuple[ReplaySource, TagBus, Recorder]]) -> None:
    """At 50x one wall second moves the replay about 50 s (generous margins: shared CPU)."""
    source, _, _ = replay(speed=50.0)
    source.play()
    time.sleep(1.0)
    source.pause()
    wait_until(lambda: source.state == ReplayState.PAUSED)
    moved = (source.position_ns - SHIFT_A) / NS
    assert 25 < moved < 75
    with pytest.raises(ValueError, match=r"outside 0\.5x to 100x"):
        check_speed(200)


def test_alarms_replay_as_recorded_and_seek_restates_them(
    replay: Callable[..., tuple[ReplaySource, TagBus, Recorder]],
) -> None:
    """Jumping to the next/previous alarm lands on recorded alarm times; a seek republishes
    the last recorded state of every alarm up to there, including one raised before the shift."""
    source, _, recorder = replay()
    source.next_alarm()
    wait_until(lambda: source.position_ns == SHIFT_A + 100 * NS, timeout=5)
    source.next_alarm()
    wait_until(lambda: source.position_ns == SHIFT_A + 130 * NS, timeout=5)
    source.next_alarm()
    wait_until(lambda: source.position_ns == SHIFT_A + 400 * NS, timeout=5)
    source.previous_alarm()
    wait_until(lambda: source.position_ns == SHIFT_A + 130 * NS, timeout=5)
    time.sleep(0.05)
    restated = [e for e in recorder.events if e.details.get("restated")]
    last = {e.source: e.details["state"] for e in restated[-2:]}
    assert last == {"m.t0.hi": "UNACK_ACTIVE", "m.t1.hi": "ACK_ACTIVE"}
    assert {m.category for m in source.markers} == {EventCategory.ALARM, EventCategory.OPERATOR}


def test_what_if_hook_replaces_recorded_alarms(replay: Callable[..., tuple[ReplaySource, TagBus, Recorder]]) -> None:
    """With an alarm evaluator, recorded alarm events are withheld and its events go out marked what_if."""

    class Threshold:
        def __init__(self) -> None:
            self.fired = False

        def reset(self, state: SampleBatch) -> list[Event]:
            return []

        def evaluate(self, batch: SampleBatch) -> list[Event]:
            if not self.fired and (batch.values[batch.tag_ids == 0] > 300).any():
                self.fired = True
                return [alarm(int(batch.ts_ns[-1]), "m.t0.hi", "what-if high", "UNACK_ACTIVE")]
            return []

    source, _, recorder = replay(speed=UNPACED, autoplay=True, alarm_evaluator=Threshold())
    assert source.wait_ended(30)
    alarms = [e for e in recorder.events if e.category == EventCategory.ALARM]
    assert [e.message for e in alarms] == ["what-if high"]
    assert alarms[0].details["what_if"] is True


def test_headless_replay_of_a_shift_prints_counts(recording: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hmi replay --shift DATE/A --headless --speed max` resolves the shift from the file's
    calendar and prints per-tag counts."""
    code = main(["replay", "--db", str(recording), "--shift", "2026-11-20/A", "--headless", "--speed", "max"])
    out = capsys.readouterr().out
    assert code == 0
    assert "shift 2026-11-20/A" in out
    lines = dict(line.split() for line in out.splitlines()[1:])
    # The shift is 8 h; the recording covers its first 12 minutes.
    assert lines["m.t0"] == str(MINUTES * 120)
    assert lines["m.program"] == "2"
    assert lines["events"] == "4"


def test_unknown_shift_and_bad_speed_are_refused(recording: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shift the calendar does not have, or a speed out of range, exit 2 with a reason."""
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--db", str(recording), "--shift", "2026-11-20/Z", "--headless"])
    assert exc.value.code == 2
    assert "no shift named 'Z' (known shifts: A, B)" in capsys.readouterr().err
    assert main(["replay", "--db", str(recording), "--shift", "2026-11-20/A", "--speed", "500", "--headless"]) == 2
    assert "outside 0.5x to 100x" in capsys.readouterr().err
