"""The application as processes: headless runtime on the plant, and `hmi run` supervising."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import psutil

from hmi.core.quality import Quality
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror
from tests.helpers import free_port, hmi_process, stop_process, wait_for_port, wait_until, write_demo_project


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
    counts = dict(re.findall(r"^(cnc01\.\w+)\s+(\d+)$", out, re.MULTILINE))
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
    out = "".join(lines)
    assert supervisor.returncode == 0, out
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"children left running: {alive}"
    problems = [line for line in out.splitlines() if " ERROR " in line or line.startswith("Traceback")]
    assert not problems, "\n".join(problems)
