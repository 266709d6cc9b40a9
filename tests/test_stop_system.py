"""The runtime's `stop_system` command: engineer role and a reason, audited with user,
station and reason and published as an OPERATOR event, done or refused; and the run file
that lets `hmi run` and `hmi stop` find a running runtime, which a dead one never blocks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hmi.core.events import EventCategory, Severity
from hmi.supervisor import RUN_FILE_VERSION, find_running, read_run_file, run_file, write_run_file
from tests.alarm_runtime import InProcessRuntime
from tests.helpers import free_port

STATION = "ws3:0"


def test_stop_system_is_refused_without_the_engineer_role_or_a_reason(tmp_path: Path) -> None:
    """A viewer and an operator are refused and nothing stops; an engineer without a reason is
    refused; each refusal is audited and a WARNING operator event."""
    rt = InProcessRuntime(tmp_path, with_ipc=False)
    stops: list[str] = []
    rt.commands.stop_system = stops.append
    try:
        for user in ("vic", "olga"):
            reply = rt.handle(
                {"command": "stop_system", "session": rt.login(user), "reason": "tidy up", "station": STATION}
            )
            assert not reply["ok"] and "needs the engineer role" in reply["error"]
        reply = rt.handle({"command": "stop_system", "session": rt.login("erik"), "reason": " ", "station": STATION})
        assert reply == {"ok": False, "error": "stopping the system needs a reason"}
        assert stops == []
        records = [(r.user, r.outcome) for r in rt.audit.records() if r.kind == "stop_system"]
        assert records == [("vic", "refused"), ("olga", "refused"), ("erik", "refused")]
        events = [e for e in rt.events if e.category == EventCategory.OPERATOR and e.details["action"] == "stop_system"]
        assert [(e.user, e.severity) for e in events] == [(u, Severity.WARNING) for u in ("vic", "olga", "erik")]
    finally:
        rt.stop()


def test_an_engineers_stop_is_audited_with_station_and_reason_before_the_runtime_stops(tmp_path: Path) -> None:
    """The audit record and the operator event exist when the runtime is told to stop."""
    rt = InProcessRuntime(tmp_path, with_ipc=False)
    seen_at_stop: list[list[str]] = []
    rt.commands.stop_system = lambda user: seen_at_stop.append([r.kind for r in rt.audit.records()])
    try:
        command = {"command": "stop_system", "session": rt.login("erik"), "reason": "seal change", "station": STATION}
        reply = rt.handle(command)
        assert reply["ok"] and reply["user"] == "erik"
        assert seen_at_stop and seen_at_stop[0][-1] == "stop_system"
        record = rt.audit.records()[-1]
        assert (record.user, record.outcome, record.target) == ("erik", "ok", "system")
        assert record.details_dict() == {"station": STATION, "reason": "seal change"}
        event = [e for e in rt.events if e.category == EventCategory.OPERATOR][-1]
        assert (event.user, event.details["reason"], event.details["station"]) == ("erik", "seal change", STATION)
    finally:
        rt.stop()


def test_a_stop_that_cannot_be_carried_out_is_recorded_as_failed(tmp_path: Path) -> None:
    """Recorded before the runtime is told to stop; when it cannot stop (not running yet, or
    already stopping), a failed record and WARNING event follow, so the trail never shows
    only a stop that did not happen."""
    rt = InProcessRuntime(tmp_path, with_ipc=False)

    def cannot(user: str) -> None:
        raise RuntimeError("the runtime is not running")

    rt.commands.stop_system = cannot
    try:
        command = {"command": "stop_system", "session": rt.login("erik"), "reason": "seal change", "station": STATION}
        reply = rt.handle(command)
        assert not reply["ok"] and "the runtime is not running" in reply["error"]
        records = [(r.outcome, r.details_dict()) for r in rt.audit.records() if r.kind == "stop_system"]
        assert records[0] == ("ok", {"station": STATION, "reason": "seal change"})
        assert records[1][0] == "failed" and "the runtime is not running" in records[1][1]["error"]
        events = [e for e in rt.events if e.category == EventCategory.OPERATOR and e.details["action"] == "stop_system"]
        assert [(e.details["outcome"], e.severity) for e in events] == [("ok", Severity.INFO),
                                                                        ("failed", Severity.WARNING)]  # fmt: skip
        assert events[1].message == "stop of the system failed: the runtime is not running"
    finally:
        rt.stop()


def test_a_run_file_left_by_a_killed_runtime_does_not_count(tmp_path: Path) -> None:
    """A run file whose process is gone is ignored and removed; one of a live process that
    does not answer `ping` is ignored."""
    project = tmp_path / "project.toml"
    project.write_text("", encoding="utf-8")
    address = f"tcp://127.0.0.1:{free_port()}"
    write_run_file(project, address, address)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    data = json.loads(run_file(project).read_text(encoding="utf-8"))
    assert data["version"] == RUN_FILE_VERSION and data["project"] == str(project.resolve())
    run_file(project).write_text(json.dumps({**data, "pid": int(dead.stdout)}), encoding="utf-8")
    assert find_running(project) is None
    assert not run_file(project).exists()

    write_run_file(project, address, address)  # this process: alive, but nothing answers there
    assert read_run_file(project) is not None
    assert find_running(project) is None
