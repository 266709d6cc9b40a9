"""Operator commands in the runtime: roles are checked there, every action is audited,
writes are guarded by the tag's declaration and limits, and replies say why not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.core.events import EventCategory
from tests.alarm_runtime import InProcessRuntime


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
