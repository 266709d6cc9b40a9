"""The application as processes: headless runtime on the plant, and `hmi run` supervising."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from hmi.core.quality import Quality
from hmi.historian import HistorianReader
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from hmi.security.audit import AuditTrail
from hmi.security.roles import Role
from hmi.security.users import UserStore
from hmi.supervisor import find_running, run_file
from tests.helpers import free_port, hmi_process, stop_process, wait_for_port, wait_until, write_demo_project
from tests.x11 import close_like_window_manager, windows_of


def test_headless_runtime_counts_samples_from_the_plant(tmp_path: Path) -> None:
    """`hmi run --headless --duration` against `hmi sim` prints a non-zero count for every CNC tag."""
    port = free_port()
    project = write_demo_project(tmp_path, port)
    sim = hmi_process("sim", "--machines", "cnc01", "--opcua-port", str(port), "--rate", "20")
    try:
        wait_for_port(port)
        run = hmi_process("run", "--project", str(project), "--headless", "--duration", "4", "--no-ipc")
        out, _ = run.communicate(timeout=60)
        assert run.returncode == 0, out
    finally:
        stop_process(sim)
    # One line per tag: samples, then good, uncertain, bad and comm-lost.
    counts = dict(re.findall(r"^(cnc01\.\w+)\s+(\d+)(?:\s+\d+){4}$", out, re.MULTILINE))
    assert set(counts) >= {"cnc01.spindle_speed", "cnc01.tool_temperature", "cnc01.axis_z", "cnc01.program_name"}
    # 20 Hz for ~3.5 s after connecting: noisy signals change every tick (the spindle is
    # still stopped for the program's tool change, so it reports its one initial value).
    assert int(counts["cnc01.vibration_spindle"]) > 30, out
    assert int(counts["cnc01.spindle_speed"]) >= 1, out
    assert int(counts["cnc01.program_name"]) >= 1, out


def children_by_role(supervisor: psutil.Process) -> dict[str, psutil.Process]:
    roles = {}
    for child in supervisor.children():
        cmd = " ".join(child.cmdline())
        if " sim " in cmd or cmd.endswith(" sim"):
            roles["plant"] = child
        elif "--headless" in cmd:
            roles["runtime"] = child
        elif " window " in cmd:
            roles["window"] = child
    return roles


def test_hmi_run_restarts_a_killed_runtime_and_the_window_notices(tmp_path: Path) -> None:
    """Killing the runtime: a window notices within a second, `hmi run` restarts it, data flows again."""
    stream, requests = free_port(), free_port()
    project = write_demo_project(tmp_path, free_port(), stream_port=stream, request_port=requests)
    supervisor = hmi_process(
        "run", "--project", str(project), env={"QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb")}
    )
    mirror = BusMirror()
    client = IpcClient(f"tcp://127.0.0.1:{stream}", f"tcp://127.0.0.1:{requests}", mirror)
    try:
        parent = psutil.Process(supervisor.pid)
        roles = wait_until(
            lambda: (r := children_by_role(parent)) and len(r) == 3 and r,
            20,
            message="supervisor did not start plant, runtime and window",
        )
        client.start()
        wait_until(
            lambda: (v := mirror.bus.latest("cnc01.spindle_speed")) and v.quality == Quality.GOOD,
            30,
            message="no live CNC data through the runtime",
        )
        lost: list[float] = []
        mirror.on_link_change(lambda up: None if up else lost.append(time.monotonic()))
        killed_at = time.monotonic()
        roles["runtime"].send_signal(signal.SIGKILL)
        wait_until(lambda: lost, 5, message="window side did not notice the dead runtime")
        assert lost[0] - killed_at < 1.5
        assert mirror.bus.latest("cnc01.spindle_speed").quality == Quality.COMM_LOST

        wait_until(lambda: client.stats.sessions >= 2, 30, message="runtime was not restarted")
        wait_until(
            lambda: mirror.bus.latest("cnc01.spindle_speed").quality == Quality.GOOD,
            30,
            message="no live data after the restart",
        )
        new_roles = children_by_role(parent)
        assert new_roles["runtime"].pid != roles["runtime"].pid
        assert new_roles["window"].pid == roles["window"].pid, "the window must survive a runtime crash"
        assert new_roles["plant"].pid == roles["plant"].pid
    finally:
        client.stop()
        children = psutil.Process(supervisor.pid).children(recursive=True) if supervisor.poll() is None else []
        out = stop_process(supervisor, timeout=15)
    assert supervisor.returncode == 0, out
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"children left running after the supervisor stopped: {alive}"


def test_a_second_instance_of_the_same_project_refuses_clearly(tmp_path: Path) -> None:
    """With the project's runtime port taken, `hmi run` exits 1 and says how to attach instead."""
    import socket

    stream, requests = free_port(), free_port()
    project = write_demo_project(tmp_path, free_port(), stream_port=stream, request_port=requests)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", stream))
        holder.listen()
        proc = hmi_process("run", "--project", str(project))
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"127.0.0.1:{stream} is already in use" in out
    assert "hmi window --project" in out


def test_ctrl_c_stops_the_application_in_order_without_errors(tmp_path: Path) -> None:
    """Ctrl-C in the terminal signals the whole process group: the supervisor alone gets it
    and stops window and runtime before the plant, so no session close meets a closed server."""
    project = write_demo_project(tmp_path, free_port(), stream_port=free_port(), request_port=free_port())
    supervisor = hmi_process(
        "run",
        "--project",
        str(project),
        env={"QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb")},
        start_new_session=True,  # its own process group, as a shell gives `make run`
    )
    lines: list[str] = []
    assert supervisor.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(supervisor.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        parent = psutil.Process(supervisor.pid)
        wait_until(lambda: len(children_by_role(parent)) == 3, 20, message="supervisor did not start its children")
        wait_until(lambda: any("first live frame" in line for line in lines), 60, message="no live frame")
        children = parent.children(recursive=True)
        os.killpg(supervisor.pid, signal.SIGINT)
        supervisor.wait(30)
    finally:
        stop_process(supervisor, timeout=15)
        reader.join(10)
    assert_stopped_cleanly(supervisor, "".join(lines), children, timeout=5)


def assert_stopped_cleanly(
    supervisor: subprocess.Popen[str], out: str, children: list[psutil.Process], timeout: float
) -> None:
    """The supervisor exited 0, every child is gone within `timeout` s, and nothing logged an error."""
    assert supervisor.returncode == 0, out
    _gone, alive = psutil.wait_procs(children, timeout=timeout)
    assert not alive, f"children left running: {alive}"
    problems = [line for line in out.splitlines() if " ERROR " in line or line.startswith("Traceback")]
    assert not problems, "\n".join(problems)


def start_supervised(project: Path) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """`hmi run` on `project` with its output collected line by line."""
    proc = hmi_process(
        "run", "--project", str(project), env={"QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb")}
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    return proc, lines, reader


def recorded(db: Path, tag: str) -> int:
    """Samples of `tag` in the historian file so far (0 before its first commit)."""
    with HistorianReader(db) as reader:
        try:
            return reader.count(tag, 0, 2**62)
        except KeyError:
            return 0


def test_closing_the_window_keeps_the_runtime_recording_and_hmi_run_reattaches(
    tmp_path: Path, private_data_dir: Path
) -> None:
    """The window ending normally (SIGTERM, as the confirmed close ends it) leaves plant and
    runtime running and recording; a second `hmi run` opens only a window on that runtime, and
    ending that window leaves the runtime running too."""
    project = write_demo_project(tmp_path, free_port(), stream_port=free_port(), request_port=free_port())
    db = private_data_dir / "demo.sqlite"
    supervisor, lines, reader = start_supervised(project)
    second: subprocess.Popen[str] | None = None
    try:
        parent = psutil.Process(supervisor.pid)
        roles = wait_until(
            lambda: (r := children_by_role(parent)) and len(r) == 3 and r, 20, message="children not started"
        )
        running = wait_until(lambda: find_running(project), 30, interval=0.5, message="no run file")
        assert running.pid == roles["runtime"].pid and running.supervisor_pid == supervisor.pid
        wait_until(lambda: db.exists() and recorded(db, "cnc01.vibration_spindle") > 0, 30, interval=0.5)
        # Up and showing data (its SIGTERM handler is installed by then).
        wait_until(lambda: any("first live frame" in line for line in lines), 30, message="no live frame")

        # The close button asks first and the window stays; the question does not keep the
        # window from ending when it is told to (SIGTERM, as when the supervisor stops it).
        main = wait_until(lambda: windows_of(roles["window"].pid), 10, message="no main window on X")
        assert len(main) == 1, main
        close_like_window_manager(main[0])
        time.sleep(1.0)
        assert roles["window"].is_running(), "the close button closed the window without asking"
        roles["window"].send_signal(signal.SIGTERM)
        roles["window"].wait(15)  # and exits 0: the supervisor logs a close, not a crash
        wait_until(lambda: any("Reopen the window with: hmi run" in line for line in lines), 5, message="".join(lines))
        before = recorded(db, "cnc01.vibration_spindle")
        wait_until(lambda: recorded(db, "cnc01.vibration_spindle") > before, 10, interval=0.5,
                   message="nothing recorded after the window closed")  # fmt: skip
        assert supervisor.poll() is None
        assert set(children_by_role(parent)) == {"plant", "runtime"}, "the window must not be restarted"
        assert children_by_role(parent)["runtime"].pid == roles["runtime"].pid

        second, second_lines, second_reader = start_supervised(project)
        attached = psutil.Process(second.pid)
        window = wait_until(lambda: children_by_role(attached).get("window"), 20, message="no window attached")
        assert set(children_by_role(attached)) == {"window"}, "an attached `hmi run` starts only a window"
        assert f"--ipc-requests {running.request_address}" in " ".join(window.cmdline())
        wait_until(lambda: any("first live frame" in line for line in second_lines), 30, message="no live frame")
        window.send_signal(signal.SIGTERM)
        try:
            second.wait(45)  # the window saves its layout and shuts VTK down first: slow on a loaded machine
        except subprocess.TimeoutExpired:
            out = "".join(second_lines)
            raise AssertionError(f"the attached hmi run did not end with its window:\n{out}") from None
        second_reader.join(10)
        out = "".join(second_lines)
        assert second.returncode == 0, out
        assert "is already running" in out
        assert children_by_role(parent)["runtime"].pid == roles["runtime"].pid, "the runtime must keep running"
    finally:
        if second is not None:
            stop_process(second)
        stop_process(supervisor, timeout=20)
        reader.join(10)
    assert supervisor.returncode == 0, "".join(lines)
    assert find_running(project) is None and not run_file(project).exists(), "a clean exit removes the run file"


def hmi_stop(project: Path, user: str, password: str, reason: str) -> subprocess.CompletedProcess[str]:
    proc = hmi_process("stop", "--project", str(project), "--user", user, "--reason", reason, stdin=subprocess.PIPE)
    out, _ = proc.communicate(password + "\n", timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def test_hmi_stop_refuses_an_operator_and_stops_everything_for_an_engineer(
    tmp_path: Path, private_data_dir: Path
) -> None:
    """`hmi stop` as an operator is refused (exit 1) and nothing stops; as an engineer the
    runtime stops gracefully, the supervisor stops window and plant and exits 0, and the audit
    trail holds the stop with the user and the reason."""
    users = UserStore()
    users.add("ada", Role.ADMIN, "admin-pass")
    users.add("olga", Role.OPERATOR, "operator-pass")
    users.add("erik", Role.ENGINEER, "engineer-pass")
    project = write_demo_project(tmp_path, free_port(), stream_port=free_port(), request_port=free_port())
    nothing = hmi_stop(project, "erik", "engineer-pass", "maintenance")
    assert nothing.returncode == 1 and "no runtime is running for" in nothing.stdout, nothing.stdout

    supervisor, lines, reader = start_supervised(project)
    try:
        parent = psutil.Process(supervisor.pid)
        roles = wait_until(
            lambda: (r := children_by_role(parent)) and len(r) == 3 and r, 20, message="children not started"
        )
        wait_until(lambda: find_running(project), 30, interval=0.5, message="no run file")
        children = list(roles.values())

        refused = hmi_stop(project, "olga", "operator-pass", "end of shift")
        assert refused.returncode == 1, refused.stdout
        assert "needs the engineer role" in refused.stdout and "nothing was stopped" in refused.stdout
        time.sleep(1.0)
        assert supervisor.poll() is None and all(c.is_running() for c in children), "an operator stopped something"

        done = hmi_stop(project, "erik", "engineer-pass", "pump01 seal replacement")
        assert done.returncode == 0, done.stdout + "".join(lines)
        assert "stopped: plant connections closed, historian flushed and closed" in done.stdout
        supervisor.wait(20)
    finally:
        stop_process(supervisor, timeout=20)
        reader.join(10)
    out = "".join(lines)
    assert_stopped_cleanly(supervisor, out, children, timeout=10)
    assert "system stop requested by erik" in out
    assert not run_file(project).exists()
    trail = AuditTrail(private_data_dir / "demo.sqlite", create=False)
    try:
        stops = [(r.user, r.outcome, r.details_dict()["reason"]) for r in trail.records() if r.kind == "stop_system"]
    finally:
        trail.close()
    assert stops[0][:2] == ("olga", "refused")
    assert stops[1] == ("erik", "ok", "pump01 seal replacement")


@pytest.mark.parametrize(
    ("code", "closed"),
    [(0, True), (-signal.SIGTERM, True), (-signal.SIGINT, True), (-signal.SIGKILL, False), (-signal.SIGSEGV, False),
     (1, False)],
)  # fmt: skip
def test_a_window_told_to_stop_is_not_restarted_but_a_crashed_one_is(code: int, closed: bool) -> None:
    """A window that ended by SIGTERM/SIGINT (before its own handler ran, or at a session's end)
    was asked to stop: a close. A kill, a segfault or an error exit is a crash to restart."""
    from hmi.supervisor import ended_on_request

    assert ended_on_request(code) is closed
