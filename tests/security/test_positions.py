"""Operator positions: taken and handed over by command, with who, where and why in the audit
trail; the station list a supervisor reads; flood counted per position by the real engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.core.alarms import AlarmDefinition, AlarmEngine, AlarmSettings, Condition, Priority
from hmi.core.alarms.alarm_list import AlarmList
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec
from hmi.security.positions import Position, PositionRefused, StationBoard
from tests.alarm_runtime import InProcessRuntime

NS = 1_000_000_000
CELL1 = Position("cell1", "Machining", ("cnc01",))
PUMPS = Position("pumps", "Utilities", ("pump01",))


@pytest.fixture
def rt(tmp_path: Path) -> InProcessRuntime:
    runtime = InProcessRuntime(tmp_path, with_ipc=False)
    runtime.commands.board = StationBoard([CELL1, PUMPS])
    yield runtime
    runtime.stop()


def send(rt: InProcessRuntime, station: str, session: str, **command: Any) -> dict[str, Any]:
    return rt.handle({**command, "station": station, "session": session})


def audit_rows(rt: InProcessRuntime, kind: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(r.user, r.target, r.outcome, r.details_dict()) for r in rt.audit.records() if r.kind == kind]


def test_an_operator_takes_a_free_position_and_the_audit_trail_says_who_where_and_why(rt: InProcessRuntime) -> None:
    """Taking a position is recorded with the user, the station and the reason; the station holds it."""
    olga = rt.login("olga")
    reply = send(rt, "ws1", olga, command="take_position", position="cell1", reason="start of shift")
    assert reply == {"ok": True, "position": "cell1"}
    assert rt.commands.board.position_of("ws1") == "cell1"
    [(user, target, outcome, details)] = audit_rows(rt, "take_position")
    assert (user, target, outcome) == ("olga", "cell1", "ok")
    assert details["station"] == "ws1" and details["reason"] == "start of shift"
    # The same story in the journal: one OPERATOR event.
    assert any(e.details.get("action") == "take_position" and e.source == "cell1" for e in rt.events)


def test_a_held_position_is_not_taken_from_another_station_nor_by_a_viewer(rt: InProcessRuntime) -> None:
    """A position held elsewhere needs a hand-over; a viewer takes none; both refusals are audited."""
    olga = rt.login("olga")
    assert send(rt, "ws1", olga, command="take_position", position="cell1")["ok"]
    olga2 = rt.login("olga")
    refused = send(rt, "ws2", olga2, command="take_position", position="cell1")
    assert not refused["ok"] and "held by ws1" in refused["error"]
    vic = rt.login("vic")
    assert "operator role" in send(rt, "ws3", vic, command="take_position", position="pumps")["error"]
    outcomes = [(u, o, d["station"]) for u, _t, o, d in audit_rows(rt, "take_position")]
    assert outcomes == [("olga", "ok", "ws1"), ("olga", "refused", "ws2"), ("vic", "refused", "ws3")]
    assert rt.commands.board.holder_of("cell1") == "ws1" and rt.commands.board.holder_of("pumps") == ""


def test_the_holder_hands_over_to_an_attached_station_with_a_reason(rt: InProcessRuntime) -> None:
    """The holder hands its position to a station in use; the record names both stations and why."""
    olga = rt.login("olga")
    assert send(rt, "ws1", olga, command="take_position", position="cell1")["ok"]
    # ws2 is attached: its window polls the station list.
    assert send(rt, "ws2", "", command="stations")["ok"]
    no_reason = send(rt, "ws1", olga, command="hand_over_position", position="cell1", to_station="ws2")
    assert not no_reason["ok"] and "reason" in no_reason["error"]
    reply = send(rt, "ws1", olga, command="hand_over_position", position="cell1", to_station="ws2", reason="break")
    assert reply["ok"] and reply["from_station"] == "ws1"
    assert rt.commands.board.holder_of("cell1") == "ws2" and rt.commands.board.position_of("ws1") == ""
    user, target, outcome, details = audit_rows(rt, "hand_over_position")[-1]
    assert (user, target, outcome) == ("olga", "cell1", "ok")
    assert details == {"station": "ws1", "from_station": "ws1", "to_station": "ws2", "reason": "break"}
    event = [e for e in rt.events if e.details.get("action") == "hand_over_position"][-1]
    assert event.message == "olga handed position cell1 over from ws1 to ws2: break"


def test_only_the_holder_or_a_supervisor_hands_over(rt: InProcessRuntime) -> None:
    """An operator at another station may not give a position away; a supervisor anywhere may."""
    olga = rt.login("olga")
    assert send(rt, "ws1", olga, command="take_position", position="cell1")["ok"]
    send(rt, "ws3", "", command="stations")
    other = rt.login("olga")
    refused = send(rt, "ws2", other, command="hand_over_position", position="cell1", to_station="ws3", reason="x")
    assert not refused["ok"] and "only its holder or a supervisor" in refused["error"]
    assert rt.commands.board.holder_of("cell1") == "ws1"
    sam = rt.login("sam")
    reply = send(rt, "desk", sam, command="hand_over_position", position="cell1", to_station="ws3", reason="ws1 down")
    assert reply["ok"] and rt.commands.board.holder_of("cell1") == "ws3"
    assert [o for _u, _t, o, _d in audit_rows(rt, "hand_over_position")] == ["refused", "ok"]


def test_a_position_is_not_handed_to_a_station_nobody_uses(rt: InProcessRuntime) -> None:
    """A hand-over to a station that is not attached (a typo, a station gone) is refused."""
    sam = rt.login("sam")
    reply = send(rt, "desk", sam, command="hand_over_position", position="cell1", to_station="ws9", reason="x")
    assert not reply["ok"] and "not attached" in reply["error"]
    assert rt.commands.board.holder_of("cell1") == ""


def test_the_station_list_names_users_positions_and_last_seen_for_a_supervisor_only(rt: InProcessRuntime) -> None:
    """A supervisor's poll lists every station heard from, with who is logged in there and its
    position; anyone else's poll gets only its own position."""
    olga = rt.handle({"command": "login", "user": "olga", "password": "correct horse", "station": "ws1"})["session"]
    assert send(rt, "ws1", olga, command="take_position", position="pumps")["ok"]
    sam = rt.handle({"command": "login", "user": "sam", "password": "correct horse", "station": "desk"})["session"]
    mine = send(rt, "ws1", olga, command="stations")
    assert mine["position"] == "pumps" and "stations" not in mine
    assert [p["name"] for p in mine["positions"]] == ["cell1", "pumps"]
    listing = send(rt, "desk", sam, command="stations")
    rows = {s["station"]: s for s in listing["stations"]}
    assert rows["ws1"]["position"] == "pumps" and rows["ws1"]["users"] == [{"user": "olga", "role": "operator"}]
    assert rows["desk"]["users"] == [{"user": "sam", "role": "supervisor"}] and rows["desk"]["attached"]
    # A station not heard from for longer than STATION_LOST_S shows as lost, not gone.
    later = rt.commands.clock() + 10 * NS
    rt.commands.clock = lambda: later
    rows = {s["station"]: s for s in send(rt, "desk", sam, command="stations")["stations"]}
    assert not rows["ws1"]["attached"] and rows["desk"]["attached"]


def test_polling_the_station_list_does_not_keep_a_session_alive(tmp_path: Path) -> None:
    """The window polls once a second: that is not operator input, so the idle logout still comes."""
    rt = InProcessRuntime(tmp_path, with_ipc=False, idle_logout_s=60)
    try:
        start = rt.commands.clock()
        olga = rt.login("olga")
        for second in range(0, 61 + 1, 10):
            rt.commands.clock = lambda s=second: start + (s + 1) * NS
            send(rt, "ws1", olga, command="stations")
        assert not rt.handle({"command": "touch", "session": olga, "station": "ws1"})["ok"]
    finally:
        rt.stop()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["take", "hand"]), st.sampled_from(["a", "b", "c"]),
                          st.sampled_from(["ws1", "ws2", "ws3"])), max_size=30))  # fmt: skip
def test_every_position_has_at_most_one_holder_and_every_station_at_most_one_position(
    steps: list[tuple[str, str, str]],
) -> None:
    """Whatever is taken and handed over in whatever order, holders and positions stay one to one."""
    board = StationBoard([Position("a"), Position("b"), Position("c")])
    for station in ("ws1", "ws2", "ws3"):
        board.seen(station, 0)
    for kind, position, station in steps:
        try:
            if kind == "take":
                board.take(station, position)
            else:
                board.hand_over(position, station, 0)
        except PositionRefused:
            pass
        held = [board.position_of(s) for s in ("ws1", "ws2", "ws3")]
        assert len([p for p in held if p]) == len({p for p in held if p})
        for p in ("a", "b", "c"):
            holder = board.holder_of(p)
            assert holder == "" or board.position_of(holder) == p


# -- per position: flood counting and filtering with the real engine -----------------------------

TAGS = [TagSpec(f"cnc0{i}.temp") for i in (1, 2)] + [TagSpec("pump01.pressure")]


def definitions() -> list[AlarmDefinition]:
    out = [AlarmDefinition(f"cnc0{i}.temp.hi.{k}", f"cnc0{i}.temp", Condition.HI, Priority.LOW, limit=float(k))
           for i in (1, 2) for k in range(6)]  # fmt: skip
    out.append(AlarmDefinition("pump01.pressure.lo", "pump01.pressure", Condition.LO, Priority.HIGH, limit=2))
    return out


def test_flood_is_counted_per_position_of_its_machines() -> None:
    """Six alarms in cell1 flood cell1 (threshold 5) and not pumps; the window's list follows."""
    registry = TagRegistry(TAGS)
    positions = {"cell1": ("cnc01",), "pumps": ("pump01",), "hall": ("cnc01", "cnc02", "pump01")}
    engine = AlarmEngine(definitions(), registry, AlarmSettings(flood_threshold=5, positions=positions))
    records = engine.evaluate(SampleBatch.from_arrays([registry.id_of("cnc01.temp")], [NS], [10.0]))
    assert engine.flood() == {"cell1": True, "pumps": False, "hall": True}
    assert engine.flood_counts() == {"cell1": 6, "pumps": 0, "hall": 6}
    records += engine.evaluate(SampleBatch.from_arrays([registry.id_of("pump01.pressure")], [2 * NS], [0.0]))
    assert engine.flood_counts()["pumps"] == 1 and not engine.flood()["pumps"]
    alarms = AlarmList()
    alarms.apply_events([r.to_event() for r in records])
    assert alarms.in_flood() == ["cell1", "hall"]
    # The banner's counts for a position are its machines' alarms only.
    assert alarms.counts(frozenset({"pump01"})).unacknowledged == 1
    assert alarms.counts(frozenset({"cnc01"})).unacknowledged == 6
    assert alarms.counts().unacknowledged == 7
