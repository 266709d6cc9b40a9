"""OPC UA security: every mode against a server configured for it, user names, the trust list.

These run against a test server of our own (tests/sources/opcua_peer.py) configured for
the mode under test; once the demo plant's server (hmi/sim) offers the same modes and
users, the same checks can point at it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hmi.config.connections import OpcUaConnection
from hmi.config.credentials import store_password
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.tags import TagSpec
from hmi.sources.opcua import OpcUaSource
from hmi.sources.pki import Pki, thumbprint
from tests.helpers import async_wait_until, free_port, run_async
from tests.sources.common import Collector, running
from tests.sources.opcua_peer import ALL_POLICIES, OpcUaPeer


def counter_tag() -> TagSpec:
    return TagSpec("test.counter", address="nsu=urn:hmi:test;s=Test/counter", connection="plc")


def connection(peer: OpcUaPeer, **kw: object) -> OpcUaConnection:
    return OpcUaConnection.model_validate(
        {"kind": "opcua", "endpoint": peer.endpoint, "reconnect_max_delay_s": 0.5, "publishing_interval_ms": 50, **kw}
    )


async def receives_counter(source: OpcUaSource, collector: Collector, timeout: float = 15.0) -> None:
    async with running(source):
        await async_wait_until(
            lambda: len(collector.values("test.counter")) >= 3, timeout, f"no counter values: {source.last_error}"
        )


@pytest.fixture
def peer_pki(tmp_path: Path) -> Path:
    return tmp_path / "server-pki"


@pytest.mark.parametrize("security", [s for s in ALL_POLICIES if s != "None"])
def test_secure_modes_deliver_values_after_trust(security: str, peer_pki: Path) -> None:
    """Sign and SignAndEncrypt with Basic256Sha256 and Aes128Sha256RsaOaep deliver GOOD values once trusted."""
    peer = OpcUaPeer(free_port(), peer_pki, security=(security,)).start()
    try:
        Pki().ensure_folders()
        (Pki().trusted_dir / "server.der").write_bytes(peer.certificate_der)
        bus = TagBus()
        collector = Collector(bus)
        source = OpcUaSource("plc", connection(peer, security=security), [counter_tag()], bus)
        run_async(receives_counter(source, collector))
        assert collector.latest("test.counter")[1] in (Quality.GOOD, Quality.COMM_LOST)
        assert Pki().own_cert.exists() and (Pki().own_key.stat().st_mode & 0o077) == 0
    finally:
        peer.stop()


def test_security_none_needs_no_certificates(peer_pki: Path) -> None:
    """Security None connects without creating or checking any certificate."""
    peer = OpcUaPeer(free_port(), peer_pki).start()
    try:
        bus = TagBus()
        collector = Collector(bus)
        run_async(receives_counter(OpcUaSource("plc", connection(peer), [counter_tag()], bus), collector))
        assert not Pki().own_cert.exists()
    finally:
        peer.stop()


def test_untrusted_server_is_refused_then_accepted_after_trust(peer_pki: Path) -> None:
    """An unknown server certificate is refused (named, thumbprint, copied to rejected/) and accepted after `trust`."""
    peer = OpcUaPeer(free_port(), peer_pki, security=("Basic256Sha256:SignAndEncrypt",)).start()
    try:
        bus = TagBus()
        collector = Collector(bus)
        source = OpcUaSource("plc", connection(peer, security="Basic256Sha256:SignAndEncrypt"), [counter_tag()], bus)
        thumb = thumbprint(peer.certificate_der)

        async def scenario() -> None:
            async with running(source):
                await async_wait_until(lambda: "not trusted" in source.last_error, 15)
                assert thumb in source.last_error
                assert "HMI test server" in source.last_error and peer.endpoint in source.last_error
                assert any(thumb in m for m in collector.messages()), collector.messages()
                assert not source.connected and not collector.values("test.counter")
                rejected = list(Pki().rejected_dir.iterdir())
                assert len(rejected) == 1 and thumb in rejected[0].name
                Pki().trust(thumb)
                assert not list(Pki().rejected_dir.iterdir())
                await async_wait_until(lambda: len(collector.values("test.counter")) >= 2, 15)

        run_async(scenario())
    finally:
        peer.stop()


def test_trust_command_lists_and_trusts(peer_pki: Path, tmp_path: Path) -> None:
    """`hmi trust --list` shows a rejected certificate and `hmi trust THUMBPRINT` moves it to trusted/."""
    from hmi.cli import main

    der = asyncio.run(_make_cert(peer_pki))
    Pki().reject(der)
    thumb = thumbprint(der)
    assert main(["trust", "--list"]) == 0
    assert main(["trust", thumb]) == 0
    assert Pki().is_trusted(der)
    assert main(["trust", "00" * 20]) == 2


async def _make_cert(pki: Path) -> bytes:
    from tests.sources.opcua_peer import _server_certificate

    cert, _ = await _server_certificate(pki)
    return cert.read_bytes()


def test_user_and_password_from_credentials_file(peer_pki: Path) -> None:
    """A user name with a password from the owner-only credentials file is accepted."""
    peer = OpcUaPeer(free_port(), peer_pki, security=("Basic256Sha256:SignAndEncrypt",), users={"hmi": "pw1"}).start()
    try:
        (Pki().trusted_dir).mkdir(parents=True, exist_ok=True)
        (Pki().trusted_dir / "server.der").write_bytes(peer.certificate_der)
        store_password("plant", "pw1")
        bus = TagBus()
        collector = Collector(bus)
        conn = connection(peer, security="Basic256Sha256:SignAndEncrypt", user="hmi", password_ref="plant")
        run_async(receives_counter(OpcUaSource("plc", conn, [counter_tag()], bus), collector))
    finally:
        peer.stop()


def test_wrong_password_gives_a_clear_error(peer_pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong password is refused with a message naming the user and the password reference, once as an event."""
    peer = OpcUaPeer(free_port(), peer_pki, users={"hmi": "right"}).start()
    try:
        monkeypatch.setenv("HMI_PASSWORD_PLANT", "wrong")
        bus = TagBus()
        collector = Collector(bus)
        source = OpcUaSource("plc", connection(peer, user="hmi", password_ref="plant"), [counter_tag()], bus)

        async def scenario() -> None:
            async with running(source):
                await async_wait_until(lambda: "refused" in source.last_error, 15)
                await asyncio.sleep(1.5)  # a few retries
            assert "user 'hmi'" in source.last_error and "BadUserAccessDenied" in source.last_error
            assert "password_ref 'plant'" in source.last_error
            assert sum("refused user" in m for m in collector.messages()) == 1
            assert not collector.values("test.counter")

        run_async(scenario())
    finally:
        peer.stop()


def test_missing_password_names_the_fix(peer_pki: Path) -> None:
    """Without the environment variable or the credentials file, the error names both ways to provide it."""
    peer = OpcUaPeer(free_port(), peer_pki, users={"hmi": "x"}).start()
    try:
        bus = TagBus()
        source = OpcUaSource("plc", connection(peer, user="hmi", password_ref="plant"), [counter_tag()], bus)

        async def scenario() -> None:
            async with running(source):
                await async_wait_until(lambda: "HMI_PASSWORD_PLANT" in source.last_error, 10)
            assert "credentials.toml" in source.last_error

        run_async(scenario())
    finally:
        peer.stop()
