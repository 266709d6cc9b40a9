"""The twin inside the real Runtime: an injected fault becomes an ADVISORY event carrying the
finding, the operator acknowledges it through the alarm commands (role check, audit), carries
out its recommended write through the write path, and the state survives a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmi.config import load_project
from hmi.core.events import Event, EventCategory
from hmi.runtime import Runtime
from hmi.security.roles import Role
from hmi.security.users import UserStore
from hmi.sim.pump import CentrifugalPump
from tests.alarm_runtime import PASSWORD, FakePlantWriter
from tests.helpers import DEMO_PROJECT
from tests.twin.feed import PlantFeed

ADVISORY = "pump01.advisory.cavitation"


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    store = UserStore(tmp_path / "users.json")
    store.add("olga", Role.OPERATOR, PASSWORD)
    store.add("vic", Role.VIEWER, PASSWORD)
    return store


@pytest.fixture
def runtime(users: UserStore) -> Iterator[tuple[Runtime, FakePlantWriter, list[Event]]]:
    writer = FakePlantWriter()
    rt = Runtime(load_project(DEMO_PROJECT), users=users, writer=writer)
    events: list[Event] = []
    rt.bus.subscribe_events(events.extend, name="test-events")
    rt.historian.start()
    yield rt, writer, events
    rt.historian.close()
    rt.advisories.close()
    rt.twin.close()
    if rt.audit is not None:
        rt.audit.close()


def cavitating_pump(rt: Runtime) -> PlantFeed:
    """Six healthy minutes of pump01 on the runtime's bus, then cavitation for a minute."""
    start = time.time_ns() - 3600 * 10**9  # recorded in the past, so a restart restores from it
    feed = PlantFeed(rt.project, {"pump01": CentrifugalPump("pump01", seed=4)}, bus=rt.bus, own_twin=False,
                     start_ns=start)  # fmt: skip
    feed.run(360)
    feed.machines["pump01"].inject_fault("cavitation")
    feed.run(60)
    return feed


def login(rt: Runtime, user: str) -> str:
    reply = rt.handle_command({"command": "login", "user": user, "password": PASSWORD})
    assert reply["ok"], reply
    return str(reply["session"])


def test_fault_raises_an_advisory_event_with_cause_evidence_checks_and_command(runtime) -> None:  # type: ignore[no-untyped-def]
    """Cavitation on the runtime's bus raises one ADVISORY event (not an alarm) with the whole finding."""
    rt, _, events = runtime
    cavitating_pump(rt)
    raised = [e for e in events if e.source == ADVISORY and e.details.get("cause") == "activated"]
    assert len(raised) == 1
    event = raised[0]
    assert event.category == EventCategory.ADVISORY
    finding = event.details["advisory"]
    assert finding["cause"] == "cavitation" and finding["title"] == "Probable cavitation"
    assert any("suction pressure" in line for line in finding["evidence"])
    assert finding["checks"] and finding["command"]["tag"] == "pump01.speed_setpoint"
    assert finding["command"]["value"] == 2500.0  # 85 % of 2950 rpm, in 50 rpm steps
    assert not [e for e in events if e.category == EventCategory.ALARM and "advisory" in e.source]
    alarms = rt.handle_command({"command": "alarms"})
    assert ADVISORY not in {a["name"] for a in alarms["alarms"]}
    snapshot = rt.handle_command({"command": "advisories"})
    status = next(a for a in snapshot["alarms"] if a["name"] == ADVISORY)
    assert status["state"] == "UNACK_ACTIVE"
    assert snapshot["annotations"][ADVISORY]["cause"] == "cavitation"


def test_operator_acknowledges_an_advisory_and_carries_out_its_command(runtime) -> None:  # type: ignore[no-untyped-def]
    """Acknowledging needs the operator role and is audited; the recommended write goes through
    the write command with the advisory named in the audit record."""
    rt, writer, events = runtime
    cavitating_pump(rt)
    vic = login(rt, "vic")
    refused = rt.handle_command({"command": "acknowledge", "session": vic, "alarms": [ADVISORY]})
    assert not refused["ok"] and "operator role" in refused["error"]
    olga = login(rt, "olga")
    reply = rt.handle_command({"command": "acknowledge", "session": olga, "alarms": [ADVISORY], "comment": "seen"})
    assert reply["ok"] and reply["done"] == [ADVISORY]
    assert rt.advisories.engine.status(ADVISORY).state == "ACK_ACTIVE"
    ack = [e for e in events if e.source == ADVISORY and e.details.get("cause") == "acknowledged"]
    assert ack and ack[0].category == EventCategory.ADVISORY and ack[0].user == "olga"
    assert writer.writes == []  # nothing is ever sent by the twin itself
    command = rt.advisories.annotations[ADVISORY]["command"]
    reply = rt.handle_command(
        {
            "command": "write",
            "session": olga,
            "tag": command["tag"],
            "value": command["value"],
            "context": f"advisory {ADVISORY}",
        }
    )
    assert reply["ok"], reply
    assert writer.writes == [("pump01.speed_setpoint", 2500.0)]
    assert rt.audit is not None
    records = [(r.kind, r.user, r.target, r.outcome) for r in rt.audit.records()]
    assert ("acknowledge", "vic", ADVISORY, "refused") in records
    assert ("acknowledge", "olga", ADVISORY, "ok") in records
    write = [r for r in rt.audit.records() if r.kind == "write"][-1]
    assert write.details_dict()["context"] == f"advisory {ADVISORY}" and write.outcome == "ok"


def test_acknowledged_advisory_survives_a_restart(runtime, users: UserStore) -> None:  # type: ignore[no-untyped-def]
    """A new runtime takes up the recorded advisory state (acknowledged) and its finding from the historian."""
    rt, _, _ = runtime
    cavitating_pump(rt)
    olga = login(rt, "olga")
    assert rt.handle_command({"command": "acknowledge", "session": olga, "alarms": [ADVISORY]})["ok"]
    rt.historian.close()
    again = Runtime(load_project(DEMO_PROJECT), users=users)
    try:
        assert again.advisories.engine.status(ADVISORY).state == "ACK_ACTIVE"
        assert again.advisories.annotations[ADVISORY]["cause"] == "cavitation"
    finally:
        again.advisories.close()
        again.twin.close()
        if again.audit is not None:
            again.audit.close()
