"""The client's OPC UA certificates and trust list, in the usual OPC UA folder layout.

    <data folder>/pki/
        own/certs/hmi-client.der      the client's application instance certificate
        own/private/hmi-client.pem    its private key (owner-only)
        trusted/certs/                server certificates this client trusts
        rejected/certs/               server certificates it refused, to review and trust

A server certificate is trusted when a certificate with the same SHA-1 thumbprint is in
trusted/certs (DER or PEM). An unknown one is refused and copied to rejected/certs, where
`hmi trust THUMBPRINT` (or the tag browser later) moves it to trusted/certs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hmi.paths import data_dir

log = logging.getLogger(__name__)

CLIENT_NAME = "hmi-client"
_CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")


class UntrustedCertificate(Exception):
    """The server presented a certificate that is not in the trust list."""

    def __init__(self, message: str, thumbprint: str, path: Path | None) -> None:
        super().__init__(message)
        self.thumbprint = thumbprint
        self.path = path


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    state: str  # "trusted" or "rejected"
    thumbprint: str  # SHA-1 of the DER encoding, upper-case hex
    subject: str
    not_after: datetime
    path: Path


def thumbprint(der: bytes) -> str:
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def _load(path: Path) -> x509.Certificate | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        return None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def default_application_uri() -> str:
    return f"urn:{socket.gethostname()}:hmi:client"


class Pki:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else data_dir() / "pki"

    @property
    def own_cert(self) -> Path:
        return self.root / "own" / "certs" / f"{CLIENT_NAME}.der"

    @property
    def own_key(self) -> Path:
        return self.root / "own" / "private" / f"{CLIENT_NAME}.pem"

    @property
    def trusted_dir(self) -> Path:
        return self.root / "trusted" / "certs"

    @property
    def rejected_dir(self) -> Path:
        return self.root / "rejected" / "certs"

    def ensure_folders(self) -> None:
        for folder in (self.own_cert.parent, self.trusted_dir, self.rejected_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.own_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.own_key.parent, 0o700)

    async def ensure_client_certificate(self, application_uri: str) -> tuple[Path, Path]:
        """The client's certificate and key, generated on first use (or when expired/mismatched)."""
        from asyncua.crypto import cert_gen
        from cryptography.x509.oid import ExtendedKeyUsageOID

        self.ensure_folders()
        before = self.own_cert.read_bytes() if self.own_cert.exists() else None
        await cert_gen.setup_self_signed_certificate(
            self.own_key,
            self.own_cert,
            application_uri,
            socket.gethostname(),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"organizationName": "HMI", "commonName": "HMI client"},
        )
        os.chmod(self.own_key, 0o600)  # asyncua writes it with the process umask
        after = self.own_cert.read_bytes()
        if before != after:
            log.info(
                "created the client certificate %s (thumbprint %s) for %s",
                self.own_cert,
                thumbprint(after),
                application_uri,
            )
        return self.own_cert, self.own_key

    # -- trust list ---------------------------------------------------------------------

    def _certs_in(self, folder: Path) -> list[tuple[Path, x509.Certificate]]:
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in _CERT_SUFFIXES:
                cert = _load(path)
                if cert is not None:
                    out.append((path, cert))
        return out

    def is_trusted(self, der: bytes) -> bool:
        wanted = thumbprint(der)
        return any(thumbprint(_der(cert)) == wanted for _, cert in self._certs_in(self.trusted_dir))

    def check_server(self, der: bytes, server: str) -> None:
        """Raise UntrustedCertificate (after copying it to rejected/) unless `der` is trusted."""
        if self.is_trusted(der):
            return
        thumb = thumbprint(der)
        path = self.reject(der)
        subject = ""
        try:
            subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except ValueError:
            pass
        raise UntrustedCertificate(
            f"the certificate of server {server} is not trusted (SHA-1 thumbprint {thumb}"
            + (f", subject {subject}" if subject else "")
            + f"); it was saved to {path}: run `hmi trust {thumb}` to trust it",
            thumb,
            path,
        )

    def reject(self, der: bytes) -> Path:
        self.ensure_folders()
        path = self.rejected_dir / f"{_safe_name(der)} [{thumbprint(der)}].der"
        if not path.exists():
            path.write_bytes(der)
        return path

    def trust(self, what: str) -> CertificateInfo:
        """Trust a rejected certificate by thumbprint, or any certificate file by path."""
        self.ensure_folders()
        source = Path(what)
        if source.is_file():
            cert = _load(source)
            if cert is None:
                raise ValueError(f"{source} is not a certificate (DER or PEM)")
            from_rejected = source.resolve().parent == self.rejected_dir.resolve()
        else:
            wanted = what.replace(":", "").replace(" ", "").upper()
            if not re.fullmatch(r"[0-9A-F]{40}", wanted):
                raise ValueError(f"{what!r} is neither a certificate file nor a SHA-1 thumbprint (40 hex digits)")
            matches = [(p, c) for p, c in self._certs_in(self.rejected_dir) if thumbprint(_der(c)) == wanted]
            if not matches:
                raise ValueError(f"no rejected certificate has thumbprint {wanted} (see `hmi trust --list`)")
            source, cert = matches[0]
            from_rejected = True
        der = _der(cert)
        target = self.trusted_dir / f"{_safe_name(der)} [{thumbprint(der)}].der"
        target.write_bytes(der)
        if from_rejected:
            source.unlink(missing_ok=True)
        log.info("trusted certificate %s (%s)", thumbprint(der), target)
        return _info("trusted", target, cert)

    def untrust(self, thumb: str) -> int:
        wanted = thumb.replace(":", "").upper()
        removed = 0
        for path, cert in self._certs_in(self.trusted_dir):
            if thumbprint(_der(cert)) == wanted:
                shutil.move(str(path), str(self.rejected_dir / path.name))
                removed += 1
        return removed

    def list(self) -> list[CertificateInfo]:
        return [_info("trusted", p, c) for p, c in self._certs_in(self.trusted_dir)] + [
            _info("rejected", p, c) for p, c in self._certs_in(self.rejected_dir)
        ]


def _info(state: str, path: Path, cert: x509.Certificate) -> CertificateInfo:
    not_after = cert.not_valid_after_utc if hasattr(cert, "not_valid_after_utc") else cert.not_valid_after
    if not_after.tzinfo is None:
        not_after = not_after.replace(tzinfo=UTC)
    return CertificateInfo(state, thumbprint(_der(cert)), cert.subject.rfc4514_string(), not_after, path)


def _safe_name(der: bytes) -> str:
    """A file name from the certificate's common name, safe on every file system."""
    name = "server"
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if names:
            name = str(names[0].value)
    except ValueError:
        pass
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "server"
