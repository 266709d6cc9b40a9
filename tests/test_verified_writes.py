"""Two-person verified writes: a write to a `verify = true` tag needs a reason from the
configured list, waits for a second user with the verifier role, lapses after the timeout,
may be cancelled by its requester or rejected by a verifier, is never verified by the user who
asked (not from another station, not after logging in again), and is sent once, through the
ordinary write path, with both users, both stations, the reason and the result audited."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmi.config import ConfigError, load_project
from hmi.core.events import EventCategory
from hmi.core.tags import TagSpec
from hmi.historian.reader import HistorianReader
from hmi.security.audit import AuditTrail
from hmi.security.roles import REQUIRED_ROLE, Action, Role
from hmi.security.verified_writes import VerifiedWrites
from tests.alarm_runtime import PASSWORD, TAGS, InProcessRuntime
from tests.method_plant import MethodPlant

TAG = "cnc01.feed_override"
REASONS = ["recipe change", "calibration"]
TIMEOUT_S = 30.0
NS = 1_000_000_000
VERIFIED_TAGS = [dataclasses.replace(s, verify=True) if s.name == TAG else s for s in TAGS]


class Clock:
    """The runtime's clock, moved by the test: lapses come from the tick's explicit time."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += int(seconds * NS)
        return self.now


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[InProcessRuntime]:
    runtime = InProcessRuntime(tmp_path, tags=VERIFIED_TAGS, idle_logout_s=0, with_ipc=False)
    for name, role in (("sam", Role.SUPERVISOR), ("otto", Role.OPERATOR)):
        if runtime.users.get(name) is None:
            runtime.users.add(name, role, PASSWORD)
    runtime.commands.verified = VerifiedWrites(REASONS, TIMEOUT_S)
    runtime.commands.clock = Clock()
    yield runtime
    runtime.stop()


def write(rt: InProcessRuntime, session: str, value: Any, reason: str | None = None, station: str = "ws1:0") -> dict:
    command = {"command": "write", "session": session, "tag": TAG, "value": value, "station": station}
    if reason is not None:
        command["reason"] = reason
    return rt.handle(command)


def decide(rt: InProcessRuntime, name: str, session: str, ident: str, station: str = "ws2:0", **more: Any) -> dict:
    return rt.handle({"command": name, "session": session, "id": ident, "station": station, **more})


def records(rt: InProcessRuntime, *kinds: str) -> list[tuple[str, str, str, str]]:
    return [(r.kind, r.user, r.target, r.outcome) for r in rt.audit.records() if not kinds or r.kind in kinds]


def test_the_verifier_capability_is_the_supervisors_and_above() -> None:
    """Supervisors, engineers and admins may verify; operators and viewers may not."""
    assert REQUIRED_ROLE[Action.VERIFY_WRITE] == Role.SUPERVISOR


def test_a_write_to_a_verified_tag_needs_a_reason_from_the_list(rt: InProcessRuntime) -> None:
    """Without a reason, or with one not configured, the write is refused, says which reasons
    there are, reaches no plant and is recorded as refused."""
    olga = rt.login("olga")
    reply = write(rt, olga, 80)
    assert not reply["ok"]
    assert reply["error"] == (
        "a write to cnc01.feed_override needs verification by a second user: give a reason "
        "('recipe change', 'calibration')"
    )
    reply = write(rt, olga, 80, reason="because")
    assert reply["error"] == "'because' is not one of the reasons for verified writes ('recipe change', 'calibration')"
    assert write(rt, olga, 151, reason="calibration")["error"].startswith("151 is outside the limits")
    assert rt.writer.writes == [] and rt.commands.verified.pending() == []
    assert records(rt, "write_verify_request", "write") == [
        ("write_verify_request", "olga", TAG, "refused"), ("write_verify_request", "olga", TAG, "refused"),
        ("write", "olga", TAG, "refused"),
    ]  # fmt: skip
    assert rt.audit.records()[-2].details_dict()["given_reason"] == "because"


def test_a_verified_write_waits_then_a_second_user_verifies_it_and_it_is_audited(rt: InProcessRuntime) -> None:
    """The request is pending (published to every window with id, tag, value, requester,
    station, reason and expiry) and writes nothing; a supervisor at another station verifies it,
    the write goes out once, and every record names both users, both stations and the reason."""
    rt.publish(TAG, 100)
    olga, sam = rt.login("olga"), rt.login("sam")
    reply = write(rt, olga, 80, reason="recipe change", station="ws1:0")
    assert reply["ok"] and reply["pending"] and reply["message"] == "waiting for verification by a second user"
    ident = reply["id"]
    assert rt.writer.writes == []
    [event] = [e for e in rt.events if e.category == EventCategory.OPERATOR
               and e.details["action"] == "write_verify_request"]  # fmt: skip
    assert (event.source, event.user) == (TAG, "olga")
    assert {k: event.details[k] for k in ("id", "new", "station", "reason", "expires_ns")} == {
        "id": ident, "new": 80, "station": "ws1:0", "reason": "recipe change",
        "expires_ns": rt.commands.clock() + int(TIMEOUT_S * NS),
    }  # fmt: skip
    listed = rt.handle({"command": "pending_writes"})
    assert listed["reasons"] == REASONS and listed["timeout_s"] == TIMEOUT_S
    assert [(p["id"], p["tag"], p["value"], p["requester"]) for p in listed["pending"]] == [(ident, TAG, 80, "olga")]

    done = decide(rt, "verify_write", sam, ident, station="ws2:0")
    assert done["ok"] and done["status"] == "Good" and done["old"] == 100.0
    assert rt.writer.writes == [(TAG, 80.0)]
    again = decide(rt, "verify_write", sam, ident)
    assert not again["ok"] and "no write" in again["error"]
    assert rt.writer.writes == [(TAG, 80.0)]
    assert rt.handle({"command": "pending_writes"})["pending"] == []

    assert records(rt, "write_verify_request", "write_verify", "write_request", "write") == [
        ("write_verify_request", "olga", TAG, "ok"), ("write_verify", "sam", TAG, "ok"),
        ("write_request", "olga", TAG, "ok"), ("write", "olga", TAG, "ok"),
        ("write_verify", "sam", ident, "refused"),
    ]  # fmt: skip
    by_kind = {r.kind: r.details_dict() for r in rt.audit.records() if r.outcome == "ok"}
    assert by_kind["write_verify"] == {
        "id": ident, "station": "ws2:0", "requested_by": "olga", "requester_station": "ws1:0",
        "reason": "recipe change", "new": 80,
    }  # fmt: skip
    assert by_kind["write"] == {
        "station": "ws1:0", "old": 100.0, "new": 80, "reason": "recipe change", "verify_id": ident,
        "verified_by": "sam", "verifier_station": "ws2:0", "status": "Good", "message": "",
    }  # fmt: skip
    written = [e for e in rt.events if e.details.get("action") == "write"][-1]
    assert written.message == "olga wrote 80 to cnc01.feed_override (was 100), verified by sam: Good: recipe change"
    assert rt.audit.verify()[1] == []


def test_nobody_verifies_their_own_write_not_elsewhere_not_after_logging_in_again(rt: InProcessRuntime) -> None:
    """An engineer may verify, but not a write they asked for: from another station and in a
    new session it stays refused and pending, until a different verifier confirms it."""
    erik = rt.login("erik")
    ident = write(rt, erik, 90, reason="calibration", station="ws1:0")["id"]
    refused = decide(rt, "verify_write", erik, ident, station="ws1:0")
    assert refused["error"] == "erik asked for this write: a second user must verify it (you may cancel it)"
    assert not decide(rt, "verify_write", erik, ident, station="ws9:0")["ok"]
    rt.handle({"command": "logout", "session": erik})
    erik_again = rt.login("erik")
    assert not decide(rt, "verify_write", erik_again, ident, station="ws9:0")["ok"]
    assert not decide(rt, "reject_write", erik_again, ident, comment="mine")["ok"]
    assert rt.writer.writes == [] and [p.id for p in rt.commands.verified.pending()] == [ident]
    assert decide(rt, "verify_write", rt.login("ada"), ident)["ok"]
    assert rt.writer.writes == [(TAG, 90.0)]
    assert [r[1] for r in records(rt, "write_verify") if r[3] == "refused"] == ["erik"] * 3


def test_viewers_and_operators_cannot_verify(rt: InProcessRuntime) -> None:
    """The verifier role is checked by the runtime; a second operator is not a verifier."""
    ident = write(rt, rt.login("olga"), 80, reason="calibration")["id"]
    for user, role in (("vic", "viewer"), ("otto", "operator")):
        reply = decide(rt, "verify_write", rt.login(user), ident)
        assert reply["error"] == f"verifying another user's write needs the supervisor role; {user} is {role}"
    assert rt.writer.writes == [] and len(rt.commands.verified.pending()) == 1
    assert records(rt, "write_verify") == [
        ("write_verify", "vic", TAG, "refused"),
        ("write_verify", "otto", TAG, "refused"),
    ]


def test_an_unverified_write_lapses_on_the_tick_after_the_timeout(rt: InProcessRuntime) -> None:
    """Just before the timeout it is still pending; the runtime's tick at the timeout lapses it
    (recorded once, told to every window); a verification after that is refused."""
    clock = rt.commands.clock
    assert isinstance(clock, Clock)
    olga, sam = rt.login("olga"), rt.login("sam")
    ident = write(rt, olga, 80, reason="recipe change")["id"]
    rt.commands.tick(clock.advance(TIMEOUT_S - 0.001))
    assert [p.id for p in rt.commands.verified.pending()] == [ident]
    rt.commands.tick(clock.advance(0.001))
    rt.commands.tick(clock.advance(1))
    assert rt.commands.verified.pending() == []
    assert records(rt, "write_verify_lapse") == [("write_verify_lapse", "olga", TAG, "ok")]
    lapse = [e for e in rt.events if e.details.get("action") == "write_verify_lapse"]
    assert lapse[0].details["id"] == ident
    assert lapse[0].message == (
        "olga's write of 80 to cnc01.feed_override lapsed: nobody verified it within 30 s: recipe change"
    )
    assert not decide(rt, "verify_write", sam, ident)["ok"] and rt.writer.writes == []


def test_a_verification_late_by_the_clock_lapses_it_even_before_the_tick(rt: InProcessRuntime) -> None:
    """A verify that arrives after the expiry but before the tick ran is refused, and the lapse recorded."""
    clock = rt.commands.clock
    assert isinstance(clock, Clock)
    ident = write(rt, rt.login("olga"), 80, reason="recipe change")["id"]
    sam = rt.login("sam")
    clock.advance(TIMEOUT_S)
    assert "no write" in decide(rt, "verify_write", sam, ident)["error"]
    assert rt.writer.writes == [] and [r[0] for r in records(rt, "write_verify_lapse")] == ["write_verify_lapse"]


def test_the_requester_cancels_and_a_verifier_rejects_with_a_comment(rt: InProcessRuntime) -> None:
    """Only the requester may cancel; a rejection needs a comment; neither writes anything."""
    olga, otto, sam = rt.login("olga"), rt.login("otto"), rt.login("sam")
    first = write(rt, olga, 80, reason="recipe change")["id"]
    second = write(rt, olga, 70, reason="calibration")["id"]
    assert decide(rt, "cancel_write", otto, first)["error"] == "only olga, who asked for this write, may cancel it"
    assert decide(rt, "cancel_write", olga, first)["ok"]
    assert decide(rt, "reject_write", sam, second)["error"] == "a rejection needs a comment for the user who asked"
    assert decide(rt, "reject_write", sam, second, comment="not during the batch")["ok"]
    assert not decide(rt, "verify_write", sam, second)["ok"]
    assert rt.writer.writes == [] and rt.commands.verified.pending() == []
    reject = [e for e in rt.events if e.details.get("action") == "write_verify_reject" and e.details["outcome"] == "ok"]
    assert reject[0].message == "sam rejected olga's write of 70 to cnc01.feed_override: not during the batch"
    assert reject[0].details["comment"] == "not during the batch"


# -- the rule for every sequence ------------------------------------------------------------------

USERS = {
    "olga": Role.OPERATOR,
    "sam": Role.SUPERVISOR,
    "erik": Role.ENGINEER,
    "vic": Role.VIEWER,
}
# Decisions are drawn more often than requests, so most requests meet one while still pending.
decision = st.tuples(
    st.sampled_from(["verify_write", "verify_write", "reject_write", "cancel_write"]),
    st.sampled_from(sorted(USERS)),
    st.integers(0, 3),
)
step = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(sorted(USERS)), st.sampled_from([*REASONS, "", "other"])),
    decision,
    decision,
    st.tuples(st.just("tick"), st.floats(0, 40), st.just(0)),
)


def test_any_sequence_writes_each_request_at_most_once_and_only_when_verified_in_time(tmp_path: Path) -> None:
    """For any users and any sequence of requests, verifications, rejections, cancellations and
    ticks: a write reaches the plant only on a verification by a different user with the
    verifier role before the expiry, at most once per request; every reply agrees with that."""
    rt = InProcessRuntime(tmp_path, tags=VERIFIED_TAGS, idle_logout_s=0, with_ipc=False)
    for name, role in USERS.items():
        if rt.users.get(name) is None:
            rt.users.add(name, role, PASSWORD)
    clock = Clock()
    rt.commands.clock = clock
    sessions = {name: rt.login(name) for name in USERS}

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(step, max_size=14))
    def run(steps: list[tuple[str, Any, Any]]) -> None:
        rt.commands.verified = VerifiedWrites(REASONS, TIMEOUT_S)
        rt.writer.writes.clear()
        ids: list[str] = []
        open_: dict[str, tuple[str, int]] = {}  # id -> (requester, expires)
        written: list[str] = []
        for kind, who, arg in steps:
            if kind == "tick":
                rt.commands.tick(clock.advance(who))
                open_ = {i: (u, exp) for i, (u, exp) in open_.items() if clock.now < exp}
                continue
            if kind == "request":
                reply = write(rt, sessions[who], 80, reason=arg)
                allowed = USERS[who] >= Role.OPERATOR and arg in REASONS
                assert reply["ok"] == allowed, reply
                if allowed:
                    ids.append(reply["id"])
                    open_[reply["id"]] = (who, clock.now + int(TIMEOUT_S * NS))
                continue
            ident = ids[-1 - arg % len(ids)] if ids else "none"  # the latest first
            fields = {"comment": "no"} if kind == "reject_write" else {}
            reply = decide(rt, kind, sessions[who], ident, **fields)
            requester, expires = open_.get(ident, ("", 0))
            live = ident in open_ and clock.now < expires
            if kind == "cancel_write":
                expected = live and who == requester
            else:
                expected = live and who != requester and USERS[who] >= Role.SUPERVISOR
            assert reply["ok"] == expected, (kind, who, reply)
            if expected:
                del open_[ident]
                if kind == "verify_write":
                    written.append(ident)
        assert len(written) == len(set(written)) and len(rt.writer.writes) == len(written)

    try:
        run()
    finally:
        rt.stop()


# -- end to end: the real runtime writes to a real OPC UA server ---------------------------------

VERIFIED_PROJECT = """writable = true
verify = true

[writes]
verify_reasons = ["recipe change", "calibration"]
verify_timeout_s = 60
"""


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[MethodPlant]:
    running = MethodPlant(tmp_path, extra=VERIFIED_PROJECT, users={"sam": Role.SUPERVISOR}).start()
    yield running
    running.stop()


def test_a_verified_write_reaches_the_opc_ua_server_only_once_verified(plant: MethodPlant) -> None:
    """The real runtime, from a project with `verify = true` and [writes]: the request leaves
    the server's value alone; the supervisor's verification writes it through the tag's
    OPC UA source; the trail (in the historian's file) names both users and stations."""
    node = plant.peer.nodes["setpoint"]
    olga, sam = plant.login("olga"), plant.login("sam")
    assert "needs verification" in plant.command("write", session=olga, tag="test.setpoint", value=42.0)["error"]
    reply = plant.command("write", session=olga, tag="test.setpoint", value=42.0, reason="calibration")
    assert reply["pending"]
    assert plant.peer.call(node.read_value()) == 50.0
    assert plant.command("pending_writes")["timeout_s"] == 60.0
    done = plant.command("verify_write", session=sam, id=reply["id"], station="ws2:0")
    assert done["ok"] and done["status"] == "Good", done
    assert plant.peer.call(node.read_value()) == 42.0
    plant.stop()
    trail = AuditTrail(plant.db, create=False)
    try:
        [result] = [r for r in trail.records() if r.kind == "write"]
    finally:
        trail.close()
    assert (result.user, result.outcome) == ("olga", "ok")
    details = result.details_dict()
    assert (details["station"], details["verified_by"], details["verifier_station"], details["reason"]) == (
        "ws7:0", "sam", "ws2:0", "calibration",
    )  # fmt: skip
    with HistorianReader(plant.db) as reader:
        events = reader.events(0, 2**62, categories=[EventCategory.OPERATOR])
    actions = [e.details["action"] for e in events if e.source == "test.setpoint"]
    assert actions[-4:] == ["write_verify_request", "write_verify", "write_request", "write"]


def test_the_project_file_keys_of_verified_writes(tmp_path: Path) -> None:
    """`verify` needs a writable tag, and verified tags need [writes] verify_reasons."""
    base = """
[project]
name = "p"
[connections.plc]
kind = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840"
[machines.m]
[tags."m.sp"]
connection = "plc"
address = "ns=2;s=sp"
range = [0, 10]
"""
    path = tmp_path / "p.toml"
    for extra, problem in (
        ("verify = true\n", "verify applies only to a writable tag"),
        ("writable = true\nverify = true\n", "verify_reasons must list the reasons"),
        ('writable = true\nverify = true\n[writes]\nverify_reasons = ["a", "a"]\n', "each reason once"),
    ):
        path.write_text(base + extra, encoding="utf-8")
        with pytest.raises(ConfigError, match=problem):
            load_project(path)
    path.write_text(base + 'writable = true\nverify = true\n[writes]\nverify_reasons = ["a"]\n', encoding="utf-8")
    project = load_project(path)
    assert project.writes.verify_timeout_s == 120.0
    assert [s.verify for s in project.tag_specs() if s.name == "m.sp"] == [True]
    assert TagSpec.from_json(project.tag_specs()[0].to_json()).verify  # the window learns it over IPC


def test_a_request_that_cannot_be_audited_is_withdrawn_at_once(rt: InProcessRuntime) -> None:
    """No audit, no verified write: the request is refused and not left pending, and the
    windows are told it was withdrawn, so nobody can verify it."""
    olga = rt.login("olga")
    with sqlite3.connect(rt.db) as conn:
        conn.execute("DROP TABLE audit_records")
    reply = write(rt, olga, 80, reason="calibration")
    assert not reply["ok"] and "a write that cannot be audited is not sent" in reply["error"]
    assert rt.commands.verified.pending() == [] and rt.writer.writes == []
    steps = [e.details["action"] for e in rt.events if e.details.get("action", "").startswith("write_verify")]
    assert steps == ["write_verify_request", "write_verify_cancel"]
