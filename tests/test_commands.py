"""Operator commands in the runtime: roles are checked there, every action is audited,
writes are guarded by the tag's declaration and limits, method calls reach the plant through
the real runtime with their arguments checked, and replies say why not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.commands import LOGGED_IN
from hmi.config import load_project
from hmi.core.events import Event, EventCategory, Severity
from hmi.historian.reader import HistorianReader
from hmi.runtime import Runtime
from hmi.security.audit import AuditRecord, AuditTrail
from hmi.security.roles import REQUIRED_ROLE, Action
from hmi.security.users import UserStore
from tests.alarm_runtime import InProcessRuntime
from tests.helpers import DEMO_PROJECT, REPO
from tests.method_plant import ADJUST, OBJECT, STATION, MethodPlant


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[InProcessRuntime]:
    runtime = InProcessRuntime(tmp_path, with_ipc=False)
    yield runtime
    runtime.stop()


def audit_kinds(rt: InProcessRuntime) -> list[tuple[str, str, str, str]]:
    return [(r.kind, r.user, r.target, r.outcome) for r in rt.audit.records()]


def test_operator_acknowledges_and_it_is_audited(rt: InProcessRuntime) -> None:
    """An operator's acknowledgement changes the alarm, is published as an event and lands in the audit trail."""
    rt.publish("cnc01.tool_temperature", 85)
    session = rt.login("olga")
    reply = rt.handle({"command": "acknowledge", "session": session, "alarms": ["cnc01.tool_temperature.hi"],
                       "comment": "coolant checked"})  # fmt: skip
    assert reply["ok"] and reply["done"] == ["cnc01.tool_temperature.hi"]
    assert rt.engine.status("cnc01.tool_temperature.hi").state == "ACK_ACTIVE"
    ack = [e for e in rt.events if e.category == EventCategory.ALARM and e.details["cause"] == "acknowledged"]
    assert ack[0].user == "olga" and ack[0].details["comment"] == "coolant checked"
    assert audit_kinds(rt) == [
        ("login", "olga", "session", "ok"),
        ("acknowledge", "olga", "cnc01.tool_temperature.hi", "ok"),
    ]
    assert rt.audit.verify() == (2, [])


def test_viewer_is_refused_and_the_refusal_is_audited(rt: InProcessRuntime) -> None:
    """A viewer cannot acknowledge; the runtime says which role is needed and records the attempt."""
    rt.publish("cnc01.tool_temperature", 85)
    session = rt.login("vic")
    reply = rt.handle({"command": "acknowledge", "session": session, "alarms": ["cnc01.tool_temperature.hi"]})
    assert not reply["ok"]
    assert reply["error"] == "acknowledge needs the operator role; vic is viewer"
    assert rt.engine.status("cnc01.tool_temperature.hi").state == "UNACK_ACTIVE"
    assert audit_kinds(rt)[-1] == ("acknowledge", "vic", "cnc01.tool_temperature.hi", "refused")


def test_no_session_no_action(rt: InProcessRuntime) -> None:
    """A command without a valid session (a window claiming a user) is refused."""
    rt.publish("cnc01.tool_temperature", 85)
    reply = rt.handle({"command": "acknowledge", "session": "forged", "user": "ada",
                       "alarms": ["cnc01.tool_temperature.hi"]})  # fmt: skip
    assert not reply["ok"] and "not logged in" in reply["error"]


def test_failed_logins_are_audited_and_throttled(rt: InProcessRuntime) -> None:
    """Wrong passwords are audited; after three the name is locked even for the right password."""
    for _ in range(3):
        assert not rt.handle({"command": "login", "user": "olga", "password": "guess"})["ok"]
    reply = rt.handle({"command": "login", "user": "olga", "password": "correct horse"})
    assert not reply["ok"] and "too many failed logins" in reply["error"]
    kinds = audit_kinds(rt)
    assert kinds == [("login_failed", "olga", "session", "refused")] * 4


def test_shelve_needs_reason_and_limit_and_out_of_service_needs_engineer(rt: InProcessRuntime) -> None:
    """Shelving is for operators with a reason within the maximum; out of service is for engineers."""
    rt.publish("cnc01.tool_temperature", 85)
    olga = rt.login("olga")
    name = "cnc01.tool_temperature.hi"
    reply = rt.handle({"command": "shelve", "session": olga, "alarms": [name], "duration_s": 600, "reason": ""})
    assert not reply["ok"] and "reason" in reply["error"]
    reply = rt.handle({"command": "shelve", "session": olga, "alarms": [name], "duration_s": 600, "reason": "sensor"})
    assert reply["ok"] and rt.engine.status(name).state == "SHELVED"
    reply = rt.handle({"command": "out_of_service", "session": olga, "alarm": name, "reason": "x"})
    assert reply["error"] == "out of service needs the engineer role; olga is operator"
    erik = rt.login("erik")
    reply = rt.handle({"command": "out_of_service", "session": erik, "alarm": name, "reason": "calibration"})
    assert reply["ok"] and rt.engine.status(name).state == "OUT_OF_SERVICE"
    assert [k[0] for k in audit_kinds(rt)] == [
        "login", "shelve", "shelve", "out_of_service", "login", "out_of_service",
    ]  # fmt: skip


def test_write_checks_role_declaration_and_limits_and_audits_old_and_new(rt: InProcessRuntime) -> None:
    """Writes go to the plant only for operators, on writable tags, within the limits; each is audited."""
    rt.publish("cnc01.feed_override", 100)
    vic, olga = rt.login("vic"), rt.login("olga")
    assert "operator role" in rt.handle({"command": "write", "session": vic, "tag": "cnc01.feed_override",
                                         "value": 80})["error"]  # fmt: skip
    assert "not declared writable" in rt.handle({"command": "write", "session": olga,
                                                 "tag": "cnc01.spindle_speed", "value": 1})["error"]  # fmt: skip
    reply = rt.handle({"command": "write", "session": olga, "tag": "cnc01.feed_override", "value": 151})
    assert "outside the limits [0, 150]" in reply["error"]
    assert rt.writer.writes == []
    reply = rt.handle({"command": "write", "session": olga, "tag": "cnc01.feed_override", "value": 80})
    assert reply == {"ok": True, "status": "Good", "message": "", "old": 100.0}
    assert rt.writer.writes == [("cnc01.feed_override", 80.0)]
    rt.writer.status = "BadOutOfRange"
    reply = rt.handle({"command": "write", "session": olga, "tag": "cnc01.feed_override", "value": 90})
    assert not reply["ok"] and reply["error"] == "BadOutOfRange: the server refused the value"
    writes = [r for r in rt.audit.records() if r.kind == "write"]
    assert [(r.user, r.outcome) for r in writes] == [
        ("vic", "refused"), ("olga", "refused"), ("olga", "refused"), ("olga", "ok"), ("olga", "failed"),
    ]  # fmt: skip
    assert writes[3].details_dict() == {"station": "", "old": 100.0, "new": 80, "status": "Good", "message": ""}
    assert writes[4].details_dict()["status"] == "BadOutOfRange"
    assert rt.audit.verify()[1] == []


def test_alarm_snapshot_lists_every_alarm_with_its_state(rt: InProcessRuntime) -> None:
    """The snapshot a window fetches on connecting holds every alarm, its state and its guidance."""
    rt.publish("cnc01.tool_temperature", 85)
    reply = rt.handle({"command": "alarms"})
    by_name = {a["name"]: a for a in reply["alarms"]}
    assert set(by_name) == {"cnc01.tool_temperature.hi", "cnc01.tool_temperature.hihi", "pump01.pressure.lo"}
    assert by_name["cnc01.tool_temperature.hi"]["state"] == "UNACK_ACTIVE"
    assert by_name["cnc01.tool_temperature.hi"]["guidance"] == "Check coolant flow and tool wear."
    assert reply["unacknowledged"] == 1 and reply["epoch"] == rt.engine.epoch


# -- the one command table ------------------------------------------------------------------------

# Who may send each command. The table must say exactly this: changing it changes who may do what.
WHO_MAY = {
    "login": None, "logout": None, "touch": LOGGED_IN, "alarms": None, "advisories": None,
    "acknowledge": Action.ACKNOWLEDGE, "reset": Action.RESET, "shelve": Action.SHELVE,
    "unshelve": Action.UNSHELVE, "out_of_service": Action.OUT_OF_SERVICE, "write": Action.WRITE,
    "call": Action.WRITE, "method_signature": LOGGED_IN, "reload_config": Action.RELOAD_CONFIG,
    "stop_system": Action.STOP_SYSTEM, "browse": None, "watch": None, "ping": None, "status": None,
    "demo_faults": None, "demo_fault": Action.DEMO_FAULT,
    "pending_writes": None, "verify_write": Action.VERIFY_WRITE, "reject_write": Action.VERIFY_WRITE,
    "cancel_write": LOGGED_IN,
    "take_position": Action.TAKE_POSITION, "hand_over_position": Action.TAKE_POSITION, "stations": None,
}  # fmt: skip


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """The real runtime built from the demo project (not run: its table is built at construction)."""
    built = Runtime(load_project(DEMO_PROJECT), users=UserStore(tmp_path / "runtime-users.json"))
    yield built
    built.alarms.close()
    built.advisories.close()
    built.twin.close()


def sent_command_names() -> set[str]:
    """Every command name written as `"command": "<name>"` where windows, the CLI, the supervisor
    and the self-test build their requests."""
    hmi = REPO / "hmi"
    files = [*(hmi / "ui").rglob("*.py"), *hmi.glob("cli*.py"), *(hmi / "cli").rglob("*.py"),
             hmi / "supervisor.py", hmi / "selftest.py"]  # fmt: skip
    pattern = re.compile(r'"command":\s*"(\w+)"')
    return {name for path in files for name in pattern.findall(path.read_text(encoding="utf-8"))}


def test_every_command_a_window_or_the_cli_sends_is_in_the_one_table(runtime: Runtime) -> None:
    """Every command the window, the CLI, the supervisor and the self-test send is in the runtime's
    one table, and the table gives each command the access the security rules give it."""
    sent = sent_command_names()
    assert {"login", "alarms", "call", "method_signature", "browse", "watch", "ping", "stop_system"} <= sent
    assert sent <= set(runtime.commands.table)
    assert {name: entry.needs for name, entry in runtime.commands.table.items()} == WHO_MAY


def test_an_unknown_command_gets_the_same_error_as_before(runtime: Runtime, rt: InProcessRuntime) -> None:
    """An unknown or missing command name gets `unknown command <name>` from the runtime and from
    the operator commands built without one; the runtime's own commands answer from the table."""
    assert runtime.handle_command({"command": "frobnicate"}) == {"ok": False, "error": "unknown command 'frobnicate'"}
    assert runtime.handle_command({"session": "x"}) == {"ok": False, "error": "unknown command None"}
    assert rt.commands.handle({"command": "ping"}) == {"ok": False, "error": "unknown command 'ping'"}
    assert runtime.handle_command({"command": "ping"})["ok"] and runtime.handle_command({"command": "status"})["ok"]
    for name in ("browse", "watch"):
        reply = runtime.handle_command({"command": name, "connection": "nowhere"})
        assert reply == {"ok": False, "error": "connection 'nowhere' cannot be browsed"}
    with pytest.raises(ValueError, match="already in the table"):
        runtime.commands.register("login", runtime.handle_command)


def test_the_role_in_the_table_is_the_role_checked(rt: InProcessRuntime) -> None:
    """A viewer is refused every command whose table entry names an action, with that action's
    role in the reply; a command for any logged-in user is refused without a session."""
    vic = rt.login("vic")
    fields = {"alarms": ["cnc01.tool_temperature.hi"], "tag": "cnc01.feed_override", "value": 1, "reason": "r",
              "connection": "plant", "object": OBJECT, "method": ADJUST, "arguments": []}  # fmt: skip
    gated = {name: entry.needs for name, entry in rt.commands.table.items() if isinstance(entry.needs, Action)}
    assert gated == {name: needs for name, needs in WHO_MAY.items() if isinstance(needs, Action)}
    for name, action in gated.items():
        reply = rt.handle({"command": name, "session": vic, **fields})
        assert not reply["ok"] and f"needs the {REQUIRED_ROLE[action].label} role; vic is viewer" in reply["error"]
    for name in ("touch", "method_signature", "cancel_write"):
        assert rt.handle({"command": name, **fields})["error"].startswith("not logged in")


# -- method calls: the real runtime on a real OPC UA server ----------------------------------------


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[MethodPlant]:
    running = MethodPlant(tmp_path).start()
    yield running
    running.stop()


def call_records(plant: MethodPlant) -> list[AuditRecord]:
    trail = AuditTrail(plant.db, create=False)
    try:
        return [r for r in trail.records() if r.kind in ("call", "call_request")]
    finally:
        trail.close()


def call_events(plant: MethodPlant) -> list[Event]:
    with HistorianReader(plant.db) as reader:
        events = reader.events(0, 2**62, categories=[EventCategory.OPERATOR])
    return [e for e in events if e.details["action"] in ("call", "call_request")]


def test_an_operator_calls_a_plant_method_through_the_runtime_and_it_is_audited(plant: MethodPlant) -> None:
    """The runtime coerces the arguments to the method's declared types, calls it on the server,
    replies with the status and the named outputs, and records request and result (user, station,
    method, arguments, outputs or Bad status, comment) in the audit trail and as OPERATOR events."""
    olga = plant.login("olga")
    reply = plant.call(olga, ["42.5", "trim after tool change"], comment="batch 7")
    assert reply == {
        "ok": True, "status": "Good", "message": "The operation succeeded.",
        "outputs": [{"name": "accepted", "value": True}],
    }, reply  # fmt: skip
    assert plant.peer.adjusted == [(42.5, "trim after tool change")]  # "42.5" arrived as a Double
    bad = plant.call(olga, [1500, "too much"], comment="test")
    assert not bad["ok"] and bad["status"] == "BadOutOfRange" and bad["error"].startswith("BadOutOfRange")
    assert plant.peer.adjusted == [(42.5, "trim after tool change")]
    plant.stop()
    records = call_records(plant)
    assert [(r.kind, r.user, r.target, r.outcome) for r in records] == [
        ("call_request", "olga", ADJUST, "ok"), ("call", "olga", ADJUST, "ok"),
        ("call_request", "olga", ADJUST, "ok"), ("call", "olga", ADJUST, "failed"),
    ]  # fmt: skip
    done = records[1].details_dict()
    assert done == {
        "station": STATION, "connection": "plc", "object": OBJECT, "method_name": "Adjust",
        "arguments": [42.5, "trim after tool change"], "comment": "batch 7",
        "status": "Good", "message": "The operation succeeded.", "outputs": [{"name": "accepted", "value": True}],
    }  # fmt: skip
    assert records[3].details_dict()["status"] == "BadOutOfRange"
    events = call_events(plant)
    assert [(e.details["action"], e.details["outcome"], e.severity) for e in events] == [
        ("call_request", "ok", Severity.INFO), ("call", "ok", Severity.INFO),
        ("call_request", "ok", Severity.INFO), ("call", "failed", Severity.WARNING),
    ]  # fmt: skip
    assert events[1].user == "olga" and events[1].message == f"olga called {ADJUST}: Good: batch 7"
    assert events[1].details["outputs"] == [{"name": "accepted", "value": True}]


def test_a_call_with_wrong_arguments_is_refused_before_it_reaches_the_plant(plant: MethodPlant) -> None:
    """A wrong count, a value that is not of the declared type, or an unknown connection is refused
    with the reason, audited as refused, and never sent to the server."""
    olga = plant.login("olga")
    count = plant.call(olga, [1])
    assert not count["ok"] and count["error"] == "Adjust takes 2 argument(s) (setpoint, reason), 1 given"
    typed = plant.call(olga, ["fast", "why not"])
    assert not typed["ok"] and typed["error"] == "argument 1 (setpoint, Double): 'fast' is not a number"
    elsewhere = plant.call(olga, [1, "x"], connection="nowhere")
    assert not elsewhere["ok"] and "no connection 'nowhere'" in elsewhere["error"]
    assert plant.peer.adjusted == []
    plant.stop()
    records = call_records(plant)
    assert [(r.kind, r.outcome) for r in records] == [("call", "refused")] * 3
    assert records[1].details_dict()["reason"] == typed["error"]
    assert [e.severity for e in call_events(plant)] == [Severity.WARNING] * 3


def test_a_viewer_may_read_a_method_signature_but_not_call_it(plant: MethodPlant) -> None:
    """Any logged-in user reads a method's arguments (name, type, rank, description); a call by a
    viewer is refused for the role, audited and announced as a WARNING, and not sent."""
    assert not plant.command("method_signature", connection="plc", object=OBJECT, method=ADJUST)["ok"]
    vic = plant.login("vic")
    signature = plant.command("method_signature", session=vic, connection="plc", object=OBJECT, method=ADJUST)
    assert signature["ok"] and signature["name"] == "Adjust"
    assert signature["inputs"] == [
        {"name": "setpoint", "data_type": "Double", "value_rank": -1, "description": "new setpoint in %"},
        {"name": "reason", "data_type": "String", "value_rank": -1, "description": "why"},
    ]
    assert signature["outputs"] == [
        {"name": "accepted", "data_type": "Boolean", "value_rank": -1, "description": "the setpoint is within 0..100"}
    ]
    reply = plant.call(vic, [50, "try"], comment="curious")
    assert not reply["ok"] and reply["error"] == "calling a method needs the operator role; vic is viewer"
    assert plant.peer.adjusted == []
    plant.stop()
    assert [(r.kind, r.user, r.outcome) for r in call_records(plant)] == [("call", "vic", "refused")]
    (event,) = call_events(plant)
    assert event.severity == Severity.WARNING and event.details["arguments"] == [50, "try"]
