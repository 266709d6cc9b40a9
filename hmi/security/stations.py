"""Which stations may attach to this runtime, and the CURVE key pairs of this workstation.

Key pairs (ZeroMQ CURVE, Z85 text) live in `{data}/curve/`: `runtime.key_secret` for the
runtime that serves windows, `station.key_secret` for this workstation as a window. Each
is made on first use, in zmq.auth's certificate format (the secret file holds both keys, the
`.key` file beside it only the public one), mode 0600, and appears in one step: it is
written in a private temporary folder and hard-linked into place, so two processes starting
at once agree on one key pair and nobody ever reads half a file.

The allow-list `{data}/stations.json` (version 1) names each enrolled station with its
public key, and keeps a change log (who, from which host, why). Like users.json it belongs
to the workstation, not to a project. It must be readable by its owner only: a file others
may read or write is refused, since whoever can write it can let any key in.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmi.paths import data_dir
from hmi.security.private_file import write_private_json

if TYPE_CHECKING:
    from hmi.security.audit import AuditEntry

STATIONS_FILE = "stations.json"
STATIONS_FILE_VERSION = 1
KEYS_FOLDER = "curve"
# The name under which a runtime lets in its own workstation's station key: whoever can read
# that key's secret file can read the runtime's own secret key beside it too.
LOCAL_STATION = "local"
STATION_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
# A CURVE public key as Z85 text: 40 characters of the Z85 alphabet (ZeroMQ RFC 32).
Z85_KEY_RE = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


class StationError(Exception):
    """The allow-list or a key cannot be used or changed; the message says why."""


def check_private(path: Path, what: str) -> None:
    """Refuse a file that other users may read or write, or that another user owns (POSIX)."""
    if sys.platform == "win32":
        return  # the data folder under %LOCALAPPDATA% is the user's own by its ACL
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StationError(
            f"{path}: the {what} may be read or changed by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"refusing to use it: run `chmod 600 {path}`"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise StationError(f"{path}: the {what} belongs to another user (uid {info.st_uid}); refusing to use it")


# -- key pairs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: bytes  # Z85, 40 bytes
    secret: bytes = field(repr=False)


def keys_dir() -> Path:
    folder = data_dir() / KEYS_FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def key_pair(name: str, folder: Path | None = None) -> KeyPair:
    """This workstation's key pair `name` ("runtime" or "station"), made on first use."""
    import zmq.auth

    folder = folder if folder is not None else keys_dir()
    secret_file = folder / f"{name}.key_secret"
    if not secret_file.exists():
        # A folder only we may enter: the files are never readable by others, not even
        # between being written and chmod (create_certificates writes with the umask).
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
        try:
            public_file, secret_tmp = zmq.auth.create_certificates(staging, name)
            os.chmod(secret_tmp, 0o600)
            os.chmod(public_file, 0o644)
            try:
                os.link(secret_tmp, secret_file)  # atomic, and never over another's key
            except FileExistsError:
                pass  # another process made it first: use that one
            else:
                os.replace(public_file, folder / f"{name}.key")
        finally:
            for leftover in staging.iterdir():
                leftover.unlink()
            staging.rmdir()
    check_private(secret_file, "secret key")
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None or not Z85_KEY_RE.match(public.decode("ascii", "replace")):
        raise StationError(f"{secret_file}: not a CURVE secret key file")
    return KeyPair(public, secret)


def runtime_key_pair() -> KeyPair:
    return key_pair("runtime")


def station_key_pair() -> KeyPair:
    return key_pair("station")


def read_public_key(value: str, base: Path | None = None) -> bytes:
    """A public key given as Z85 text or as a key file (zmq.auth format, or the bare key)."""
    text = value.strip()
    if Z85_KEY_RE.match(text):
        return text.encode("ascii")
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StationError(
            f"{value!r} is neither a CURVE public key (40 characters of Z85) nor a readable key file "
            f"({exc.strerror or exc})"
        ) from None
    for line in content.splitlines():
        line = line.strip()
        if line.startswith("public-key"):
            line = line.split("=", 1)[1].strip().strip("'\"")
        if Z85_KEY_RE.match(line):
            return line.encode("ascii")
    raise StationError(f"{path}: no CURVE public key in it")


# -- the allow-list ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Station:
    name: str
    key: str  # Z85 public key
    added_ns: int
    added_by: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "added_ns": self.added_ns,
            "added_by": self.added_by,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Station:
        return cls(
            str(item["name"]), str(item["key"]), int(item["added_ns"]), str(item["added_by"]), str(item["reason"])
        )


class StationList:
    """The allow-list file. Reads re-read it when it changed (a stat per call), so a running
    runtime sees `hmi station add/remove` at its next handshake or command."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else data_dir() / STATIONS_FILE
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int] | None, dict[str, Station], list[dict[str, Any]]] | None = None

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_ino, st.st_size

    def _read(self) -> tuple[dict[str, Station], list[dict[str, Any]]]:
        stamp = self._stamp()
        cache = self._cache
        if cache is not None and cache[0] == stamp:
            return cache[1], cache[2]
        if stamp is None:
            stations: dict[str, Station] = {}
            changes: list[dict[str, Any]] = []
        else:
            check_private(self.path, "station allow-list")
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                version = data.get("version")
                if version != STATIONS_FILE_VERSION:
                    raise StationError(
                        f"{self.path}: allow-list version {version!r}; "
                        f"this program reads version {STATIONS_FILE_VERSION}"
                    )
                stations = {s.name: s for s in (Station.from_json(i) for i in data["stations"])}
                changes = list(data.get("changes", []))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                if isinstance(exc, StationError):
                    raise
                raise StationError(f"{self.path}: the station allow-list is damaged ({exc})") from None
        self._cache = (stamp, stations, changes)
        return stations, changes

    def stations(self) -> list[Station]:
        return sorted(self._read()[0].values(), key=lambda s: s.name)

    def names_by_key(self) -> Mapping[str, str]:
        """Z85 public key -> station name."""
        return {s.key: s.name for s in self._read()[0].values()}

    def add(self, name: str, key: bytes, by: str, host: str, reason: str) -> AuditEntry:
        """Enrol a station; returns the audit entry of the change (already in the change log)."""
        if not STATION_NAME_RE.match(name):
            raise StationError("a station name is 1-64 characters: letters, digits, _ . - (starting with a letter)")
        if name == LOCAL_STATION:
            raise StationError(f"{LOCAL_STATION!r} is reserved for the runtime's own workstation")
        text = key.decode("ascii")
        with self._lock:
            stations, changes = self._read()
            if name in stations:
                raise StationError(f"station {name!r} is enrolled already (remove it first to change its key)")
            other = next((s.name for s in stations.values() if s.key == text), None)
            if other is not None:
                raise StationError(f"this key is enrolled already as station {other!r}")
            now = time.time_ns()
            stations[name] = Station(name, text, now, by, reason)
            return self._save(stations, changes, "add", name, text, by, host, reason, now)

    def remove(self, name: str, by: str, host: str, reason: str) -> AuditEntry:
        with self._lock:
            stations, changes = self._read()
            old = stations.pop(name, None)
            if old is None:
                raise StationError(f"no station {name!r} is enrolled")
            return self._save(stations, changes, "remove", name, old.key, by, host, reason, time.time_ns())

    def _save(
        self,
        stations: dict[str, Station],
        changes: list[dict[str, Any]],
        action: str,
        name: str,
        key: str,
        by: str,
        host: str,
        reason: str,
        now: int,
    ) -> AuditEntry:
        seq = (int(changes[-1]["seq"]) if changes else 0) + 1
        change = {"seq": seq, "ts_ns": now, "action": action, "name": name, "key": key, "by": by, "host": host,
                  "reason": reason}  # fmt: skip
        data = {
            "version": STATIONS_FILE_VERSION,
            "stations": [s.to_json() for s in sorted(stations.values(), key=lambda s: s.name)],
            "changes": [*changes, change],
        }
        write_private_json(self.path, data)
        # Here, not at the top: the supervisor reads keys before any child starts, and the
        # audit module brings SQLAlchemy (docs/performance.md "Start-up").
        from hmi.security.audit import AuditEntry

        details = {"name": name, "key": key, "station": host, "reason": reason, "change": seq}
        return AuditEntry(f"station_{action}", by, "stations", "ok", details, now)
