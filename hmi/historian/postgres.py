"""PostgreSQL, the central historian's back end: the one module that knows its specifics.

- Driver psycopg 3 (SQLAlchemy `postgresql+psycopg://`); a plain `postgresql://` URL means
  the same.
- No password in a URL, ever: `password_ref` names it (hmi/config/credentials.py). It is
  given to the dialect, or as the URL parameter `?password_ref=NAME`, which is taken out of
  the URL before it reaches the server. `?station=NAME` (which station a reader shows) is
  taken out the same way; `station` tells it.
- TLS: `sslmode` and `sslrootcert` as libpq knows them, from the dialect's arguments or the
  URL's own query.
- Errors: `describe_error` turns a failed connection into one line naming the URL (never
  the password) and what to check.
- Bulk writes use COPY (`copy_rows`): several times faster than executemany for samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from hmi.historian.dialect import Dialect
from hmi.historian.errors import HistorianError

DRIVER = "postgresql+psycopg"
# URL query parameters that are ours, not libpq's: removed before connecting.
HMI_PARAMETERS = ("password_ref", "station")
CONNECT_TIMEOUT_S = 10


def is_postgres_url(url: str | sa.URL) -> bool:
    try:
        return sa.engine.make_url(url).get_backend_name() == "postgresql"
    except sa.exc.ArgumentError:
        return False


def normalize_url(url: str | sa.URL) -> sa.URL:
    """`postgresql://` (any driver) as psycopg 3's URL."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise HistorianError(f"not a PostgreSQL URL: {safe_url(parsed)}")
    return parsed.set(drivername=DRIVER)


def safe_url(url: str | sa.URL) -> str:
    """The URL as it may be shown or logged: no password, none of our own parameters."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return "<invalid URL>"
    parsed = parsed.difference_update_query(["password_ref"])
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def url_station(url: str | sa.URL) -> str | None:
    """The `?station=` a URL names, if any."""
    value = sa.engine.make_url(url).query.get("station")
    if isinstance(value, tuple):
        value = value[-1] if value else None
    return value or None


class PostgresDialect(Dialect):
    name = "postgresql"
    decimation = "group_by"

    def __init__(
        self, password_ref: str | None = None, sslmode: str | None = None, sslrootcert: str | None = None
    ) -> None:
        self.password_ref = password_ref
        self.sslmode = sslmode
        self.sslrootcert = sslrootcert

    def connect_args(self, url: str | sa.URL) -> tuple[sa.URL, dict[str, Any]]:
        """The URL to give SQLAlchemy and the libpq arguments that go beside it."""
        from hmi.config.credentials import CredentialError, resolve_password

        parsed = normalize_url(url)
        if parsed.password is not None:
            raise HistorianError(
                f"{safe_url(parsed)}: a database URL must not contain a password; "
                "name it with password_ref (see docs/historian.md)"
            )
        query = dict(parsed.query)
        ref = self.password_ref or query.get("password_ref")
        if isinstance(ref, tuple):
            ref = ref[-1]
        parsed = parsed.difference_update_query(HMI_PARAMETERS)
        args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "hmi"}
        if ref:
            try:
                args["password"] = resolve_password(ref)
            except CredentialError as exc:
                raise HistorianError(f"{safe_url(parsed)}: {exc}") from None
        if self.sslmode:
            args["sslmode"] = self.sslmode
        if self.sslrootcert:
            args["sslrootcert"] = self.sslrootcert
        return parsed, args

    def create_engine(self, url: str) -> sa.Engine:
        parsed, args = self.connect_args(url)
        kwargs = self.engine_kwargs()
        kwargs["connect_args"] = args
        # A server restart or a dropped link leaves dead pooled connections: test each on
        # checkout rather than fail the next write.
        kwargs["pool_pre_ping"] = True
        engine = sa.create_engine(parsed, **kwargs)
        self.configure(engine)
        return engine

    def placeholder(self, engine: sa.Engine) -> str:
        return "%s"

    def describe_error(self, exc: BaseException) -> str:
        return describe_error(exc)

    def storage_bytes(self, engine: sa.Engine) -> int | None:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar() or 0)

    def check_connection(self, url: str) -> sa.Engine:
        """An engine whose first connection worked; else a HistorianError saying why."""
        engine = self.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            raise HistorianError(connection_error(url, exc)) from None
        return engine


def copy_rows(conn: sa.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY `rows` into `table` (binary-safe text COPY through psycopg); returns the count.

    Runs in the connection's transaction: rows and anything else written in it commit or
    roll back together. COPY does not upsert: a duplicate key fails the whole statement."""
    dbapi = conn.connection.driver_connection
    count = 0
    names = ", ".join(f'"{c}"' for c in columns)
    with dbapi.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def connection_error(url: str | sa.URL, exc: BaseException) -> str:
    """One line for an operator: which database, what went wrong, what to check."""
    return f"cannot connect to {safe_url(url)}: {describe_error(exc)}"


def describe_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    sqlstate = getattr(orig, "sqlstate", None) or ""
    lower = text.lower()
    if sqlstate == "28P01" or "password authentication failed" in lower:
        return f"wrong user name or password ({text}); check the password_ref's password"
    if sqlstate == "28000" or "no pg_hba.conf entry" in lower:
        return f"the server refuses this client ({text}); check pg_hba.conf on the server"
    if sqlstate == "3D000" or ("database" in lower and "does not exist" in lower):
        return f"the database does not exist ({text}); create it (docs/historian.md, Central historian)"
    if "certificate" in lower or "ssl error" in lower or "signature failure" in lower:
        return (
            f"TLS failed: the server's certificate is not trusted ({text}); check sslrootcert (the CA that "
            "signed the server's certificate) and that the URL's host is the name in that certificate"
        )
    if "fe_sendauth: no password supplied" in lower:
        return f"the server asks for a password and none was given ({text}); set password_ref"
    if "connection refused" in lower or "could not connect" in lower or "timeout expired" in lower:
        return f"the server cannot be reached ({text}); check the host, the port and that PostgreSQL runs"
    if sqlstate == "42501" or "permission denied" in lower:
        return f"permission denied ({text}); the database user lacks a privilege"
    if sqlstate == "53100" or "no space left" in lower:
        return f"the server's disk is full ({text})"
    return text
