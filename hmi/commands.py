"""The runtime's operator side: the alarm engine on the bus, and the commands windows send.

`AlarmService` runs the pure AlarmEngine on the tag bus and publishes every transition
as an Event (the historian records them from the bus, windows get them over IPC).
`OperatorCommands` answers the commands windows send over the IPC request channel:
login/logout, the alarm snapshot, acknowledge, reset, shelve, unshelve, out of service,
writes to the plant and config reload. Each command names a login session; the role is
checked here, in the runtime, so no window can bypass it, and every action, refused or
done, is written to the audit trail before the reply goes back.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hmi.core.alarms.engine import AlarmCommandError, AlarmEngine, AlarmSettings, Record
from hmi.core.alarms.model import AlarmDefinition
from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType, TagSpec
from hmi.security.audit import AuditEntry, AuditError, AuditTrail
from hmi.security.roles import REQUIRED_ROLE, Action, may
from hmi.security.sessions import LoginRefused, Session, Sessions

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
                "unacknowledged": engine.unacknowledged(),
                "max_shelve_s": engine.settings.max_shelve_s,
                "annotations": dict(self.annotations),
            }


def _refused(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class OperatorCommands:
    """Command handlers for windows. `handle()` returns None for commands it does not know."""

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
    ) -> None:
        """`advisories` is the twin's advisory engine: its advisories are acknowledged,
        shelved and audited with the same commands as alarms (they are told apart by name)."""
        self.sessions = sessions
        self.audit = audit
        self.bus = bus
        self.alarms = alarms
        self.advisories = advisories
        self.writer = writer
        self.reload = reload
        self.clock = clock
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "login": self._login,
            "logout": self._logout,
            "touch": self._touch,
            "alarms": self._alarms,
            "advisories": self._advisories,
            "acknowledge": self._acknowledge,
            "reset": self._reset,
            "shelve": self._shelve,
            "unshelve": self._unshelve,
            "out_of_service": self._out_of_service,
            "write": self._write,
            "reload_config": self._reload,
        }

    def handle(self, command: dict[str, Any]) -> dict[str, Any] | None:
        handler = self._handlers.get(str(command.get("command")))
        return handler(command) if handler is not None else None

    # -- audit ---------------------------------------------------------------------------

    def _audit(self, entries: list[AuditEntry]) -> str | None:
        """Write `entries`; an error message if the audit trail cannot take them."""
        if self.audit is None:
            return "the audit trail is not available"
        try:
            self.audit.append(entries)
        except (AuditError, Exception) as exc:  # a full disk must not crash the request thread
            log.error("audit trail write failed: %s", exc)
            return f"the audit trail cannot be written ({exc.__class__.__name__}); action not done"
        return None

    def _session(self, command: dict[str, Any], action: Action, target: str) -> Session | dict[str, Any]:
        """The session allowed to do `action`, or a refusal reply (audited when a user is known)."""
        session = self.sessions.resolve(command.get("session"), self.clock())
        if session is None:
            return _refused("not logged in (or the session ended): log in again")
        if not may(session.role, action):
            needed = REQUIRED_ROLE[action]
            message = (
                f"{action.replace('_', ' ')} needs the {needed.label} role; {session.user} is {session.role.label}"
            )
            self._audit([AuditEntry(str(action), session.user, target, "refused", {"reason": message})])
            return _refused(message)
        return session

    # -- sessions ---------------------------------------------------------------------------

    def _login(self, command: dict[str, Any]) -> dict[str, Any]:
        name = str(command.get("user", "")).strip().lower()
        now = self.clock()
        try:
            session = self.sessions.login(name, str(command.get("password", "")), now)
        except LoginRefused as exc:
            failures = self.sessions.throttle.failures(name)
            self._audit(
                [AuditEntry("login_failed", name, "", "refused", {"reason": str(exc), "failures": failures}, now)]
            )
            return _refused(str(exc))
        error = self._audit([AuditEntry("login", session.user, "", "ok", {"role": session.role.label}, now)])
        if error:
            self.sessions.logout(session.token)
            return _refused(error)
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
        reason = str(command.get("reason", "user"))
        self._audit([AuditEntry("logout", session.user, "", "ok", {"reason": reason})])
        return {"ok": True}

    def _touch(self, command: dict[str, Any]) -> dict[str, Any]:
        session = self.sessions.resolve(command.get("session"), self.clock())
        if session is None:
            return _refused("not logged in (or the session ended)")
        return {"ok": True, "user": session.user, "role": session.role.label}

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
        return [str(n) for n in names or []]

    def _alarm_action(
        self,
        command: dict[str, Any],
        action: Action,
        run: Callable[[AlarmEngine, str, Session, int], list[Record]],
        details: dict[str, Any],
    ) -> dict[str, Any]:
        if self.alarms is None and self.advisories is None:
            return _refused("this runtime has no alarms")
        names = self._names(command)
        if not names:
            return _refused("no alarm given")
        target = names[0] if len(names) == 1 else f"{len(names)} alarms"
        session = self._session(command, action, target)
        if isinstance(session, dict):
            return session
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
                entries = [
                    AuditEntry(str(action), session.user, name, "ok", details, now) for name in group if name in done
                ]
                entries += [
                    AuditEntry(str(action), session.user, name, "refused", {**details, "reason": errors[name]}, now)
                    for name in group
                    if name in errors
                ]
                problem = self._audit(entries) or problem
            service.publish(records)
        reply: dict[str, Any] = {"ok": not errors or bool(done), "done": done, "errors": errors}
        if errors and not done:
            reply["error"] = next(iter(errors.values())) if len(errors) == 1 else f"{len(errors)} alarms refused"
        if problem is not None:
            # Alarm handling keeps working when the audit store fails (a full disk must not
            # stop acknowledgements); the failure is said loudly instead.
            reply["audit_error"] = problem
            self._audit_failed(problem)
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

    def _audit_failed(self, problem: str) -> None:
        self.bus.publish_events([Event(EventCategory.SYSTEM, "audit", f"Audit trail: {problem}", Severity.ERROR)])

    def _acknowledge(self, command: dict[str, Any]) -> dict[str, Any]:
        comment = str(command.get("comment", ""))
        return self._alarm_action(
            command,
            Action.ACKNOWLEDGE,
            lambda engine, name, s, now: engine.acknowledge(name, s.user, now, comment),
            {"comment": comment} if comment else {},
        )

    def _reset(self, command: dict[str, Any]) -> dict[str, Any]:
        comment = str(command.get("comment", ""))
        return self._alarm_action(
            command,
            Action.RESET,
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
            Action.SHELVE,
            lambda engine, name, s, now: engine.shelve(name, s.user, now, duration, reason),
            {"reason": reason, "duration_s": duration},
        )

    def _unshelve(self, command: dict[str, Any]) -> dict[str, Any]:
        comment = str(command.get("comment", ""))
        return self._alarm_action(
            command,
            Action.UNSHELVE,
            lambda engine, name, s, now: engine.unshelve(name, s.user, now, comment),
            {"comment": comment} if comment else {},
        )

    def _out_of_service(self, command: dict[str, Any]) -> dict[str, Any]:
        reason = str(command.get("reason", ""))
        out = bool(command.get("out", True))
        return self._alarm_action(
            command,
            Action.OUT_OF_SERVICE,
            lambda engine, name, s, now: engine.set_out_of_service(name, s.user, now, out, reason),
            {"reason": reason, "out": out},
        )

    # -- writes -------------------------------------------------------------------------------------

    def _write(self, command: dict[str, Any]) -> dict[str, Any]:
        tag = str(command.get("tag", ""))
        session = self._session(command, Action.WRITE, tag)
        if isinstance(session, dict):
            return session
        raw_value = command.get("value")
        latest = self.bus.latest(tag) if tag in self.bus.registry else None
        old = latest.value if latest is not None else None
        details: dict[str, Any] = {"old": _json_value(old), "new": _json_value(raw_value)}
        if command.get("context"):
            # Why the operator writes, e.g. the advisory whose recommendation this carries out.
            details["context"] = str(command["context"])[:500]
        spec = self.bus.registry.by_name(tag) if tag in self.bus.registry else None
        try:
            if spec is None:
                raise ValueError(f"unknown tag {tag!r}")
            value = check_write(spec, raw_value)
        except ValueError as exc:
            details["reason"] = str(exc)
            self._audit([AuditEntry("write", session.user, tag, "refused", details)])
            return _refused(str(exc))
        if self.writer is None:
            outcome = WriteOutcome(False, "BadNotSupported", "this runtime cannot write to the plant")
        else:
            # Audit the attempt first: a write the plant carried out is never missing from the trail.
            problem = self._audit([AuditEntry("write_request", session.user, tag, "ok", details)])
            if problem is not None:
                return _refused(f"{problem}: a write that cannot be audited is not sent")
            try:
                outcome = self.writer(spec, value)
            except Exception as exc:
                log.exception("write to %s failed", tag)
                outcome = WriteOutcome(False, "BadInternalError", f"{exc.__class__.__name__}: {exc}")
        details.update(status=outcome.status, message=outcome.message)
        self._audit([AuditEntry("write", session.user, tag, "ok" if outcome.ok else "failed", details)])
        reply = {"ok": outcome.ok, "status": outcome.status, "message": outcome.message, "old": details["old"]}
        if not outcome.ok:
            reply["error"] = f"{outcome.status}: {outcome.message}" if outcome.message else outcome.status
        return reply

    # -- configuration -----------------------------------------------------------------------------

    def _reload(self, command: dict[str, Any]) -> dict[str, Any]:
        session = self._session(command, Action.RELOAD_CONFIG, "project")
        if isinstance(session, dict):
            return session
        if self.reload is None:
            return _refused("this runtime cannot reload its configuration")
        try:
            summary = self.reload()
        except Exception as exc:  # a ConfigError lists every problem
            self._audit([AuditEntry("config_reload", session.user, "project", "failed", {"error": str(exc)})])
            return _refused(f"the project file was not reloaded:\n{exc}")
        self._audit([AuditEntry("config_reload", session.user, "project", "ok", {"summary": summary})])
        return {"ok": True, "summary": summary}


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
