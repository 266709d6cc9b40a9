"""Login sessions held by the runtime, and the throttle that slows password guessing.

The runtime checks every command against the session it names, so a window cannot claim
a role it was not given. Pure apart from the user store lookup: time is passed in.
Threads: called from the runtime's IPC request thread; one lock guards the tables.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from hmi.security.roles import Role
from hmi.security.users import UserStore

NS = 1_000_000_000
MAX_LOCKOUT_S = 3600.0


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user: str
    role: Role
    started_ns: int
    station: str = ""  # where the login came from (hmi.commands.station_of)


class LoginRefused(Exception):
    """Why a login failed, for the operator (never says whether the name exists)."""


class LoginThrottle:
    """After `max_failures` failed logins in a row for one user name, that name is locked
    for `lockout_s`, doubling with every further failure (up to an hour). A success resets it."""

    def __init__(self, max_failures: int = 5, lockout_s: float = 60.0) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, int] = {}

    def locked_for_s(self, name: str, now_ns: int) -> float:
        until = self._locked_until.get(name, 0)
        return max(until - now_ns, 0) / NS

    def failed(self, name: str, now_ns: int) -> None:
        count = self._failures.get(name, 0) + 1
        self._failures[name] = count
        if count >= self.max_failures:
            lockout = min(self.lockout_s * 2 ** (count - self.max_failures), MAX_LOCKOUT_S)
            self._locked_until[name] = now_ns + int(lockout * NS)

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
        self._locked_until.pop(name, None)

    def failures(self, name: str) -> int:
        return self._failures.get(name, 0)


class Sessions:
    def __init__(self, users: UserStore, idle_timeout_s: float = 900.0, throttle: LoginThrottle | None = None) -> None:
        """`idle_timeout_s`: a session unused this long ends (0: never)."""
        self.users = users
        self.idle_timeout_s = idle_timeout_s
        self.throttle = throttle or LoginThrottle()
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._last_used: dict[str, int] = {}
        # Sessions ended here for being idle, until `take_ended` hands them over to be recorded.
        self._ended: list[Session] = []

    def login(self, name: str, password: str, now_ns: int, station: str = "") -> Session:
        name = name.strip().lower()
        with self._lock:
            wait = self.throttle.locked_for_s(name, now_ns)
            if wait > 0:
                self.throttle.failed(name, now_ns)
                raise LoginRefused(f"too many failed logins: try again in {wait:.0f} s")
        user = self.users.authenticate(name, password)  # slow (scrypt): outside the lock
        with self._lock:
            if user is None:
                self.throttle.failed(name, now_ns)
                raise LoginRefused("wrong user name or password, or the user is disabled")
            self.throttle.succeeded(name)
            session = Session(secrets.token_urlsafe(24), user.name, user.role, now_ns, station)
            self._sessions[session.token] = session
            self._last_used[session.token] = now_ns
            return session

    def resolve(self, token: str | None, now_ns: int) -> Session | None:
        """The live session for `token` (and mark it used), or None if unknown or idle too long."""
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if self._idle(token, now_ns):
                self._ended.append(session)
                self._drop(token)
                return None
            self._last_used[token] = now_ns
            return session

    def logout(self, token: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(token)
            if session is not None:
                self._drop(token)
            return session

    def take_ended(self, now_ns: int) -> list[Session]:
        """Sessions that ended for being idle (now, or when a command found them idle) since
        the last call; each is handed over once, so its end is recorded once."""
        with self._lock:
            for token in [t for t in self._sessions if self._idle(t, now_ns)]:
                self._ended.append(self._sessions[token])
                self._drop(token)
            ended, self._ended = self._ended, []
            return ended

    def _idle(self, token: str, now_ns: int) -> bool:
        return bool(self.idle_timeout_s) and now_ns - self._last_used[token] > self.idle_timeout_s * NS

    def _drop(self, token: str) -> None:
        self._sessions.pop(token, None)
        self._last_used.pop(token, None)

    def active(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())
