"""Test data for the central database without the forwarder: a local historian file's rows
copied into the central tables as one station's, with COPY (what the forwarder does, minus
its cursor and its outbox)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hmi.historian import central


def ensure_schema(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        central.ensure_central_schema(conn)


def copy_recording(engine: sa.Engine, path: Path, station: str) -> dict[int, int]:
    """Every row of the SQLite historian at `path` into the central database as `station`'s;
    returns {local tag id: central tag id}."""
    ensure_schema(engine)
    local = sqlite3.connect(path)
    try:
        with engine.begin() as conn:
            station_id = conn.execute(
                sa.insert(central.stations).values(name=station, created_ns=0).returning(central.stations.c.id)
            ).scalar_one()
            ids: dict[int, int] = {}
            for row in local.execute(
                "SELECT id, name, datatype, unit, description, low, high, first_seen_ns FROM tags ORDER BY id"
            ):
                ids[row[0]] = conn.execute(
                    sa.insert(central.tags)
                    .values(
                        station_id=station_id,
                        name=row[1],
                        datatype=row[2],
                        unit=row[3],
                        description=row[4],
                        low=row[5],
                        high=row[6],
                        first_seen_ns=row[7],
                    )
                    .returning(central.tags.c.id)
                ).scalar_one()
            configs = local.execute(
                "SELECT tag_id, since_ns, datatype, unit, description, low, high FROM tag_configs"
            ).fetchall()
            if configs:
                conn.execute(
                    sa.insert(central.tag_configs),
                    [
                        dict(
                            zip(
                                ("tag_id", "since_ns", "datatype", "unit", "description", "low", "high"), r, strict=True
                            )
                        )
                        | {"tag_id": ids[r[0]]}
                        for r in configs
                    ],
                )
            lo, hi = local.execute("SELECT MIN(ts), MAX(ts) FROM samples").fetchone()
            elo, ehi = local.execute("SELECT MIN(ts), MAX(ts) FROM events").fetchone()
            bounds = [v for v in (lo, hi, elo, ehi) if v is not None]
            if bounds:
                central.ensure_partitions(conn, min(bounds), max(bounds))
            samples = [
                (ids[t], ts, v, q) for t, ts, v, q in local.execute("SELECT tag_id, ts, value, quality FROM samples")
            ]
            copy(conn, "samples", ("tag_id", "ts", "value", "quality"), samples)
            texts = [(ids[t], ts, x) for t, ts, x in local.execute("SELECT tag_id, ts, text FROM sample_texts")]
            copy(conn, "sample_texts", ("tag_id", "ts", "text"), texts)
            events = [
                (station_id, *r)
                for r in local.execute(
                    'SELECT id, ts, category, source, severity, message, "user", details FROM events ORDER BY id'
                )
            ]
            copy(
                conn,
                "events",
                ("station_id", "local_id", "ts", "category", "source", "severity", "message", "user", "details"),
                events,
            )
            _copy_sessions(conn, local, station_id)
        return ids
    finally:
        local.close()


def _copy_sessions(conn: sa.Connection, local: sqlite3.Connection, station_id: int) -> None:
    have = {r[0] for r in local.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "sessions" not in have:
        return
    for sha, text, redacted in local.execute("SELECT sha256, text, redacted FROM project_files"):
        conn.execute(
            sa.text(
                "INSERT INTO project_files (sha256, text, redacted) VALUES (:s, :t, :r) ON CONFLICT (sha256) DO NOTHING"
            ),
            {"s": sha, "t": text, "r": redacted},
        )
    columns = ("id", "started_ns", "host", "program_version", "project_name", "project_path", "project_sha256")
    for row in local.execute(f"SELECT {', '.join(columns)} FROM sessions"):
        conn.execute(sa.insert(central.sessions).values(station_id=station_id, **dict(zip(columns, row, strict=True))))
    for row in local.execute("SELECT session_id, machine, path, sha256, size FROM session_models"):
        values = dict(zip(("session_id", "machine", "path", "sha256", "size"), row, strict=True))
        conn.execute(sa.insert(central.session_models).values(station_id=station_id, **values))


def copy(conn: sa.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    raw: Any = conn.connection.driver_connection
    names = ", ".join(f'"{c}"' for c in columns)
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as out:
        for row in rows:
            out.write_row(row)
