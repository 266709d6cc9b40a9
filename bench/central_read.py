"""Reading from the central PostgreSQL historian: one tag's hour, a decimated shift, a
playback of 200 tags x 8 h opening, each beside a bare psycopg query doing the same read.

    python -m bench central_read            # a private server (tests/pg.py), ~1-2 minutes
    python -m bench.central_read --quick    # small sizes, a smoke test of the benchmark

The data is generated on the server (INSERT ... SELECT generate_series) into day partitions,
then ANALYZEd. `--explain` prints EXPLAIN ANALYZE of the hot statements (the index choice).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import sqlalchemy as sa

from bench.common import print_table
from bench.historian import NS, Row, timed
from hmi.core.bus import TagBus
from hmi.historian import HistorianReader, central
from hmi.sources.replay import ReplaySource

T0 = 1_795_237_200_000_000_000 - 86_400 * NS  # 2026-11-20T05:00Z


def fill(engine: sa.Engine, tags: int, hours: float, hz: float, first_tag: int) -> list[int]:
    """`tags` tags of station "ws1" sampled at `hz` for `hours` from T0, generated on the server."""
    end = T0 + int(hours * 3600 * NS)
    step = int(NS / hz)
    with engine.begin() as conn:
        central.ensure_partitions(conn, T0, end)
        station = conn.execute(sa.select(central.stations.c.id).where(central.stations.c.name == "ws1")).scalar()
        if station is None:
            station = conn.execute(
                sa.insert(central.stations).values(name="ws1", created_ns=0).returning(central.stations.c.id)
            ).scalar_one()
        ids = [
            conn.execute(
                sa.insert(central.tags)
                .values(station_id=station, name=f"m{first_tag + i}.value", unit="mm", first_seen_ns=T0)
                .returning(central.tags.c.id)
            ).scalar_one()
            for i in range(tags)
        ]
        conn.exec_driver_sql(
            "INSERT INTO samples (tag_id, ts, value, quality) "
            f"SELECT t, {T0}::bigint + k * {step}::bigint, sin(k / 50.0) + t, 0 "
            f"FROM unnest(ARRAY[{','.join(map(str, ids))}]) AS t, generate_series(0, {int(hours * 3600 * hz) - 1}) AS k"
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE samples")
    return ids


def first_frame_ms(url: str, hours: float) -> float:
    bus = TagBus()
    published = threading.Event()
    bus.subscribe(lambda _batch: published.set())
    with HistorianReader(url) as reader:
        pens = [t.name for t in reader.tags()[:4]]
    started = time.perf_counter()
    source = ReplaySource(url, T0, T0 + int(hours * 3600 * NS), bus, history_tags=pens, history_s=300, autoplay=True)
    source.start()
    try:
        if not published.wait(120):
            raise RuntimeError(f"no frame from the replay: {source.error}")
        return (time.perf_counter() - started) * 1000
    finally:
        source.close()


def main(argv: list[str] | None = None) -> list[Row]:
    from tests.pg import PASSWORD_REF, CentralDatabase, PostgresServer

    parser = argparse.ArgumentParser(prog="python -m bench.central_read", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test), targets not judged")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the hot statements")
    args = parser.parse_args(argv or [])
    quick = args.quick
    judge = not quick
    shift_tags, shift_hours = (20, 0.5) if quick else (200, 8)
    read_hours = 1 if quick else 8
    rows: list[Row] = []
    server = PostgresServer().start()
    try:
        print(f"server started in {server.start_seconds:.1f} s", flush=True)
        db = CentralDatabase(server, "bench").create()
        os.environ.__setitem__(*db.password_env)
        engine = db.engine()
        with engine.connect() as conn:
            central.ensure_central_schema(conn)
        print(f"filling: 1 tag x {read_hours} h at 10 Hz, {shift_tags} tags x {shift_hours} h at 1 Hz ...", flush=True)
        started = time.perf_counter()
        (tag_id,) = fill(engine, 1, read_hours, 10.0, 0)
        fill(engine, shift_tags, shift_hours, 1.0, 1)
        print(f"filled in {time.perf_counter() - started:.1f} s", flush=True)
        url = f"{db.url}?station=ws1&password_ref={PASSWORD_REF}"
        bare = db.connect()
        hour_end = T0 + 3600 * NS
        shift_end = T0 + read_hours * 3600 * NS
        with HistorianReader(url) as reader:
            tag = reader.tag("m0.value")
            hour = timed(lambda: reader.read(tag, T0, hour_end))

            def bare_hour() -> object:
                with bare.cursor() as cur:
                    cur.execute(
                        "SELECT ts, value, quality FROM samples WHERE tag_id = %s AND ts >= %s AND ts < %s ORDER BY ts",
                        (tag_id, T0, hour_end),
                    )
                    return np.array(cur.fetchall())

            rows.append(
                Row(
                    "read one tag, 1 h at 10 Hz (36k samples)",
                    hour,
                    "ms",
                    "< 100 ms",
                    timed(bare_hour),
                    hour < 100 if judge else None,
                )
            )
            dec = timed(lambda: reader.decimated(tag, T0, shift_end, 2000))
            width = -(-(shift_end - T0) // 2000)

            def bare_dec() -> object:
                with bare.cursor() as cur:
                    cur.execute(
                        "SELECT (ts - %s) / %s AS b, MIN(value), MAX(value), COUNT(*), MAX(quality) FROM samples "
                        "WHERE tag_id = %s AND ts >= %s AND ts < %s GROUP BY 1",
                        (T0, width, tag_id, T0, shift_end),
                    )
                    return cur.fetchall()

            rows.append(
                Row(
                    f"decimated read, one tag {read_hours} h at 10 Hz, 2,000 px",
                    dec,
                    "ms",
                    "< 200 ms",
                    timed(bare_dec),
                    dec < 200 if judge else None,
                )
            )
            if args.explain:
                with bare.cursor() as cur:
                    for sql, params in (
                        (
                            "SELECT ts, value, quality FROM samples WHERE tag_id = %s AND ts >= %s AND ts < %s "
                            "ORDER BY ts",
                            (tag_id, T0, hour_end),
                        ),
                        (
                            "SELECT bucket, MIN(value), MAX(value), COUNT(*), MAX(quality) FROM (SELECT (ts - %s) / %s "
                            "AS bucket, value, quality FROM samples WHERE tag_id = %s AND ts >= %s AND ts < %s) AS b "
                            "GROUP BY bucket",
                            (T0, width, tag_id, T0, shift_end),
                        ),
                    ):
                        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                        print("\n".join(r[0] for r in cur.fetchall()), "\n", flush=True)
        frames = [first_frame_ms(url, shift_hours) for _ in range(3)]
        first = float(np.median(frames))
        rows.append(
            Row(
                f"playback first frame ({shift_tags} tags, {shift_hours} h at 1 Hz)",
                first,
                "ms",
                "< 2,000 ms",
                None,
                first < 2000 if judge else None,
            )
        )
        bare.close()
        engine.dispose()
        db.drop()
    finally:
        server.stop()
    header = ["figure", "measured", "target", "bare psycopg", "vs bare", ""]
    print_table("Central historian reads (PostgreSQL)", [tuple(r.cells()) for r in rows], header)
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
