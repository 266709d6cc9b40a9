"""Self-signed OPC UA application certificates: made on first start, reused afterwards.

An OPC UA application certificate names the application URI in its subjectAltName, and
clients check that it matches the server's ApplicationUri; so a certificate is reused only
while it names the same URI, has more than a day to run and its private key is there and
belongs to it. The private key never leaves the folder and is written readable by its owner
only. Each file is written whole under a temporary name and then renamed over the old one, so
a server never reads a half-written key; a crash between the two renames leaves a pair that
does not match, which the next start replaces.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

log = logging.getLogger(__name__)

VALID_DAYS = 5 * 365


@dataclass(frozen=True, slots=True)
class CertificatePair:
    certificate: Path  # DER
    private_key: Path  # PEM, PKCS#8, unencrypted, mode 0600
    created: bool  # False when an existing pair was reused


def ensure_certificate(folder: Path, name: str, app_uri: str, hosts: list[str] | None = None) -> CertificatePair:
    """`folder/<name>-cert.der` and `folder/<name>-key.pem` for `app_uri`, made when missing or stale."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_path = folder / f"{name}-cert.der"
    key_path = folder / f"{name}-key.pem"
    if cert_path.exists() and key_path.exists() and _still_good(cert_path, key_path, app_uri):
        return CertificatePair(cert_path, key_path, created=False)

    key = generate_private_key()
    names = sorted({socket.gethostname(), "localhost", *(hosts or [])})
    alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri)]
    for host in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    if not any(isinstance(n, x509.IPAddress) for n in alt_names):
        alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = generate_self_signed_app_certificate(
        key,
        name,
        {"organizationName": "HMI demo plant"},
        alt_names,
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=VALID_DAYS,
    )
    # The key private from its first byte: never a moment with a readable key.
    _write_whole(key_path, dump_private_key_as_pem(key), 0o600)
    _write_whole(cert_path, cert.public_bytes(serialization.Encoding.DER), 0o644)
    log.info("made a self-signed certificate for %s in %s", app_uri, folder)
    return CertificatePair(cert_path, key_path, created=True)


def _write_whole(path: Path, data: bytes, mode: int) -> None:
    """`data` into `path` all at once for readers: a temporary file, synced, renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _still_good(cert_path: Path, key_path: Path, app_uri: str) -> bool:
    try:
        cert = x509.load_der_x509_certificate(cert_path.read_bytes())
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        # Our own key, compared with the certificate below: skip the RSA checks (0.15 s).
        key = serialization.load_pem_private_key(key_path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, x509.ExtensionNotFound, OSError) as exc:
        log.warning("certificate %s or its key is unreadable (%s); making a new pair", cert_path, exc)
        return False
    if key.public_key() != cert.public_key():
        log.warning("private key %s does not belong to certificate %s; making a new pair", key_path, cert_path)
        return False
    if app_uri not in uris:
        log.info("certificate %s names %s, not %s; making a new one", cert_path, uris, app_uri)
        return False
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if left < dt.timedelta(days=1):
        log.info("certificate %s expires %s; making a new one", cert_path, cert.not_valid_after_utc)
        return False
    return True


def certificate_thumbprint(cert_path: Path) -> str:
    """SHA-1 thumbprint (hex), as OPC UA tools show it."""
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(cert_path.read_bytes())
    return cert.fingerprint(hashes.SHA1()).hex()  # a name for humans, not a security check
