"""Operator events: every operator action is an OPERATOR event on the bus and in the
historian's events table, made from the same facts as its audit record (user, station,
target, outcome, comment), one per alarm, WARNING when refused or failed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hmi.commands import CallOutcome
from hmi.core.events import Event, EventCategory, Severity
from hmi.historian.reader import HistorianReader
from hmi.historian.writer import HistorianWriter
from hmi.security.audit import AuditTrail
from hmi.security.roles import Role
from tests.alarm_runtime import InProcessRuntime, demo_definitions

STATION = "ws3:0"
A, B, C = "cnc01.tool_temperature.hi", "cnc01.tool_temperature.hihi", "pump01.pressure.lo"
RESET_FAULT = {"connection": "plc", "object": "ns=2;s=cnc01", "method": "cnc01.reset_fault"}


class PlantCaller:
    """Stands in for the PLC's methods (the real path is in tests/test_commands.py): takes any arguments."""

    def __init__(self, calls: list[tuple[str, list[Any]]]) -> None:
        self.calls = calls

    def signature(self, connection: str, method: str) -> dict[str, Any]:
        return {"name": method, "inputs": [], "outputs": []}

    def check(self, connection: str, method: str, arguments: list[Any]) -> tuple[str, list[Any]]:
        return method, arguments

    def call(self, connection: str, object_id: str, method: str, arguments: list[Any]) -> CallOutcome:
        self.calls.append((method, arguments))
        return CallOutcome(True, "Good")


class Recorded:
    """An in-process runtime whose bus is recorded by a real historian writer (same file as the audit)."""

    def __init__(self, directory: Path) -> None:
        # The low-pressure alarm latches, so that it can be reset.
        definitions = [replace(d, latching=d.name == C) for d in demo_definitions()]
        self.rt = InProcessRuntime(directory, definitions, with_ipc=False)
        self.historian = HistorianWriter(str(self.rt.db), self.rt.bus.registry, commit_interval_s=0.01)
        self.historian.attach(self.rt.bus)
        self.historian.start()
        self.calls: list[tuple[str, list[Any]]] = []

    def cmd(self, command: str, session: str | None = None, **fields: Any) -> dict[str, Any]:
        message = {"command": command, "station": STATION, **fields}
        if session is not None:
            message["session"] = session
        return self.rt.handle(message)

    def login(self, user: str) -> str:
        reply = self.cmd("login", user=user, password="correct horse")
        assert reply["ok"], reply
        return str(reply["session"])

    def operator_events(self) -> list[Event]:
        """The OPERATOR events as the historian recorded them."""
        assert self.historian.flush()
        with HistorianReader(self.rt.db) as reader:
            return reader.events(0, 2**62, categories=[EventCategory.OPERATOR])

    def close(self) -> None:
        self.historian.close()
        self.rt.stop()


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Recorded]:
    recorded = Recorded(tmp_path)
    yield recorded
    recorded.close()


def by_action(events: list[Event], action: str) -> list[Event]:
    return [e for e in events if e.details["action"] == action]


def test_every_action_is_one_operator_event_per_target_in_the_historian(rec: Recorded) -> None:
    """Login, acknowledge (A with a comment, then B and C at once without), reset, shelve, unshelve,
    out of service, return to service, write (request and result), method call, config reload and
    logout each land in the events table once per target, with user, station, outcome and comment,
    and each event carries exactly the facts of its audit record."""
    rec.rt.commands.reload = lambda: "3 alarms, 4 tags"
    rec.rt.commands.caller = PlantCaller(rec.calls)
    rec.rt.publish("cnc01.tool_temperature", 99)
    rec.rt.publish("pump01.pressure", 1)
    rec.rt.publish("cnc01.feed_override", 100)
    olga, erik = rec.login("olga"), rec.login("erik")
    assert rec.cmd("acknowledge", olga, alarms=[A], comment="checked coolant")["ok"]
    assert rec.cmd("acknowledge", olga, alarms=[B, C])["done"] == [B, C]
    rec.rt.publish("pump01.pressure", 5)
    assert rec.cmd("reset", olga, alarms=[C], comment="pressure back")["ok"]
    assert rec.cmd("shelve", olga, alarms=[B], duration_s=600, reason="sensor swap")["ok"]
    assert rec.cmd("unshelve", olga, alarms=[B], comment="sensor back")["ok"]
    assert rec.cmd("out_of_service", erik, alarms=[C], reason="calibration")["ok"]
    assert rec.cmd("out_of_service", erik, alarms=[C], out=False, reason="calibrated")["ok"]
    assert rec.cmd("write", olga, tag="cnc01.feed_override", value=80)["ok"]
    assert rec.cmd("call", olga, **RESET_FAULT, arguments=[1])["ok"]
    assert rec.cmd("reload_config", erik)["ok"]
    assert rec.cmd("logout", olga, reason="user")["ok"]

    events = rec.operator_events()
    assert {(e.details["action"], e.source) for e in events} == {
        ("login", "session"), ("acknowledge", A), ("acknowledge", B), ("acknowledge", C),
        ("shelve", B), ("unshelve", B), ("out_of_service", C), ("return_to_service", C), ("reset", C),
        ("write_request", "cnc01.feed_override"), ("write", "cnc01.feed_override"),
        ("call_request", "cnc01.reset_fault"), ("call", "cnc01.reset_fault"),
        ("config_reload", "project"), ("logout", "session"),
    }  # fmt: skip
    assert len(by_action(events, "login")) == 2 and len(by_action(events, "acknowledge")) == 3
    assert len(events) == 16  # two logins, three acknowledgements, one event for everything else
    for e in events:
        assert e.details["version"] == 1 and e.details["station"] == STATION, e
        assert e.details["outcome"] == "ok" and e.severity == Severity.INFO, e
    engineer = {"out_of_service", "return_to_service", "config_reload"}
    assert {e.user for e in events if e.details["action"] in engineer} == {"erik"}
    assert {e.user for e in events if e.details["action"] not in engineer | {"login"}} == {"olga"}
    acks = {e.source: e for e in by_action(events, "acknowledge")}
    assert acks[A].message == f"olga acknowledged {A}: checked coolant"
    assert acks[A].details["comment"] == "checked coolant"
    assert "comment" not in acks[B].details and "comment" not in acks[C].details
    assert acks[B].message == f"olga acknowledged {B}"
    shelve = by_action(events, "shelve")[0]
    assert shelve.details["duration_s"] == 600 and shelve.details["reason"] == "sensor swap"
    assert shelve.message == f"olga shelved {B} for 10 min: sensor swap"
    write = by_action(events, "write")[0]
    assert (write.details["old"], write.details["new"], write.details["status"]) == (100.0, 80, "Good")
    assert write.message == "olga wrote 80 to cnc01.feed_override (was 100): Good"
    assert by_action(events, "login")[0].details["role"] == "operator"
    assert by_action(events, "return_to_service")[0].message == f"erik returned {C} to service: calibrated"
    assert rec.calls == [("cnc01.reset_fault", [1])]

    # The journal and the audit trail tell one story: each record has its event, same facts.
    records = rec.rt.audit.records()
    assert len(records) == len(events)
    for r, e in zip(records, sorted(events, key=lambda e: e.ts_ns), strict=True):
        assert (r.kind, r.user, r.target, r.outcome, r.ts_ns) == (
            e.details["action"], e.user, e.source, e.details["outcome"], e.ts_ns,
        )  # fmt: skip
        assert {**r.details_dict(), "version": 1, "action": r.kind, "outcome": r.outcome} == e.details


def test_refused_and_failed_actions_are_warning_events(rec: Recorded) -> None:
    """A wrong password, a role that may not, an out-of-range write and a write the plant
    refuses are WARNING events that say why, one per alarm the command named."""
    rec.rt.publish("cnc01.tool_temperature", 99)
    rec.rt.publish("cnc01.feed_override", 100)
    assert not rec.cmd("login", user="olga", password="guess")["ok"]
    vic, olga = rec.login("vic"), rec.login("olga")
    assert not rec.cmd("acknowledge", vic, alarms=[A, B], comment="not mine")["ok"]
    assert not rec.cmd("write", olga, tag="cnc01.feed_override", value=151)["ok"]
    rec.rt.writer.status = "BadOutOfRange"
    assert not rec.cmd("write", olga, tag="cnc01.feed_override", value=90)["ok"]

    def broken_project() -> str:
        raise ValueError("alarms.x: unknown tag")

    rec.rt.commands.reload = broken_project
    assert not rec.cmd("reload_config", olga)["ok"]
    assert not rec.cmd("reload_config", rec.login("erik"))["ok"]

    events = [e for e in rec.operator_events() if e.details["outcome"] != "ok"]
    assert [(e.details["action"], e.source, e.user, e.details["outcome"]) for e in events] == [
        ("login_failed", "session", "olga", "refused"),
        ("acknowledge", A, "vic", "refused"),
        ("acknowledge", B, "vic", "refused"),
        ("write", "cnc01.feed_override", "olga", "refused"),
        ("write", "cnc01.feed_override", "olga", "failed"),
        ("config_reload", "project", "olga", "refused"),
        ("config_reload", "project", "erik", "failed"),
    ]
    assert all(e.severity == Severity.WARNING and e.details["station"] == STATION for e in events)
    assert events[0].message == "login as olga refused: wrong user name or password, or the user is disabled"
    assert events[1].message == f"acknowledgement of {A} refused: acknowledge needs the operator role; vic is viewer"
    assert events[1].details["comment"] == "not mine"
    assert events[3].message == (
        "write to cnc01.feed_override refused: 151 is outside the limits [0, 150] of cnc01.feed_override"
    )
    assert events[4].message == "write to cnc01.feed_override failed: BadOutOfRange: the server refused the value"
    assert events[5].message == "reload of project refused: reload config needs the engineer role; olga is operator"
    assert events[6].message == "reload of project failed: alarms.x: unknown tag"


def test_an_action_whose_audit_failed_still_has_its_event(rec: Recorded) -> None:
    """With the audit store broken, an acknowledgement still happens; its event says it was not
    audited, and a system event says the trail failed."""
    rec.rt.publish("cnc01.tool_temperature", 99)
    olga = rec.login("olga")
    with sqlite3.connect(rec.rt.db) as conn:
        conn.execute("DROP TABLE audit_records")
    reply = rec.cmd("acknowledge", olga, alarms=[A], comment="checked")
    assert reply["ok"] and "audit trail cannot be written" in reply["audit_error"]
    ack = by_action(rec.operator_events(), "acknowledge")
    assert len(ack) == 1 and ack[0].user == "olga" and ack[0].details["comment"] == "checked"
    assert ack[0].details["audited"] is False and "cannot be written" in ack[0].details["audit_error"]
    assert any(e.category == EventCategory.SYSTEM and e.source == "audit" for e in rec.rt.events)


def test_a_write_that_cannot_be_audited_is_refused_and_says_so(rec: Recorded) -> None:
    """No audit, no write: the plant is not written and the events show the request and the refusal."""
    rec.rt.publish("cnc01.feed_override", 100)
    olga = rec.login("olga")
    with sqlite3.connect(rec.rt.db) as conn:
        conn.execute("DROP TABLE audit_records")
    assert not rec.cmd("write", olga, tag="cnc01.feed_override", value=80)["ok"]
    assert rec.rt.writer.writes == []
    events = rec.operator_events()
    assert [(e.details["action"], e.details["outcome"]) for e in events[1:]] == [
        ("write_request", "ok"),
        ("write", "refused"),
    ]
    assert "cannot be audited is not sent" in events[-1].message


def test_a_session_the_runtime_ends_for_idleness_is_a_logout_event(rec: Recorded) -> None:
    """A session left idle past the timeout ends in the runtime with a logout event, from its station, once."""
    olga = rec.login("olga")
    login_ns = rec.rt.audit.records()[-1].ts_ns
    later = login_ns + int((rec.rt.sessions.idle_timeout_s + 1) * 1e9)
    rec.rt.commands.tick(later)
    rec.rt.commands.tick(later + 1)
    assert "not logged in" in rec.cmd("touch", olga)["error"]
    logouts = by_action(rec.operator_events(), "logout")
    assert [(e.user, e.details["reason"], e.details["station"]) for e in logouts] == [
        ("olga", "session ended", STATION)
    ]
    assert rec.cmd("logout", olga, reason="idle") == {"ok": True}  # the window's own idle logout: no second event
    assert len(by_action(rec.operator_events(), "logout")) == 1
    rec.cmd("logout", rec.login("erik"), reason="idle")  # the window saw no input for the idle time
    assert by_action(rec.operator_events(), "logout")[-1].message == "erik was logged out after being idle"


def test_user_changes_become_events_and_cli_audited_ones_are_not_recorded_twice(rec: Recorded) -> None:
    """Users changed outside the runtime (the CLI) become events within the check interval; a change
    the CLI already wrote into this trail (--project) gets its event but no second audit record."""
    commands = rec.rt.commands
    commands.users_check_s = 0.0
    store = rec.rt.users
    store.add("nina", Role.OPERATOR, "nina-pass-1", by="root@ws9", station="ws9")
    store.set_role("nina", Role.ENGINEER, by="root@ws9", station="ws9")
    # As `hmi users disable nina --project FILE` does: the change goes into this trail too.
    store.set_disabled("nina", True, by="root@ws9", station="ws9")
    assert store.last_change is not None
    trail = AuditTrail(rec.rt.db)
    trail.append([store.last_change.audit_entry()])
    trail.close()
    commands.tick()
    commands.tick()  # nothing new: nothing more

    events = [e for e in rec.operator_events() if e.source == "users"]
    assert [(e.details["action"], e.user, e.details["station"], e.details["name"]) for e in events] == [
        ("user_add", "root@ws9", "ws9", "nina"),
        ("user_role", "root@ws9", "ws9", "nina"),
        ("user_disable", "root@ws9", "ws9", "nina"),
    ]
    assert events[1].message == "root@ws9 changed the role of user nina from operator to engineer"
    kinds = [r.kind for r in rec.rt.audit.records() if r.target == "users"]
    assert kinds == ["user_disable", "user_add", "user_role"]  # the CLI's record, then the runtime's


def test_user_changes_made_before_the_runtime_started_are_not_announced(tmp_path: Path) -> None:
    """The users file is the workstation's: changes older than this runtime are in its change log,
    not this project's journal."""
    rt = InProcessRuntime(tmp_path, with_ipc=False)  # adds four users before its commands exist
    try:
        rt.commands.users_check_s = 0.0
        rt.users.add("nina", Role.OPERATOR, "nina-pass-1", by="root@ws9")
        rt.commands.tick()
        assert [e.details["name"] for e in rt.events if e.source == "users"] == ["nina"]
    finally:
        rt.stop()


def test_a_method_call_refused_for_the_role_is_recorded_as_a_call(rec: Recorded) -> None:
    """A viewer's method call is refused and recorded as the call it was (with its arguments),
    not as a write: the journal and the shift report list it under calls."""
    rec.rt.commands.caller = PlantCaller(rec.calls)
    vic = rec.login("vic")
    assert not rec.cmd("call", vic, **RESET_FAULT, arguments=[1])["ok"]
    assert rec.calls == []
    refused = [e for e in rec.operator_events() if e.details["outcome"] == "refused"]
    assert [(e.details["action"], e.source, e.user, e.details["arguments"]) for e in refused] == [
        ("call", "cnc01.reset_fault", "vic", [1])
    ]
    assert refused[0].message.startswith("call of cnc01.reset_fault refused: ")
    assert [(r.kind, r.outcome) for r in rec.rt.audit.records()][-1] == ("call", "refused")


def test_one_alarm_named_twice_in_one_command_is_one_action(rec: Recorded) -> None:
    """A command naming the same alarm twice acknowledges (and records) it once."""
    olga = rec.login("olga")
    rec.cmd("acknowledge", olga, alarms=[A, A], comment="once")
    assert len([e for e in by_action(rec.operator_events(), "acknowledge") if e.source == A]) == 1


def test_a_failed_login_under_an_absurd_name_is_recorded_shortened(rec: Recorded) -> None:
    """The name typed at a failed login is what a guesser controls: recorded, but bounded."""
    rec.cmd("login", user="x" * 10_000, password="wrong")
    [event] = by_action(rec.operator_events(), "login_failed")
    assert len(event.user) <= 100 and len(event.message) < 400
