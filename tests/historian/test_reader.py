"""Reads: one tag as arrays, decimated min/max, last value at or before a time, windows."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hmi.core.samples import SampleBatch
from hmi.historian import HistorianError, HistorianReader, HistorianWriter
from hmi.historian.reader import HistoryLookup
from tests.historian.conftest import NS, T0, grid_batch, make_registry

MakeWriter = Callable[..., HistorianWriter]


@pytest.fixture
def recorded(make_writer: MakeWriter, db_path: Path) -> Path:
    """3 tags at 10 Hz for 20 minutes (12,000 samples each) and a string tag."""
    writer = make_writer(make_registry(3, string_tags=1))
    writer.submit(grid_batch(3, 0, 1200, hz=10))
    writer.submit(
        SampleBatch.from_arrays(
            [3, 3, 3], [T0, T0 + 60 * NS, T0 + 120 * NS], [math.nan] * 3, 0, {0: "start", 1: "G01 X10", 2: "end"}
        )
    )
    writer.close()
    return db_path


def test_one_tag_over_a_range_as_arrays(recorded: Path) -> None:
    """read() returns exactly the samples with start <= ts < end, in order."""
    with HistorianReader(recorded) as reader:
        series = reader.read("m.t1", T0 + 10 * NS, T0 + 20 * NS)
        assert len(series) == 100
        assert series.ts[0] == T0 + 10 * NS and series.ts[-1] == T0 + 20 * NS - NS // 10
        np.testing.assert_allclose(series.values, 1 + (series.ts - T0) / NS)
        assert series.quality.dtype == np.uint8 and not series.quality.any()


def test_decimated_read_gives_min_and_max_per_pixel(recorded: Path) -> None:
    """Each bucket's min/max/count equal numpy's over the same raw samples."""
    with HistorianReader(recorded) as reader:
        raw = reader.read("m.t2", T0, T0 + 1200 * NS)
        dec = reader.decimated("m.t2", T0, T0 + 1200 * NS, pixels=100)
        assert not dec.raw and dec.ts.shape == (100,)
        width = 12 * NS
        for i in (0, 37, 99):
            inside = (raw.ts >= T0 + i * width) & (raw.ts < T0 + (i + 1) * width)
            assert dec.min[i] == raw.values[inside].min()
            assert dec.max[i] == raw.values[inside].max()
            assert dec.count[i] == inside.sum()
        assert dec.count.sum() == len(raw)


def test_decimated_read_of_few_samples_returns_them_raw(recorded: Path) -> None:
    """With fewer than 4 samples per pixel the samples themselves come back."""
    with HistorianReader(recorded) as reader:
        dec = reader.decimated("m.t0", T0, T0 + 10 * NS, pixels=2000)
        assert dec.raw and dec.ts.shape == (100,)
        np.testing.assert_array_equal(dec.min, dec.max)


def test_empty_buckets_are_gaps(recorded: Path) -> None:
    """Buckets with no samples have count 0 and NaN min/max (a gap when drawn)."""
    with HistorianReader(recorded) as reader:
        dec = reader.decimated("m.t0", T0 + 600 * NS, T0 + 2400 * NS, pixels=300)
        assert not dec.raw
        assert (dec.count[100:] == 0).all() and np.isnan(dec.min[100:]).all()
        assert (dec.count[:100] == 60).all()


def test_last_value_at_or_before(recorded: Path) -> None:
    """last_value finds the sample at t itself or the one before; none before the first."""
    with HistorianReader(recorded) as reader:
        assert reader.last_value("m.t0", T0 + 5 * NS) == (T0 + 5 * NS, 5.0, 0)
        ts, _value, _ = reader.last_value("m.t0", T0 + 5 * NS + 1)  # type: ignore[misc]
        assert ts == T0 + 5 * NS
        assert reader.last_value("m.t0", T0 - 1) is None
        assert reader.last_value("m.s0", T0 + 90 * NS) == (T0 + 60 * NS, "G01 X10", 0)


def test_a_window_of_many_tags_is_in_time_then_tag_order(recorded: Path) -> None:
    """window() merges tags by (ts, tag) and carries the texts of string tags along."""
    with HistorianReader(recorded) as reader:
        ids = [t.id for t in reader.tags()]
        window = reader.window(ids, T0 + 60 * NS - 1, T0 + 60 * NS + 1)
        assert window.ts_ns.tolist() == [T0 + 60 * NS] * 4
        assert window.tag_ids.tolist() == sorted(ids)
        string_row = window.tag_ids.tolist().index(reader.tag("m.s0").id)
        assert window.texts == {string_row: "G01 X10"}


def test_opening_something_that_is_not_a_historian_says_so(tmp_path: Path) -> None:
    """A missing file and an empty database are reported, not created."""
    with pytest.raises(HistorianError, match="no historian at"):
        HistorianReader(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(HistorianError, match="not an hmi historian"):
        HistorianReader(empty)


def test_history_lookup_feeds_trends_decimated(recorded: Path, tmp_path: Path) -> None:
    """The trends' history provider gives min/max pairs per bucket for long ranges, raw
    samples for short ones, and empty arrays for unknown tags or a file not there yet."""
    lookup = HistoryLookup(recorded)
    ts, values, quality = lookup("m.t1", T0, T0 + 1200 * NS, 200)
    assert ts.shape == values.shape == quality.shape == (200,)
    assert np.all(ts[1:] >= ts[:-1])
    assert values[0] == 1.0 and values[1] == 1 + 11.9  # first bucket: 12 s of m.t1 = 1 + t
    ts, values, _ = lookup("m.t1", T0, T0 + 5 * NS, 200)
    assert ts.shape == (50,) and values[0] == 1.0
    assert lookup("m.nope", T0, T0 + NS, 10)[0].shape == (0,)
    lookup.close()
    missing = HistoryLookup(tmp_path / "later.sqlite")
    assert missing("m.t1", T0, T0 + NS, 10)[0].shape == (0,)
    assert not (tmp_path / "later.sqlite").exists()


def test_a_missing_historian_is_named_by_its_real_path(private_data_dir) -> None:
    """The message says where it looked: the data folder expanded, not "{data}"."""
    with pytest.raises(HistorianError) as error:
        HistorianReader("sqlite:///{data}/nothing-here.sqlite")
    assert "{data}" not in str(error.value)
    assert str(private_data_dir / "nothing-here.sqlite") in str(error.value)
