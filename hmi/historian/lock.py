"""One process records into a historian file at a time.

SQLite would let two writers interleave their commits into one file, and two runtimes on
one file would each restate the alarms and fork the audit chain; so the writer holds an
OS lock on `<database>.lock` while it runs (hmi.historian.writer.HistorianWriter.start),
and a second runtime on the same file refuses to start, naming the first. Readers (the
window, playback, export) need no lock: WAL lets them read beside the writer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from hmi.historian.errors import HistorianError

log = logging.getLogger(__name__)


class HistorianInUse(HistorianError):
    """Another process is recording into this historian file."""


class WriterLock:
    """An OS lock on `<database>.lock`, held by the process that records into the file.

    The operating system drops the lock when that process ends, however it ends, so a
    crash never leaves a stale lock behind. The file also says who holds it (pid, host,
    since when); it is left in place afterwards. Byte 0 is the one locked (Windows locks
    are mandatory, so the holder's details live after it, where others can read them).
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise HistorianInUse naming the holder; a lock file that cannot
        be created at all is logged and not enforced (the database write will fail anyway)."""
        if self._file is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+b")  # noqa: SIM115  (held open for as long as the lock)
        except OSError as exc:
            log.warning("cannot create the historian lock file %s: %s", self.path, exc)
            return
        if not _try_lock(handle):
            handle.close()
            holder = self.holder()
            raise HistorianInUse(
                f"the historian {self.database} is already being recorded by another process"
                f"{f' ({holder})' if holder else ''}: is this project already running? Stop the other instance, "
                "or give this one its own [historian] url"
            )
        details = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        handle.seek(1)
        handle.truncate()
        handle.write(json.dumps(details).encode())
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            _unlock(self._file)
            self._file.close()
            self._file = None

    def holder(self) -> str:
        """Who holds the lock, as the lock file says ("" if it cannot tell)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(1)
                info = json.loads(handle.read(4096).decode() or "{}")
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def in_use(self) -> str | None:
        """Why the file cannot be recorded into now (None if it can); takes nothing."""
        try:
            self.acquire()
        except HistorianInUse as exc:
            return str(exc)
        self.release()
        return None


# `sqlite[+driver]://[/<database>][?query]`, the form every SQLite URL of ours takes (hmi.historian.
# sqlite.url_for_file and the default [historian] url); SQLAlchemy's make_url reads the database
# part the same way (percent-decoded, the query apart).
_SQLITE_URL = re.compile(r"sqlite(?:\+\w+)?://(?:/(?P<database>[^?]*))?(?:\?.*)?", re.DOTALL)


def is_plain_sqlite(url: str) -> bool:
    """True for a URL that sqlite_lock_for reads; ask the back end for any other
    (hmi.historian.backends.dialect_for(url).writer_lock)."""
    return _SQLITE_URL.fullmatch(url) is not None


def sqlite_lock_for(url: str) -> WriterLock | None:
    """The writer lock of a plain SQLite URL (None for an in-memory database), read without
    importing SQLAlchemy: that costs 0.2 s warm, 0.7 s cold, and `hmi run` checks the lock
    before it starts any child."""
    match = _SQLITE_URL.fullmatch(url)
    if match is None:
        raise ValueError(f"not a plain SQLite URL: {url}")
    database = unquote(match["database"] or "")
    if database.startswith("file:"):
        database = database[5:].split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return WriterLock(Path(database).resolve())


if sys.platform == "win32":
    import msvcrt

    def _try_lock(handle: IO[bytes]) -> bool:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        except OSError:
            pass

else:
    import fcntl

    def _try_lock(handle: IO[bytes]) -> bool:
        # flock, not fcntl locks: it belongs to this open file, so a second writer in the
        # same process is refused too, and closing another descriptor does not drop it.
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
