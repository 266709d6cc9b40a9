"""The CURVE channel: enrolled stations get everything, anyone else nothing; the station in
the audit trail is the one the handshake proved; plain channels never leave this host.

127.0.0.2 stands for another host (the runtime binds it, clients connect to it); it is
loopback, so these runtimes turn CURVE on explicitly, as `curve = true` in a project does.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.config.models import RuntimeConfig
from hmi.core.bus import TagBus
from hmi.core.tags import TagRegistry, TagSpec
from hmi.ipc import messages as m
from hmi.ipc.client import IpcClient
from hmi.ipc.curve import CurveClient, CurveServer
from hmi.ipc.mirror import BusMirror
from hmi.ipc.publisher import IpcPublisher
from hmi.runtime import enrolled_stations
from hmi.security.audit import AuditTrail
from hmi.security.stations import KeyPair, StationError, StationList, key_pair
from hmi.supervisor import request
from tests.alarm_runtime import PASSWORD, InProcessRuntime
from tests.helpers import REPO, free_port, wait_until

REMOTE = "127.0.0.2"  # "another host"
NOTHING_S = 1.5  # how long a refused client is watched for anything arriving (the link watch is 1 s)


def remote_addresses() -> tuple[str, str]:
    return f"tcp://{REMOTE}:{free_port()}", f"tcp://{REMOTE}:{free_port()}"


class Site:
    """A runtime's operator side serving CURVE on 127.0.0.2, with stations ws1 and ws2
    enrolled in a real allow-list, and key pairs for them and for a stranger."""

    def __init__(self, directory: Path) -> None:
        self.keys_dir = directory / "keys"
        self.keys_dir.mkdir()
        self.server = key_pair("runtime", self.keys_dir)
        self.ws1 = key_pair("ws1", self.keys_dir)
        self.ws2 = key_pair("ws2", self.keys_dir)
        self.stranger = key_pair("stranger", self.keys_dir)
        self.allow_list = StationList(directory / "stations.json")
        self.allow_list.add("ws1", self.ws1.public, "ada@site", "site", "operator console 1")
        self.allow_list.add("ws2", self.ws2.public, "ada@site", "site", "operator console 2")
        self.runtime = InProcessRuntime(directory, with_ipc=False)
        self.handled: list[dict[str, Any]] = []
        self.stream, self.requests = remote_addresses()
        curve = CurveServer(self.server.public, self.server.secret, enrolled_stations(self.allow_list))
        self.publisher = IpcPublisher(self.runtime.bus, self.stream, self.requests, self.handle, curve=curve)
        self.clients: list[IpcClient] = []

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        self.handled.append(command)
        return self.runtime.handle(command)

    def client(self, keys: KeyPair | None, server_key: bytes | None = None) -> tuple[IpcClient, BusMirror]:
        curve = None if keys is None else CurveClient(server_key or self.server.public, keys.public, keys.secret)
        mirror = BusMirror()
        client = IpcClient(self.stream, self.requests, mirror, curve=curve)
        client.start()
        self.clients.append(client)
        return client, mirror


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    s.publisher.start()
    s.runtime.publish("cnc01.spindle_speed", 1200.0)  # before any window: arrives by snapshot
    yield s
    for client in s.clients:
        client.stop()
    s.publisher.stop()
    s.runtime.stop()


def assert_gets_nothing(site: Site, client: IpcClient, mirror: BusMirror) -> None:
    """No stream, no snapshot, and a command that is never answered nor handled."""
    future = client.send_command({"command": "ping"})
    with pytest.raises(FutureTimeout):
        future.result(timeout=NOTHING_S)
    site.runtime.publish("cnc01.spindle_speed", 1300.0)
    time.sleep(0.3)  # the stream's chance to deliver, which must not come
    assert not client.link_up
    assert client.stats.snapshots == 0 and client.stats.messages == 0
    assert mirror.bus.latest("cnc01.spindle_speed") is None
    assert site.handled == []


def test_an_enrolled_station_gets_the_snapshot_the_stream_and_command_replies(site: Site) -> None:
    """A station enrolled by its key attaches over CURVE exactly as a local window does."""
    client, mirror = site.client(site.ws1)
    wait_until(lambda: client.link_up, 5.0, message="the enrolled station never got its snapshot")
    assert mirror.bus.latest("cnc01.spindle_speed").value == 1200.0  # type: ignore[union-attr]
    site.runtime.publish("cnc01.spindle_speed", 1500.0)
    wait_until(lambda: mirror.bus.latest("cnc01.spindle_speed").value == 1500.0, 5.0)  # type: ignore[union-attr]
    reply = client.send_command({"command": "login", "user": "olga", "password": PASSWORD}).result(5.0)
    assert reply["ok"], reply


def test_an_unknown_key_gets_nothing(site: Site) -> None:
    """A station whose key is not enrolled is refused at the handshake: nothing at all."""
    client, mirror = site.client(site.stranger)
    assert_gets_nothing(site, client, mirror)
    assert site.publisher.stations_refused >= 1


def test_a_plaintext_client_gets_nothing(site: Site) -> None:
    """A client without CURVE (today's plain window) gets nothing from a CURVE runtime."""
    client, mirror = site.client(None)
    assert_gets_nothing(site, client, mirror)


def test_an_enrolled_key_with_the_wrong_server_key_gets_nothing(site: Site) -> None:
    """A station that trusts another server key (an impostor runtime) completes no handshake."""
    client, mirror = site.client(site.ws1, server_key=site.stranger.public)
    assert_gets_nothing(site, client, mirror)


def test_a_station_cannot_claim_another_stations_name(site: Site) -> None:
    """The audit record names the station the handshake proved, whatever the command says."""
    client, _ = site.client(site.ws1)
    wait_until(lambda: client.link_up, 5.0)
    reply = client.send_command({"command": "login", "user": "olga", "password": PASSWORD, "station": "ws2"})
    assert reply.result(5.0)["ok"]
    bad = client.send_command({"command": "login", "user": "olga", "password": "wrong", "station": "ws2"})
    assert not bad.result(5.0)["ok"]
    records = [(r.kind, r.details_dict()["station"]) for r in site.runtime.audit.records()]
    assert records == [("login", "ws1"), ("login_failed", "ws1")]


def test_a_station_removed_while_attached_gets_no_more_commands(site: Site) -> None:
    """Removal from the allow-list takes effect at the next command, without a restart."""
    client, _ = site.client(site.ws2)
    wait_until(lambda: client.link_up, 5.0)
    assert client.send_command({"command": "alarms"}).result(5.0)["ok"]
    site.allow_list.remove("ws2", "ada@site", "site", "console replaced")
    reply = client.send_command({"command": "alarms"}).result(5.0)
    assert not reply["ok"] and "not enrolled" in reply["error"]
    assert site.handled == [{"command": "alarms", "station": "ws2"}]


class Recorder:
    """A TCP relay that keeps every byte the client sends: a wire capture of one connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.captured = bytearray()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target)
        with client, server:
            while True:
                ready, _, _ = select.select([client, server], [], [], 5.0)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        self.captured += data
                    (server if sock is client else client).sendall(data)


def test_a_replayed_plaintext_command_does_nothing(site: Site, tmp_path: Path) -> None:
    """The bytes of a command captured on a plain connection, replayed to the CURVE port,
    reach no handler and get no reply (the peer must speak CURVE before anything counts)."""
    bus = TagBus(TagRegistry([TagSpec("m.a")]))
    plain_handled: list[dict[str, Any]] = []
    plain = IpcPublisher(bus, f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}",
                         lambda c: plain_handled.append(c) or {"ok": True})  # fmt: skip
    plain.start()
    try:
        host, _, port = plain.request_address.removeprefix("tcp://").rpartition(":")
        recorder = Recorder((host, int(port)))
        command = {"command": "acknowledge", "session": "x", "alarms": ["cnc01.tool_temperature.hi"]}
        assert request(recorder.address, command, 5.0) == {"ok": True}
        assert plain_handled and b"acknowledge" in recorder.captured
    finally:
        plain.stop()
    host, _, port = site.requests.removeprefix("tcp://").rpartition(":")
    answer = bytearray()
    with socket.create_connection((host, int(port)), timeout=NOTHING_S) as raw:
        raw.sendall(bytes(recorder.captured))
        try:
            while chunk := raw.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):  # the runtime hangs up on a peer not speaking CURVE
            pass
    assert site.handled == []
    assert b'"ok"' not in answer and m.KIND_REPLY + b"{" not in answer


def non_loopback_ipv4() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return str(a.address)
    return None


def test_a_window_never_sends_a_login_over_a_plain_channel_off_this_host() -> None:
    """A login to a runtime on another host without CURVE is refused in the window: the
    password never reaches the wire, while other commands still go out."""
    host = non_loopback_ipv4()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port(f"tcp://{host}")
    client = IpcClient(f"tcp://{host}:{free_port()}", f"tcp://{host}:{port}", BusMirror())
    client.start()
    try:
        reply = client.send_command({"command": "login", "user": "olga", "password": PASSWORD}).result(1.0)
        assert not reply["ok"] and "neither encrypted nor on this host" in reply["error"]
        client.send_command({"command": "ping"})
        assert router.poll(5000), "the plain command never arrived"
        frames = router.recv_multipart()
        assert json.loads(frames[2])["command"] == "ping"
        assert not router.poll(300), "something else (the login) arrived"
    finally:
        client.stop()
        router.close(0)


def test_a_plain_publisher_refuses_an_address_off_loopback() -> None:
    """Without CURVE the runtime binds loopback only, whatever address it is given."""
    bus = TagBus(TagRegistry([TagSpec("m.a")]))
    port = free_port()
    publisher = IpcPublisher(bus, f"tcp://0.0.0.0:{port}", f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(OSError, match="without CURVE"):
        publisher.start()
    with socket.create_server(("0.0.0.0", port)):
        pass  # nothing was bound


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4))
def test_curve_may_be_off_on_loopback_only(address: ipaddress.IPv4Address) -> None:
    """For every IPv4 address: `curve = false` is accepted exactly when it is 127.0.0.0/8,
    and left unset, CURVE is on exactly when it is not."""
    loopback = address in ipaddress.ip_network("127.0.0.0/8")
    try:
        RuntimeConfig(ipc_host=str(address), curve=False)
        accepted = True
    except ValueError as exc:
        assert "curve = true" in str(exc)
        accepted = False
    assert accepted == loopback
    assert RuntimeConfig(ipc_host=str(address)).uses_curve(str(address)) == (not loopback)


def hmi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hmi", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_runtime_refuses_to_start_off_loopback_without_curve(tmp_path: Path) -> None:
    """`curve = false` on an address other hosts reach: exit 2, naming the file and the keys."""
    project = tmp_path / "plant.toml"
    text = (REPO / "config" / "demo.toml").read_text(encoding="utf-8")
    project.write_text(text + '\n[runtime]\nipc_host = "0.0.0.0"\ncurve = false\n', encoding="utf-8")
    result = hmi("run", "--headless", "--no-sim", "--duration", "1", "--project", str(project))
    assert result.returncode == 2, result.stderr
    assert "plant.toml: runtime.curve:" in result.stderr and "ipc_host = '0.0.0.0'" in result.stderr


def test_an_allow_list_others_may_read_is_refused(site: Site) -> None:
    """A loosened allow-list file is refused by name, and lets no station in meanwhile."""
    path = site.allow_list.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(StationError, match=f"{path}.*read or changed by other users"):
        site.allow_list.stations()
    client, mirror = site.client(site.ws1)
    assert_gets_nothing(site, client, mirror)


def test_station_add_list_remove_round_trip_is_audited(tmp_path: Path, private_data_dir: Path) -> None:
    """`hmi station add/list/remove`: the key file is enrolled, listed, removed, and each
    change is in the project's audit trail with who, from which host and why."""
    project = tmp_path / "plant.toml"
    project.write_text((REPO / "config" / "demo.toml").read_text(encoding="utf-8"), encoding="utf-8")
    env = {"HMI_DATA_DIR": str(private_data_dir)}
    keys = key_pair("ws7", tmp_path)
    missing_reason = hmi(
        "station", "add", "ws7", "--key", str(tmp_path / "ws7.key"), "--project", str(project), env=env
    )
    assert missing_reason.returncode == 2 and "--reason" in missing_reason.stderr
    added = hmi("station", "add", "ws7", "--key", str(tmp_path / "ws7.key"), "--reason", "new console",
                "--project", str(project), env=env)  # fmt: skip
    assert added.returncode == 0, added.stderr
    allow_list = private_data_dir / "stations.json"
    assert stat.S_IMODE(allow_list.stat().st_mode) == 0o600
    assert json.loads(allow_list.read_text())["version"] == 1
    listed = hmi("station", "list", env=env)
    assert listed.returncode == 0 and "ws7" in listed.stdout and keys.public.decode() in listed.stdout
    removed = hmi("station", "remove", "ws7", "--reason", "console scrapped", "--project", str(project), env=env)
    assert removed.returncode == 0, removed.stderr
    assert "ws7" not in hmi("station", "list", env=env).stdout
    trail = AuditTrail(private_data_dir / "demo.sqlite", create=False)
    try:
        records = trail.records()
    finally:
        trail.close()
    host = socket.gethostname()
    assert [(r.kind, r.target, r.details_dict()["name"], r.details_dict()["reason"]) for r in records] == [
        ("station_add", "stations", "ws7", "new console"),
        ("station_remove", "stations", "ws7", "console scrapped"),
    ]
    assert all(r.user.endswith(f"@{host}") and r.details_dict()["station"] == host for r in records)
    os.chmod(allow_list, 0o640)
    refused = hmi("station", "list", env=env)
    assert refused.returncode == 2 and str(allow_list) in refused.stderr


def test_a_headless_runtime_over_curve_serves_its_own_host_and_refuses_strangers(tmp_path: Path) -> None:
    """`hmi run --headless` with curve = true: its key pair is made, the run file carries its
    public key, this workstation's station key gets in (as `local`), an unknown key does not."""
    project = tmp_path / "plant.toml"
    stream_port, request_port = free_port(), free_port()
    text = (REPO / "config" / "demo.toml").read_text(encoding="utf-8")
    project.write_text(
        text + f'\n[runtime]\nipc_host = "{REMOTE}"\ncurve = true\nstream_port = {stream_port}\n'
        f"request_port = {request_port}\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hmi", "run", "--headless", "--no-sim", "--project", str(project)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[IpcClient] = []
    try:
        from hmi.supervisor import find_running, window_curve

        running = wait_until(lambda: find_running(project), 30.0, interval=0.2, message="the runtime never answered")
        assert running.server_key is not None
        secret = Path(os.environ["HMI_DATA_DIR"]) / "curve" / "runtime.key_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        from hmi.config import load_project

        curve = window_curve(load_project(project), running.request_address)
        assert curve is not None and curve.server_key == running.server_key.encode()
        window = IpcClient(running.stream_address, running.request_address, BusMirror(), curve=curve)
        stranger_keys = key_pair("stranger", tmp_path)
        stranger = IpcClient(
            running.stream_address,
            running.request_address,
            BusMirror(),
            curve=CurveClient(curve.server_key, stranger_keys.public, stranger_keys.secret),
        )
        clients += [window, stranger]
        window.start()
        stranger.start()
        wait_until(lambda: window.link_up, 10.0, message="this host's window never attached")
        assert window.send_command({"command": "ping"}).result(5.0)["ok"]
        with pytest.raises(FutureTimeout):
            stranger.send_command({"command": "ping"}).result(NOTHING_S)
        assert not stranger.link_up and stranger.stats.snapshots == 0
    finally:
        for client in clients:
            client.stop()
        proc.terminate()
        proc.wait(15)
