"""Many tags read at once (issue #18: a trend of fifty pens over a shift opens in under a
second): decimated_many gives per tag exactly what decimated gives, whichever way the back
end computes its buckets, and HistoryLookup.many what the lookup gives per name."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian.reader import HISTORY_SPLIT_TAGS, Decimated, HistoryLookup
from tests.historian.conftest import NS, T0, grid_batch, make_registry

TAGS = 3
GRID = 20  # ns: samples, ranges and (often) bucket edges on one grid, so edges meet samples
SPAN = 100 * GRID
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, -0.0, 5e-324, 1.7976931348623157e308]),
)


@st.composite
def series(draw: st.DrawFn) -> SampleBatch:
    """Up to 300 samples over TAGS tags (some tags may get none), any values and qualities."""
    n = draw(st.integers(0, 300))
    ids = draw(st.lists(st.integers(0, TAGS - 1), min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(0, SPAN // GRID).map(lambda k: k * GRID), min_size=n, max_size=n))
    values = draw(st.lists(VALUES, min_size=n, max_size=n))
    quality = draw(st.lists(st.sampled_from(list(Quality)), min_size=n, max_size=n))
    return SampleBatch.from_arrays(ids, [T0 + t for t in ts], values, quality)


def assert_same(got: Decimated, want: Decimated) -> None:
    assert got.raw == want.raw
    for field in ("ts", "min", "max", "count", "quality"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        assert np.array_equal(a, b, equal_nan=True), field


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=series(),
    start=st.one_of(st.integers(-2, SPAN // GRID).map(lambda k: k * GRID), st.integers(-50, SPAN)),
    length=st.one_of(st.integers(1, SPAN // GRID + 5).map(lambda k: k * GRID), st.integers(1, SPAN + 100)),
    pixels=st.one_of(st.integers(1, 12), st.sampled_from([5, 10, 20, 25, 50]), st.integers(1, 60)),
    asked=st.lists(st.integers(0, TAGS + 1), min_size=1, max_size=6),
)
def test_many_tags_read_at_once_give_each_what_one_read_gives(
    batch: SampleBatch, start: int, length: int, pixels: int, asked: list[int]
) -> None:
    """For any recording, range, width and list of tag ids (repeated, or not in the file), each
    tag's buckets (or raw samples, when few) are those decimated() gives, with per-bucket
    SQL (SQLite) as with one GROUP BY (a server back end)."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "h.sqlite"
        writer = HistorianWriter(str(db), make_registry(TAGS), commit_interval_s=0.01)
        writer.start()
        writer.submit(batch)
        writer.close()
        lo, hi = T0 + start, T0 + start + length
        with HistorianReader(db) as reference, HistorianReader(db) as reader:
            want = {t: reference.decimated(t, lo, hi, pixels) for t in asked}
            for strategy in ("per_bucket", "group_by"):
                reader.dialect.decimation = strategy
                got = reader.decimated_many(asked, lo, hi, pixels)
                assert set(got) == set(want)
                for tag_id, dec in want.items():
                    assert_same(got[tag_id], dec)


def test_every_width_and_range_edge_on_a_grid(make_writer, db_path: Path) -> None:
    """Deterministic sweep of what the property test meets only by chance: ranges that start
    and end on a sample, buckets that reach past the end, exactly as many samples as the raw
    limit, all-NaN buckets."""
    writer = make_writer(make_registry(TAGS))
    grid = T0 + np.arange(0, SPAN + 1, GRID, dtype=np.int64)
    values = np.where(np.arange(grid.shape[0]) % 7 < 2, np.nan, np.sin(np.arange(grid.shape[0])))
    writer.submit(SampleBatch.from_arrays(np.zeros(grid.shape), grid, np.arange(grid.shape[0], dtype=float)))
    writer.submit(SampleBatch.from_arrays(np.ones(grid.shape), grid, values, np.arange(grid.shape[0]) % 3))
    writer.submit(SampleBatch.from_arrays(np.full(34, 2), grid[::3], np.full(34, 1.5)))
    writer.close()
    with HistorianReader(db_path) as reference, HistorianReader(db_path) as reader:
        ids = [t.id for t in reference.tags()]
        for start in (-GRID, 0, 7, GRID, 5 * GRID):
            for length in (GRID, 5 * GRID - 1, 5 * GRID, 5 * GRID + 1, 40 * GRID, SPAN, SPAN + GRID):
                for pixels in range(1, 30):
                    lo, hi = T0 + start, T0 + start + length
                    want = {t: reference.decimated(t, lo, hi, pixels) for t in ids}
                    for strategy in ("per_bucket", "group_by"):
                        reader.dialect.decimation = strategy
                        got = reader.decimated_many(ids, lo, hi, pixels)
                        for tag_id in ids:
                            assert_same(got[tag_id], want[tag_id])


def test_many_tags_in_buckets_and_raw_side_by_side(make_writer, db_path: Path) -> None:
    """A dense tag comes back in buckets, a sparse one raw, an id not in the file empty, as
    decimated() gives them; names and RecordedTags work as ids do."""
    writer = make_writer(make_registry(3))
    writer.submit(grid_batch(1, 0, 600, hz=10))  # m.t0: 6,000 samples
    writer.submit(SampleBatch.from_arrays([1, 1], [T0, T0 + 300 * NS], [math.nan, 7.0], [0, Quality.BAD]))
    writer.close()
    with HistorianReader(db_path) as reader:
        dense, sparse, never = reader.tag("m.t0").id, reader.tag("m.t1").id, 10_000  # never written
        got = reader.decimated_many(["m.t0", reader.tag("m.t1"), never], T0, T0 + 600 * NS, pixels=60)
        assert sorted(got) == sorted((dense, sparse, never))
        d = got[dense]
        assert not d.raw and d.count.sum() == 6000 and d.min[0] == 0.0 and d.max[0] == pytest.approx(9.9)
        assert got[sparse].raw and got[sparse].ts.tolist() == [T0, T0 + 300 * NS] and math.isnan(got[sparse].min[0])
        assert got[sparse].quality.tolist() == [Quality.GOOD, Quality.BAD]
        assert got[never].raw and got[never].ts.shape == (0,)
        for tag_id in (dense, sparse, never):
            assert_same(got[tag_id], reader.decimated(tag_id, T0, T0 + 600 * NS, pixels=60))
        with pytest.raises(ValueError):
            reader.decimated_many([0], T0, T0, pixels=60)


@pytest.mark.parametrize("tags", [3, HISTORY_SPLIT_TAGS + 3])
def test_history_lookup_reads_many_names_as_it_reads_one(make_writer, db_path: Path, tags: int) -> None:
    """The trend's provider read for many pens at once (on one connection, or split over two
    from HISTORY_SPLIT_TAGS on) gives each name what a call for that name gives; names not
    recorded give empty arrays."""
    writer = make_writer(make_registry(tags))
    writer.submit(grid_batch(tags, 0, 1200, hz=10))
    writer.close()
    names = [f"m.t{i}" for i in range(tags)] + ["m.nope"]
    lookup = HistoryLookup(db_path)
    try:
        for start, end, points in ((T0, T0 + 1200 * NS, 200), (T0 + 5 * NS, T0 + 6 * NS, 200)):
            got = lookup.many(names, start, end, points)
            assert list(got) == names
            for name in names:
                want = lookup(name, start, end, points)
                for a, b in zip(got[name], want, strict=True):
                    assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
            assert got["m.t1"][0].shape[0] > 0 and got["m.nope"][0].shape == (0,)
    finally:
        lookup.close()
    missing = HistoryLookup(db_path.parent / "later.sqlite")
    assert all(ts.shape == (0,) for ts, _, _ in missing.many(names, T0, T0 + NS, 10).values())
    missing.close()
