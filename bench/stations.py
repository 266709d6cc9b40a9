"""Cross-station alarm state: an acknowledgement at one station, seen at another.

A headless runtime (`hmi run --headless`, CURVE on 127.0.0.2) and two station processes
(bench/_station_window.py: the window's AlarmFeed and IpcClient, each with its own enrolled
key). The runtime's project has COMM_LOSS alarms on a connection nobody serves, so every
alarm is active and unacknowledged without a plant. Station ws1 acknowledges one alarm at a
time through its command path; the delay is from ws1 sending the command to ws2's alarm list
showing the alarm acknowledged (one clock: both on this machine).

`StationSite` is shared with tests/system/test_cross_station.py.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import percentiles_ms, print_table, stop_process

REPO = Path(__file__).resolve().parent.parent
REMOTE = "127.0.0.2"  # "another host" on loopback: CURVE is turned on explicitly
PASSWORD = "correct horse"
ACKS = 200


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def project_text(alarms: int, stream_port: int, request_port: int, dead_port: int) -> str:
    """`alarms` COMM_LOSS alarms on tags of a connection nobody serves, positions cell1/cell2."""
    lines = [
        'format = 2\n[project]\nname = "Stations"\n',
        f'[connections.plant]\nkind = "opcua"\nendpoint = "opc.tcp://127.0.0.1:{dead_port}/nobody"\n',
        '[machines.cnc01]\nlabel = "CNC 1"\n[machines.pump01]\nlabel = "Pump 1"\n',
        '[[positions]]\nname = "cell1"\narea = "Machining"\nmachines = ["cnc01"]\n',
        '[[positions]]\nname = "utilities"\narea = "Utilities"\nmachines = ["pump01"]\n',
        f'[runtime]\nipc_host = "{REMOTE}"\ncurve = true\nstream_port = {stream_port}\nrequest_port = {request_port}\n',
    ]
    for i in range(alarms):
        machine = "cnc01" if i % 2 == 0 else "pump01"
        lines.append(f'[tags."{machine}.t{i:04d}"]\nconnection = "plant"\naddress = "ns=2;s=t{i}"\n')
        lines.append(f'[[alarms]]\ntag = "{machine}.t{i:04d}"\ncondition = "comm_loss"\npriority = "low"\n')
    return "\n".join(lines)


class Station:
    """A station process: JSON lines in, JSON lines out (read on a thread into a queue)."""

    def __init__(self, site: StationSite, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._station_window", site.stream, site.requests, site.server_key,
             str(site.keys_dir), name],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", QT_QPA_PLATFORM="offscreen"),
        )  # fmt: skip
        self.lines: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        threading.Thread(target=self._read, name=f"{name}-out", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def expect(self, key: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """The next line carrying `key` (others before it are dropped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {key!r} within {timeout_s} s")
            try:
                message = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if key in message:
                return message

    def login(self, user: str) -> None:
        self.send(op="login", user=user, password=PASSWORD)
        reply = self.expect("login")
        assert reply["login"], reply

    def states(self) -> dict[str, list[Any]]:
        self.send(op="states")
        return dict(self.expect("states")["states"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(op="quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop_process(self.proc, 5)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class StationSite:
    """A project, a runtime key pair and stations ws1, ws2 enrolled, users olga (operator)
    and sam (supervisor), in the data folder HMI_DATA_DIR names (the caller sets it)."""

    def __init__(self, directory: Path, alarms: int = 20) -> None:
        from hmi.security.roles import Role
        from hmi.security.stations import StationList, key_pair, runtime_key_pair
        from hmi.security.users import UserStore

        self.directory = directory
        self.alarms = [f"{'cnc01' if i % 2 == 0 else 'pump01'}.t{i:04d}.comm_loss" for i in range(alarms)]
        self.stream_port, self.request_port = free_port(), free_port()
        self.stream = f"tcp://{REMOTE}:{self.stream_port}"
        self.requests = f"tcp://{REMOTE}:{self.request_port}"
        self.project = directory / "stations.toml"
        self.project.write_text(project_text(alarms, self.stream_port, self.request_port, free_port()), "utf-8")
        self.server_key = runtime_key_pair().public.decode("ascii")  # the one the runtime will use
        self.keys_dir = directory / "station-keys"
        self.keys_dir.mkdir(exist_ok=True)
        allow_list = StationList()
        for name in ("ws1", "ws2"):
            if name not in {s.name for s in allow_list.stations()}:
                allow_list.add(name, key_pair(name, self.keys_dir).public, "bench", "site", "operator console")
        users = UserStore()
        for name, role in (("olga", Role.OPERATOR), ("sam", Role.SUPERVISOR)):
            if users.get(name) is None:
                users.add(name, role, PASSWORD)
        self.runtime: subprocess.Popen[str] | None = None
        self.stations: list[Station] = []

    def start_runtime(self) -> None:
        from hmi.ipc.client import IpcClient
        from hmi.ipc.curve import CurveClient
        from hmi.ipc.mirror import BusMirror
        from hmi.security.stations import key_pair

        self.runtime = subprocess.Popen(
            [sys.executable, "-m", "hmi", "run", "--headless", "--no-sim", "--project", str(self.project)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        # Ready when an enrolled station gets its alarm snapshot with every alarm active.
        keys = key_pair("ws1", self.keys_dir)
        client = IpcClient(self.stream, self.requests, BusMirror(),
                           curve=CurveClient(self.server_key.encode(), keys.public, keys.secret))  # fmt: skip
        client.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.runtime.poll() is not None:
                    raise RuntimeError(f"the runtime exited with {self.runtime.returncode}")
                if client.link_up:
                    reply = client.send_command({"command": "alarms"}).result(10)
                    active = [a for a in reply.get("alarms", []) if a.get("active")]
                    if len(active) == len(self.alarms):
                        return
                time.sleep(0.1)
            raise TimeoutError("the runtime never raised its COMM_LOSS alarms")
        finally:
            client.stop()

    def stop_runtime(self) -> None:
        if self.runtime is not None:
            stop_process(self.runtime, 20)  # SIGTERM: the historian flushes on the way out
            self.runtime = None

    def station(self, name: str) -> Station:
        station = Station(self, name)
        self.stations.append(station)
        station.expect("ready", 30)
        return station

    def close(self) -> None:
        for station in self.stations:
            station.stop()
        self.stop_runtime()


def cross_station_delays(ws1: Station, ws2: Station, alarms: list[str]) -> list[int]:
    """Acknowledge each alarm at ws1, one at a time; ns from sending to ws2 showing it."""
    delays = []
    for alarm in alarms:
        ws2.send(op="watch", alarms=[alarm])
        ws1.send(op="ack", alarm=alarm)
        acked = ws1.expect("acked")
        assert acked["reply"].get("done") == [alarm], acked
        seen = ws2.expect("seen")
        delays.append(int(seen["t_ns"]) - int(acked["sent_ns"]))
    return delays


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hmi-bench-stations-") as tmp:
        os.environ["HMI_DATA_DIR"] = tmp
        site = StationSite(Path(tmp), alarms=ACKS)
        try:
            site.start_runtime()
            ws1, ws2 = site.station("ws1"), site.station("ws2")
            ws1.login("olga")
            delays = cross_station_delays(ws1, ws2, site.alarms)
        finally:
            site.close()
    p50, p99, worst = percentiles_ms(delays)
    print_table(
        "Cross-station acknowledgement: ws1 sends, ws2's alarm list shows it (CURVE, two station processes)",
        [(str(len(delays)), f"{p50:.1f}", f"{p99:.1f}", f"{worst:.1f}")],
        ("acks", "p50 ms", "p99 ms", "max ms"),
    )


if __name__ == "__main__":
    main()
