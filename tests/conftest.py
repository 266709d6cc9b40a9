"""Fixtures shared by every test: a private data folder, real servers on free ports."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from tests.helpers import free_port, stop_process, wait_for_port
from tests.pg import CentralDatabase, PostgresServer

if TYPE_CHECKING:
    from hmi.sim.plant import Plant


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep historians, certificates and logs out of the user's folders."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("HMI_DATA_DIR", str(data))
    return data


class PlantServerThread:
    """The demo plant's OPC UA server on its own asyncio loop in a thread."""

    def __init__(
        self,
        machines: list[str] | None = None,
        rate_hz: float = 20.0,
        speed: float = 1.0,
        port: int | None = None,
        plant: Plant | None = None,
        **server_kwargs: object,
    ) -> None:
        from hmi.sim.plant import Plant

        self.port = port or free_port()
        self.plant = plant or Plant(machines)
        self.rate_hz = rate_hz
        self.speed = speed
        self.server_kwargs = server_kwargs
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.server = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/hmi-demo"

    def start(self) -> PlantServerThread:
        from hmi.sim.opcua_server import PlantOpcUaServer
        from hmi.sim.runner import PlantRunner

        async def main() -> None:
            self._stop = asyncio.Event()
            server = PlantOpcUaServer(self.plant, "127.0.0.1", self.port, **self.server_kwargs)
            await PlantRunner(self.plant, self.rate_hz, self.speed, opcua=server).run(self._stop)
            self.server = server

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(main(),), daemon=True)
        self._thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


@pytest.fixture
def plant_server() -> Iterator[PlantServerThread]:
    """The demo plant (CNC mill) served over OPC UA on a free port, 20 Hz."""
    server = PlantServerThread(["cnc01"]).start()
    yield server
    server.stop()


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed: run `make test`, which installs it")
    return binary


class MosquittoBroker:
    """A real Mosquitto on a free loopback port, in one of three configurations.

    - "anonymous": anyone may connect, read and write.
    - "auth": a password file (users `hmi`/`hmi-pass` and `plant`/`plant-pass`) and an ACL:
      `hmi` may read factory/# but not secret/#, and write factory/+/command;
      `plant` may write everything.
    - "tls": TLS only, with a CA, server and client certificate generated here
      (`ca`, `client_cert`, `client_key` paths); `require_client_cert` asks for one.

    `stop()`/`start()` kill and restart it on the same port (chaos tests).
    """

    USERS: ClassVar[dict[str, str]] = {"hmi": "hmi-pass", "plant": "plant-pass"}

    def __init__(self, directory: Path, mode: str = "anonymous", require_client_cert: bool = False) -> None:
        self.directory = directory
        self.mode = mode
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = directory / f"mosquitto-{self.port}.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
        ]
        if os.geteuid() == 0:
            # Started as root, Mosquitto drops to its own user, which cannot read the test's private
            # temporary folder (password file, certificates, log): stay the user that made them.
            lines.append("user root")
        if mode == "anonymous":
            lines.append("allow_anonymous true")
        elif mode == "auth":
            passwords = directory / "passwords"
            passwords.write_text("")
            for user, password in self.USERS.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            acl = directory / "acl"
            acl.write_text(
                "user hmi\ntopic read factory/#\ntopic write factory/+/command\n\nuser plant\ntopic readwrite #\n"
            )
            lines += ["allow_anonymous false", f"password_file {passwords}", f"acl_file {acl}"]
        elif mode == "tls":
            self.ca, self.client_cert, self.client_key, server_cert, server_key = make_test_pki(directory)
            lines += [
                "allow_anonymous true",
                f"cafile {self.ca}",
                f"certfile {server_cert}",
                f"keyfile {server_key}",
                f"require_certificate {'true' if require_client_cert else 'false'}",
            ]
        else:
            raise ValueError(mode)
        self.config = directory / f"mosquitto-{self.port}.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> MosquittoBroker:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def make_test_pki(directory: Path) -> tuple[Path, Path, Path, Path, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key_pem(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
        return path

    def cert(name: str, key, issuer_name, issuer_key, ca: bool, usage=None, san=None):  # type: ignore[no-untyped-def]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HMI test CA")])
    ca = cert("HMI test CA", ca_key, ca_name, ca_key, True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = cert(
        "localhost",
        server_key,
        ca_name,
        ca_key,
        False,
        [ExtendedKeyUsageOID.SERVER_AUTH],
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = cert("hmi-client", client_key, ca_name, ca_key, False, [ExtendedKeyUsageOID.CLIENT_AUTH])
    pem = serialization.Encoding.PEM
    paths = (
        directory / "ca.pem",
        directory / "client.pem",
        directory / "client.key",
        directory / "server.pem",
        directory / "server.key",
    )
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(client.public_bytes(pem))
    key_pem(client_key, paths[2])
    paths[3].write_bytes(server.public_bytes(pem))
    key_pem(server_key, paths[4])
    return paths


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real Mosquitto broker on a free port (anonymous, loopback only)."""
    broker = MosquittoBroker(tmp_path).start()
    try:
        yield broker.host, broker.port
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """A factory for brokers in a given configuration ("anonymous", "auth", "tls"); all stopped at the end."""
    started: list[MosquittoBroker] = []

    def make(mode: str = "anonymous", **kw: Any) -> MosquittoBroker:
        directory = tmp_path / f"broker-{len(started)}"
        directory.mkdir()
        broker = MosquittoBroker(directory, mode, **kw).start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the whole session (tests/pg.py); stopped at the end."""
    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server.start()
    finally:
        server.stop()


_central_numbers = itertools.count(1)


@pytest.fixture
def central_db(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[CentralDatabase]:
    """A fresh database per test; its password_ref resolves through the environment."""
    name = f"central_{os.getpid()}_{next(_central_numbers)}"
    database = CentralDatabase(postgres_server, name).create()
    monkeypatch.setenv(*database.password_env)
    try:
        yield database
    finally:
        database.drop()
