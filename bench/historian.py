"""Historian benchmark: ingest through the writer against bare sqlite3 executemany into the
same schema, reads, decimation, playback of an 8-hour shift, bytes per sample.

    python -m bench historian            # full run, about 1-2 minutes
    python -m bench.historian --quick    # small sizes, a smoke test of the benchmark itself

Every figure is measured in this run, with the raw library ceiling beside it where one
exists (bare sqlite3 doing the same work without the historian around it).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from bench.common import print_table
from hmi.config.models import ForwardConfig
from hmi.core.bus import TagBus
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec
from hmi.historian import HistorianReader, HistorianWriter
from hmi.historian import schema as s
from hmi.sources.replay import ReplaySource

NS = 1_000_000_000
T0 = 1_795_237_200_000_000_000 - 86_400 * NS  # 2026-11-20T05:00Z, shift A in Berlin


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: str = ""
    ceiling: float | None = None
    ok: bool | None = None

    def cells(self) -> list[str]:
        value = f"{self.value:,.0f}" if self.value >= 1000 else f"{self.value:,.1f}"
        ceiling = ""
        if self.ceiling:
            ceiling = f"{self.ceiling:,.0f}" if self.ceiling >= 1000 else f"{self.ceiling:,.1f}"
        ratio = ""
        if self.ceiling:
            # For rates more is better; for times the ceiling is the faster one.
            r = self.value / self.ceiling if self.unit.endswith("/s") else self.ceiling / self.value
            ratio = f"{r:.0%}"
        verdict = "" if self.ok is None else ("ok" if self.ok else "MISSED")
        return [self.name, f"{value} {self.unit}", self.target, ceiling, ratio, verdict]


def grid(tags: int, start_s: float, seconds: float, hz: float, rng: np.random.Generator) -> SampleBatch:
    """`tags` tags at `hz`, a random walk per tag (realistic, not compressible to nothing)."""
    steps = round(seconds * hz)
    ts = T0 + ((start_s + np.arange(steps) / hz) * NS).astype(np.int64)
    ids = np.repeat(np.arange(tags, dtype=np.int32), steps)
    values = 50.0 + np.cumsum(rng.normal(0, 0.1, tags * steps))
    return SampleBatch.from_arrays(ids, np.tile(ts, tags), values, 0)


def registry(tags: int) -> TagRegistry:
    return TagRegistry(TagSpec(f"m{i // 20:02d}.signal_{i % 20:02d}", "mm") for i in range(tags))


def record(
    path: Path, tags: int, seconds: float, hz: float, batch_s: float, forward: ForwardConfig | None = None
) -> tuple[float, HistorianWriter]:
    """Write `tags` x `seconds` x `hz` samples through the writer (forwarding as `forward`
    says: bench.forward); returns samples/s."""
    rng = np.random.default_rng(1)
    batches = [grid(tags, a, min(batch_s, seconds - a), hz, rng) for a in np.arange(0, seconds, batch_s)]
    total = sum(len(b) for b in batches)
    writer = HistorianWriter(
        str(path), registry(tags), max_queue_samples=total + 1, commit_interval_s=1.0, forward=forward
    )
    writer.start()
    # The first batch opens the file and creates the schema; time the steady state after it.
    writer.submit(batches[0])
    writer.flush(60)
    total -= len(batches[0])
    started = time.perf_counter()
    for batch in batches[1:]:
        writer.submit(batch)
    if not writer.flush(600):
        raise RuntimeError("the writer did not catch up within 10 minutes")
    elapsed = time.perf_counter() - started
    writer.close()
    return total / elapsed, writer


def bare_executemany(path: Path, tags: int, seconds: float, hz: float, batch_rows: int) -> float:
    """The ceiling: sqlite3 executemany of prebuilt tuples into the same schema, WAL/NORMAL."""
    engine = sa.create_engine(f"sqlite:///{path}")
    s.metadata.create_all(engine)
    engine.dispose()
    rng = np.random.default_rng(1)
    batch = grid(tags, 0, seconds, hz, rng)
    order = np.lexsort((batch.ts_ns, batch.tag_ids))
    rows = list(
        zip(
            (batch.tag_ids[order] + 1).tolist(),
            batch.ts_ns[order].tolist(),
            batch.values[order].tolist(),
            batch.quality[order].tolist(),
            strict=True,
        )
    )
    # Commit in time slices like a live feed: every tag appends a run per commit.
    per_slice = max(1, batch_rows // tags)
    steps = int(seconds * hz)
    slices = []
    for a in range(0, steps, per_slice):
        b = min(a + per_slice, steps)
        slices.append([rows[t * steps + i] for t in range(tags) for i in range(a, b)])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    started = time.perf_counter()
    for chunk in slices:
        conn.executemany("INSERT INTO samples (tag_id, ts, value, quality) VALUES (?, ?, ?, ?)", chunk)
        conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of `fn` in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def playback_figures(path: Path, tags: int, hours: float, seeks: int) -> tuple[float, list[float], list[float], float]:
    """First frame (ms from opening); per seek, ms to the new state on the bus and ms until
    ready to play on (next minute loaded); the bare ceiling of the state lookup (ms)."""
    bus = TagBus()
    published = threading.Event()
    bus.subscribe(lambda _batch: published.set())
    end = T0 + int(hours * 3600 * NS)
    with HistorianReader(path) as reader:
        pens = [t.name for t in reader.tags()[:4]]
    started = time.perf_counter()
    source = ReplaySource(path, T0, end, bus, history_tags=pens, history_s=300, autoplay=True)
    source.start()
    if not published.wait(60):
        raise RuntimeError(f"no frame from the replay: {source.error}")
    first_frame = (time.perf_counter() - started) * 1000
    source.wait_opened(60)
    source.pause()
    rng = np.random.default_rng(5)
    times = []
    complete = []
    for target in rng.integers(T0, end, seeks).tolist():
        generation = source.seek_generation
        published.clear()
        began = time.perf_counter()
        source.seek(target)
        if not published.wait(30):
            raise RuntimeError("a seek published nothing")
        times.append((time.perf_counter() - began) * 1000)
        while source.seek_generation == generation or source.position_ns != target:
            time.sleep(0.001)
        # Seeks come at human pace (the timeline throttles drags to one per 120 ms).
        time.sleep(0.2)
        complete.append(source.last_seek_s * 1000)
    source.close()
    # Ceiling: the same last-value lookups with a bare cursor.
    conn = sqlite3.connect(path)
    ids = [r[0] for r in conn.execute("SELECT id FROM tags")]
    bare = []
    for target in rng.integers(T0, end, seeks).tolist():
        began = time.perf_counter()
        for tag_id in ids:
            conn.execute(
                "SELECT ts, value, quality FROM samples WHERE tag_id = ? AND ts <= ? ORDER BY ts DESC LIMIT 1",
                (tag_id, target),
            ).fetchone()
        bare.append((time.perf_counter() - began) * 1000)
    conn.close()
    return first_frame, times, complete, statistics.median(bare)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.historian", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test), targets not judged")
    # `python -m bench` calls main() with no arguments; its own argv is not ours.
    args = parser.parse_args(argv or [])
    quick = args.quick
    ingest_tags, ingest_s = (50, 60) if quick else (200, 10_000)  # 2 M samples
    read_tags, read_hours = (2, 1) if quick else (5, 8)  # 10 Hz
    shift_tags, shift_hours = (20, 0.5) if quick else (200, 8)  # 1 Hz: 5.76 M samples
    judge = not quick
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="hmi-bench-") as folder:
        root = Path(folder)
        print("ingest: bare sqlite3 executemany ...", flush=True)
        bare10k = bare_executemany(root / "bare10k.sqlite", ingest_tags, ingest_s, 1.0, 10_000)
        # The same commit size as the writer (max_batch_samples): the fair ceiling.
        bare = bare_executemany(root / "bare.sqlite", ingest_tags, ingest_s, 1.0, 50_000)
        rows.append(Row("bare sqlite3 executemany, 10k-row commits", bare10k, "rows/s"))
        rows.append(Row("bare sqlite3 executemany, 50k-row commits", bare, "rows/s"))
        print("ingest: through the writer ...", flush=True)
        rate, _ = record(root / "ingest.sqlite", ingest_tags, ingest_s, 1.0, 50)
        rows.append(
            Row(
                "sustained ingest, writer (fed 10k-sample batches)",
                rate,
                "samples/s",
                ">= 100,000/s and >= 70 % of bare",
                bare,
                (rate >= 100_000 and rate >= 0.7 * bare) if judge else None,
            )
        )

        print(f"reads: recording {read_tags} tags x {read_hours} h at 10 Hz ...", flush=True)
        read_path = root / "reads.sqlite"
        record(read_path, read_tags, read_hours * 3600, 10.0, 60)
        with HistorianReader(read_path) as reader:
            tag = reader.tags()[1]
            hour = timed(lambda: reader.read(tag, T0 + NS, T0 + 3601 * NS))
            conn = sqlite3.connect(read_path)
            bare_hour = timed(
                lambda: conn.execute(
                    "SELECT ts, value, quality FROM samples WHERE tag_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                    (tag.id, T0 + NS, T0 + 3601 * NS),
                ).fetchall()
            )
            conn.close()
            rows.append(
                Row(
                    "read one tag, 1 h at 10 Hz (36k samples) as numpy",
                    hour,
                    "ms",
                    "< 50 ms",
                    bare_hour,
                    hour < 50 if judge else None,
                )
            )
            span = int(read_hours * 3600 * NS)
            dec = timed(lambda: reader.decimated(tag, T0, T0 + span, 2000))
            rows.append(
                Row(
                    f"decimated read, one tag {read_hours} h at 10 Hz, 2,000 px",
                    dec,
                    "ms",
                    "< 100 ms",
                    None,
                    dec < 100 if judge else None,
                )
            )
            stored = reader.storage_bytes() or 0
            samples = sum(reader.count(t, 0, 2**62) for t in reader.tags())
            rows.append(
                Row(
                    "bytes per stored sample (10 Hz tags)",
                    stored / samples,
                    "B",
                    "<= 32",
                    None,
                    stored / samples <= 32 if judge else None,
                )
            )

        print(f"playback: recording {shift_tags} tags x {shift_hours} h at 1 Hz ...", flush=True)
        shift_path = root / "shift.sqlite"
        shift_rate, writer = record(shift_path, shift_tags, shift_hours * 3600, 1.0, 60)
        rows.append(Row(f"ingest of the shift ({writer.stats.written:,} samples)", shift_rate, "samples/s"))
        first, seeks, complete, bare_seek = playback_figures(shift_path, shift_tags, shift_hours, 5 if quick else 20)
        median, worst = statistics.median(seeks), max(seeks)
        rows += [
            Row(f"playback first frame ({shift_tags} tags, {shift_hours} h)", first, "ms", "< 2,000 ms", None,
                first < 2000 if judge else None),
            Row(f"playback seek to the new frame, median of {len(seeks)}", median, "ms", "< 100 ms", bare_seek,
                median < 100 if judge else None),
            Row(f"playback seek to the new frame, worst of {len(seeks)}", worst, "ms", "< 100 ms", None,
                worst < 100 if judge else None),
            Row("playback seek until ready to play on, worst", max(complete), "ms"),
        ]  # fmt: skip
        with HistorianReader(shift_path) as reader:
            per_sample = (reader.storage_bytes() or 0) / writer.stats.written
        rows.append(
            Row(
                "bytes per stored sample (shift file)",
                per_sample,
                "B",
                "<= 32",
                None,
                per_sample <= 32 if judge else None,
            )
        )

    header = ("figure", "measured", "target", "ceiling", "vs ceiling", "")
    print_table("Historian and playback", [tuple(r.cells()) for r in rows], header)
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
