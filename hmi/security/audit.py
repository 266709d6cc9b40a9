"""The audit trail: who did what, append-only and hash-chained, in the historian's file.

Every login, failed login, logout, alarm action (acknowledge, reset, shelve, unshelve, out of
and return to service), write and method call (requested, and its result), config reload and
user change is a record. Each record holds the SHA-256 of the one before it, and its own hash covers its
sequence number, time, kind, user, target, outcome, details and that previous hash. The
head (last sequence number and hash) is also kept in `audit_meta`, so deleting records
from the end is found too. `verify` walks the chain in storage order and reports an
edited record (its hash does not match its content), a deleted one (a gap in the
sequence, or a previous-hash that matches nothing), and reordered ones (sequence numbers
out of storage order).

Every record is also an operator event (`operator_event`): the runtime publishes the event
made from the very entry it wrote, so the journal (events table) and this trail tell the
same story; the event says so when the entry could not be written.

What a hash chain cannot do: someone who may write the file can rewrite every record
after the one they changed and the head. `hmi audit verify` prints the head hash; noting
it elsewhere (a shift report, a second machine) makes such a rewrite visible as well.

Storage: tables `audit_meta` and `audit_records` in the historian's database file (the
[historian] url), through SQLAlchemy, with their own schema version
(`audit_meta.schema_version`, AUDIT_SCHEMA_VERSION) independent of the historian's: the
historian owns samples/events and their migrations, this module owns only these two
tables. Threads: `append` may be called from any thread (one lock; one short transaction
per call, which takes SQLite's write lock first so a second process cannot interleave).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hmi.core.events import Event, EventCategory, Severity, format_duration
from hmi.paths import expand_data_url

log = logging.getLogger(__name__)

AUDIT_SCHEMA_VERSION = 1
GENESIS = "0" * 64
BUSY_TIMEOUT_MS = 5000

metadata = sa.MetaData()

audit_meta = sa.Table(
    "audit_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

audit_records = sa.Table(
    "audit_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),  # storage order
    sa.Column("seq", sa.BigInteger, nullable=False, unique=True),  # chain order (hashed)
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("user", sa.String(100), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON, hashed as stored
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_records_ts", "ts"),
)


class AuditError(Exception):
    """The audit store cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What to record. `outcome`: ok, refused (role, rule) or failed (the plant said no)."""

    # login, login_failed, logout, acknowledge, reset, shelve, unshelve, out_of_service,
    # return_to_service, write_request, write, call_request, call, config_reload, user_<change>,
    # write_verify_request, write_verify, write_verify_reject, write_verify_cancel, write_verify_lapse
    kind: str
    user: str
    target: str = ""
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)
    ts_ns: int = 0  # 0: now

    def stamped(self, ts_ns: int) -> AuditEntry:
        """This entry with its time set (kept if it has one), so its record and event agree."""
        return self if self.ts_ns else replace(self, ts_ns=ts_ns)


# -- operator events ---------------------------------------------------------------------------

OPERATOR_EVENT_VERSION = 1

# Where an entry without a target is about (login and logout concern the session).
_DEFAULT_SOURCE = {"login": "session", "login_failed": "session", "logout": "session"}

# What an auditor reads for a refused or failed action: "<what> refused: <why>".
_NOUNS = {
    "acknowledge": "acknowledgement of",
    "reset": "reset of",
    "shelve": "shelving of",
    "unshelve": "unshelving of",
    "out_of_service": "taking out of service of",
    "return_to_service": "return to service of",
    "write_request": "write to",
    "write": "write to",
    "call_request": "call of",
    "call": "call of",
    "config_reload": "reload of",
    "write_verify_request": "verified write to",
    "write_verify": "verification of the write to",
    "write_verify_reject": "rejection of the write to",
    "write_verify_cancel": "cancelling of the write to",
    "take_position": "taking of position",
    "hand_over_position": "hand-over of position",
    "login_failed": "login as",
    "stop_system": "stop of the",
}


def _value(value: Any) -> str:
    return "(none)" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _done_message(kind: str, user: str, target: str, d: dict[str, Any]) -> str:
    """The sentence for an action that was done: "olga acknowledged cnc01.spindle_temp.hi"."""
    done: dict[str, Callable[[], str]] = {
        "login": lambda: f"{user} logged in as {d.get('role', '?')}",
        "logout": lambda: {
            "idle": f"{user} was logged out after being idle",
            "session ended": f"{user}'s session ended (unused for the idle time)",
        }.get(str(d.get("reason")), f"{user} logged out"),
        "acknowledge": lambda: f"{user} acknowledged {target}",
        "reset": lambda: f"{user} reset {target}",
        "shelve": lambda: f"{user} shelved {target} for {format_duration(d.get('duration_s'))}",
        "unshelve": lambda: f"{user} unshelved {target}",
        "out_of_service": lambda: f"{user} took {target} out of service",
        "return_to_service": lambda: f"{user} returned {target} to service",
        "write_request": lambda: (
            f"{user} asked to write {_value(d.get('new'))} to {target} (was {_value(d.get('old'))})"
        ),
        "write": lambda: (
            f"{user} wrote {_value(d.get('new'))} to {target} (was {_value(d.get('old'))})"
            + (f", verified by {d['verified_by']}" if d.get("verified_by") else "")
            + f": {d.get('status', '')}"
        ),
        # Two-person writes (hmi/security/verified_writes.py); the reason follows as the why.
        "write_verify_request": lambda: (
            f"{user} asked to write {_value(d.get('new'))} to {target} (was {_value(d.get('old'))}),"
            " waiting for verification by a second user"
        ),
        "write_verify": lambda: (
            f"{user} verified {d.get('requested_by')}'s write of {_value(d.get('new'))} to {target}"
        ),
        "write_verify_reject": lambda: (
            f"{user} rejected {d.get('requested_by')}'s write of {_value(d.get('new'))} to {target}"
        ),
        "write_verify_cancel": lambda: f"{user} withdrew the write of {_value(d.get('new'))} to {target}",
        "write_verify_lapse": lambda: (
            f"{user}'s write of {_value(d.get('new'))} to {target} lapsed:"
            f" nobody verified it within {format_duration(d.get('timeout_s'))}"
        ),
        "call_request": lambda: f"{user} asked to call {target}({', '.join(map(_value, d.get('arguments', [])))})",
        "call": lambda: f"{user} called {target}: {d.get('status', '')}",
        "config_reload": lambda: f"{user} reloaded the project" + (f": {d['summary']}" if d.get("summary") else ""),
        "take_position": lambda: f"{user} took position {target} at {d.get('station') or '?'}",
        "hand_over_position": lambda: (
            f"{user} handed position {target} over from {d.get('from_station') or 'nobody'} to {d.get('to_station')}"
        ),
        "user_add": lambda: f"{user} added user {d.get('name')} as {d.get('role')}",
        "user_passwd": lambda: f"{user} changed the password of user {d.get('name')}",
        "user_disable": lambda: f"{user} disabled user {d.get('name')}",
        "user_enable": lambda: f"{user} enabled user {d.get('name')}",
        "user_role": lambda: (
            f"{user} changed the role of user {d.get('name')} from {d.get('old_role')} to {d.get('role')}"
        ),
    }
    make = done.get(kind)
    text = make() if make is not None else f"{user}: {kind.replace('_', ' ')} {target}".rstrip()
    # A comment (acknowledge, reset, unshelve) or reason (shelve, out of service) is the why.
    why = d.get("comment") or (d.get("reason") if kind not in ("logout",) else "")
    return f"{text}: {why}" if why else text


def operator_message(entry: AuditEntry) -> str:
    """A sentence an auditor can read, made only from the entry."""
    d = entry.details
    target = entry.target or _DEFAULT_SOURCE.get(entry.kind, "")
    if entry.outcome == "ok":
        return _done_message(entry.kind, entry.user, target, d)
    what = target if entry.kind != "login_failed" else entry.user
    noun = _NOUNS.get(entry.kind, entry.kind.replace("_", " "))
    why = d.get("reason") or d.get("error") or d.get("message") or d.get("status") or ""
    if entry.kind in ("write", "call") and entry.outcome == "failed":
        status, message = d.get("status", ""), d.get("message", "")
        why = f"{status}: {message}" if status and message else status or message
    return f"{noun} {what} {entry.outcome}" + (f": {why}" if why else "")


def operator_event(entry: AuditEntry, audit_problem: str | None = None) -> Event:
    """The OPERATOR event for `entry` (the same facts as its audit record). `audit_problem`:
    why the entry could not be written to the audit trail; the event says so."""
    details: dict[str, Any] = {
        "version": OPERATOR_EVENT_VERSION,
        "action": entry.kind,
        "station": "",
        "outcome": entry.outcome,
        **entry.details,
    }
    if audit_problem is not None:
        details.update(audited=False, audit_error=audit_problem)
    return Event(
        EventCategory.OPERATOR,
        entry.target or _DEFAULT_SOURCE.get(entry.kind, ""),
        operator_message(entry),
        Severity.INFO if entry.outcome == "ok" else Severity.WARNING,
        ts_ns=entry.ts_ns or time.time_ns(),
        user=entry.user,
        details=details,
    )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    ts_ns: int
    kind: str
    user: str
    target: str
    outcome: str
    details: str
    prev_hash: str
    hash: str

    def details_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.details))


@dataclass(frozen=True, slots=True)
class AuditProblem:
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"audit record {self.seq}: {self.message}" if self.seq is not None else self.message


def canonical_json(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(seq: int, ts_ns: int, kind: str, user: str, target: str, outcome: str, details: str, prev: str) -> str:
    payload = json.dumps(
        [seq, ts_ns, kind, user, target, outcome, details, prev], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _url(target: str | Path) -> str:
    text = str(target)
    if "://" in text:
        return expand_data_url(text)
    return f"sqlite:///{Path(text).expanduser().resolve().as_posix()}"


def _engine(url: str) -> sa.Engine:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url)
    database = parsed.database or ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            try:
                cursor.execute("PRAGMA journal_mode = WAL")  # as the historian: readers beside the writer
            except sqlite3.OperationalError:
                pass
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    return engine


class AuditTrail:
    def __init__(self, target: str | Path, create: bool = True, defer: bool = False) -> None:
        """Open the audit tables in the database at `target` (a URL or a file path).

        With `defer`, nothing touches the database until `open()` or the first use: the
        runtime opens it once its historian holds the file, so a start that fails before
        that leaves no file behind."""
        self.url = _url(target)
        self._target = target
        self._create = create
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._engine: sa.Engine | None = None
        if not defer:
            self.open()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self.open()
        assert self._engine is not None
        return self._engine

    def open(self) -> None:
        """Open (creating the tables when allowed); raises AuditError. Idempotent."""
        with self._open_lock:
            if self._engine is None:
                self._engine = self._open_engine()

    def _open_engine(self) -> sa.Engine:
        target, create = self._target, self._create
        parsed = sa.engine.make_url(self.url)
        if not create and parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            raise AuditError(f"no database at {target}")
        engine = _engine(self.url)
        try:
            with engine.begin() as conn:
                names = set(sa.inspect(conn).get_table_names())
                if "audit_meta" not in names:
                    if not create:
                        raise AuditError(f"{target} holds no audit trail")
                    metadata.create_all(conn)
                    conn.execute(
                        sa.insert(audit_meta),
                        [
                            {"key": "schema_version", "value": str(AUDIT_SCHEMA_VERSION)},
                            {"key": "head_seq", "value": "0"},
                            {"key": "head_hash", "value": GENESIS},
                        ],
                    )
                else:
                    version = self._meta(conn, "schema_version")
                    if version is None or int(version) > AUDIT_SCHEMA_VERSION:
                        raise AuditError(
                            f"{target}: audit schema version {version}; this program knows up to {AUDIT_SCHEMA_VERSION}"
                        )
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise AuditError(f"cannot open the audit trail in {target}: {exc.__class__.__name__}: {exc}") from None
        except AuditError:
            engine.dispose()
            raise
        return engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @staticmethod
    def _meta(conn: sa.Connection, key: str) -> str | None:
        row = conn.execute(sa.select(audit_meta.c.value).where(audit_meta.c.key == key)).first()
        return None if row is None else str(row[0])

    # -- writing -----------------------------------------------------------------------------

    def append(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Chain and store `entries` in one transaction; returns the stored records."""
        if not entries:
            return []
        with self._lock, self.engine.begin() as conn:
            # Touch the head first: this takes the database's write lock before we read it.
            conn.execute(sa.update(audit_meta).where(audit_meta.c.key == "head_seq").values(value=audit_meta.c.value))
            seq = int(self._meta(conn, "head_seq") or 0)
            prev = self._meta(conn, "head_hash") or GENESIS
            records = []
            for entry in entries:
                seq += 1
                ts = entry.ts_ns or time.time_ns()
                details = canonical_json(entry.details)
                digest = record_hash(seq, ts, entry.kind, entry.user, entry.target, entry.outcome, details, prev)
                records.append(
                    AuditRecord(seq, ts, entry.kind, entry.user, entry.target, entry.outcome, details, prev, digest)
                )
                prev = digest
            conn.execute(
                sa.insert(audit_records),
                [
                    {
                        "seq": r.seq,
                        "ts": r.ts_ns,
                        "kind": r.kind,
                        "user": r.user,
                        "target": r.target,
                        "outcome": r.outcome,
                        "details": r.details,
                        "prev_hash": r.prev_hash,
                        "hash": r.hash,
                    }
                    for r in records
                ],
            )
            conn.execute(sa.update(audit_meta).where(audit_meta.c.key == "head_seq").values(value=str(seq)))
            conn.execute(sa.update(audit_meta).where(audit_meta.c.key == "head_hash").values(value=prev))
        return records

    def record(self, kind: str, user: str, target: str = "", outcome: str = "ok", **details: Any) -> AuditRecord:
        return self.append([AuditEntry(kind, user, target, outcome, details)])[0]

    # -- reading ------------------------------------------------------------------------------

    def records(self, after_seq: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Records in storage order (the order verify checks)."""
        query = sa.select(audit_records).where(audit_records.c.seq > after_seq).order_by(audit_records.c.id)
        if limit is not None:
            query = query.limit(limit)
        return self._select(query)

    def records_since(self, ts_ns: int, kinds: Iterable[str]) -> list[AuditRecord]:
        """Records of `kinds` at or after `ts_ns` (by the time index: cheap on a long trail)."""
        query = (
            sa.select(audit_records)
            .where(audit_records.c.ts >= ts_ns, audit_records.c.kind.in_(list(kinds)))
            .order_by(audit_records.c.id)
        )
        return self._select(query)

    def _select(self, query: sa.Select[Any]) -> list[AuditRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            AuditRecord(r.seq, r.ts, r.kind, r.user, r.target, r.outcome, r.details, r.prev_hash, r.hash) for r in rows
        ]

    def head(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            return int(self._meta(conn, "head_seq") or 0), self._meta(conn, "head_hash") or GENESIS

    def verify(self) -> tuple[int, list[AuditProblem]]:
        """(records checked, problems found); no problems means the chain is intact."""
        records = self.records()
        return len(records), verify_chain(records, self.head())


def verify_chain(records: Iterable[AuditRecord], head: tuple[int, str] | None = None) -> list[AuditProblem]:
    problems: list[AuditProblem] = []
    by_hash: dict[str, int] = {}
    listed = list(records)
    for r in listed:
        by_hash[r.hash] = r.seq
    expected_seq = 1
    prev_hash = GENESIS
    prev_seq = 0
    for r in listed:
        recomputed = record_hash(r.seq, r.ts_ns, r.kind, r.user, r.target, r.outcome, r.details, r.prev_hash)
        if recomputed != r.hash:
            problems.append(AuditProblem(r.seq, "edited: its content does not match its hash"))
        if r.seq < prev_seq:
            problems.append(AuditProblem(r.seq, f"reordered: stored after record {prev_seq}"))
        elif r.seq > expected_seq:
            missing = f"{expected_seq}" if r.seq == expected_seq + 1 else f"{expected_seq}-{r.seq - 1}"
            problems.append(AuditProblem(r.seq, f"record(s) {missing} before it are missing (deleted)"))
        if r.prev_hash != prev_hash and recomputed == r.hash:
            follows = by_hash.get(r.prev_hash)
            if follows is None and r.prev_hash != GENESIS:
                problems.append(AuditProblem(r.seq, "the record it follows is missing (deleted) or was edited"))
            elif r.seq >= prev_seq:
                problems.append(AuditProblem(r.seq, f"chain broken: it follows record {follows or 0}, not {prev_seq}"))
        prev_hash = r.hash
        prev_seq = max(prev_seq, r.seq)
        expected_seq = prev_seq + 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > prev_seq:
            problems.append(AuditProblem(None, f"records {prev_seq + 1}-{head_seq} at the end are missing (deleted)"))
        elif head_seq != prev_seq or (listed and head_hash != listed[-1].hash and not problems):
            problems.append(AuditProblem(None, f"the recorded head (record {head_seq}) does not match the last record"))
    return problems
