"""Two-person writes: the book of writes waiting for a second user's verification.

A write to a tag declared `verify = true` is not sent when the operator asks. It waits here
with a reason the operator picked from `[writes] verify_reasons` until one of:

- a second user with the verifier role (hmi.security.roles.Action.VERIFY_WRITE) verifies it:
  it leaves the book and the runtime sends it through the ordinary write path (limits, type,
  the source's ability to write, audited before and after: hmi.commands);
- that user rejects it, or the requester cancels it;
- `timeout_s` passes: it lapses.

Users are told apart by name, never by session or station: nobody verifies their own
write, from another station or after logging in again. A write leaves the book exactly once,
so it is sent at most once. Time is passed in (no clock here); the book is not persisted: a
runtime restart drops what is pending (the audit trail keeps the requests), and the operator
asks again. Threads: commands (IPC request thread) and lapses (runtime loop) share one lock.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hmi.security.sessions import Session

NS = 1_000_000_000


class VerifyRefused(Exception):
    """Why a verified-write step is refused, for the user."""


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """A write waiting for verification. `requester` is the requester's session as it was (the
    write is recorded in their name once verified, even if they have logged out since)."""

    id: str
    tag: str
    value: float | bool | str
    requester: Session = field(repr=False)
    station: str  # the requester's
    reason: str
    requested_ns: int
    expires_ns: int
    context: str = ""

    @property
    def user(self) -> str:
        return self.requester.user

    def to_json(self) -> dict[str, Any]:
        """What every window is told (pending_writes snapshot)."""
        return {
            "id": self.id,
            "tag": self.tag,
            "value": self.value,
            "requester": self.user,
            "station": self.station,
            "reason": self.reason,
            "requested_ns": self.requested_ns,
            "expires_ns": self.expires_ns,
            "context": self.context,
        }


class VerifiedWrites:
    """The pending writes, by id. `reasons`: the configured list; `timeout_s`: how long one waits."""

    def __init__(self, reasons: Sequence[str] = (), timeout_s: float = 120.0) -> None:
        self.reasons = tuple(reasons)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pending: dict[str, PendingWrite] = {}

    def check_reason(self, tag: str, reason: str) -> str:
        """`reason` as given when it is one of the configured reasons; VerifyRefused says why not."""
        listed = ", ".join(repr(r) for r in self.reasons) or "none are configured ([writes] verify_reasons)"
        if not reason:
            raise VerifyRefused(f"a write to {tag} needs verification by a second user: give a reason ({listed})")
        if reason not in self.reasons:
            raise VerifyRefused(f"{reason!r} is not one of the reasons for verified writes ({listed})")
        return reason

    def request(
        self,
        tag: str,
        value: float | bool | str,
        requester: Session,
        station: str,
        reason: str,
        now_ns: int,
        context: str = "",
    ) -> PendingWrite:
        """A new pending write (the value already checked against the tag); VerifyRefused for a
        reason not on the list."""
        reason = self.check_reason(tag, reason)
        pending = PendingWrite(
            secrets.token_hex(4), tag, value, requester, station, reason, now_ns,
            now_ns + int(self.timeout_s * NS), context,
        )  # fmt: skip
        with self._lock:
            self._pending[pending.id] = pending
        return pending

    def get(self, ident: str) -> PendingWrite | None:
        with self._lock:
            return self._pending.get(ident)

    def pending(self) -> list[PendingWrite]:
        with self._lock:
            return sorted(self._pending.values(), key=lambda p: p.requested_ns)

    def _take(self, ident: str, now_ns: int) -> PendingWrite:
        pending = self._pending.get(ident)
        if pending is None:
            raise VerifyRefused(f"no write {ident!r} is waiting for verification (done, rejected, cancelled or lapsed)")
        if now_ns >= pending.expires_ns:
            raise VerifyRefused(f"the write {ident} lapsed: it was not verified within {self.timeout_s:g} s")
        return pending

    def decide(self, ident: str, verifier: str, now_ns: int) -> PendingWrite:
        """Take the write out of the book for `verifier` to verify or reject (the caller checked
        the role). Never the requester: VerifyRefused, and the write stays pending."""
        with self._lock:
            pending = self._take(ident, now_ns)
            if pending.user == verifier:
                raise VerifyRefused(
                    f"{verifier} asked for this write: a second user must verify it (you may cancel it)"
                )
            return self._pending.pop(ident)

    def cancel(self, ident: str, user: str, now_ns: int) -> PendingWrite:
        """Withdraw a request: only the user who made it (from any station or session)."""
        with self._lock:
            pending = self._take(ident, now_ns)
            if pending.user != user:
                raise VerifyRefused(f"only {pending.user}, who asked for this write, may cancel it")
            return self._pending.pop(ident)

    def lapse(self, now_ns: int) -> list[PendingWrite]:
        """The writes whose time is up, out of the book (each handed over once)."""
        with self._lock:
            gone = [p for p in self._pending.values() if now_ns >= p.expires_ns]
            for pending in gone:
                del self._pending[pending.id]
        return gone
