"""The historian: every sample, event and shift of the plant, in one database.

SQLAlchemy Core for the schema and most reads, the driver's executemany on the hot
insert path; SQLite by default (hmi/historian/sqlite.py holds everything SQLite-only).
One writer thread owns the database (writer.py); readers open their own connections
(reader.py) and run beside it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hmi.historian.reader import Decimated, HistorianReader, RecordedTag, Series
    from hmi.historian.schema import SCHEMA_VERSION, HistorianError
    from hmi.historian.shifts import Shift, ShiftCalendar, ShiftDefinition
    from hmi.historian.storage import StorageMode, StoragePolicy
    from hmi.historian.writer import HistorianWriter, WriterStats

# Loaded on first use (PEP 562): `hmi run` checks the writer lock (lock.py) before it starts
# any child, and importing this package must not import SQLAlchemy for that.
_HOMES = {
    "Decimated": "reader",
    "HistorianReader": "reader",
    "RecordedTag": "reader",
    "Series": "reader",
    "SCHEMA_VERSION": "schema",
    "HistorianError": "schema",
    "Shift": "shifts",
    "ShiftCalendar": "shifts",
    "ShiftDefinition": "shifts",
    "StorageMode": "storage",
    "StoragePolicy": "storage",
    "HistorianWriter": "writer",
    "WriterStats": "writer",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "SCHEMA_VERSION",
    "Decimated",
    "HistorianError",
    "HistorianReader",
    "HistorianWriter",
    "RecordedTag",
    "Series",
    "Shift",
    "ShiftCalendar",
    "ShiftDefinition",
    "StorageMode",
    "StoragePolicy",
    "WriterStats",
]
