"""Store-and-forward benchmark: the forwarder against a bare psycopg COPY of the same rows
into the same table, catch-up after an outage while live recording goes on, and what the
outbox costs local ingest.

    python -m bench forward            # a private server (tests/pg.py), about 1-2 minutes
    python -m bench.forward --quick    # small sizes, a smoke test of the benchmark itself

Every figure is measured in this run, beside its ceiling where one exists.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import print_table
from bench.historian import NS, T0, Row, grid, record, registry
from hmi.config.models import ForwardConfig
from hmi.core.samples import SampleBatch
from hmi.historian import HistorianWriter
from hmi.historian.forward import Forwarder, decode_chunks, last_of_each_key, samples_copy_buffer

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"  # forwarding configured, server away: the outbox fills


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def outbox_batches(path: Path, batch_rows: int, central_ids: np.ndarray) -> list[Arrays]:
    """The outbox's rows, batched and keyed as the forwarder sends them: for the bare ceiling."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT seq, rows, tag_ids, ts, vals, quality, texts FROM outbox ORDER BY seq").fetchall()
    conn.close()
    groups, chosen, total = [], [], 0
    for seq, n, *blobs in rows:
        if chosen and total + n > batch_rows:
            groups.append(chosen)
            chosen, total = [], 0
        chosen.append((seq, *blobs))
        total += n
    if chosen:
        groups.append(chosen)
    out = []
    for group in groups:
        chunks = decode_chunks(group)
        keep = last_of_each_key(chunks.tag_ids, chunks.ts)
        ids = central_ids[chunks.tag_ids.astype(np.int64)]
        out.append((ids[keep], chunks.ts[keep], chunks.values[keep], chunks.quality[keep]))
    return out


def bare_copy(db: Any, batches: list[Arrays], rows: int, binary: bool) -> float:
    """The ceiling: psycopg COPY of the same rows into the same (partitioned, keyed) table,
    one transaction per batch with a cursor update, as the forwarder does; no SQLite read,
    no decoding. `binary`: a prepared binary buffer (built in the timing); else write_row."""
    with db.connect() as conn:
        conn.execute("TRUNCATE samples")
    tuples = [list(zip(*(a.tolist() for a in batch), strict=True)) for batch in batches] if not binary else []
    with db.connect(autocommit=False) as conn:
        started = time.perf_counter()
        for i, batch in enumerate(batches):
            with conn.cursor() as cur:
                if binary:
                    with cur.copy("COPY samples (tag_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.write(samples_copy_buffer(*batch))
                else:
                    with cur.copy("COPY samples (tag_id, ts, value, quality) FROM STDIN") as copy:
                        for row in tuples[i]:
                            copy.write_row(row)
                cur.execute("UPDATE forward_cursors SET position = position + 1 WHERE stream = 'samples'")
            conn.commit()
        return rows / (time.perf_counter() - started)


def forward_once(path: Path, config: ForwardConfig, rows: int) -> tuple[float, Forwarder]:
    """Steady state: from the first batch committed (connecting, creating the schema and
    the tags are once per start) to the last."""
    forwarder = Forwarder(config, str(path), status_interval_s=0.5, poll_s=0.05)
    begun = time.perf_counter()
    forwarder.start()
    while not forwarder.stats.samples_sent:
        time.sleep(0.001)
    first, started = forwarder.stats.samples_sent, time.perf_counter()
    while forwarder.stats.samples_sent < rows:
        time.sleep(0.002)
        if time.perf_counter() - begun > 600:
            raise RuntimeError("the forwarder did not finish within 10 minutes")
    elapsed = time.perf_counter() - started
    forwarder.close(drain_s=0)
    return (rows - first) / elapsed, forwarder


def catch_up(root: Path, db: Any, tags: int, outage_s: float, hz: float, config: ForwardConfig) -> tuple[float, float]:
    """Record `outage_s` of live load with the server away, then let the forwarder catch up
    while the live load goes on; returns (catch-up seconds, catch-up rate / live rate)."""
    path = root / "catchup.sqlite"
    reg = registry(tags)
    ids = np.arange(tags, dtype=np.int32)
    # The outage's backlog, recorded as fast as the writer takes it (its times are what matter).
    away = HistorianWriter(str(path), reg, forward=config.model_copy(update={"url": UNREACHABLE}))
    away.start()
    rng = np.random.default_rng(2)
    for second in range(int(outage_s)):
        away.submit(grid(tags, second, 1, hz, rng))
    away.flush(600)
    away.close()
    backlog = int(tags * hz * int(outage_s))
    writer = HistorianWriter(str(path), reg, commit_interval_s=1.0, forward=config)
    stop = threading.Event()

    def live() -> None:
        step = 0
        while not stop.is_set():
            ts = T0 + int((outage_s + step / hz) * NS)
            writer.submit(SampleBatch.from_arrays(ids, ts, np.full(tags, float(step)), 0))
            step += 1
            stop.wait(1 / hz)

    writer.start()
    feeder = threading.Thread(target=live, daemon=True)
    started = time.perf_counter()
    feeder.start()
    forwarder = writer.forwarder
    assert forwarder is not None
    while forwarder.stats.samples_sent < backlog or forwarder.stats.backlog_rows > tags * hz * 2:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    feeder.join()
    writer.close()
    live_rate = tags * hz
    return elapsed, (backlog / elapsed + live_rate) / live_rate


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.forward", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test), targets not judged")
    args = parser.parse_args(argv or [])
    quick = args.quick
    judge = not quick
    ingest_tags, ingest_s = (50, 60) if quick else (200, 5_000)  # 1 M samples
    fwd_tags, fwd_s = (50, 120) if quick else (2000, 1000)  # 2 M samples at 1 Hz
    live_tags, live_hz, outage_s = (200, 10.0, 10) if quick else (2000, 10.0, 60)
    rows: list[Row] = []
    # The unreachable server is the point of two measurements: not worth a message each.
    logging.getLogger("hmi.historian.forward").setLevel(logging.CRITICAL)

    from tests.pg import PASSWORD_REF, CentralDatabase, PostgresServer

    with tempfile.TemporaryDirectory(prefix="hmi-bench-") as folder:
        root = Path(folder)
        print("local ingest with and without the outbox (interleaved, median of 3) ...", flush=True)
        unreachable = ForwardConfig(url=UNREACHABLE, station="bench")
        plain, outbox = [], []
        for i in range(3):
            plain.append(record(root / f"plain{i}.sqlite", ingest_tags, ingest_s, 1.0, 10)[0])
            outbox.append(record(root / f"outbox{i}.sqlite", ingest_tags, ingest_s, 1.0, 10, unreachable)[0])
        rows.append(Row("local ingest, no forwarding", statistics.median(plain), "samples/s"))
        rows.append(
            Row(
                "local ingest, outbox written (forwarding configured)",
                statistics.median(outbox),
                "samples/s",
                "within noise of the line above",
                statistics.median(plain),
            )
        )
        print(f"  runs without: {[round(r) for r in plain]}, with: {[round(r) for r in outbox]}", flush=True)

        print("starting a private PostgreSQL ...", flush=True)
        server = PostgresServer().start()
        try:
            # The bench server keeps PostgreSQL's durable defaults for commits.
            with server.connect() as conn:
                conn.execute("ALTER SYSTEM SET synchronous_commit = on")
                conn.execute("SELECT pg_reload_conf()")
            db = CentralDatabase(server, "bench_forward").create()
            os.environ.__setitem__(*db.password_env)
            config = ForwardConfig(url=db.url, password_ref=PASSWORD_REF, station="bench")

            print(f"forwarding: recording {fwd_tags} tags x {fwd_s} s into an outbox ...", flush=True)
            source = root / "forward.sqlite"
            record(source, fwd_tags, fwd_s, 1.0, 10, unreachable)
            total = fwd_tags * fwd_s
            rate, forwarder = forward_once(source, config, total)
            with db.connect() as conn:
                tag_map = dict(conn.execute("SELECT name, id FROM tags").fetchall())
            local = sqlite3.connect(source)
            central_ids = np.full(fwd_tags + 64, -1, np.int64)
            for local_id, name in local.execute("SELECT id, name FROM tags"):
                central_ids[local_id] = tag_map.get(name, -1)
            local.close()
            batches = outbox_batches(source, config.batch_rows, central_ids)
            bare_binary = bare_copy(db, batches, total, binary=True)
            bare_rows = bare_copy(db, batches, total, binary=False)
            ceiling = max(bare_binary, bare_rows)
            rows.append(Row("bare psycopg COPY, write_row of tuples (text)", bare_rows, "samples/s"))
            rows.append(Row("bare psycopg COPY, prepared binary buffer", bare_binary, "samples/s"))
            rows.append(
                Row(
                    f"forwarder, outbox -> central ({config.batch_rows:,}-row batches)",
                    rate,
                    "samples/s",
                    ">= 150,000/s and >= 70 % of bare",
                    ceiling,
                    (rate >= 150_000 and rate >= 0.7 * ceiling) if judge else None,
                )
            )
            del forwarder

            print(f"catch-up: {outage_s} s outage of {live_tags} tags x {live_hz:g} Hz, live load on ...", flush=True)
            db2 = CentralDatabase(server, "bench_catchup").create()
            config2 = config.model_copy(update={"url": db2.url})
            seconds, factor = catch_up(root, db2, live_tags, outage_s, live_hz, config2)
            rows.append(Row("catch-up time after the outage", seconds, "s"))
            rows.append(
                Row(
                    "catch-up rate while recording live, x live rate",
                    factor,
                    "x",
                    ">= 5x",
                    None,
                    factor >= 5 if judge else None,
                )
            )
        finally:
            server.stop()
    header = ("measure", "value", "target", "ceiling", "of ceiling", "")
    print_table("Store-and-forward (historian -> PostgreSQL)", [tuple(r.cells()) for r in rows], header)
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
