"""What differs between database back ends, behind one small interface.

The historian speaks portable SQL (SQLAlchemy Core for schema, DDL and most reads; plain
SQL text with the driver's own parameter style on the hot paths). Everything specific to
one back end lives in that back end's module: `hmi/historian/sqlite.py` for SQLite, the
default. A PostgreSQL module would subclass `Dialect` the same way; backends.py picks the
back end for a URL.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from hmi.historian.lock import WriterLock


def _json_default(value: object) -> object:
    # numpy scalars, enums, paths... end up as text rather than failing the whole batch.
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return str(value)


def dumps_json(value: object) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


class Dialect:
    """Portable defaults. Subclasses override what their back end does better or differently."""

    name = "generic"
    # How a decimated read is done: "group_by" (one query, server-side buckets) or
    # "per_bucket" (one indexed MIN/MAX query per pixel; no sort).
    decimation = "group_by"

    def engine_kwargs(self) -> dict[str, Any]:
        return {"json_serializer": dumps_json}

    def create_engine(self, url: str) -> sa.Engine:
        engine = sa.create_engine(url, **self.engine_kwargs())
        self.configure(engine)
        return engine

    def configure(self, engine: sa.Engine) -> None:
        """Connection-level settings (hooks on connect)."""

    def placeholder(self, engine: sa.Engine) -> str:
        style = getattr(engine.dialect.dbapi, "paramstyle", "qmark")
        return {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(style, "?")

    def sql(self, engine: sa.Engine, text: str) -> str:
        """`text` written with `?` placeholders, in the driver's own parameter style."""
        mark = self.placeholder(engine)
        return text if mark == "?" else text.replace("?", mark)

    def upsert_samples_sql(self, engine: sa.Engine) -> str:
        # A later sample for the same tag and nanosecond replaces the earlier one.
        return self.sql(
            engine,
            "INSERT INTO samples (tag_id, ts, value, quality) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tag_id, ts) DO UPDATE SET value = excluded.value, quality = excluded.quality",
        )

    def upsert_texts_sql(self, engine: sa.Engine) -> str:
        return self.sql(
            engine,
            "INSERT INTO sample_texts (tag_id, ts, text) VALUES (?, ?, ?) "
            "ON CONFLICT (tag_id, ts) DO UPDATE SET text = excluded.text",
        )

    def database_exists(self, url: str) -> bool:
        """Whether the database is there to read (servers: assume it is, connecting will tell)."""
        return True

    def after_open(self, connection: sa.Connection) -> None:
        """Once per writer connection, after the schema is in place."""

    def writer_lock(self, url: str) -> WriterLock | None:
        """The lock that keeps a second process from recording into the same database;
        None where the server itself arbitrates between writers."""
        return None

    def before_close(self, connection: sa.Connection) -> None:
        """On a clean shutdown of the writer."""

    def describe_error(self, exc: BaseException) -> str:
        """A short, operator-readable reason for a write failure."""
        return str(getattr(exc, "orig", None) or exc)

    def storage_bytes(self, engine: sa.Engine) -> int | None:
        """Bytes the database occupies, if the back end can tell."""
        return None
