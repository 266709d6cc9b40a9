"""Log files: each process of the application keeps a rotating log in the data folder.

`hmi run` (the supervisor), the runtime, the window and the demo plant each write
`<data>/logs/<role>.log` (5 MB, 3 old files kept) besides stderr, so a workstation
started from a desktop shortcut still leaves a record of what happened. Never inside the
installation folder: that one may be read-only (Program Files, /opt).

Several processes of one role (two windows) share its file; rotation is then best-effort
(Python's handler does not coordinate between processes; on Windows the rename fails and
the handler keeps writing to the current file).

Under systemd (`hmi service`) stderr goes to the journal, which keeps, rotates and
timestamps every line itself: no log file then, so nothing is written twice.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from hmi.paths import data_dir

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)-7s %(name)s: %(message)s"
MAX_BYTES = 5_000_000
BACKUPS = 3


def log_dir() -> Path:
    return data_dir() / "logs"


def stderr_is_journal() -> bool:
    """True when systemd connected this process's stderr to the journal: it sets
    JOURNAL_STREAM to that stream's "device:inode", which a child whose stderr was redirected
    since no longer matches (systemd.exec(5))."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        info = os.fstat(sys.stderr.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (AttributeError, ValueError, OSError):  # no stderr (pythonw), no or a bad variable
        return False


def add_log_file(role: str, level: int = logging.INFO) -> Path | None:
    """Also log to `<data>/logs/<role>.log`; None (and a warning on stderr) if it cannot be
    opened, or when stderr is the journal already (a service)."""
    if stderr_is_journal():
        return None
    path = log_dir() / f"{role}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    except OSError as exc:
        logging.getLogger(__name__).warning("no log file: %s", exc)
        return None
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return path
