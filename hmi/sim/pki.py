"""Self-signed OPC UA application certificates: made on first start, reused afterwards.

An OPC UA application certificate names the application URI in its subjectAltName, and
clients check that it matches the server's ApplicationUri; so a certificate is reused only
while it names the same URI and has more than a day to run. The private key never leaves
the folder and is written readable by its owner only.
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
    if cert_path.exists() and key_path.exists() and _still_good(cert_path, app_uri):
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
    # The key first and private from its first byte: never a moment with a readable key.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(dump_private_key_as_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    log.info("made a self-signed certificate for %s in %s", app_uri, folder)
    return CertificatePair(cert_path, key_path, created=True)


def _still_good(cert_path: Path, app_uri: str) -> bool:
    try:
        cert = x509.load_der_x509_certificate(cert_path.read_bytes())
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    except (ValueError, x509.ExtensionNotFound, OSError) as exc:
        log.warning("certificate %s is unreadable (%s); making a new one", cert_path, exc)
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
