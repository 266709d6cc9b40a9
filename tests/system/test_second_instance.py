"""A second instance on the same project refuses to record into the first one's historian."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from hmi.config.loader import load_project
from hmi.historian import HistorianReader
from hmi.historian.lock import WriterLock
from hmi.supervisor import Supervisor, port_in_use
from tests.helpers import free_port, hmi_process, stop_process, wait_until, write_demo_project


def test_a_second_headless_runtime_on_the_same_historian_refuses(tmp_path: Path, private_data_dir: Path) -> None:
    """`hmi run --headless` on a historian another runtime records into exits 3 at once,
    naming the first one's pid, writes nothing, and the first keeps its file intact; both
    say so in the runtime log file in the data folder."""
    project = write_demo_project(tmp_path, free_port())  # no plant: the source retries, recording goes on
    db = private_data_dir / "demo.sqlite"
    first = hmi_process("run", "--project", str(project), "--headless", "--no-ipc")
    try:
        wait_until(lambda: WriterLock(db).in_use(), 30, message="the first runtime never took the historian")
        started = time.monotonic()
        second = hmi_process("run", "--project", str(project), "--headless", "--no-ipc", "--duration", "30")
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 3, out
        assert time.monotonic() - started < 20, "the second runtime did not refuse at once"
        assert f"already being recorded by another process (pid {first.pid} " in out
        assert first.poll() is None, "the first runtime stopped"
    finally:
        first_out = stop_process(first)
    assert "Traceback" not in first_out, first_out
    with HistorianReader(db) as reader:
        assert any(t.name == "cnc01.spindle_speed" for t in reader.tags())
        assert reader.count("historian.queue_depth", 0, 2**62) >= 1, "the first runtime recorded nothing"
    log_text = (private_data_dir / "logs" / "runtime.log").read_text(encoding="utf-8")
    assert "historian recording to" in log_text
    assert "already being recorded by another process" in log_text


def test_hmi_run_refuses_before_starting_anything_when_the_historian_is_taken(
    tmp_path: Path, private_data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`hmi run` (the supervisor) checks the historian lock with its ports and starts no
    child process when another process records into the project's historian."""
    path = write_demo_project(tmp_path, free_port())
    project = load_project(path)
    holder = WriterLock(private_data_dir / "demo.sqlite")
    holder.acquire()
    try:
        supervisor = Supervisor(
            path,
            project,
            with_window=False,
            stream_address=f"tcp://127.0.0.1:{free_port()}",
            request_address=f"tcp://127.0.0.1:{free_port()}",
        )
        with caplog.at_level(logging.ERROR, logger="hmi.supervisor"):
            assert supervisor.run() == 1
        assert all(child.process is None and child.starts == 0 for child in supervisor.children)
        assert "already being recorded by another process" in caplog.text
    finally:
        holder.release()
    assert supervisor.historian_in_use() is None


def test_a_port_left_in_time_wait_by_a_closed_instance_is_free_again() -> None:
    """A port something listens on is in use; once that server closed after serving a
    client (its side of the connection lingers in TIME_WAIT), `hmi run` may start again."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        assert port_in_use(address)
    finally:
        accepted.close()  # the server closes first: its end goes to TIME_WAIT
        server.close()
        wait_until(lambda: client.recv(1) == b"", 5)
        client.close()
    assert not port_in_use(address)
