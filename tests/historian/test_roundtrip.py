"""Whatever goes into the historian reads back exactly (hypothesis round trips)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmi.core.quality import Quality
from hmi.core.samples import SampleBatch
from hmi.historian import HistorianReader, HistorianWriter
from tests.historian.conftest import make_registry

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Reads are half-open [start, end), so the very last int64 cannot be an exclusive bound.
TS = st.one_of(
    st.integers(INT64_MIN, INT64_MAX - 1),
    st.sampled_from([INT64_MIN, INT64_MAX - 1, 0, -1, 1]),
)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308, 2.0**70]),
)
NUMERIC_TAGS = 3
STRING_TAG = NUMERIC_TAGS  # registry: m.t0..m.t2, then the string tag m.s0


@st.composite
def batches(draw: st.DrawFn) -> list[SampleBatch]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 40))
        ids = draw(st.lists(st.integers(0, STRING_TAG), min_size=n, max_size=n))
        ts = draw(st.lists(TS, min_size=n, max_size=n))
        values = draw(st.lists(VALUES, min_size=n, max_size=n))
        quality = draw(st.lists(st.sampled_from(list(Quality)), min_size=n, max_size=n))
        texts = {}
        for row, tag in enumerate(ids):
            if tag == STRING_TAG:
                texts[row] = draw(st.text(max_size=20))
                values[row] = math.nan
        out.append(SampleBatch.from_arrays(ids, ts, values, quality, texts))
    return out


def same_value(a: float | str, b: float | str) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b  # -0.0 reads back as 0.0: SQLite stores integral reals as integers


def recorded_as(written: list[SampleBatch]) -> dict[tuple[int, int], tuple[float | str, int]]:
    """The rule of "Recorded order", one sample at a time in arrival order: after a sample that
    is not GOOD (a mark), a sample not newer than the mark (or than the late sample before it)
    is recorded 1 ns after it; a newer non-GOOD sample moves the mark; a newer GOOD value ends
    the rule for that tag."""
    floor: dict[int, int] = {}
    out: dict[tuple[int, int], tuple[float | str, int]] = {}
    for batch in written:
        for tag, ts, value, quality in batch.rows():
            if tag not in floor:
                if quality != Quality.GOOD:
                    floor[tag] = ts
            elif ts <= floor[tag]:
                ts = floor[tag] = min(floor[tag] + 1, INT64_MAX - 1)
            elif quality != Quality.GOOD:
                floor[tag] = ts
            else:
                del floor[tag]
            out[(tag, ts)] = (value, quality)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_any_batch_reads_back_exactly(written: list[SampleBatch]) -> None:
    """NaN, ±inf, extreme timestamps, every quality and texts read back as written; of two
    samples with the same tag and timestamp the later one is kept; a value that arrives after
    its tag's COMM_LOST mark is recorded after it (docs/historian.md, "Recorded order")."""
    expected = recorded_as(written)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "h.sqlite"
        registry = make_registry(NUMERIC_TAGS, string_tags=1)
        writer = HistorianWriter(str(path), registry, commit_interval_s=0.01)
        writer.start()
        for batch in written:
            assert writer.submit(batch)
        writer.close()
        assert writer.stats.not_kept == 0
        with HistorianReader(path) as reader:
            got: dict[tuple[int, int], tuple[float | str, int]] = {}
            for tag_id in range(STRING_TAG + 1):
                name = registry.spec(tag_id).name
                if name not in {t.name for t in reader.tags()}:
                    continue
                series = reader.read(name, INT64_MIN, INT64_MAX)
                assert np.all(series.ts[1:] > series.ts[:-1]), "a tag's samples come back in time order"
                texts = series.texts or {}
                for row in range(len(series)):
                    value = texts[row] if row in texts else float(series.values[row])
                    got[(tag_id, int(series.ts[row]))] = (value, int(series.quality[row]))
    assert got.keys() == expected.keys()
    for key, (value, quality) in expected.items():
        assert same_value(value, got[key][0]), (key, value, got[key][0])
        assert quality == got[key][1]
