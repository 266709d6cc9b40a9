"""A runtime that cannot start leaves nothing behind (#16 item 12)."""

from __future__ import annotations

import socket
from pathlib import Path

from hmi.cli import EXIT_FAILURE
from tests.helpers import hmi_process


def test_a_start_on_a_busy_ipc_port_fails_and_leaves_no_historian_file(tmp_path: Path, private_data_dir: Path) -> None:
    """The port is taken by another program: the runtime says so and exits, and no empty
    historian file (or its lock) is left where the next start would find it."""
    project = tmp_path / "p.toml"
    historian = tmp_path / "h.sqlite"
    project.write_text(f'[project]\nname = "busy"\n[historian]\nurl = "sqlite:///{historian}"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = hmi_process(
            "run", "--headless", "--duration", "5", "--ipc-stream", f"tcp://127.0.0.1:{port}", "--project", str(project)
        )
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_FAILURE, out
    assert f"cannot listen on tcp://127.0.0.1:{port}" in out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("h.sqlite")) == []
