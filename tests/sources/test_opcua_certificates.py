"""Server certificates are validated as OPC UA Part 4 (6.1.3) asks, not only pinned by thumbprint.

Every certificate is made here with the cryptography package (a CA, a CRL, expired, not yet
valid, wrong ApplicationUri, wrong host, SHA-1, self-signed, CA-signed) and served by a real
asyncua server (tests/sources/opcua_peer.py); the real OpcUaSource connects to it. The
refused ones are all on the trust list, where the thumbprint pinning alone accepted them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hmi.config.connections import OpcUaConnection
from hmi.core.bus import TagBus
from hmi.core.tags import TagSpec
from hmi.sources.opcua import OpcUaSource
from hmi.sources.pki import CertificateRefused, Pki, UntrustedCertificate, thumbprint
from tests.helpers import async_wait_until, free_port, run_async
from tests.sources.common import Collector, running
from tests.sources.opcua_peer import OpcUaPeer

SERVER_URI = "urn:hmi:test:server"  # what the test server says in its ApplicationDescription
SECURITY = "Basic256Sha256:SignAndEncrypt"
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
REVOKED_AT = dt.datetime(2025, 3, 4, 5, 6, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Keys:
    ca: rsa.RSAPrivateKey
    server: rsa.RSAPrivateKey


@pytest.fixture(scope="module")
def keys() -> Keys:
    """RSA keygen is the slow part: two keys for the whole module."""
    return Keys(*(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(keys: Keys) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name("Test CA"))
        .issuer_name(_name("Test CA"))
        .public_key(keys.ca.public_key())
        .serial_number(1)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(keys.ca.public_key()), critical=False)
        .sign(keys.ca, hashes.SHA256())
    )


def make_server_cert(
    keys: Keys,
    *,
    ca: x509.Certificate | None = None,
    serial: int = 1000,
    uri: str = SERVER_URI,
    hosts: list[x509.GeneralName] | None = None,
    not_before: dt.datetime = NOW - DAY,
    not_after: dt.datetime = NOW + 30 * DAY,
    sha1: bool = False,
) -> x509.Certificate:
    """An application instance certificate as Part 6 describes it, self-signed unless `ca` is given."""
    names = hosts if hosts is not None else [x509.DNSName("localhost"), x509.IPAddress(_ip("127.0.0.1"))]
    issuer, signer = (ca.subject, keys.ca) if ca is not None else (_name("Test server"), keys.server)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("Test server"))
        .issuer_name(issuer)
        .public_key(keys.server.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), *names]), critical=False)
        .add_extension(x509.KeyUsage(True, True, True, True, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if ca is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(keys.ca.public_key()), critical=False
        )
    cert = builder.sign(signer, hashes.SHA256())
    return _resign_sha1(cert, signer) if sha1 else cert


def _ip(text: str) -> object:
    import ipaddress

    return ipaddress.ip_address(text)


_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")
_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _resign_sha1(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate signed with sha1WithRSAEncryption, which cryptography no longer makes:
    swap the algorithm OID in the signed part and sign that with SHA-1 (DER assembled by hand)."""
    tbs = cert.tbs_certificate_bytes.replace(_SHA256_RSA, _SHA1_RSA)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = b"\x30\x0d" + _SHA1_RSA + b"\x05\x00"
    bits = b"\x00" + signature
    body = tbs + algorithm + b"\x03" + _der_length(len(bits)) + bits
    return x509.load_der_x509_certificate(b"\x30" + _der_length(len(body)) + body)


def make_crl(keys: Keys, ca: x509.Certificate, revoked_serials: tuple[int, ...] = ()) -> x509.CertificateRevocationList:
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
    builder = builder.last_update(NOW - DAY).next_update(NOW + 7 * DAY)
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(REVOKED_AT).build()
        )
    return builder.sign(keys.ca, hashes.SHA256())


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def serve(cert: x509.Certificate, keys: Keys, folder: Path) -> OpcUaPeer:
    """A real asyncua server presenting `cert` (with the server key) on SignAndEncrypt."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "server.der", folder / "server-key.pem"
    cert_path.write_bytes(_der(cert))
    key_path.write_bytes(
        keys.server.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return OpcUaPeer(free_port(), folder, security=(SECURITY,), certificate=(cert_path, key_path)).start()


def trust(cert: x509.Certificate, name: str = "server.der") -> None:
    Pki().ensure_folders()
    (Pki().trusted_dir / name).write_bytes(_der(cert))


def counter_tag() -> TagSpec:
    return TagSpec("test.counter", address="nsu=urn:hmi:test;s=Test/counter", connection="plc")


def make_source(peer: OpcUaPeer, bus: TagBus, endpoint: str | None = None) -> OpcUaSource:
    conn = OpcUaConnection.model_validate(
        {
            "kind": "opcua",
            "endpoint": endpoint or peer.endpoint,
            "security": SECURITY,
            "reconnect_max_delay_s": 0.5,
            "publishing_interval_ms": 50,
        }
    )
    return OpcUaSource("plc", conn, [counter_tag()], bus)


def assert_refused(peer: OpcUaPeer, *expected: str, endpoint: str | None = None) -> str:
    """Connect the real source; it must stay disconnected, say why once as an event, and back off."""
    bus = TagBus()
    collector = Collector(bus)
    source = make_source(peer, bus, endpoint)
    thumb = thumbprint(peer.certificate_der)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(lambda: thumb in source.last_error, 15, f"not refused: {source.last_error!r}")
            await asyncio.sleep(1.2)  # a few retries at the 0.5 s backoff: one event, no storm
        assert not source.connected and source.connects == 0
        assert not collector.values("test.counter")

    run_async(scenario())
    for text in expected:
        assert text in source.last_error, source.last_error
    events = [m for m in collector.messages() if thumb in m]
    assert len(events) == 1, collector.messages()
    return source.last_error


def assert_connects(peer: OpcUaPeer) -> None:
    bus = TagBus()
    collector = Collector(bus)
    source = make_source(peer, bus)

    async def scenario() -> None:
        async with running(source):
            await async_wait_until(
                lambda: len(collector.values("test.counter")) >= 2, 15, f"no values: {source.last_error}"
            )

    run_async(scenario())


# -- refused although on the trust list -------------------------------------------------------


def test_expired_certificate_is_refused_with_its_date(keys: Keys, tmp_path: Path) -> None:
    """A trusted but expired server certificate is refused, naming the day it expired."""
    expired = NOW - 2 * DAY
    cert = make_server_cert(keys, not_before=NOW - 40 * DAY, not_after=expired)
    trust(cert)
    peer = serve(cert, keys, tmp_path / "server")
    try:
        error = assert_refused(peer, "BadCertificateTimeInvalid", f"expired on {expired:%Y-%m-%d %H:%M} UTC")
        assert "hmi trust" not in error  # trusting it again would not help
    finally:
        peer.stop()


def test_not_yet_valid_certificate_is_refused(keys: Keys, tmp_path: Path) -> None:
    """A trusted certificate whose validity starts tomorrow is refused, naming the start."""
    start = NOW + DAY
    cert = make_server_cert(keys, not_before=start, not_after=NOW + 30 * DAY)
    trust(cert)
    peer = serve(cert, keys, tmp_path / "server")
    try:
        assert_refused(peer, "BadCertificateTimeInvalid", f"not valid before {start:%Y-%m-%d %H:%M} UTC")
    finally:
        peer.stop()


def test_wrong_application_uri_is_refused(keys: Keys, tmp_path: Path) -> None:
    """A certificate naming another ApplicationUri than the server's endpoint is refused, naming both."""
    cert = make_server_cert(keys, uri="urn:somewhere:else")
    trust(cert)
    peer = serve(cert, keys, tmp_path / "server")
    try:
        assert_refused(peer, "BadCertificateUriInvalid", f"urn:somewhere:else does not match {SERVER_URI}")
    finally:
        peer.stop()


def test_wrong_host_is_refused(keys: Keys, tmp_path: Path) -> None:
    """A certificate for another host than the endpoint URL's is refused, naming both."""
    cert = make_server_cert(keys, hosts=[x509.IPAddress(_ip("192.0.2.10"))])
    trust(cert)
    peer = serve(cert, keys, tmp_path / "server")
    try:
        assert_refused(peer, "BadCertificateHostNameInvalid", "for host 192.0.2.10, not 127.0.0.1")
    finally:
        peer.stop()


def test_sha1_signature_is_refused(keys: Keys, tmp_path: Path) -> None:
    """A trusted self-signed certificate with a SHA-1 signature is refused as such."""
    cert = make_server_cert(keys, sha1=True)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    trust(cert)
    peer = serve(cert, keys, tmp_path / "server")
    try:
        assert_refused(peer, "BadCertificatePolicyCheckFailed", "SHA-1 signature")
    finally:
        peer.stop()


def test_certificate_revoked_by_its_ca_is_refused(keys: Keys, tmp_path: Path) -> None:
    """A server certificate its trusted CA revoked is refused, naming the CA and the date; also when pinned."""
    ca = make_ca(keys)
    cert = make_server_cert(keys, ca=ca, serial=4242)
    trust(ca, "ca.der")
    Pki().trusted_crl_dir.mkdir(parents=True, exist_ok=True)
    (Pki().trusted_crl_dir / "ca.crl").write_bytes(
        make_crl(keys, ca, (4241, 4242)).public_bytes(serialization.Encoding.DER)
    )
    peer = serve(cert, keys, tmp_path / "server")
    try:
        expected = f"revoked by CA CN=Test CA on {REVOKED_AT:%Y-%m-%d %H:%M} UTC"
        assert_refused(peer, "BadCertificateRevoked", expected)
        trust(cert)  # pinning the revoked certificate itself does not help either
        assert_refused(peer, "BadCertificateRevoked", expected)
    finally:
        peer.stop()


# -- accepted ---------------------------------------------------------------------------------


def test_self_signed_trusted_certificate_connects(keys: Keys, tmp_path: Path) -> None:
    """A valid self-signed certificate on the trust list connects and delivers values."""
    cert = make_server_cert(keys)
    trust(cert)
    peer = serve(cert, keys, tmp_path / "server")
    try:
        assert_connects(peer)
    finally:
        peer.stop()


def test_ca_signed_certificate_needs_the_ca_crl_then_connects(keys: Keys, tmp_path: Path) -> None:
    """Signed by a trusted CA: refused as "revocation unknown" while the CA has no CRL, connects once it has one.

    The server certificate itself is not on the trust list: its CA is.
    """
    ca = make_ca(keys)
    cert = make_server_cert(keys, ca=ca, serial=77)
    trust(ca, "ca.der")
    peer = serve(cert, keys, tmp_path / "server")
    try:
        assert_refused(peer, "BadCertificateRevocationUnknown", "CA CN=Test CA has no valid CRL")
        Pki().ensure_folders()
        (Pki().issuers_crl_dir / "ca.pem").write_bytes(
            make_crl(keys, ca, (5,)).public_bytes(serialization.Encoding.PEM)
        )
        assert_connects(peer)
        assert not Pki().is_trusted(_der(cert))  # trusted through its CA only
    finally:
        peer.stop()


def test_ca_signed_certificate_of_an_untrusted_ca_is_refused(keys: Keys, tmp_path: Path) -> None:
    """A CA-signed certificate whose CA is not trusted is refused as untrusted and saved for review."""
    ca = make_ca(keys)
    cert = make_server_cert(keys, ca=ca)
    peer = serve(cert, keys, tmp_path / "server")
    try:
        error = assert_refused(peer, "not trusted", "CN=Test CA")
        assert "hmi trust" in error
        assert [p for p in Pki().rejected_dir.iterdir() if thumbprint(_der(cert)) in p.name]
    finally:
        peer.stop()


# -- the checks without a server ---------------------------------------------------------------


def test_small_rsa_key_and_missing_key_usage_are_refused(keys: Keys) -> None:
    """A 1024-bit RSA key, or a keyUsage without digitalSignature, is refused even when pinned."""
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = make_server_cert(Keys(keys.ca, small))
    trust(weak, "weak.der")
    with pytest.raises(CertificateRefused, match="1024 bits"):
        Pki().check_server(_der(weak), "S", SERVER_URI, "127.0.0.1")
    no_signature = (
        x509.CertificateBuilder()
        .subject_name(_name("x"))
        .issuer_name(_name("x"))
        .public_key(keys.server.public_key())
        .serial_number(9)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SERVER_URI)]), critical=False)
        .add_extension(x509.KeyUsage(False, False, True, False, False, False, False, False, False), critical=True)
        .sign(keys.server, hashes.SHA256())
    )
    trust(no_signature, "nosig.der")
    with pytest.raises(CertificateRefused, match="keyUsage lacks digitalSignature") as info:
        Pki().check_server(_der(no_signature), "S", SERVER_URI)
    assert info.value.code == "BadCertificateUseNotAllowed"
    assert not isinstance(info.value, UntrustedCertificate)


def test_client_certificate_names_only_server_auth_is_required(keys: Keys) -> None:
    """An extendedKeyUsage without serverAuth (a client certificate) is refused for a server."""
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("client"))
        .issuer_name(_name("client"))
        .public_key(keys.server.public_key())
        .serial_number(10)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SERVER_URI)]), critical=False)
        .add_extension(x509.KeyUsage(True, True, True, True, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(keys.server, hashes.SHA256())
    )
    trust(cert, "client.der")
    with pytest.raises(CertificateRefused, match="does not include serverAuth"):
        Pki().check_server(_der(cert), "S", SERVER_URI)


# -- the commands ------------------------------------------------------------------------------


def test_cert_show_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hmi cert show` prints the client certificate's subject, URI, validity and SHA-256; export writes DER or PEM."""
    import hashlib

    from hmi.cli import main

    assert main(["cert", "show", "--application-uri", "urn:test:hmi"]) == 0
    der = Pki().own_cert.read_bytes()
    out = capsys.readouterr().out
    cert = x509.load_der_x509_certificate(der)
    assert hashlib.sha256(der).hexdigest().upper() in out and thumbprint(der) in out
    assert "urn:test:hmi" in out and cert.subject.rfc4514_string() in out
    assert f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}" in out

    assert main(["cert", "export", str(tmp_path / "client.pem")]) == 0
    assert _der(x509.load_pem_x509_certificate((tmp_path / "client.pem").read_bytes())) == der
    assert main(["cert", "export", str(tmp_path / "client.der")]) == 0
    assert (tmp_path / "client.der").read_bytes() == der
    assert main(["cert", "export", str(tmp_path / "client.txt")]) == 2
    assert main(["cert", "export", str(tmp_path / "missing" / "client.der")]) == 1
    assert "missing" in capsys.readouterr().err


def test_trust_remove_by_thumbprint_or_name(keys: Keys, tmp_path: Path) -> None:
    """`hmi trust --remove` untrusts by thumbprint or name, refuses an unknown or ambiguous one (exit 2)."""
    from hmi.cli import main

    cert = make_server_cert(keys)
    (tmp_path / "s.der").write_bytes(_der(cert))
    assert main(["trust", str(tmp_path / "s.der")]) == 0
    assert Pki().is_trusted(_der(cert))
    assert main(["trust", "--remove", thumbprint(_der(cert))]) == 0
    assert not Pki().is_trusted(_der(cert))
    assert any(thumbprint(_der(cert)) in p.name for p in Pki().rejected_dir.iterdir())
    assert main(["trust", "--remove", thumbprint(_der(cert))]) == 2

    assert main(["trust", str(tmp_path / "s.der")]) == 0
    assert main(["trust", "--remove", "Test server"]) == 0  # its common name
    assert not Pki().is_trusted(_der(cert))
    trust(make_server_cert(keys, serial=1), "a.der")
    trust(make_server_cert(keys, serial=2), "b.der")
    assert main(["trust", "--remove", "Test server"]) == 2  # two of that name: give a thumbprint
    assert main(["trust", "--remove", "a.der"]) == 0
