"""Users and their password hashes, kept in `users.json` in the user's data folder.

Why a file of its own and not the historian: users belong to the workstation, not to one
project's recording; `hmi users add` works before any project or historian exists (that is
how the first admin is made: there is no default password); and a historian copied off the
machine for analysis carries no password hashes. The file is written atomically (temporary
file, then rename) with owner-only permissions and carries a format version.

Every change (add, password, disable, enable, role) is also appended to a change log in
the same file, in the same atomic write: who made it (`by`: the OS user at the host for the
CLI, which has no login) and from where. A user change is evidence, and the file is the one
place every change passes through, whether or not a runtime or a project is involved; a
running runtime turns changes it has not seen yet into operator events (hmi.commands).
Version 1 files (no change log) are read as files with an empty log.

Passwords are hashed with scrypt (hashlib, no extra dependency) with a random 16-byte salt
per password; the parameters are stored with each hash so they can be raised later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hmi.paths import data_dir
from hmi.security.audit import AuditEntry
from hmi.security.private_file import write_private_json
from hmi.security.roles import Role

USERS_FILE_VERSION = 2  # 2: the change log ("changes")
READABLE_VERSIONS = (1, 2)
USERS_FILE = "users.json"
MIN_PASSWORD_LENGTH = 8
USER_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")

# scrypt cost: n=2**14, r=8 takes about 40 ms and 16 MiB here: slow for a guesser, quick for a login.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


class UserError(ValueError):
    """A user operation that cannot be done; the message says why."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=2**27
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


# Checked against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password("not a real password", salt=b"\0" * 16)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password_hash: str
    disabled: bool = False
    created_ns: int = 0
    changed_ns: int = 0

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["role"] = self.role.label
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> User:
        return cls(
            name=str(data["name"]),
            role=Role.parse(str(data["role"])),
            password_hash=str(data["password_hash"]),
            disabled=bool(data.get("disabled", False)),
            created_ns=int(data.get("created_ns", 0)),  # type: ignore[call-overload]
            changed_ns=int(data.get("changed_ns", 0)),  # type: ignore[call-overload]
        )


@dataclass(frozen=True, slots=True)
class UserChange:
    """One entry of the change log. `action`: add, passwd, disable, enable or role; `name`: the
    user changed; `by`: who changed it; `details`: role (and old_role), never a password hash."""

    seq: int
    ts_ns: int
    action: str
    name: str
    by: str
    station: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserChange:
        return cls(
            seq=int(data["seq"]),
            ts_ns=int(data["ts_ns"]),
            action=str(data["action"]),
            name=str(data["name"]),
            by=str(data.get("by", "")),
            station=str(data.get("station", "")),
            details=dict(data.get("details") or {}),
        )

    def audit_entry(self) -> AuditEntry:
        """The audit entry (and so the operator event) for this change. `change` (the log's
        sequence number) with the change's time identifies it: whoever records it, the CLI
        into a project's trail or a runtime, records the same facts."""
        details = {"name": self.name, "station": self.station, "change": self.seq, **self.details}
        return AuditEntry(f"user_{self.action}", self.by, "users", "ok", details, self.ts_ns)


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise UserError("a password does not start or end with spaces")


class UserStore:
    """The users file. Every call re-reads it, so users added from the CLI count at once."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else data_dir() / USERS_FILE
        self._lock = threading.Lock()
        self.last_change: UserChange | None = None  # made through this store (the CLI audits it)

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> dict[str, User]:
        return self._read()[0]

    def changes(self, after_seq: int = 0) -> list[UserChange]:
        """The change log after `after_seq`, oldest first."""
        return [c for c in self._read()[1] if c.seq > after_seq]

    def last_change_seq(self) -> int:
        changes = self._read()[1]
        return changes[-1].seq if changes else 0

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes when the file does (it is replaced on every save): a cheap "anything new?"."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_ino, st.st_size

    def _read(self) -> tuple[dict[str, User], list[UserChange]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}, []
        try:
            data = json.loads(text)
            version = int(data.get("version", 0))
            if version not in READABLE_VERSIONS:
                raise UserError(
                    f"{self.path}: users file version {version}; this program reads versions "
                    f"{', '.join(map(str, READABLE_VERSIONS))}"
                )
            users = [User.from_json(item) for item in data["users"]]
            changes = [UserChange.from_json(item) for item in data.get("changes", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"{self.path}: the users file is damaged ({exc})") from None
        return {u.name: u for u in users}, changes

    def users(self) -> list[User]:
        return sorted(self.load().values(), key=lambda u: u.name)

    def get(self, name: str) -> User | None:
        return self.load().get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the name exists, is enabled and the password matches; else None."""
        user = self.load().get(name)
        if user is None:
            check_password(password, _DUMMY_HASH)
            return None
        if not check_password(password, user.password_hash) or user.disabled:
            return None
        return user

    # -- changing ------------------------------------------------------------------------------

    # Every change names who made it (`by`) and from where (`station`); its change log
    # entry is written with it, in one atomic save.

    def add(self, name: str, role: Role, password: str, by: str = "", station: str = "") -> User:
        if not USER_NAME_RE.match(name):
            raise UserError(
                "a user name is 1-32 characters: lower-case letters, digits, _ . - (starting with a letter)"
            )
        check_new_password(password)
        with self._lock:
            users, changes = self._read()
            if name in users:
                raise UserError(f"user {name!r} exists already (use `hmi users passwd`)")
            now = time.time_ns()
            user = User(name, role, hash_password(password), False, now, now)
            users[name] = user
            self._save(users, changes, UserChange(0, now, "add", name, by, station, {"role": role.label}))
        return user

    def set_password(self, name: str, password: str, by: str = "", station: str = "") -> User:
        check_new_password(password)
        return self._change(name, "passwd", by, station, password_hash=hash_password(password))

    def set_disabled(self, name: str, disabled: bool, by: str = "", station: str = "") -> User:
        return self._change(name, "disable" if disabled else "enable", by, station, disabled=disabled)

    def set_role(self, name: str, role: Role, by: str = "", station: str = "") -> User:
        return self._change(name, "role", by, station, role=role)

    def _change(self, name: str, action: str, by: str, station: str, **changes: object) -> User:
        with self._lock:
            users, log = self._read()
            old = users.get(name)
            if old is None:
                raise UserError(f"no user {name!r}")
            now = time.time_ns()
            user = replace(old, changed_ns=now, **changes)  # type: ignore[arg-type]
            users[name] = user
            if not any(u.role == Role.ADMIN and not u.disabled for u in users.values()):
                raise UserError("this would leave no enabled admin")
            details = {"role": user.role.label}
            if user.role != old.role:
                details["old_role"] = old.role.label
            self._save(users, log, UserChange(0, now, action, name, by, station, details))
        return user

    def _save(self, users: dict[str, User], changes: list[UserChange], change: UserChange) -> None:
        change = replace(change, seq=(changes[-1].seq if changes else 0) + 1)
        data = {
            "version": USERS_FILE_VERSION,
            "users": [u.to_json() for u in sorted(users.values(), key=lambda u: u.name)],
            "changes": [c.to_json() for c in [*changes, change]],
        }
        write_private_json(self.path, data)
        self.last_change = change
