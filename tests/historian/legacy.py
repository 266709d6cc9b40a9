"""Historian files of earlier schema versions, rebuilt from their SQL dumps in data/ (text
that can be reviewed, rather than committed database files)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

DATA = Path(__file__).parent / "data"


def v1_file(path: Path) -> Path:
    """A version-1 file as the version-1 writer (git 7d02714) left it: cnc01.axis_x and
    .spindle_speed over 60 s from T0 = 1_790_000_000 s, one event, a shift calendar."""
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / "schema_v1.sql").read_text(encoding="utf-8"))
    conn.close()
    return path
