"""The shift calendar across midnight and daylight-saving changes, and typed-in times."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest

from hmi.config.loader import ConfigError, validate_project
from hmi.historian.shifts import (
    ShiftCalendar,
    ShiftDefinition,
    format_ns,
    parse_shift_spec,
    parse_time,
    to_ns,
    zone,
)

BERLIN = "Europe/Berlin"
H = 3600 * 1_000_000_000


def three_shifts(tz: str = BERLIN) -> ShiftCalendar:
    return ShiftCalendar(
        [
            ShiftDefinition.parse("A", "06:00", "14:00"),
            ShiftDefinition.parse("B", "14:00", "22:00"),
            ShiftDefinition.parse("C", "22:00", "06:00"),
        ],
        tz,
    )


def utc(text: str) -> int:
    return parse_time(text, zone("UTC"))


def test_a_night_shift_runs_past_midnight() -> None:
    """C on the 20th runs from 22:00 that day to 06:00 on the 21st, local time."""
    shift = three_shifts().resolve(date(2026, 11, 20), "C")
    assert shift.start_ns == utc("2026-11-20T21:00Z")  # CET is UTC+1
    assert shift.end_ns == utc("2026-11-21T05:00Z")
    assert shift.label == "2026-11-20/C"


def test_the_shift_at_a_moment_after_midnight_is_the_previous_days_night_shift() -> None:
    """03:00 on the 21st belongs to 2026-11-20/C; 06:00 sharp already to A of the 21st."""
    calendar = three_shifts()
    tz = calendar.tz
    at_three = calendar.at(parse_time("2026-11-21T03:00", tz))
    assert at_three is not None and at_three.label == "2026-11-20/C"
    at_six = calendar.at(parse_time("2026-11-21T06:00", tz))
    assert at_six is not None and at_six.label == "2026-11-21/A"


def test_night_shifts_over_the_clock_changes_last_nine_and_seven_hours() -> None:
    """Autumn (clocks back) makes the night shift 9 h long, spring (forward) 7 h; day shifts stay 8 h."""
    calendar = three_shifts()
    autumn = calendar.resolve(date(2026, 10, 24), "C")
    assert autumn.end_ns - autumn.start_ns == 9 * H
    assert format_ns(autumn.start_ns, calendar.tz) == "2026-10-24 22:00:00 CEST"
    assert format_ns(autumn.end_ns, calendar.tz) == "2026-10-25 06:00:00 CET"
    spring = calendar.resolve(date(2026, 3, 28), "C")
    assert spring.end_ns - spring.start_ns == 7 * H
    for day in (date(2026, 10, 25), date(2026, 3, 29)):
        for name in "AB":
            shift = calendar.resolve(day, name)
            assert shift.end_ns - shift.start_ns == 8 * H


def test_shifts_between_tile_a_day_without_gaps() -> None:
    """Over a DST day the A/B/C occurrences follow each other end to start."""
    calendar = three_shifts()
    tz = calendar.tz
    shifts = calendar.between(parse_time("2026-10-25T00:00", tz), parse_time("2026-10-26T00:00", tz))
    assert [s.label for s in shifts] == ["2026-10-24/C", "2026-10-25/A", "2026-10-25/B", "2026-10-25/C"]
    for earlier, later in itertools.pairwise(shifts):
        assert earlier.end_ns == later.start_ns


def test_a_start_in_the_spring_gap_moves_on_by_the_gap() -> None:
    """02:30 does not exist on the spring-forward night: the shift starts at 03:30 summer time."""
    calendar = ShiftCalendar([ShiftDefinition.parse("N", "02:30", "10:00")], BERLIN)
    shift = calendar.resolve(date(2026, 3, 29), "N")
    assert format_ns(shift.start_ns, calendar.tz) == "2026-03-29 03:30:00 CEST"


def test_typed_times_and_shift_names() -> None:
    """Naive times are local to the recording's zone; offsets and Z are honoured; bad input says how to write it."""
    tz = zone(BERLIN)
    assert parse_time("2026-11-20T06:00", tz) == utc("2026-11-20T05:00Z")
    assert parse_time("2026-07-20 06:00", tz) == utc("2026-07-20T04:00Z")
    assert parse_time("2026-11-20T06:00+02:00", tz) == utc("2026-11-20T04:00Z")
    assert parse_time("2026-11-20", tz) == utc("2026-11-19T23:00Z")
    assert parse_shift_spec("2026-11-20/A") == (date(2026, 11, 20), "A")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("yesterday", tz)
    with pytest.raises(ValueError, match="DATE/NAME"):
        parse_shift_spec("2026-11-20A")
    with pytest.raises(ValueError, match="known shifts: A, B, C"):
        three_shifts().resolve(date(2026, 11, 20), "D")
    assert to_ns(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1_000_000_000


def test_the_project_file_checks_the_shifts_section() -> None:
    """[[shifts]] errors name the key: a bad time, an empty shift, a repeated name."""
    base = {"project": {"name": "p"}}
    with pytest.raises(ConfigError) as bad:
        validate_project({**base, "shifts": [{"name": "A", "start": "6:00", "end": "14:00"}]}, "p.toml")
    assert str(bad.value) == "p.toml: shifts[0].start: '6:00' is not a time of day as HH:MM (e.g. 06:00)"
    with pytest.raises(ConfigError, match="cannot start and end at the same time"):
        validate_project({**base, "shifts": [{"name": "A", "start": "06:00", "end": "06:00"}]}, "p.toml")
    with pytest.raises(ConfigError, match="repeated: A"):
        validate_project(
            {**base, "shifts": [{"name": "A", "start": "06:00", "end": "14:00"}] * 2},
            "p.toml",
        )
    project = validate_project({**base, "shifts": [{"name": "A", "start": "22:00", "end": "06:00"}]}, "p.toml")
    assert project.shifts[0].end == "06:00"
