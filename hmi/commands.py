"""The runtime's operator side: the alarm engine on the bus, and the commands windows send.

`AlarmService` runs the pure AlarmEngine on the tag bus and publishes every transition
as an Event (the historian records them from the bus, windows get them over IPC).
`OperatorCommands` answers the commands windows send over the IPC request channel:
login/logout, the alarm snapshot, acknowledge, reset, shelve, unshelve, out of service,
writes to the plant, method calls on the plant (and their signatures), and config
reload. Its table (`OperatorCommands.table`) is the runtime's one command table: the
runtime adds browse, watch, ping and status to it. Each command that acts names a login
session; the role its table entry names is checked here, in the runtime, so no window can
bypass it, and every action, refused or done, is written to the audit trail before the
reply goes back.

Threads: `AlarmService._on_batch` runs on whichever thread publishes on the bus (with the
bus lock held); commands run on the IPC request thread; `tick` runs on the runtime's
asyncio loop. One lock guards the engine. Events are published after that lock is
released (a command publishing while holding it could deadlock against a batch holding
the bus lock), so two events of one alarm can reach the bus out of order; their
per-alarm revision numbers let every reader put them back in order.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np

from hmi.core.alarms.engine import AlarmCommandError, AlarmEngine, AlarmSettings, Record
from hmi.core.alarms.model import AlarmDefinition
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType, TagSpec
from hmi.security.audit import AuditEntry, AuditError, AuditTrail, operator_event
from hmi.security.positions import PositionRefused, StationBoard
from hmi.security.roles import REQUIRED_ROLE, Action, may
from hmi.security.sessions import LoginRefused, Session, Sessions
from hmi.security.users import UserError
from hmi.security.verified_writes import PendingWrite, VerifiedWrites, VerifyRefused
from hmi.sources.base import CallableSource

log = logging.getLogger(__name__)

# Where the engine's state comes from after a restart: the latest recorded alarm events.
AlarmHistory = Callable[[], Iterable[Event]]


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What the plant said to a write: `status` is the server's status name (Good, Bad...)."""

    ok: bool
    status: str
    message: str = ""


# Writes to the plant: (tag spec, value) -> outcome. The runtime routes it to the tag's source.
TagWriter = Callable[[TagSpec, float | bool | str], WriteOutcome]


class AlarmService:
    """The alarm engine subscribed to a bus, with a lock and a timer entry point.

    The twin's advisories run on a second instance with `category=ADVISORY`: its
    transitions are published as advisory events, each with what `annotate(alarm name)`
    says about it (the twin's finding) under details["advisory"]; the latest annotation
    of each alarm is kept (and restored from history) for the snapshot."""

    def __init__(
        self,
        engine: AlarmEngine,
        bus: TagBus,
        category: EventCategory = EventCategory.ALARM,
        annotate: Callable[[str], dict[str, Any] | None] | None = None,
        watched_tags: Iterable[int] | None = None,
    ) -> None:
        """`watched_tags`: when given, batches without any of these tag ids are skipped
        (only for an engine whose conditions read nothing else, like the advisories')."""
        self.engine = engine
        self._watched: np.ndarray | None = None
        if watched_tags is not None:
            ids = np.fromiter(watched_tags, np.int64)
            self._watched = np.zeros(int(ids.max(initial=-1)) + 1, bool)
            self._watched[ids] = True
        self.bus = bus
        self.category = category
        self.annotate = annotate
        self.annotations: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self.errors = 0
        name = "alarms" if category == EventCategory.ALARM else "advisories"
        self._subscription = bus.subscribe(self._on_batch, name=name)

    def close(self) -> None:
        self._subscription.close()

    def restore(self, history: AlarmHistory | None) -> int:
        if history is None:
            return 0
        try:
            events = list(history())
        except Exception:
            log.exception("could not read the recorded alarm states; alarms start from NORMAL")
            return 0
        if self.category != EventCategory.ALARM:
            # Recorded as advisory events; the engine reads them as the alarm events they are.
            mine = [e for e in events if e.category == self.category]
            for event in sorted(mine, key=lambda e: e.ts_ns):
                if isinstance(event.details.get("advisory"), dict):
                    self.annotations[event.source] = event.details["advisory"]
            events = [dataclasses.replace(e, category=EventCategory.ALARM) for e in mine]
        with self.lock:
            count = self.engine.restore(events)
        if count:
            log.info("restored the state of %d alarm(s) from the historian", count)
        return count

    def _on_batch(self, batch: SampleBatch) -> None:
        if self._watched is not None:
            ids = batch.tag_ids
            ids = ids[ids < self._watched.shape[0]]
            if not self._watched[ids].any():
                return
        with self.lock:
            records = self.engine.evaluate(batch)
        self.publish(records)

    def tick(self, now_ns: int | None = None) -> None:
        with self.lock:
            records = self.engine.tick(time.time_ns() if now_ns is None else now_ns)
        self.publish(records)

    def publish(self, records: list[Record]) -> None:
        if records:
            self.bus.publish_events([self._event(r) for r in records])

    def _event(self, record: Record) -> Event:
        event = record.to_event()
        if self.category == EventCategory.ALARM:
            return event
        details = event.details
        name = event.source
        if self.annotate is not None:
            note = self.annotate(name)
            if note is not None:
                self.annotations[name] = note
        if name in self.annotations:
            details = {**details, "advisory": self.annotations[name]}
        return dataclasses.replace(event, category=self.category, details=details)

    def replace_engine(self, definitions: list[AlarmDefinition], settings: AlarmSettings) -> int:
        """Reconfigure: a new engine carrying over the state of alarms that keep their name."""
        with self.lock:
            old = self.engine
            new = AlarmEngine(definitions, self.bus.registry, settings, epoch=old.epoch)
            new.restore(old.last_transitions())
            self.engine = new
        return len(new)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            engine = self.engine
            return {
                "ok": True,
                "epoch": engine.epoch,
                "alarms": [s.to_json() for s in engine.statuses()],
                "flood": engine.flood(),
                "flood_counts": engine.flood_counts(),
                "nuisance": engine.nuisance_counts(),
                "unacknowledged": engine.unacknowledged(),
                "max_shelve_s": engine.settings.max_shelve_s,
                "annotations": dict(self.annotations),
            }


MAX_TYPED_NAME = 64  # user names are at most 32 characters (hmi.security.users)


def _refused(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


# A command's handler: the command as sent -> the reply. Runs on the IPC request thread.
CommandHandler = Callable[[dict[str, Any]], dict[str, Any]]
# Who may send a command: None, anyone (no session); LOGGED_IN, any logged-in user; an Action,
# a session whose role may do it (hmi.security.roles.REQUIRED_ROLE).
LOGGED_IN: Literal["logged in"] = "logged in"
Needs = Action | Literal["logged in"] | None


@dataclass(frozen=True, slots=True)
class CommandEntry:
    handler: CommandHandler
    needs: Needs


def station_of(command: dict[str, Any]) -> str:
    """Where a command comes from: the window's station (host and display), as it says.

    The one place the runtime reads it; an authenticated channel will set it here later."""
    return str(command.get("station") or "")[:100]


@dataclass(frozen=True, slots=True)
class CallOutcome(WriteOutcome):
    """What the plant said to a method call, with its outputs as [{"name", "value"}]."""

    outputs: tuple[dict[str, Any], ...] = ()


class MethodCaller(Protocol):
    """Method calls on the plant: a method is its NodeId on a named connection, called on an
    object (NodeId). Runs on the IPC request thread."""

    def signature(self, connection: str, method: str) -> dict[str, Any]:
        """{"name", "inputs", "outputs"}, each argument {"name", "data_type", "value_rank",
        "description"}; ValueError says why not."""
        ...

    def check(self, connection: str, method: str, arguments: list[Any]) -> tuple[str, list[Any]]:
        """(the method's name, `arguments` coerced to its declared input types); ValueError
        says why not (count, type, connection down), before anything is sent."""
        ...

    def call(self, connection: str, object_id: str, method: str, arguments: list[Any]) -> CallOutcome: ...


CALL_TIMEOUT_S = 10.0


class SourceMethodCaller:
    """MethodCaller on the runtime's sources: `source_of(name)` is the connection's source (or
    None), `run(coroutine, timeout_s)` runs it on the runtime's loop and waits for it."""

    def __init__(self, source_of: Callable[[str], Any], run: Callable[[Coroutine[Any, Any, Any], float], Any]) -> None:
        self.source_of = source_of
        self.run = run

    def _source(self, connection: str) -> CallableSource:
        source = self.source_of(connection)
        if source is None:
            raise ValueError(f"there is no connection {connection!r}")
        if not isinstance(source, CallableSource):
            raise ValueError(f"connection {connection!r} has no methods (only OPC UA connections do)")
        return source

    def _signature(self, connection: str, method: str) -> Any:
        source = self._source(connection)
        try:
            return self.run(source.method_signature(method), CALL_TIMEOUT_S)
        except TimeoutError:
            raise ValueError(f"no answer from {connection} within {CALL_TIMEOUT_S:g} s") from None
        except ValueError:
            raise
        except Exception as exc:  # not connected, and whatever the connection raised
            raise ValueError(f"{exc.__class__.__name__}: {exc}") from None

    def signature(self, connection: str, method: str) -> dict[str, Any]:
        sig = self._signature(connection, method)
        return {"name": sig.name, "inputs": [a.to_json() for a in sig.inputs],
                "outputs": [a.to_json() for a in sig.outputs]}  # fmt: skip

    def check(self, connection: str, method: str, arguments: list[Any]) -> tuple[str, list[Any]]:
        sig = self._signature(connection, method)
        return sig.name, sig.coerce(arguments)  # WriteRejected is a ValueError

    def call(self, connection: str, object_id: str, method: str, arguments: list[Any]) -> CallOutcome:
        source = self._source(connection)
        try:
            result = self.run(source.call(object_id, method, *arguments), CALL_TIMEOUT_S)
        except TimeoutError:
            return CallOutcome(False, "BadTimeout", f"no answer from {connection} within {CALL_TIMEOUT_S:g} s")
        except Exception as exc:  # not connected, and whatever the connection raised
            return CallOutcome(False, "BadNotConnected", f"{exc.__class__.__name__}: {exc}")
        names = result.output_names
        outputs = tuple(
            {"name": (names[i] if i < len(names) else "") or f"output {i + 1}", "value": _plain(value)}
            for i, value in enumerate(result.outputs)
        )
        return CallOutcome(bool(result.ok), str(result.status), str(result.message or ""), outputs)


def _plain(value: Any) -> Any:
    """A value as JSON can carry it into the audit trail and the reply, without hiding anything."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": what the plant said, not a blank
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)[:500]


USERS_CHECK_S = 2.0  # how often the runtime looks for user changes made with `hmi users`


class OperatorCommands:
    """The command table and the operator commands' handlers. `handle()` answers every command
    a window or the CLI sends, an unknown one too (the runtime registers its own into the table).

    Every action, done or refused, goes through `_record(entries)`: the audit entries are
    written and the same entries are published as OPERATOR events (hmi.security.audit
    .operator_event), so the audit trail, the historian's events table and the windows'
    journal tell one story; an entry that could not be audited is still published, marked so."""

    def __init__(
        self,
        sessions: Sessions,
        audit: AuditTrail | None,
        bus: TagBus,
        alarms: AlarmService | None = None,
        writer: TagWriter | None = None,
        reload: Callable[[], str] | None = None,
        clock: Callable[[], int] = time.time_ns,
        advisories: AlarmService | None = None,
        caller: MethodCaller | None = None,
        stop_system: Callable[[str], None] | None = None,
        board: StationBoard | None = None,
        verified_writes: VerifiedWrites | None = None,
    ) -> None:
        """`board` keeps the operator positions and the stations heard from.
        `advisories` is the twin's advisory engine: its advisories are acknowledged,
        shelved and audited with the same commands as alarms (they are told apart by name).
        `caller` carries method calls to the plant (None: calls are refused)."""
        self.sessions = sessions
        self.audit = audit
        self.bus = bus
        self.alarms = alarms
        self.advisories = advisories
        self.writer = writer
        self.caller = caller
        self.reload = reload
        self.stop_system = stop_system  # stops the runtime (given the user); None: cannot
        self.clock = clock
        # Writes to `verify = true` tags waiting for a second user ([writes]; none configured: no reasons).
        self.verified = verified_writes if verified_writes is not None else VerifiedWrites()
        self.board = board if board is not None else StationBoard()
        # THE command table: every command a window or the CLI sends, and who may send it. The
        # runtime adds its own (browse, watch, ping, status: `register`). A role is checked
        # against this table (`_session` reads it), so the table is who may do what.
        self.table: dict[str, CommandEntry] = {
            "login": CommandEntry(self._login, None),
            "logout": CommandEntry(self._logout, None),
            "touch": CommandEntry(self._touch, LOGGED_IN),
            "alarms": CommandEntry(self._alarms, None),
            "advisories": CommandEntry(self._advisories, None),
            "acknowledge": CommandEntry(self._acknowledge, Action.ACKNOWLEDGE),
            "reset": CommandEntry(self._reset, Action.RESET),
            "shelve": CommandEntry(self._shelve, Action.SHELVE),
            "unshelve": CommandEntry(self._unshelve, Action.UNSHELVE),
            "out_of_service": CommandEntry(self._out_of_service, Action.OUT_OF_SERVICE),
            "write": CommandEntry(self._write, Action.WRITE),
            "call": CommandEntry(self._call, Action.WRITE),  # acts on the plant like a write
            "method_signature": CommandEntry(self._method_signature, LOGGED_IN),
            "reload_config": CommandEntry(self._reload, Action.RELOAD_CONFIG),
            "stop_system": CommandEntry(self._stop_system, Action.STOP_SYSTEM),
            "demo_faults": CommandEntry(self._demo_faults, None),
            "demo_fault": CommandEntry(self._demo_fault, Action.DEMO_FAULT),
            # Two-person writes: `write` with a reason asks; a second user verifies or rejects.
            "pending_writes": CommandEntry(self._pending_writes, None),
            "verify_write": CommandEntry(self._verify_write, Action.VERIFY_WRITE),
            "reject_write": CommandEntry(self._reject_write, Action.VERIFY_WRITE),
            "cancel_write": CommandEntry(self._cancel_write, LOGGED_IN),  # the requester's own: checked there
            "take_position": CommandEntry(self._take_position, Action.TAKE_POSITION),
            # The holder (operator role) or a supervisor: checked in the handler.
            "hand_over_position": CommandEntry(self._hand_over_position, Action.TAKE_POSITION),
            "stations": CommandEntry(self._stations, None),
        }
        # User changes before the runtime started are not its to announce (users.json is the
        # workstation's, shared by every project; its change log keeps them); later ones are.
        self.users_check_s = USERS_CHECK_S
        self._users_checked = time.monotonic()
        try:
            self._users_stamp = sessions.users.stamp()
            self._users_seq = sessions.users.last_change_seq()
        except UserError as exc:
            log.error("%s", exc)
            self._users_stamp, self._users_seq = None, 0

    def register(self, name: str, handler: CommandHandler) -> None:
        """Add a command anyone may send that is answered outside this class (the runtime's
        browse, watch, ping and status). Commands that need a session are this class's: their
        role checks read the table."""
        if name in self.table:
            raise ValueError(f"command {name!r} is already in the table")
        self.table[name] = CommandEntry(handler, None)

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        """THE entry point for every command (IPC request thread): its handler in the table, or
        `unknown command 'name'`."""
        now = self.clock()
        self._record_ended_sessions(now)
        # Any command is a sign of life from its station (the station list's last seen).
        self.board.seen(station_of(command), now)
        entry = self.table.get(str(command.get("command")))
        if entry is None:
            return _refused(f"unknown command {command.get('command')!r}")
        return entry.handler(command)

    def tick(self, now_ns: int | None = None) -> None:
        """Timer entry point (the runtime's alarm timer): record the end of sessions left idle,
        and user changes made with `hmi users` since the last look; verified writes whose time is up lapse."""
        now = self.clock() if now_ns is None else now_ns
        self._record_ended_sessions(now)
        self._lapse_writes(now)
        if time.monotonic() - self._users_checked >= self.users_check_s:
            self._users_checked = time.monotonic()
            self._record_user_changes()

    # -- audit and operator events ---------------------------------------------------------

    def _record(self, entries: list[AuditEntry]) -> str | None:
        """THE path for an operator action: write `entries` to the audit trail and publish each
        as an OPERATOR event. Returns None, or why the audit trail could not take them (the
        events are published anyway, marked so, with a system event saying the trail failed).
        Call it without holding an engine lock (publishing reaches every bus subscriber)."""
        now = self.clock()
        entries = [e.stamped(now) for e in entries]  # one time for the record and its event
        problem: str | None = None
        if self.audit is None:
            problem = "the audit trail is not available"
        else:
            try:
                self.audit.append(entries)
            except (AuditError, Exception) as exc:  # a full disk must not crash the request thread
                log.error("audit trail write failed: %s", exc)
                # What happens to the action is the caller's to say (alarm actions go ahead).
                problem = f"the audit trail cannot be written ({exc.__class__.__name__})"
        self._publish(entries, problem)
        if problem is not None and entries:
            self._audit_failed(problem)
        return problem

    def _publish(self, entries: list[AuditEntry], audit_problem: str | None = None) -> None:
        if entries:
            self.bus.publish_events([operator_event(e, audit_problem) for e in entries])

    def _audit_failed(self, problem: str) -> None:
        self.bus.publish_events([Event(EventCategory.SYSTEM, "audit", f"Audit trail: {problem}", Severity.ERROR)])

    def _action(self, command: dict[str, Any]) -> Action:
        """The action the command's table entry needs a role for."""
        action = self.table[str(command.get("command"))].needs
        assert isinstance(action, Action), f"{command.get('command')!r} needs no role"
        return action

    def _session(
        self,
        command: dict[str, Any],
        targets: str | list[str],
        details: dict[str, Any] | None = None,
        kind: str | None = None,
        doing: str | None = None,
    ) -> Session | dict[str, Any]:
        """The session allowed to do the action the command's table entry names, or a refusal
        reply (recorded as `kind`, default the action, one entry per target, when a user is
        known). `doing` names the action in the refusal when it is not the action itself
        ("calling a method" needs the write role)."""
        action = self._action(command)
        session = self.sessions.resolve(command.get("session"), self.clock())
        if session is None:
            return _refused("not logged in (or the session ended): log in again")
        if not may(session.role, action):
            needed = REQUIRED_ROLE[action]
            what = doing or action.replace("_", " ")
            message = f"{what} needs the {needed.label} role; {session.user} is {session.role.label}"
            facts = {**(details or {}), "station": station_of(command), "reason": message}
            names = [targets] if isinstance(targets, str) else targets
            self._record([AuditEntry(kind or str(action), session.user, n, "refused", facts) for n in names])
            return _refused(message)
        return session

    # -- sessions ---------------------------------------------------------------------------

    def _login(self, command: dict[str, Any]) -> dict[str, Any]:
        name = str(command.get("user", "")).strip().lower()
        station = station_of(command)
        now = self.clock()
        try:
            session = self.sessions.login(name, str(command.get("password", "")), now, station)
        except LoginRefused as exc:
            failures = self.sessions.throttle.failures(name)
            details = {"station": station, "reason": str(exc), "failures": failures}
            # The typed name is the guesser's to choose: recorded, but bounded.
            typed = name if len(name) <= MAX_TYPED_NAME else name[:MAX_TYPED_NAME] + "…"
            self._record([AuditEntry("login_failed", typed, "session", "refused", details, now)])
            return _refused(str(exc))
        details = {"station": station, "role": session.role.label}
        problem = self._record([AuditEntry("login", session.user, "session", "ok", details, now)])
        if problem:
            # A login that cannot be audited is undone, and that is recorded (as far as it can be).
            self.sessions.logout(session.token)
            reason = f"{problem}: a login that cannot be audited is not kept"
            self._record([AuditEntry("logout", session.user, "session", "ok", {"station": station, "reason": reason})])
            return _refused(reason)
        return {
            "ok": True,
            "session": session.token,
            "user": session.user,
            "role": session.role.label,
            "idle_logout_s": self.sessions.idle_timeout_s,
        }

    def _logout(self, command: dict[str, Any]) -> dict[str, Any]:
        session = self.sessions.logout(str(command.get("session", "")))
        if session is None:
            return {"ok": True}
        details = {
            "station": station_of(command) or session.station,
            "reason": str(command.get("reason", "user"))[:100],
        }
        self._record([AuditEntry("logout", session.user, "session", "ok", details)])
        return {"ok": True}

    def _record_ended_sessions(self, now_ns: int) -> None:
        """Sessions the runtime ended for being idle: each a logout, from where it logged in."""
        ended = self.sessions.take_ended(now_ns)
        if ended:
            self._record(
                [
                    AuditEntry("logout", s.user, "session", "ok", {"station": s.station, "reason": "session ended"})
                    for s in ended
                ]
            )

    def _touch(self, command: dict[str, Any]) -> dict[str, Any]:
        session = self.sessions.resolve(command.get("session"), self.clock())
        if session is None:
            return _refused("not logged in (or the session ended)")
        return {"ok": True, "user": session.user, "role": session.role.label}

    # -- user changes -----------------------------------------------------------------------

    def _record_user_changes(self) -> None:
        """Changes `hmi users` made since the last look, as operator events (and audit records
        unless the CLI already wrote them into this trail with --project). The users file is
        replaced on every change, so an unchanged stamp means nothing to read."""
        users = self.sessions.users
        stamp = users.stamp()
        if stamp == self._users_stamp:
            return
        self._users_stamp = stamp
        try:
            changes = users.changes(self._users_seq)
            last = users.last_change_seq()
        except UserError as exc:
            log.error("user changes not recorded: %s", exc)
            return
        if last < self._users_seq:
            log.warning("%s was replaced by a file with a shorter change log; following its end", users.path)
            self._users_seq = last
            return
        if not changes:
            return
        self._users_seq = changes[-1].seq
        entries = [c.audit_entry() for c in changes]
        audited = self._audited_user_changes(entries)
        self._record([e for e in entries if _change_key(e) not in audited])
        self._publish([e for e in entries if _change_key(e) in audited])

    def _audited_user_changes(self, entries: list[AuditEntry]) -> set[tuple[str, int, Any]]:
        if self.audit is None:
            return set()
        try:
            records = self.audit.records_since(min(e.ts_ns for e in entries), {e.kind for e in entries})
        except Exception as exc:
            log.error("could not read the audit trail: %s", exc)
            return set()
        return {(r.kind, r.ts_ns, r.details_dict().get("change")) for r in records}

    # -- alarms ---------------------------------------------------------------------------------

    def _alarms(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.alarms is None:
            return {"ok": True, "epoch": 0, "alarms": [], "flood": {}, "unacknowledged": 0}
        return self.alarms.snapshot()

    def _advisories(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.advisories is None:
            return {"ok": True, "epoch": 0, "alarms": [], "flood": {}, "unacknowledged": 0, "annotations": {}}
        return self.advisories.snapshot()

    def _names(self, command: dict[str, Any]) -> list[str]:
        names = command.get("alarms")
        if names is None and command.get("alarm"):
            names = [command["alarm"]]
        return list(dict.fromkeys(str(n) for n in names or []))  # each alarm once, in the order given

    def _alarm_action(
        self,
        command: dict[str, Any],
        run: Callable[[AlarmEngine, str, Session, int], list[Record]],
        details: dict[str, Any],
        kind: str | None = None,
    ) -> dict[str, Any]:
        """`kind`: what the audit trail calls it (default: the action)."""
        if self.alarms is None and self.advisories is None:
            return _refused("this runtime has no alarms")
        names = self._names(command)
        if not names:
            return _refused("no alarm given")
        kind = kind or str(self._action(command))
        session = self._session(command, names, details, kind)
        if isinstance(session, dict):
            return session
        details = {**details, "station": station_of(command)}
        now = self.clock()
        done: list[str] = []
        errors: dict[str, str] = {}
        problem = None
        for service, group in self._by_service(names):
            records: list[Record] = []
            with service.lock:
                for name in group:
                    try:
                        records.extend(run(service.engine, name, session, now))
                        done.append(name)
                    except AlarmCommandError as exc:
                        errors[name] = str(exc)
            # One entry (and event) per alarm, so the journal can be filtered by alarm.
            entries = [
                AuditEntry(kind, session.user, name, "ok", details, now)
                if name in done
                else AuditEntry(kind, session.user, name, "refused", {**details, "reason": errors[name]}, now)
                for name in group
            ]
            problem = self._record(entries) or problem
            service.publish(records)
        reply: dict[str, Any] = {"ok": not errors or bool(done), "done": done, "errors": errors}
        if errors and not done:
            reply["error"] = next(iter(errors.values())) if len(errors) == 1 else f"{len(errors)} alarms refused"
        if problem is not None:
            # Alarm handling keeps working when the audit store fails (a full disk must not
            # stop acknowledgements); the failure is said loudly instead (by _record too).
            reply["audit_error"] = problem
        return reply

    def _by_service(self, names: list[str]) -> list[tuple[AlarmService, list[str]]]:
        """Names grouped by the engine that holds them: advisories by the twin's, the rest by the
        alarm engine (which also answers for names nobody knows: "unknown alarm")."""
        advisory_names = set(self.advisories.engine.names()) if self.advisories is not None else set()
        advisory = [n for n in names if n in advisory_names]
        other = [n for n in names if n not in advisory_names]
        groups: list[tuple[AlarmService, list[str]]] = []
        if advisory and self.advisories is not None:
            groups.append((self.advisories, advisory))
        if other:
            service = self.alarms if self.alarms is not None else self.advisories
            assert service is not None
            groups.append((service, other))
        return groups

    def _acknowledge(self, command: dict[str, Any]) -> dict[str, Any]:
        comment = str(command.get("comment", ""))
        return self._alarm_action(
            command,
            lambda engine, name, s, now: engine.acknowledge(name, s.user, now, comment),
            {"comment": comment} if comment else {},
        )

    def _reset(self, command: dict[str, Any]) -> dict[str, Any]:
        comment = str(command.get("comment", ""))
        return self._alarm_action(
            command,
            lambda engine, name, s, now: engine.reset(name, s.user, now, comment),
            {"comment": comment} if comment else {},
        )

    def _shelve(self, command: dict[str, Any]) -> dict[str, Any]:
        reason = str(command.get("reason", ""))
        try:
            duration = float(command.get("duration_s", 0))
        except (TypeError, ValueError):
            return _refused("duration_s must be a number of seconds")
        return self._alarm_action(
            command,
            lambda engine, name, s, now: engine.shelve(name, s.user, now, duration, reason),
            {"reason": reason, "duration_s": duration},
        )

    def _unshelve(self, command: dict[str, Any]) -> dict[str, Any]:
        comment = str(command.get("comment", ""))
        return self._alarm_action(
            command,
            lambda engine, name, s, now: engine.unshelve(name, s.user, now, comment),
            {"comment": comment} if comment else {},
        )

    def _out_of_service(self, command: dict[str, Any]) -> dict[str, Any]:
        reason = str(command.get("reason", ""))
        out = bool(command.get("out", True))
        return self._alarm_action(
            command,
            lambda engine, name, s, now: engine.set_out_of_service(name, s.user, now, out, reason),
            {"reason": reason, "out": out},
            kind="out_of_service" if out else "return_to_service",
        )

    # -- writes and method calls ------------------------------------------------------------------

    def _write(self, command: dict[str, Any]) -> dict[str, Any]:
        tag = str(command.get("tag", ""))
        session = self._session(command, tag)
        if isinstance(session, dict):
            return session
        raw_value = command.get("value")
        latest = self.bus.latest(tag) if tag in self.bus.registry else None
        old = latest.value if latest is not None else None
        details: dict[str, Any] = {
            "station": station_of(command),
            "old": _json_value(old),
            "new": _json_value(raw_value),
        }
        if command.get("context"):
            # Why the operator writes, e.g. the advisory whose recommendation this carries out.
            details["context"] = str(command["context"])[:500]
        spec = self.bus.registry.by_name(tag) if tag in self.bus.registry else None
        try:
            if spec is None:
                raise ValueError(f"unknown tag {tag!r}")
            value = check_write(spec, raw_value)
        except ValueError as exc:
            self._record([AuditEntry("write", session.user, tag, "refused", {**details, "reason": str(exc)})])
            return _refused(str(exc))
        if spec.verify:
            return self._request_verified_write(command, session, spec, value, details)
        writer = self.writer
        act = (lambda: writer(spec, value)) if writer is not None else None
        reply = self._carry_out(session, "write", tag, details, act, "this runtime cannot write to the plant")
        return {**reply, "old": details["old"]} if "status" in reply else reply

    # -- two-person (verified) writes -------------------------------------------------------------

    def _request_verified_write(
        self,
        command: dict[str, Any],
        session: Session,
        spec: TagSpec,
        value: float | bool | str,
        details: dict[str, Any],
    ) -> dict[str, Any]:
        """A write to a `verify = true` tag, checked like any write, is not sent: with a reason
        from [writes] verify_reasons it waits for a second user (hmi.security.verified_writes),
        recorded as `write_verify_request` and published to every window with id and expiry."""
        reason = str(command.get("reason", "")).strip()[:100]
        now = self.clock()
        try:
            pending = self.verified.request(spec.name, value, session, details["station"], reason, now,
                                            str(details.get("context", "")))  # fmt: skip
        except VerifyRefused as exc:
            refused = {**details, "reason": str(exc), **({"given_reason": reason} if reason else {})}
            self._record([AuditEntry("write_verify_request", session.user, spec.name, "refused", refused)])
            return _refused(str(exc))
        facts = {**details, "reason": reason, "id": pending.id, "expires_ns": pending.expires_ns,
                 "timeout_s": self.verified.timeout_s}  # fmt: skip
        problem = self._record([AuditEntry("write_verify_request", session.user, spec.name, "ok", facts, now)])
        if problem is not None:
            # A request missing from the trail must not turn into a write: withdrawn at once.
            self.verified.cancel(pending.id, session.user, now)
            withdrawn = {**self._requested(pending), "station": pending.station, "id": pending.id, "comment": problem}
            self._record([AuditEntry("write_verify_cancel", session.user, spec.name, "ok", withdrawn, now)])
            return _refused(f"{problem}: a write that cannot be audited is not sent")
        return {"ok": True, "pending": True, "id": pending.id, "expires_ns": pending.expires_ns,
                "timeout_s": self.verified.timeout_s, "old": details["old"],
                "message": "waiting for verification by a second user"}  # fmt: skip

    @staticmethod
    def _requested(pending: PendingWrite) -> dict[str, Any]:
        """The request's facts every later record of it repeats (the trail reads without joins)."""
        return {"requested_by": pending.user, "requester_station": pending.station, "reason": pending.reason,
                "new": _json_value(pending.value)}  # fmt: skip

    def _pending_writes(self, command: dict[str, Any]) -> dict[str, Any]:
        """The writes waiting for verification, the reasons to pick from and the timeout (anyone
        may read them, as every window is told of each request anyway)."""
        now = self.clock()
        pending = [p.to_json() for p in self.verified.pending() if p.expires_ns > now]
        return {"ok": True, "reasons": list(self.verified.reasons), "timeout_s": self.verified.timeout_s,
                "now_ns": now, "pending": pending}  # fmt: skip

    def _verify_write(self, command: dict[str, Any]) -> dict[str, Any]:
        """{"command": "verify_write", "id"}: a second user with the verifier role confirms, and
        the write goes through the ordinary write path (checks, audit before and after, the
        tag's source) in the requester's name with the verifier beside it. Never one's own."""
        return self._decide_write(command, verify=True)

    def _reject_write(self, command: dict[str, Any]) -> dict[str, Any]:
        """{"command": "reject_write", "id", "comment"}: the verifier turns it down, saying why."""
        return self._decide_write(command, verify=False)

    def _decide_write(self, command: dict[str, Any], verify: bool) -> dict[str, Any]:
        ident = str(command.get("id", ""))[:40]
        station = station_of(command)
        kind = "write_verify" if verify else "write_verify_reject"
        comment = str(command.get("comment", "")).strip()[:500]
        known = self.verified.get(ident)
        target = known.tag if known is not None else ident
        details: dict[str, Any] = {"station": station, "id": ident}
        session = self._session(command, target, details, kind=kind, doing="verifying another user's write")
        if isinstance(session, dict):
            return session
        now = self.clock()
        self._lapse_writes(now)  # one whose time is up is told as lapsed, not as verified late
        try:
            if not verify and not comment:
                raise VerifyRefused("a rejection needs a comment for the user who asked")
            pending = self.verified.decide(ident, session.user, now)
        except VerifyRefused as exc:
            self._record([AuditEntry(kind, session.user, target, "refused", {**details, "reason": str(exc)})])
            return _refused(str(exc))
        facts = {**details, **self._requested(pending), **({"comment": comment} if comment else {})}
        problem = self._record([AuditEntry(kind, session.user, pending.tag, "ok", facts, now)])
        if not verify:
            return {"ok": True, "id": ident, **({"audit_error": problem} if problem else {})}
        return self._send_verified(pending, session, station)

    def _send_verified(self, pending: PendingWrite, verifier: Session, station: str) -> dict[str, Any]:
        """The verified write, now: the same checks as any write, recorded as the requester's."""
        tag = pending.tag
        spec = self.bus.registry.by_name(tag) if tag in self.bus.registry else None
        latest = self.bus.latest(tag) if spec is not None else None
        details: dict[str, Any] = {
            "station": pending.station,
            "old": _json_value(latest.value if latest is not None else None),
            "new": _json_value(pending.value),
            "reason": pending.reason,
            "verify_id": pending.id,
            "verified_by": verifier.user,
            "verifier_station": station,
        }
        if pending.context:
            details["context"] = pending.context
        try:
            if spec is None:
                raise ValueError(f"unknown tag {tag!r}")
            value = check_write(spec, pending.value)
        except ValueError as exc:
            refused = {**details, "reason": str(exc), "requested_reason": pending.reason}
            self._record([AuditEntry("write", pending.user, tag, "refused", refused)])
            return _refused(str(exc))
        writer = self.writer
        act = (lambda: writer(spec, value)) if writer is not None else None
        reply = self._carry_out(pending.requester, "write", tag, details, act, "this runtime cannot write to the plant")
        return {**reply, "id": pending.id, "tag": tag, **({"old": details["old"]} if "status" in reply else {})}

    def _cancel_write(self, command: dict[str, Any]) -> dict[str, Any]:
        """{"command": "cancel_write", "id"}: the requester withdraws it (any session of theirs)."""
        session = self.sessions.resolve(command.get("session"), self.clock())
        if session is None:
            return _refused("not logged in (or the session ended): log in again")
        ident = str(command.get("id", ""))[:40]
        known = self.verified.get(ident)
        target = known.tag if known is not None else ident
        details: dict[str, Any] = {"station": station_of(command), "id": ident}
        now = self.clock()
        self._lapse_writes(now)
        try:
            pending = self.verified.cancel(ident, session.user, now)
        except VerifyRefused as exc:
            self._record([AuditEntry("write_verify_cancel", session.user, target, "refused",
                                     {**details, "reason": str(exc)})])  # fmt: skip
            return _refused(str(exc))
        facts = {**details, **self._requested(pending)}
        problem = self._record([AuditEntry("write_verify_cancel", session.user, pending.tag, "ok", facts, now)])
        return {"ok": True, "id": ident, **({"audit_error": problem} if problem else {})}

    def _lapse_writes(self, now_ns: int) -> None:
        """Verified writes nobody verified in time: out of the book, each recorded (and told) once."""
        gone = self.verified.lapse(now_ns)
        if gone:
            timeout = self.verified.timeout_s
            self._record([
                AuditEntry("write_verify_lapse", p.user, p.tag, "ok",
                           {**self._requested(p), "station": p.station, "id": p.id, "timeout_s": timeout}, now_ns)
                for p in gone
            ])  # fmt: skip

    def _call(self, command: dict[str, Any]) -> dict[str, Any]:
        """{"command": "call", "connection", "object": NodeId, "method": NodeId, "arguments": [...],
        "comment"}: the arguments are checked against the method's declared types before the
        call is recorded and sent; the reply carries the status and the named outputs."""
        connection = str(command.get("connection", ""))
        object_id = str(command.get("object", ""))
        method = str(command.get("method", ""))
        arguments = command.get("arguments", [])
        details: dict[str, Any] = {
            "station": station_of(command),
            "connection": connection,
            "object": object_id,
            "arguments": _plain(arguments),
        }
        comment = str(command.get("comment", "")).strip()[:500]
        if comment:
            details["comment"] = comment
        # A call acts on the plant like a write (the same role), but is recorded as a call.
        session = self._session(command, method, details, kind="call", doing="calling a method")
        if isinstance(session, dict):
            return session
        caller = self.caller
        values: list[Any] = []
        try:
            if not (connection and object_id and method) or not isinstance(arguments, list):
                raise ValueError("a call names a connection, an object and a method, and gives its arguments as a list")
            if caller is not None:
                name, values = caller.check(connection, method, arguments)
                details = {**details, "method_name": name, "arguments": _plain(values)}
        except ValueError as exc:
            self._record([AuditEntry("call", session.user, method, "refused", {**details, "reason": str(exc)})])
            return _refused(str(exc))
        act = (lambda: caller.call(connection, object_id, method, values)) if caller is not None else None
        return self._carry_out(session, "call", method, details, act, "this runtime cannot call methods on the plant")

    def _method_signature(self, command: dict[str, Any]) -> dict[str, Any]:
        """A method's declared arguments for the call dialog: any logged-in user may read them."""
        if self.sessions.resolve(command.get("session"), self.clock()) is None:
            return _refused("not logged in (or the session ended): log in again")
        if self.caller is None:
            return _refused("this runtime cannot call methods on the plant")
        try:
            signature = self.caller.signature(str(command.get("connection", "")), str(command.get("method", "")))
        except ValueError as exc:
            return _refused(str(exc))
        return {"ok": True, **signature}

    def _carry_out(
        self,
        session: Session,
        kind: str,
        target: str,
        details: dict[str, Any],
        act: Callable[[], WriteOutcome] | None,
        unavailable: str,
    ) -> dict[str, Any]:
        """Do a checked plant action (write, method call): recorded before it is sent
        (`<kind>_request`) and after (`<kind>`, with the plant's status). One that cannot be
        audited is not sent: an action the plant carried out is never missing from the trail."""
        if act is None:
            outcome = WriteOutcome(False, "BadNotSupported", unavailable)
        else:
            problem = self._record([AuditEntry(f"{kind}_request", session.user, target, "ok", details)])
            if problem is not None:
                reason = f"{problem}: a {kind} that cannot be audited is not sent"
                self._record([AuditEntry(kind, session.user, target, "refused", {**details, "reason": reason})])
                return _refused(reason)
            try:
                outcome = act()
            except Exception as exc:
                log.exception("%s %s failed", kind, target)
                outcome = WriteOutcome(False, "BadInternalError", f"{exc.__class__.__name__}: {exc}")
        result = {**details, "status": outcome.status, "message": outcome.message}
        reply: dict[str, Any] = {"ok": outcome.ok, "status": outcome.status, "message": outcome.message}
        if isinstance(outcome, CallOutcome):
            result["outputs"] = reply["outputs"] = list(outcome.outputs)
        # Sent but not confirmed by the device (an Uncertain status, hmi/sources/writes.py): it
        # may or may not have happened, so it is neither "ok" nor "failed" (a WARNING event).
        word = "ok" if outcome.ok else "unconfirmed" if outcome.status.startswith("Uncertain") else "failed"
        self._record([AuditEntry(kind, session.user, target, word, result)])
        if not outcome.ok:
            reply["error"] = f"{outcome.status}: {outcome.message}" if outcome.message else outcome.status
        return reply

    # -- operator positions and stations ----------------------------------------------------------

    def _take_position(self, command: dict[str, Any]) -> dict[str, Any]:
        """{"command": "take_position", "position", "reason"}: this station takes a free position
        (leaving the one it held); audited with who, where and why."""
        position = str(command.get("position", ""))[:100]
        station = station_of(command)
        details: dict[str, Any] = {"station": station, "reason": str(command.get("reason", "")).strip()[:500]}
        session = self._session(command, position, details, kind="take_position")
        if isinstance(session, dict):
            return session
        try:
            if not station:
                raise PositionRefused("a position is taken by a station: this command names none")
            left = self.board.take(station, position)
        except PositionRefused as exc:
            refused = {**details, "reason": str(exc)}
            self._record([AuditEntry("take_position", session.user, position, "refused", refused)])
            return _refused(str(exc))
        if left:
            details["left"] = left
        problem = self._record([AuditEntry("take_position", session.user, position, "ok", details)])
        reply: dict[str, Any] = {"ok": True, "position": position}
        if problem is not None:
            reply["audit_error"] = problem  # like alarm actions: a full disk must not stop it
        return reply

    def _hand_over_position(self, command: dict[str, Any]) -> dict[str, Any]:
        """{"command": "hand_over_position", "position", "to_station", "reason"}: the position
        goes to another attached station. Its holder (any operator logged in there) or a
        supervisor may; the reason is required (ISA-18.2's shift hand-over is a record)."""
        position = str(command.get("position", ""))[:100]
        to_station = str(command.get("to_station", ""))[:100]
        station = station_of(command)
        reason = str(command.get("reason", "")).strip()[:500]
        details: dict[str, Any] = {"station": station, "to_station": to_station, "reason": reason}
        session = self._session(command, position, details, kind="hand_over_position")
        if isinstance(session, dict):
            return session
        holder = self.board.holder_of(position)
        try:
            if not reason:
                raise PositionRefused("a hand-over needs a reason")
            if not (station and holder == station) and not may(session.role, Action.HAND_OVER_POSITION):
                needed = REQUIRED_ROLE[Action.HAND_OVER_POSITION].label
                who = f"held by {holder}" if holder else "not held"
                who_is = f"{session.user} is {session.role.label}"
                raise PositionRefused(f"{position} is {who}: only its holder or a {needed} hands it over; {who_is}")
            holder, left = self.board.hand_over(position, to_station, self.clock())
        except PositionRefused as exc:
            # "reason" is the refusal here; what the sender wrote stays beside it.
            refused = {**details, "reason": str(exc), **({"comment": reason} if reason else {})}
            self._record([AuditEntry("hand_over_position", session.user, position, "refused", refused)])
            return _refused(str(exc))
        details["from_station"] = holder
        if left:
            details["left"] = left
        problem = self._record([AuditEntry("hand_over_position", session.user, position, "ok", details)])
        reply: dict[str, Any] = {"ok": True, "position": position, "from_station": holder, "to_station": to_station}
        if problem is not None:
            reply["audit_error"] = problem
        return reply

    def _stations(self, command: dict[str, Any]) -> dict[str, Any]:
        """A window's poll (about once a second): its station's position and the positions (any
        sender), and for a supervisor the stations heard from, their users, positions and last
        seen time. Not audited: it changes nothing. The sender was marked seen in `handle`."""
        now = self.clock()
        reply: dict[str, Any] = {
            "ok": True,
            "position": self.board.position_of(station_of(command)),
            "positions": [p.to_json() for p in self.board.positions],
        }
        # Peeking at the session must not keep it alive: a poll is not the operator's input.
        session = next((s for s in self.sessions.active() if s.token == command.get("session")), None)
        if session is not None and may(session.role, Action.VIEW_STATIONS):
            reply["stations"] = self.board.stations(self.sessions.active(), now)
            reply["now_ns"] = now
        return reply

    # -- configuration -----------------------------------------------------------------------------

    def _reload(self, command: dict[str, Any]) -> dict[str, Any]:
        session = self._session(command, "project", kind="config_reload")
        if isinstance(session, dict):
            return session
        if self.reload is None:
            return _refused("this runtime cannot reload its configuration")
        station = station_of(command)
        try:
            summary = self.reload()
        except Exception as exc:  # a ConfigError lists every problem
            details = {"station": station, "error": str(exc)}
            self._record([AuditEntry("config_reload", session.user, "project", "failed", details)])
            return _refused(f"the project file was not reloaded:\n{exc}")
        details = {"station": station, "summary": summary}
        self._record([AuditEntry("config_reload", session.user, "project", "ok", details)])
        return {"ok": True, "summary": summary}

    def _stop_system(self, command: dict[str, Any]) -> dict[str, Any]:
        """Stop plant connections, runtime and historian (the window's "Stop system…", `hmi
        stop`): engineer role and a reason; recorded before the runtime stops (its event is
        then still in the historian, which flushes on the way out)."""
        reason = str(command.get("reason", "")).strip()[:500]
        details = {"station": station_of(command), "reason": reason}
        session = self._session(command, "system", details, kind="stop_system")
        if isinstance(session, dict):
            return session
        if not reason:
            refusal = "stopping the system needs a reason"
            self._record([AuditEntry("stop_system", session.user, "system", "refused", {**details, "reason": refusal})])
            return _refused(refusal)
        if self.stop_system is None:
            return _refused("this runtime cannot be stopped by a command")
        # A failing audit store does not keep the system from stopping (the event says so).
        problem = self._record([AuditEntry("stop_system", session.user, "system", "ok", details)])
        try:
            self.stop_system(session.user)
        except Exception as exc:
            # The "ok" record above must not stand alone for a stop that did not happen.
            failed = {"station": details["station"], "error": str(exc)}  # the error is the why here
            self._record([AuditEntry("stop_system", session.user, "system", "failed", failed)])
            return _refused(f"the system could not be stopped: {exc}")
        reply: dict[str, Any] = {"ok": True, "user": session.user, "message": f"stopping, requested by {session.user}"}
        if problem is not None:
            reply["audit_error"] = problem
        return reply

    # -- the embedded demo plant -----------------------------------------------------------------

    def _demo_faults(self, command: dict[str, Any]) -> dict[str, Any]:
        """Every demo machine's faults, {"machines": {machine: [{"fault", "description"}]}}, for
        the window's Demo menu (anyone may read them: they are the simulator's catalogue)."""
        from hmi.sim.plant import MACHINE_TYPES

        machines = {
            machine: [{"fault": name, "description": spec.description} for name, spec in sim.faults.items()]
            for machine, sim in MACHINE_TYPES.items()
        }
        return {"ok": True, "machines": machines}

    def _demo_fault(self, command: dict[str, Any]) -> dict[str, Any]:
        """{"command": "demo_fault", "connection", "machine", "fault", "inject": bool, "reason"}:
        inject or clear a fault of the demo plant through its OPC UA method (InjectFault /
        ClearFault on the machine's object), engineer role, recorded as `demo_fault` (or
        `demo_fault_clear`) before and after, like a method call. Only the demo plant's
        namespace is called, so a real PLC on that connection answers BadNodeIdUnknown."""
        from hmi.sim.opcua_server import NAMESPACE_URI
        from hmi.sim.plant import MACHINE_TYPES

        connection = str(command.get("connection", ""))
        machine = str(command.get("machine", ""))
        fault = str(command.get("fault", ""))
        inject = bool(command.get("inject", True))
        kind = "demo_fault" if inject else "demo_fault_clear"
        target = f"{machine}.{fault}"
        details: dict[str, Any] = {"station": station_of(command), "connection": connection,
                                   "reason": str(command.get("reason", "")).strip()[:500]}  # fmt: skip
        session = self._session(command, target, details, kind=kind, doing="a demo-plant fault")
        if isinstance(session, dict):
            return session
        sim = MACHINE_TYPES.get(machine)
        if sim is None or fault not in sim.faults:
            refusal = f"the demo plant has no fault {target!r}"
            self._record([AuditEntry(kind, session.user, target, "refused", {**details, "reason": refusal})])
            return _refused(refusal)
        caller = self.caller
        method = "InjectFault" if inject else "ClearFault"
        node = f"nsu={NAMESPACE_URI};s=Plant/{machine}"
        act = (lambda: caller.call(connection, node, f"{node}/{method}", [fault])) if caller is not None else None
        return self._carry_out(session, kind, target, details, act, "this runtime cannot reach the demo plant")


def _change_key(entry: AuditEntry) -> tuple[str, int, Any]:
    """What identifies a user change in the audit trail, whoever wrote it."""
    return entry.kind, entry.ts_ns, entry.details.get("change")


def check_write(spec: TagSpec, value: Any) -> float | bool | str:
    """The value to write, checked against the tag's declaration; ValueError says why not."""
    if not spec.writable:
        raise ValueError(f"{spec.name} is not declared writable in the project")
    if spec.datatype == DataType.STRING:
        if not isinstance(value, str):
            raise ValueError(f"{spec.name} takes text")
        return value
    if spec.datatype == DataType.BOOL:
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"{spec.name} takes true or false")
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("the value must be a finite number")
    if spec.datatype == DataType.INT and number != int(number):
        raise ValueError(f"{spec.name} takes whole numbers")
    if spec.low is None or spec.high is None:
        raise ValueError(f"{spec.name} has no range in the project: writes need limits")
    if not spec.low <= number <= spec.high:
        raise ValueError(f"{number:g} is outside the limits [{spec.low:g}, {spec.high:g}] of {spec.name}")
    return int(number) if spec.datatype == DataType.INT else number


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
