"""The historian: every sample, event and shift of the plant, in one database.

SQLAlchemy Core for the schema and most reads, the driver's executemany on the hot
insert path; SQLite by default (hmi/historian/sqlite.py holds everything SQLite-only).
One writer thread owns the database (writer.py); readers open their own connections
(reader.py) and run beside it.
"""

from hmi.historian.reader import Decimated, HistorianReader, RecordedTag, Series
from hmi.historian.schema import SCHEMA_VERSION, HistorianError
from hmi.historian.shifts import Shift, ShiftCalendar, ShiftDefinition
from hmi.historian.storage import StorageMode, StoragePolicy
from hmi.historian.writer import HistorianWriter, WriterStats

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
