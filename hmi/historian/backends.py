"""Which back end serves a database URL: the one module that lists them.

dialect.py holds the interface every back end implements, each back end's module its own
specifics (sqlite.py, postgres.py); a new back end adds its module and one branch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hmi.historian.dialect import Dialect
from hmi.historian.sqlite import TABLE_OPTIONS as SQLITE_TABLE_OPTIONS
from hmi.historian.sqlite import SqliteDialect, url_for_file
from hmi.paths import expand_data_url


def url_for(target: str | Path) -> str:
    """A database URL from a URL or a plain file path (a file path means SQLite)."""
    text = str(target)
    if "://" in text:
        return expand_data_url(text)
    return url_for_file(Path(text))


def dialect_for(url: str, password_ref: str | None = None, **tls: str | None) -> Dialect:
    """The back end for `url`; `password_ref` and `tls` (sslmode, sslrootcert) serve servers."""
    backend = sa.engine.make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteDialect()
    if backend == "postgresql":
        from hmi.historian.postgres import PostgresDialect

        return PostgresDialect(password_ref=password_ref, **tls)
    return Dialect()


def table_options(table: str) -> dict[str, Any]:
    """Per-table options of every back end; each back end ignores the others' prefixed keys."""
    return dict(SQLITE_TABLE_OPTIONS.get(table, {}))
